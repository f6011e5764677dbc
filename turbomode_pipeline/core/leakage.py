"""The leakage guard: is a model's holdout AUC what a model without look-ahead could score?

On a random walk no leak-free model ranks the holdout's outcomes better than chance in
expectation, but a single holdout's AUC still wanders around 0.5, by more than the sample
count suggests: a sector's stocks share the market's and their sector's path, so a whole
session's outcomes move together, and the labels of consecutive sessions overlap over the
horizon. The holdout holds far fewer independent outcomes than samples.

`block_bootstrap_auc` measures that wander for one model on one holdout: it resamples whole
blocks of consecutive sessions (every symbol of a session together, neighbouring sessions
together), which keeps both kinds of dependence, and recomputes the AUC. Its standard
deviation is the AUC's standard error on this holdout.

`leaks` is the guard: a model is flagged when |AUC - 0.5| exceeds `chance_limit` standard
errors, the two-sided normal quantile at `false_alarm / tests` (Bonferroni): under the null
the chance that any of `tests` leak-free models is flagged is at most `false_alarm`.

`calibration_in_the_large` splits the expected calibration error: |mean probability - base
rate| is the part no model can avoid when the holdout's base rate differs from the training
period's; ECE >= it always (triangle inequality), and ECE minus it is the rest.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import polars as pl


def weighted_auc(labels: np.ndarray, score: np.ndarray, blocks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of `score` for each row of `weights` (draws x blocks), ties counted half.

    Sample i counts `weights[:, blocks[i]]` times: with all weights 1 this is the ordinary AUC,
    with integer weights the AUC of the sample where each block is repeated that many times
    (a bootstrap resample). The pairs are counted once per (positive's block, negative's
    block), so a draw costs blocks x blocks operations, not a pass over the samples.
    """
    order = np.argsort(score, kind="stable")
    ordered, up, block = score[order], labels[order].astype(bool), blocks[order]
    tie = np.cumsum(np.r_[False, ordered[1:] != ordered[:-1]])  # each sorted sample's distinct score
    n_blocks = weights.shape[1]
    negatives = np.zeros((tie[-1] + 1, n_blocks))
    np.add.at(negatives, (tie[~up], block[~up]), 1.0)  # negatives per (distinct score, block)
    beaten = np.cumsum(negatives, axis=0) - negatives / 2  # below a score, and half of its ties
    pairs = np.zeros((n_blocks, n_blocks))
    np.add.at(pairs, block[up], beaten[tie[up]])  # pairs[a, b]: positives of block a above negatives of block b
    n_pos = np.bincount(block[up], minlength=n_blocks)
    n_neg = np.bincount(block[~up], minlength=n_blocks)
    return np.einsum("da,ab,db->d", weights, pairs, weights) / ((weights @ n_pos) * (weights @ n_neg))


def session_blocks(sessions: np.ndarray, block: int) -> np.ndarray:
    """Each sample's block: its session's rank among the distinct sessions, divided by `block`."""
    _, rank = np.unique(sessions, return_inverse=True)
    return rank // block


def block_bootstrap_auc(
    labels: np.ndarray, probability: np.ndarray, sessions: np.ndarray, *, block: int = 20, draws: int = 1000, seed: int = 0
) -> np.ndarray:
    """AUCs of `draws` resamples of whole `block`-session blocks, drawn with replacement."""
    blocks = session_blocks(sessions, block)
    n_blocks = blocks.max() + 1
    counts = np.random.default_rng(seed).multinomial(n_blocks, np.full(n_blocks, 1 / n_blocks), size=draws)
    return weighted_auc(labels, probability, blocks, counts.astype(np.float64))


def chance_limit(tests: int, false_alarm: float) -> float:
    """Standard errors from 0.5 beyond which an AUC is flagged: two-sided, Bonferroni over `tests`."""
    return NormalDist().inv_cdf(1 - false_alarm / (2 * tests))


def leaks(table: pl.DataFrame, *, tests: int, false_alarm: float = 0.01) -> dict[str, str]:
    """The models of `table` (sector, model_type, roc_auc, auc_se) whose AUC is too far from chance.

    Returns "sector/model_type" -> "AUC a (z standard errors from 0.5, limit l)": the guard's message.
    """
    limit = chance_limit(tests, false_alarm)
    z = (pl.col("roc_auc") - 0.5) / pl.col("auc_se")
    flagged = table.with_columns(z=z).filter(pl.col("z").abs() > limit)
    return {
        f"{row['sector']}/{row['model_type']}": f"AUC {row['roc_auc']:.4f} ({row['z']:+.1f} standard errors from 0.5, limit {limit:.2f})"
        for row in flagged.iter_rows(named=True)
    }


def calibration_in_the_large(labels: np.ndarray, probability: np.ndarray) -> float:
    """|mean predicted probability - observed base rate|: the part of ECE a shifted base rate causes."""
    return float(abs(np.mean(probability) - np.mean(labels)))
