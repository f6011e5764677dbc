"""The leakage guard's statistics on hand-made numbers (the guard on real models: test_model_statistics)."""

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from turbomode_pipeline.core.leakage import (
    block_bootstrap_auc,
    calibration_in_the_large,
    chance_limit,
    leaks,
    session_blocks,
    weighted_auc,
)
from turbomode_pipeline.core.training import expected_calibration_error

rng = np.random.default_rng(3)
labels = rng.integers(0, 2, 500)
score = np.round(labels * 0.3 + rng.random(500), 1)  # rounded: many ties


def test_weighted_auc_with_unit_weights_is_the_auc():
    assert weighted_auc(labels, score, np.zeros(500, dtype=int), np.ones((1, 1)))[0] == pytest.approx(roc_auc_score(labels, score))


def test_weighted_auc_with_integer_weights_is_the_auc_of_the_repeated_sample():
    weights = rng.integers(0, 4, (3, 500))
    expected = [roc_auc_score(np.repeat(labels, w), np.repeat(score, w)) for w in weights]
    assert weighted_auc(labels, score, np.arange(500), weights.astype(float)) == pytest.approx(expected)


def test_blocks_keep_a_session_and_its_neighbours_together():
    sessions = np.repeat(np.arange(100, 130), 3)  # 30 sessions x 3 symbols
    blocks = session_blocks(sessions, 10)
    assert blocks.tolist() == np.repeat([0, 1, 2], 30).tolist()


def test_the_bootstrap_spread_grows_when_a_session_shares_one_fate():
    sessions = np.repeat(np.arange(400), 20)  # 400 sessions x 20 symbols
    independent = rng.integers(0, 2, 8000)
    shared = np.repeat(rng.integers(0, 2, 400), 20)  # every symbol of a session has the same outcome
    trend = np.repeat(rng.random(400), 20) + rng.random(8000) * 0.1  # a score that varies by session, no information
    spread = {
        name: block_bootstrap_auc(y, trend, sessions, block=10).std() for name, y in [("independent", independent), ("shared", shared)]
    }
    assert spread["shared"] > 3 * spread["independent"]


def test_the_guard_names_the_model_beyond_its_limit():
    table = pl.DataFrame(
        {"sector": ["energy", "energy"], "model_type": ["xgboost", "extra_trees"], "roc_auc": [0.53, 0.62], "auc_se": [0.02, 0.02]}
    )
    assert chance_limit(66, 0.01) == pytest.approx(3.78, abs=0.01)
    flagged = leaks(table, tests=66)
    assert list(flagged) == ["energy/extra_trees"]
    assert flagged["energy/extra_trees"].startswith("AUC 0.6200 (+6.0 standard errors")


def test_ece_is_at_least_calibration_in_the_large():
    probability = np.clip(score / 1.5, 0, 1)
    assert calibration_in_the_large(labels, np.full(500, 0.7)) == pytest.approx(abs(0.7 - labels.mean()))
    assert expected_calibration_error(labels, probability) >= calibration_in_the_large(labels, probability)
