"""core/sharpe.py against published values."""

import math

import numpy as np
import pytest

from turbomode_pipeline.core.sharpe import (
    deflate,
    deflated_sharpe,
    describe,
    expected_max_sharpe,
    moments,
    probabilistic_sharpe,
    sharpe_standard_error,
    sharpe_stats,
)


def test_the_deflated_sharpe_ratio_of_bailey_and_lopez_de_prado_2014():
    """Their numerical example: annualised Sharpe 2.5 from 1,250 daily returns (250 a year), skewness -3,
    kurtosis 10, the best of 100 trials whose annualised Sharpes vary by 0.5: SR0 = 0.1132 a day, DSR = 0.9004."""
    sharpe, variance = 2.5 / math.sqrt(250), 0.5 / 250
    assert expected_max_sharpe(100, variance) == pytest.approx(0.1132, abs=5e-5)
    assert deflated_sharpe(sharpe, 1250, 100, skew=-3, kurtosis=10, variance=variance) == pytest.approx(0.9004, abs=5e-4)


def test_standard_error_of_a_sharpe_ratio_lo_2002():
    """Normal returns: SE = sqrt((1 + SR^2 / 2) / (n - 1)). A zero-edge year of daily returns: annualised SE 1.00."""
    assert sharpe_standard_error(0.0, 253) * math.sqrt(252) == pytest.approx(1.0)
    assert sharpe_standard_error(0.1, 1001) == pytest.approx(math.sqrt((1 + 0.005) / 1000))
    # negative skew and fat tails make a positive Sharpe less certain
    assert sharpe_standard_error(0.1, 1001, skew=-1, kurtosis=6) > sharpe_standard_error(0.1, 1001)
    assert probabilistic_sharpe(0.0, 0.0, 500) == pytest.approx(0.5)
    assert expected_max_sharpe(1, 1.0) == 0.0


def test_sharpe_stats_of_a_known_series():
    returns = np.tile([0.01, -0.005], 126)  # 252 days, mean 0.0025, sd 0.0075 (ddof 1: 0.0075149)
    stats = sharpe_stats(returns)
    n, sr, skew, kurtosis = moments(returns)
    assert (n, skew, kurtosis) == (252, pytest.approx(0.0, abs=1e-12), pytest.approx(1.0))
    assert stats["sharpe"] == pytest.approx(0.0025 / np.std(returns, ddof=1) * math.sqrt(252))
    assert stats["sharpe_t"] == pytest.approx(sr / sharpe_standard_error(sr, 252, 0.0, 1.0))
    assert stats["deflated_sharpe"] > 0.99
    assert sharpe_stats([0.01] * 10)["sharpe"] is None  # no variation: no Sharpe
    assert describe(stats).startswith(f"Sharpe {stats['sharpe']:.2f} ± ")


def test_deflating_for_more_strategies_lowers_the_probability():
    one = deflated_sharpe(0.1, 252, 1)
    assert one == pytest.approx(probabilistic_sharpe(0.1, 0.0, 252))
    assert deflated_sharpe(0.1, 252, 9) < one
    together = deflate([2.0, 0.5, -1.0], [252, 252, 252])
    assert together[0] < sharpe_stats(np.random.default_rng(0).normal(2 / math.sqrt(252) * 0.01, 0.01, 252))["deflated_sharpe"] + 1
    assert together[0] > together[1] > together[2]
    assert deflate([None, 1.0], [252, 252])[0] is None
