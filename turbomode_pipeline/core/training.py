"""Training a sector's six models with validation that cannot leak.

Time is split by session: the final holdout is the most recent `holdout_sessions`; before
it, walk-forward folds test consecutive blocks, each trained only on samples whose outcome
(exit `t1`) was known before the block starts (the purge) and that lie at least `embargo`
sessions before it. Every fold's out-of-sample AUC is a cross-validation metric. The last
fold's models are the final models. Calibration (Platt scaling) and the stacked ensemble's
meta-model learn on the out-of-fold predictions of all blocks, so that no single block's
market drift sets every probability; the final models are not refit on more data, which
would move them away from that calibration. The holdout is scored once. Seeds are fixed: the same samples give the same models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from turbomode_pipeline.core.model_zoo import (
    BASE_MODEL_TYPES,
    STACKED,
    CalibratedModel,
    ModelSettings,
    StackedEnsemble,
    feature_importance,
    fit_calibrator,
    make_base_model,
    make_meta_model,
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
    model: object
    metrics: dict[str, float]
    holdout_probability: np.ndarray
    importances: dict[str, float] | None = None


@dataclass
class SectorTraining:
    sector: str
    feature_names: list[str]
    split: Split
    train_window: tuple[date, date]
    models: dict[str, TrainedModel] = field(default_factory=dict)
    holdout: pl.DataFrame | None = None  # the holdout samples, every column: the promotion gate scores champions on it


def make_split(sessions: list[date], holdout_sessions: int, folds: int) -> Split:
    """Holdout = the last `holdout_sessions`; the sessions before it are cut into folds + 1
    blocks, and each of the last `folds` blocks is a walk-forward test block."""
    if len(sessions) < holdout_sessions * 2:
        raise ValueError(f"{len(sessions)} sessions of samples are too few for a {holdout_sessions}-session holdout")
    before = sessions[:-holdout_sessions]
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


def expected_calibration_error(labels: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    """Sample-weighted mean |observed frequency - mean probability| over equal-width bins."""
    index = np.minimum((probability * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    observed = np.bincount(index, weights=labels, minlength=bins)
    predicted = np.bincount(index, weights=probability, minlength=bins)
    filled = counts > 0
    return float(np.abs(observed[filled] - predicted[filled]).sum() / counts.sum())


def _xy(frame: pl.DataFrame, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return frame.select(features).to_numpy().astype(np.float64), frame["label"].to_numpy().astype(int)


def _fold(samples: pl.DataFrame, sessions: list[date], start: date, end: date, embargo: int):
    """Training and test samples of the walk-forward block [start, end]."""
    before = [day for day in sessions if day < start]
    cutoff = before[-embargo] if embargo and len(before) >= embargo else start
    train = _purged_before(samples, start).filter(pl.col("session") < cutoff)
    return train, samples.filter(pl.col("session").is_between(start, end))


def train_sector(
    sector: str,
    samples: pl.DataFrame,
    features: list[str],
    *,
    horizon: int,
    holdout_sessions: int = 250,
    settings: ModelSettings = ModelSettings(),
) -> SectorTraining:
    """Train, calibrate and evaluate the six models of one sector.

    `samples`: one row per (session, symbol) with the feature columns, `label`, `barrier`
    and `t1`, rows with a missing feature already dropped.
    """
    samples = samples.sort("session", "symbol")
    sessions = samples["session"].unique().sort().to_list()
    split = make_split(sessions, holdout_sessions, settings.folds)
    holdout = samples.filter(pl.col("session") >= split.holdout_start)
    x_holdout, y_holdout = _xy(holdout, features)
    upper_hit = (holdout["barrier"] == "upper").to_numpy()

    cv_auc: dict[str, list[float]] = {m: [] for m in BASE_MODEL_TYPES}
    fit_seconds = dict.fromkeys(BASE_MODEL_TYPES, 0.0)
    out_of_fold: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
    for start, end in split.folds:
        train, test = _fold(samples, sessions, start, end, embargo=horizon)
        if train.height < 200 or test["label"].n_unique() < 2:
            raise ValueError(f"{sector}: the walk-forward block {start}..{end} has too few samples to train on")
        x_train, y_train = _xy(train, features)
        x_test, y_test = _xy(test, features)
        fitted = {}
        for m in BASE_MODEL_TYPES:
            started = time.perf_counter()
            fitted[m] = make_base_model(m, settings, SEED).fit(x_train, y_train)
            fit_seconds[m] += time.perf_counter() - started
        raw = {m: fitted[m].predict_proba(x_test)[:, 1] for m in BASE_MODEL_TYPES}
        for m in BASE_MODEL_TYPES:
            cv_auc[m].append(float(roc_auc_score(y_test, raw[m])))
        out_of_fold.append((raw, y_test))

    # The last fold's models are the final ones. Calibrators and the meta-model learn on the
    # out-of-fold predictions of every block: one block is a few months, whose market drift
    # alone would shift every probability; all blocks together average it out.
    raw = {m: np.concatenate([fold[m] for fold, _ in out_of_fold]) for m in BASE_MODEL_TYPES}
    y_oof = np.concatenate([labels for _, labels in out_of_fold])
    result = SectorTraining(
        sector=sector, feature_names=features, split=split,
        train_window=(train["session"].min(), train["session"].max()),
        holdout=holdout,  # every column, so a champion trained on other features can be scored on it
    )
    for model_type in BASE_MODEL_TYPES:
        model = CalibratedModel(fitted[model_type], fit_calibrator(raw[model_type], y_oof), features)
        probability = model.predict_proba(x_holdout)[:, 1]
        importances = feature_importance(fitted[model_type])
        result.models[model_type] = TrainedModel(
            model_type, model,
            {**_with_cv(metrics(y_holdout, probability, upper_hit), cv_auc[model_type]), "fit_seconds": fit_seconds[model_type]},
            probability,
            dict(zip(features, importances.tolist(), strict=True)) if importances is not None else None,
        )

    raw_oof = np.column_stack([raw[m] for m in BASE_MODEL_TYPES])
    started = time.perf_counter()
    meta = make_meta_model().fit(raw_oof, y_oof)
    stacked = StackedEnsemble(
        {m: result.models[m].model for m in BASE_MODEL_TYPES}, meta,
        fit_calibrator(meta.predict_proba(raw_oof)[:, 1], y_oof),
    )
    probability = stacked.predict_proba(x_holdout)[:, 1]
    weights = dict(zip(BASE_MODEL_TYPES, meta[-1].coef_.ravel().tolist(), strict=True))
    scores = {**metrics(y_holdout, probability, upper_hit), "fit_seconds": time.perf_counter() - started}
    result.models[STACKED] = TrainedModel(STACKED, stacked, scores, probability, weights)
    return result


def _with_cv(scores: dict[str, float], fold_auc: list[float]) -> dict[str, float]:
    return {**scores, "cv_roc_auc_mean": float(np.mean(fold_auc)), "cv_roc_auc_std": float(np.std(fold_auc))}
