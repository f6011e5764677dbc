"""The champion gate's rules (core.promotion) and the AUC's measured noise (core.training)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from turbomode_pipeline.core.promotion import FAST, FULL, NOISE_BAND, Contender, replaces_champion
from turbomode_pipeline.core.training import auc_standard_error, weighted_aucs


def test_weighted_aucs_equal_sklearns_with_sample_weights_ties_included():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    probability = np.round(rng.random(400) + 0.3 * labels, 1)  # rounded: many ties
    weights = rng.integers(0, 4, size=(5, 400)).astype(float)
    expected = [roc_auc_score(labels, probability, sample_weight=w) for w in weights]
    np.testing.assert_allclose(weighted_aucs(weights, labels, probability), expected, rtol=1e-12)


def test_the_block_bootstrap_sees_the_noise_of_sessions_that_move_together():
    """Independent rows: the standard error matches Hanley and McNeil's formula. Rows whose
    label is the session's (a market-wide move, as overlapping outcomes are): the same rows give
    a far larger standard error, which a row bootstrap would miss."""
    rng = np.random.default_rng(5)
    sessions = np.repeat(np.arange(250), 20)
    probability = rng.random(sessions.size)
    labels = (rng.random(sessions.size) < 0.4 + 0.2 * probability).astype(int)
    auc = roc_auc_score(labels, probability)
    positives, negatives = labels.sum(), (1 - labels).sum()
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    hanley = np.sqrt((auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (positives * negatives))
    assert auc_standard_error(sessions, labels, probability, horizon=1) == pytest.approx(hanley, rel=0.2)

    shared = (rng.random(250) < 0.5).astype(int)[sessions]  # each session's rows all up or all down
    mixed = np.where(rng.random(sessions.size) < 0.8, shared, labels)
    luck = rng.choice([-1.0, 1.0], 250)[sessions]  # a model that times the market, right some sessions, wrong others
    tilted = probability + 0.5 * luck * shared
    assert auc_standard_error(sessions, mixed, tilted, horizon=5) > 3 * auc_standard_error(
        np.arange(sessions.size), mixed, tilted, horizon=1
    )


@pytest.mark.parametrize(
    ("new", "champion", "replaces", "says"),
    [
        (Contender("2", 0.560, 0.010, FULL), Contender("1", 0.575, 0.010, FULL), True, "not worse by more than the noise"),
        (Contender("2", 0.520, 0.010, FULL), Contender("1", 0.575, 0.010, FULL), False, "worse by more than the noise"),
        (Contender("2", 0.520, 0.010, FULL), Contender("1", 0.600, 0.010, FAST), True, "full settings replace the fast"),
        (Contender("2", 0.640, 0.010, FAST), Contender("1", 0.550, 0.010, FULL), False, "fast settings never replace"),
        (Contender("2", 0.555, 0.010, FAST), Contender("1", 0.560, None, None), True, "noise band +/-0.0283"),
    ],
)
def test_a_new_version_replaces_the_champion_unless_worse_by_more_than_the_noise(new, champion, replaces, says):
    decided, reason = replaces_champion(new, champion)
    assert decided is replaces and says in reason
    assert f"champion v{champion.version}" in reason


def test_the_noise_band_is_two_standard_errors_of_the_difference():
    band = NOISE_BAND * np.hypot(0.012, 0.009)
    champion = Contender("1", 0.6, 0.009, FULL)
    assert replaces_champion(Contender("2", 0.6 - band + 1e-6, 0.012, FULL), champion)[0]
    assert not replaces_champion(Contender("2", 0.6 - band - 1e-6, 0.012, FULL), champion)[0]
