"""The leakage guard: is a model's holdout AUC what a model without look-ahead could score?

On a random walk no leak-free model ranks the holdout's outcomes better than chance in
expectation, but a single holdout's AUC still wanders around 0.5, further than the sample
count suggests: a sector's stocks share the market's and their sector's path, labels of
consecutive sessions overlap over the horizon, and price-level features (52-week distance,
the 200-session regime, Ichimoku distances) are persistent series whose innovations are the
returns themselves, so over one path they line up with future returns by chance more often
than a resampling of sessions shows (measured: a session-block bootstrap and circular time
shifts both put a fixed model's AUC standard error at ~0.024 where models of an independent
market spread 0.040 on the same holdout).

So the null is measured, not modelled: `null_spread` is the root-mean-square distance from
0.5 of the AUCs of models that cannot leak (trained on an independent simulated market),
scored on the same holdout. `leaks` flags a model whose |AUC - 0.5| exceeds `chance_limit`
null spreads, the two-sided normal quantile at `false_alarm / tests` (Bonferroni): if the
null AUCs are normal with that spread, the chance that any of `tests` leak-free models is
flagged is at most `false_alarm`.

`calibration_in_the_large` splits the expected calibration error: |mean probability - base
rate| is the part no model can avoid when the holdout's base rate differs from the training
period's; ECE >= it always (triangle inequality), and ECE minus it is the rest.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import polars as pl


def null_spread(null_auc: np.ndarray) -> float:
    """Root-mean-square distance from 0.5 of leak-free models' AUCs on the holdout."""
    return float(np.sqrt(np.mean((np.asarray(null_auc) - 0.5) ** 2)))


def chance_limit(tests: int, false_alarm: float) -> float:
    """Null spreads from 0.5 beyond which an AUC is flagged: two-sided, Bonferroni over `tests`."""
    return NormalDist().inv_cdf(1 - false_alarm / (2 * tests))


def leaks(table: pl.DataFrame, *, spread: float, tests: int, false_alarm: float) -> dict[str, str]:
    """The models of `table` (sector, model_type, roc_auc) whose AUC is too far from chance.

    Returns "sector/model_type" -> "AUC a (z null spreads from 0.5, limit l)": the guard's message.
    """
    limit = chance_limit(tests, false_alarm)
    flagged = table.with_columns(z=(pl.col("roc_auc") - 0.5) / spread).filter(pl.col("z").abs() > limit)
    return {
        f"{row['sector']}/{row['model_type']}": f"AUC {row['roc_auc']:.4f} ({row['z']:+.1f} null spreads of {spread:.4f} "
        f"from 0.5, limit {limit:.2f})"
        for row in flagged.iter_rows(named=True)
    }


def calibration_in_the_large(labels: np.ndarray, probability: np.ndarray) -> float:
    """|mean predicted probability - observed base rate|: the part of ECE a shifted base rate causes."""
    return float(abs(np.mean(probability) - np.mean(labels)))
