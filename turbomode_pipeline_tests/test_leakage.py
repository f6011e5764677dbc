"""The leakage guard's statistics on hand-made numbers (the guard on real models: test_model_statistics)."""

import numpy as np
import polars as pl
import pytest

from turbomode_pipeline.core.leakage import calibration_in_the_large, chance_limit, leaks, null_spread
from turbomode_pipeline.core.training import expected_calibration_error


def test_the_null_spread_is_the_rms_distance_from_chance():
    assert null_spread(np.array([0.47, 0.53, 0.54, 0.46])) == pytest.approx(np.sqrt((0.03**2 + 0.04**2) / 2))


def test_the_guard_names_the_model_beyond_its_limit():
    table = pl.DataFrame(
        {"sector": ["Energy", "Energy"], "model_type": ["xgboost", "extra_trees"], "roc_auc": [0.43, 0.66]}
    )
    assert chance_limit(66, 0.05) == pytest.approx(3.37, abs=0.01)
    flagged = leaks(table, spread=0.04, tests=66, false_alarm=0.05)
    assert list(flagged) == ["Energy/extra_trees"]
    assert flagged["Energy/extra_trees"].startswith("AUC 0.6600 (+4.0 null spreads of 0.0400 from 0.5, limit 3.37)")


def test_ece_is_at_least_calibration_in_the_large():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    probability = np.clip(labels * 0.2 + rng.random(500) * 0.8, 0, 1)
    assert calibration_in_the_large(labels, np.full(500, 0.7)) == pytest.approx(abs(0.7 - labels.mean()))
    assert expected_calibration_error(labels, probability) >= calibration_in_the_large(labels, probability)
