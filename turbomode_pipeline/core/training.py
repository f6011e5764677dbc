"""Training a sector's six models with validation that cannot leak.

Time is split by session: the final holdout is the most recent `holdout_sessions`; before
it, an embargo of H sessions (their outcomes reach into the holdout), and before that,
walk-forward folds test consecutive blocks, each trained only on samples whose outcome
(exit `t1`) was known before the block starts (the purge) and that lie at least H sessions
before it. Every fold's out-of-sample AUC is a cross-validation metric.

Calibration: each fold's models score their block out of sample; a score is the model's
log-odds less its mean log-odds on its own training data, so that blocks scored by models of
different training periods (different base rates) share one scale. Each model type's
calibrator (Platt, slope held positive) and the stacked ensemble's meta-model (non-negative
weights) learn on those pooled scores: monotone, so calibrated and raw AUC are equal.

The last fold's models, calibrated, are the validated models: the holdout is scored once with
them (its metrics, rank IC and reliability table). Then the version that is registered and
scanned with is refit with the same settings on every labelled sample (up to the newest
session whose outcome is known), centred on its own training data and calibrated with the same
calibrators and meta-model. Seeds are fixed: the same samples give the same models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from turbomode_pipeline.core.model_zoo import (
    BASE_MODEL_TYPES,
    STACKED,
    CalibratedModel,
    ModelSettings,
    StackedEnsemble,
    feature_importance,
    fit_calibrator,
    fit_stacker,
    log_odds,
    make_base_model,
    score_centre,
)

SEED = 20240101


@dataclass(frozen=True)
class Split:
    holdout_start: date
    holdout_end: date
    folds: list[tuple[date, date]]  # walk-forward test blocks before the holdout


@dataclass
class TrainedModel:
    model_type: str
    model: object  # the version to register and scan with: refit on every labelled sample
    metrics: dict[str, float]  # the validated model's, on the holdout
    holdout_probability: np.ndarray  # the validated model's calibrated probability on the holdout
    importances: dict[str, float] | None = None
    reliability: pl.DataFrame | None = None  # decile, predicted, observed, count on the holdout
    validated: object = None  # the model the holdout judged (trained before it), calibrated
    holdout_raw: np.ndarray | None = None  # the validated model's uncalibrated score on the holdout


@dataclass
class SectorTraining:
    sector: str
    feature_names: list[str]
    split: Split
    train_window: tuple[date, date]  # the final fit's samples (entry sessions)
    validation_window: tuple[date, date]  # the validated model's training samples
    models: dict[str, TrainedModel] = field(default_factory=dict)
    holdout: pl.DataFrame | None = None  # the holdout samples, every column: the promotion gate scores champions on it
    samples: pl.DataFrame | None = None  # the samples the registered version was fitted on (logged as its dataset)
    labels_through: date | None = None  # the last session whose close its labels needed (set by the caller)
    training_week: date | None = None  # the week it serves (set by the caller)
    # where the time went, seconds by (stage, what): ("fold 1", model type) .. ("refit", model type),
    # ("prepare", "data"), ("calibrate", "calibrators and stacker"), ("holdout", "scoring and metrics")
    timings: dict[tuple[str, str], float] = field(default_factory=dict)


class _Clock:
    """Seconds spent per (stage, what), summed."""

    def __init__(self):
        self.seconds: dict[tuple[str, str], float] = {}

    def add(self, stage: str, what: str, started: float) -> None:
        key = (stage, what)
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - started


class TooFewSamples(ValueError):
    """A sector's samples cannot fill the holdout and the walk-forward folds: it is skipped, not trained."""


