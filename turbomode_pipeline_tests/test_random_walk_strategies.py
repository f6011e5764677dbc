"""The nine seed strategies over a year of the random walk (predictability 0) at three seeds: before
costs their Sharpe ratios are what zero-edge strategies show, after costs they lose what they pay
(issue 27: on the old minute paths, Donchian and Keltner showed Sharpe 5-16 on the same walk)."""

import json
import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline.core.risk import RiskLimits
from turbomode_pipeline.core.strategy_backtest import Costs, backtest_strategy
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.settings import DEFAULT_STRATEGIES, DEFAULT_UNIVERSE

SEEDS = (1, 2, 3)
SESSIONS = sessions_between(date(2025, 12, 1), date(2026, 11, 30))  # a year: 251 sessions


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> pl.DataFrame:
    ledger = Ledger(path=str(tmp_path_factory.mktemp("ledger") / "trading.sqlite"))
    ledger.seed_strategies(str(DEFAULT_STRATEGIES))
    strategies = ledger.strategies().filter(pl.col("type") != "turbomode_signals")
    universe = pl.read_csv(DEFAULT_UNIVERSE).filter(pl.col("symbol").is_in(strategies["symbol"].unique().to_list()))
    rows = []
    for seed in SEEDS:
        bars = SimulatedMarketData(seed=seed, predictability=0.0).minute_bars(SESSIONS, universe)
        for strategy in strategies.iter_rows(named=True):
            spec = {**strategy, "params": json.loads(strategy["params"])}
            summary = backtest_strategy(spec, bars, RiskLimits(), Costs()).summary
            rows.append({"seed": seed, **{k: summary[k] for k in (
                "strategy_id", "symbol", "sessions", "round_trips", "costs", "pnl", "pnl_before_costs",
                "sharpe", "sharpe_se", "sharpe_before_costs")}})
    return pl.DataFrame(rows)


def test_the_nine_strategies_trade_a_year_at_every_seed(results):
    assert results.height == 9 * len(SEEDS)
    assert (results["sessions"] == len(SESSIONS)).all() and (results["round_trips"] > 100).all()


def test_before_costs_no_strategy_has_an_edge(results):
    """A zero-edge strategy's annualised Sharpe over a year has a standard error of about 1: each within
    4 of 0, and their mean within 3 standard errors of it (the 27 backtests share 9 symbol paths, and a
    symbol's strategies are correlated, so the mean's error is taken as 1 / sqrt(9))."""
    null_se = math.sqrt(252 / (len(SESSIONS) - 1))
    gross = results["sharpe_before_costs"].to_numpy()
    assert np.abs(gross).max() < 4 * null_se, results.filter(pl.col("sharpe_before_costs").abs() >= 4 * null_se)
    assert abs(gross.mean()) < 3 * null_se / math.sqrt(len(SEEDS) * results["symbol"].n_unique())


def test_after_costs_they_lose_what_they_pay(results):
    """Costs (5 bps slippage a side) are the only systematic part of the P&L: the P&L before costs is noise
    around zero next to what the strategies pay, and each Sharpe after costs is below its Sharpe before."""
    assert (results["sharpe"] < results["sharpe_before_costs"]).all()
    assert (results["pnl_before_costs"] - results["pnl"] - results["costs"]).abs().max() < 1e-6
    assert abs(results["pnl_before_costs"].mean()) < 0.25 * results["costs"].mean()
    # each Sharpe after costs is reported with its standard error, and the table says so
    assert results["sharpe_se"].is_not_null().all() and (results["sharpe_se"] > 0.5).all()
