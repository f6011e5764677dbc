"""Walk-forward validation and metrics of core/training.py on small hand-checkable data."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from turbomode_pipeline.core.model_zoo import MODEL_TYPES, ModelSettings
from turbomode_pipeline.core.training import _purged_before, expected_calibration_error, make_split, train_sector

DAYS = [date(2020, 1, 1) + timedelta(days=i) for i in range(600)]


def test_split_puts_the_holdout_last_and_the_folds_before_it_in_order():
    split = make_split(DAYS[:400], holdout_sessions=100, folds=3)
    assert (split.holdout_start, split.holdout_end) == (DAYS[300], DAYS[399])
    assert len(split.folds) == 3
    starts = [start for start, _ in split.folds]
    assert starts == sorted(starts) and split.folds[-1][1] < split.holdout_start
    assert split.folds[0][0] > DAYS[0]  # the first block only ever trains


def test_purge_drops_every_sample_whose_outcome_reaches_the_test_block():
    samples = pl.DataFrame({"session": DAYS, "t1": [d + timedelta(days=10) for d in DAYS]})
    kept = _purged_before(samples, DAYS[200])
    assert kept["t1"].max() < DAYS[200] and kept["session"].max() == DAYS[189]


def test_expected_calibration_error():
    labels = np.array([0, 1] * 50)
    assert expected_calibration_error(labels, np.full(100, 0.5)) == pytest.approx(0.0)
    assert expected_calibration_error(labels, np.full(100, 0.9)) == pytest.approx(0.4)


def synthetic_samples(n_sessions=500, symbols=30, signal=1.0, seed=0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    sessions = np.repeat(np.array(DAYS[:n_sessions], dtype="datetime64[D]"), symbols)
    x = rng.normal(size=(len(sessions), 3))
    label = (signal * x[:, 0] + rng.normal(size=len(sessions)) > 0).astype(int)
    return pl.DataFrame(
        {
            "session": sessions, "symbol": np.tile([f"S{i}" for i in range(symbols)], n_sessions),
            "f1": x[:, 0], "f2": x[:, 1], "f3": x[:, 2], "label": label,
            "barrier": np.where(label == 1, "upper", "lower"), "t1": sessions + np.timedelta64(5, "D"),
        }
    )


def test_six_models_learn_a_planted_signal_and_are_reproducible():
    samples = synthetic_samples()
    first = train_sector("Energy", samples, ["f1", "f2", "f3"], horizon=5, holdout_sessions=100, settings=ModelSettings.fast())
    assert set(first.models) == set(MODEL_TYPES)
    for trained in first.models.values():
        assert trained.metrics["roc_auc"] > 0.7, trained.model_type
        assert trained.metrics["samples"] == 100 * 30
    again = train_sector("Energy", samples, ["f1", "f2", "f3"], horizon=5, holdout_sessions=100, settings=ModelSettings.fast())
    for model_type, trained in first.models.items():
        np.testing.assert_array_equal(trained.holdout_probability, again.models[model_type].holdout_probability)


def test_every_model_is_calibrated_on_the_holdout():
    result = train_sector(
        "Energy", synthetic_samples(), ["f1", "f2", "f3"], horizon=5, holdout_sessions=100, settings=ModelSettings.fast()
    )
    assert {m: t.metrics["ece"] < 0.05 for m, t in result.models.items()} == {m: True for m in MODEL_TYPES}


def test_noise_gives_chance_level_models():
    samples = synthetic_samples(signal=0.0, seed=3)
    result = train_sector("Energy", samples, ["f1", "f2", "f3"], horizon=5, holdout_sessions=100, settings=ModelSettings.fast())
    for trained in result.models.values():
        assert abs(trained.metrics["roc_auc"] - 0.5) < 0.05, trained.model_type


def test_the_folds_end_an_embargo_before_the_holdout():
    split = make_split(DAYS[:400], holdout_sessions=100, folds=3, embargo=10)
    assert split.folds[-1][1] == DAYS[289]  # the 10 sessions 290..299 before the holdout are in no block


def blocks_with_opposite_base_rates(block: int = 99, swing: float = 1.5, seed: int = 5) -> pl.DataFrame:
    """A planted signal in f1, and a base rate that swings between ~0.8 and ~0.2 from one
    walk-forward block to the next (the blocks of make_split for 500 sessions, a 100-session
    holdout, 3 folds and a 5-session embargo are ~99 sessions long)."""
    samples = synthetic_samples(signal=1.0, seed=seed)
    position = samples["session"].rank("dense").cast(pl.Int64) - 1
    offset = pl.when((position // block) % 2 == 0).then(swing).otherwise(-swing)
    noise = np.random.default_rng(seed + 1).normal(size=samples.height)
    label = ((pl.col("f1") + offset + pl.Series(noise)) > 0).cast(pl.Int64)
    return samples.with_columns(label=label).with_columns(
        barrier=pl.when(pl.col("label") == 1).then(pl.lit("upper")).otherwise(pl.lit("lower"))
    )


def test_calibration_never_reorders_a_model_even_when_blocks_have_opposite_base_rates():
    samples = blocks_with_opposite_base_rates()
    rates = samples.group_by((pl.col("session").rank("dense") - 1) // 99).agg(pl.col("label").mean())["label"]
    assert rates.min() < 0.3 and rates.max() > 0.7  # the market is what it says
    result = train_sector("Energy", samples, ["f1", "f2", "f3"], horizon=5, holdout_sessions=100, settings=ModelSettings.fast())
    for model_type, trained in result.models.items():
        assert trained.metrics["roc_auc"] == pytest.approx(trained.metrics["raw_roc_auc"], abs=1e-9), model_type
        assert trained.metrics["roc_auc"] > 0.6, model_type  # the planted signal survives calibration
        assert trained.metrics.get("calibration_slope", 1.0) > 0, model_type


def test_the_registered_version_is_refit_on_every_labelled_sample():
    samples = synthetic_samples()
    result = train_sector("Energy", samples, ["f1", "f2", "f3"], horizon=5, holdout_sessions=100, settings=ModelSettings.fast())
    assert result.train_window == (samples["session"].min(), samples["session"].max())
    assert result.validation_window[1] < result.split.holdout_start
    holdout = result.holdout.select("f1", "f2", "f3")
    for trained in result.models.values():  # the scanned model is not the validated one
        assert trained.model is not trained.validated
        assert not np.array_equal(trained.model.predict_proba(holdout), trained.validated.predict_proba(holdout))