def make_split(sessions: list[date], holdout_sessions: int, folds: int, embargo: int = 0) -> Split:
    """Holdout = the last `holdout_sessions`; the sessions before it, less an embargo of `embargo`
    sessions (whose outcomes reach into the holdout), are cut into folds + 1 blocks, and each of
    the last `folds` blocks is a walk-forward test block (the calibration data)."""
    if len(sessions) < holdout_sessions * 2:
        raise TooFewSamples(
            f"{len(sessions)} sessions of samples are too few for a {holdout_sessions}-session holdout"
            f" (at least {holdout_sessions * 2} are needed)"
        )
    before = sessions[: -holdout_sessions - embargo] if embargo else sessions[:-holdout_sessions]
    edges = np.linspace(0, len(before), folds + 2).astype(int)
    blocks = [(before[edges[i]], before[edges[i + 1] - 1]) for i in range(1, folds + 1)]
    return Split(holdout_start=sessions[-holdout_sessions], holdout_end=sessions[-1], folds=blocks)


def _purged_before(samples: pl.DataFrame, start: date) -> pl.DataFrame:
    """Samples whose whole outcome (entry to exit t1) ended before `start`."""
    return samples.filter(pl.col("t1") < start)


def metrics(labels: np.ndarray, probability: np.ndarray, upper_hit: np.ndarray) -> dict[str, float]:
    """Out-of-sample quality: ranking, probability accuracy, calibration and the top decile."""
    top = probability >= np.quantile(probability, 0.9)
    return {
        "roc_auc": float(roc_auc_score(labels, probability)),
        "log_loss": float(log_loss(labels, np.clip(probability, 1e-6, 1 - 1e-6), labels=[0, 1])),
        "brier": float(brier_score_loss(labels, probability)),
        "ece": expected_calibration_error(labels, probability),
        "top_decile_precision": float(labels[top].mean()),
        "top_decile_hit_rate": float(upper_hit[top].mean()),
        "base_rate": float(labels.mean()),
        "samples": float(len(labels)),
    }


def auc_standard_error(
    sessions: np.ndarray, labels: np.ndarray, probability: np.ndarray, horizon: int, replicates: int = 200, seed: int = 0
) -> float:
    """Standard error of the ROC AUC by a bootstrap over blocks of `horizon` consecutive sessions.

    Rows of one session share its market, and consecutive sessions' outcomes overlap for H
    sessions, so resampling rows would understate the noise; resampling whole blocks keeps both.
    Each replicate is a weight per row: how often its block was drawn."""
    _, session_index = np.unique(sessions, return_inverse=True)
    block = session_index // max(horizon, 1)
    blocks = int(block.max()) + 1
    draws = np.random.default_rng(seed).integers(0, blocks, size=(replicates, blocks))
    drawn = np.zeros((replicates, blocks))
    np.add.at(drawn, (np.arange(replicates)[:, None], draws), 1.0)
    return float(np.nanstd(weighted_aucs(drawn[:, block], labels, probability), ddof=1))


def weighted_aucs(weights: np.ndarray, labels: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """ROC AUC under each row of `weights` (replicates x samples), from one sort: for each distinct
    score, the positives' weight there times the negatives' weight below it (half of those tied)."""
    order = np.argsort(probability, kind="stable")
    weights = weights[:, order]
    positive = labels[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, np.diff(probability[order]) != 0])
    positive_weight = np.add.reduceat(weights * positive, starts, axis=1)
    negative_weight = np.add.reduceat(weights * ~positive, starts, axis=1)
    below = np.cumsum(negative_weight, axis=1) - negative_weight
    pairs = positive_weight.sum(axis=1) * negative_weight.sum(axis=1)
    return (positive_weight * (below + 0.5 * negative_weight)).sum(axis=1) / np.where(pairs > 0, pairs, np.nan)


def expected_calibration_error(labels: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    """Sample-weighted mean |observed frequency - mean probability| over equal-width bins."""
    index = np.minimum((probability * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    observed = np.bincount(index, weights=labels, minlength=bins)
    predicted = np.bincount(index, weights=probability, minlength=bins)
    filled = counts > 0
    return float(np.abs(observed[filled] - predicted[filled]).sum() / counts.sum())


def _xy(frame: pl.DataFrame, features: list[str], dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    return frame.select(features).to_numpy().astype(dtype), frame["label"].to_numpy().astype(int)


@dataclass
class _SectorData:
    """A sector's samples as arrays, built once and shared by every model and fold: features (float32
    in the "hist" recipe), labels, entry sessions and exits (t1), rows in the samples' order."""

    x: np.ndarray
    y: np.ndarray
    session: np.ndarray
    t1: np.ndarray

    @classmethod
    def of(cls, samples: pl.DataFrame, features: list[str], settings: ModelSettings) -> _SectorData:
        x, y = _xy(samples, features, np.float32 if settings.recipe == "hist" else np.float64)
        day = lambda column: samples[column].cast(pl.Date).to_numpy().astype("datetime64[D]")  # noqa: E731
        return cls(x, y, day("session"), day("t1"))

    def rows(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x[mask], self.y[mask]


def _fold_masks(data: _SectorData, sessions: list[date], start: date, end: date, embargo: int):
    """Training and test rows of the walk-forward block [start, end]: training rows are purged (their
    outcome ended before the block) and an embargo of `embargo` sessions before it."""
    before = [day for day in sessions if day < start]
    cutoff = before[-embargo] if embargo and len(before) >= embargo else start
    start64, end64, cutoff64 = (np.datetime64(day, "D") for day in (start, end, cutoff))
    train = (data.t1 < start64) & (data.session < cutoff64)
    return train, (data.session >= start64) & (data.session <= end64)


def _fit_base_models(
    x: np.ndarray, y: np.ndarray, settings: ModelSettings, fit_seconds: dict[str, float], clock: _Clock, stage: str
) -> dict:
    """The five base models fitted on (x, y), each with its score centre on x."""
    fitted = {}
    for m in BASE_MODEL_TYPES:
        started = time.perf_counter()
        model = make_base_model(m, settings, SEED).fit(x, y)
        fitted[m] = (model, score_centre(model, x))
        fit_seconds[m] += time.perf_counter() - started
        clock.add(stage, m, started)
    return fitted


@dataclass
class _OutOfFold:
    """Every walk-forward block's out-of-sample centred log-odds per base model, and the labels."""

    scores: dict[str, list[np.ndarray]] = field(default_factory=lambda: {m: [] for m in BASE_MODEL_TYPES})
    labels: list[np.ndarray] = field(default_factory=list)

    def add(self, fitted: dict, x_test: np.ndarray, y_test: np.ndarray) -> None:
        for m, (model, centre) in fitted.items():
            self.scores[m].append(log_odds(model.predict_proba(x_test)[:, 1]) - centre)
        self.labels.append(y_test)

    def pooled(self, model_type: str) -> np.ndarray:
        return np.concatenate(self.scores[model_type])

    def pooled_labels(self) -> np.ndarray:
        return np.concatenate(self.labels)


def _walk_forward(samples, data, sessions, split, features, horizon, settings, sector, fit_seconds, clock):
    """Fit the base models on each scored fold's purged training data; returns the last fold's models,
    its training frame, the out-of-fold scores and the per-fold AUCs. Only the last
    `settings.scored_folds` blocks are fitted and scored: the earlier ones are training data only."""
    cv_auc: dict[str, list[float]] = {m: [] for m in BASE_MODEL_TYPES}
    out_of_fold = _OutOfFold()
    scored = split.folds[-settings.scored_folds:] if settings.scored_folds else split.folds
    first = len(split.folds) - len(scored) + 1
    for number, (start, end) in enumerate(scored, first):
        started = time.perf_counter()
        train_rows, test_rows = _fold_masks(data, sessions, start, end, embargo=horizon)
        y_test = data.y[test_rows]
        if train_rows.sum() < 200 or len(np.unique(y_test)) < 2:
            raise TooFewSamples(f"{sector}: the walk-forward block {start}..{end} has too few samples to train on")
        x_train, y_train = data.rows(train_rows)
        x_test = data.x[test_rows]
        clock.add("prepare", "data", started)
        fitted = _fit_base_models(x_train, y_train, settings, fit_seconds, clock, f"fold {number}")
        started = time.perf_counter()
        out_of_fold.add(fitted, x_test, y_test)
        clock.add("calibrate", "out-of-fold scores", started)
        for m in BASE_MODEL_TYPES:
            cv_auc[m].append(float(roc_auc_score(y_test, out_of_fold.scores[m][-1])))
    train = samples.filter(pl.Series(train_rows))
    return fitted, train, out_of_fold, cv_auc


def _calibrated(fitted: dict, calibrators: dict, features: list[str]) -> dict[str, CalibratedModel]:
    return {m: CalibratedModel(model, calibrators[m], features, centre) for m, (model, centre) in fitted.items()}


# Every estimator on one OpenMP thread: HistGradientBoosting would take every core, sectors run in parallel, and
# OpenMP threads spinning on a busy machine cost more than they give. The count is per thread, so parallel sectors
# in threads of one process do not undo each other's.
@threadpool_limits.wrap(limits=1, user_api="openmp")
def train_sector(
    sector: str,
    samples: pl.DataFrame,
    features: list[str],
    *,
    horizon: int,
    holdout_sessions: int = 250,
    settings: ModelSettings = ModelSettings(),
    refit: bool = True,
) -> SectorTraining:
    """Train, calibrate, evaluate and refit the six models of one sector.

    `refit=False` skips the final refit (the registered version is then the validated one): for
    measurements of the holdout alone, which the refit cannot change.

    `samples`: one row per (session, symbol) with the feature columns, `label` (what the models
    learn), `barrier`, `t1` and `fwd_ret` (the H-session return, for the rank IC), rows with a
    missing feature already dropped.
    """
    clock = _Clock()
    started = time.perf_counter()
    samples = samples.sort("session", "symbol")
    sessions = samples["session"].unique().sort().to_list()
    try:
        split = make_split(sessions, holdout_sessions, settings.folds, embargo=horizon)
    except TooFewSamples as error:
        raise TooFewSamples(f"{sector}: {error}") from None
    data = _SectorData.of(samples, features, settings)
    in_holdout = data.session >= np.datetime64(split.holdout_start, "D")
    holdout = samples.filter(pl.Series(in_holdout))
    x_holdout, y_holdout = data.rows(in_holdout)
    upper_hit = (holdout["barrier"] == "upper").to_numpy()
    fit_seconds = dict.fromkeys(BASE_MODEL_TYPES, 0.0)
    clock.add("prepare", "data", started)

    last_fold, train, out_of_fold, cv_auc = _walk_forward(
        samples, data, sessions, split, features, horizon, settings, sector, fit_seconds, clock
    )
    started = time.perf_counter()
    y_oof = out_of_fold.pooled_labels()
    calibrators = {m: fit_calibrator(out_of_fold.pooled(m), y_oof) for m in BASE_MODEL_TYPES}
    oof_scores = np.column_stack([out_of_fold.pooled(m) for m in BASE_MODEL_TYPES])
    intercept, weights, scale = fit_stacker(oof_scores, y_oof)
    clock.add("calibrate", "calibrators and stacker", started)

    # The validated models (the last fold's, calibrated) are scored on the holdout once; then the
    # version that is registered and scanned with is refit the same way on every labelled sample.
    validated = _calibrated(last_fold, calibrators, features)
    final = validated
    if refit:
        final = _calibrated(_fit_base_models(data.x, data.y, settings, fit_seconds, clock, "refit"), calibrators, features)
    scoring = time.perf_counter()
    fitted_on = samples if refit else train
    result = SectorTraining(
        sector=sector, feature_names=features, split=split,
        train_window=(fitted_on["session"].min(), fitted_on["session"].max()),
        validation_window=(train["session"].min(), train["session"].max()),
        holdout=holdout,  # every column, so a champion trained on other features can be scored on it
        samples=fitted_on,
    )
    for m in BASE_MODEL_TYPES:
        raw = validated[m].raw_probability(x_holdout)
        probability = validated[m].predict_proba(x_holdout)[:, 1]
        importances = feature_importance(final[m].model)
        scores = {
            **_with_cv(metrics(y_holdout, probability, upper_hit), cv_auc[m]),
            **holdout_rank_ic(holdout, probability, horizon),
            "roc_auc_se": auc_standard_error(holdout["session"].to_numpy(), y_holdout, probability, horizon),
            "raw_roc_auc": float(roc_auc_score(y_holdout, raw)),
            "calibration_slope": calibrators[m].slope,
            "fit_seconds": fit_seconds[m],
        }
        result.models[m] = TrainedModel(
            m, final[m], scores, probability,
            dict(zip(features, importances.tolist(), strict=True)) if importances is not None else None,
            reliability=reliability_table(y_holdout, probability), validated=validated[m], holdout_raw=raw,
        )

    started = time.perf_counter()
    stacked_validated = StackedEnsemble(validated, intercept, weights, scale)
    probability = stacked_validated.predict_proba(x_holdout)[:, 1]
    raw = stacked_validated.score(x_holdout)
    scores = {
        **metrics(y_holdout, probability, upper_hit),
        **holdout_rank_ic(holdout, probability, horizon),
        "roc_auc_se": auc_standard_error(holdout["session"].to_numpy(), y_holdout, probability, horizon),
        "raw_roc_auc": float(roc_auc_score(y_holdout, raw)),
        "fit_seconds": time.perf_counter() - started,
    }
    result.models[STACKED] = TrainedModel(
        STACKED, StackedEnsemble(final, intercept, weights, scale), scores, probability,
        dict(zip(BASE_MODEL_TYPES, weights.tolist(), strict=True)),
        reliability=reliability_table(y_holdout, probability), validated=stacked_validated, holdout_raw=raw,
    )
    clock.add("holdout", "scoring and metrics", scoring)
    result.timings = clock.seconds
    return result


def _with_cv(scores: dict[str, float], fold_auc: list[float]) -> dict[str, float]:
    return {**scores, "cv_roc_auc_mean": float(np.mean(fold_auc)), "cv_roc_auc_std": float(np.std(fold_auc))}


def reliability_table(labels: np.ndarray, probability: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """By decile of the predicted probability: its mean, the observed frequency, the count."""
    frame = pl.DataFrame({"probability": probability, "label": labels.astype(np.float64)})
    decile = (pl.col("probability").rank("ordinal") - 1) * bins // pl.len() + 1
    return (
        frame.with_columns(decile=decile.cast(pl.Int32))
        .group_by("decile")
        .agg(predicted=pl.col("probability").mean(), observed=pl.col("label").mean(), count=pl.len())
        .sort("decile")
    )


def daily_rank_ic(holdout: pl.DataFrame, probability: np.ndarray) -> pl.Series:
    """Per session: Spearman correlation of the probability with the H-session return across the
    sector's symbols (within a session and sector, the same as with the return relative to the sector)."""
    return (
        holdout.select("session", "fwd_ret").with_columns(probability=pl.Series(probability))
        .group_by("session")
        .agg(rank_ic=pl.corr("probability", "fwd_ret", method="spearman"))
        .sort("session")["rank_ic"].drop_nulls().drop_nans()
    )


def overlap_adjusted_t(daily: pl.Series, horizon: int) -> float:
    """Mean / (sd / sqrt(sessions / H)): consecutive sessions' H-session returns overlap, so a
    holdout of n sessions holds about n / H independent outcomes."""
    n, std = daily.len(), daily.std()
    if n < 2 or not std:
        return 0.0
    return float(daily.mean() / (std / np.sqrt(n / horizon)))


def holdout_rank_ic(holdout: pl.DataFrame, probability: np.ndarray, horizon: int) -> dict[str, float]:
    """Mean daily rank IC on the holdout, its overlap-adjusted t and standard error (the null band's unit)."""
    if "fwd_ret" not in holdout.columns:
        return {}
    daily = daily_rank_ic(holdout, probability)
    t = overlap_adjusted_t(daily, horizon)
    mean = float(daily.mean()) if daily.len() else 0.0
    return {"rank_ic": mean, "rank_ic_t": t, "rank_ic_se": abs(mean / t) if t else float("inf")}
