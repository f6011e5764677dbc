"""signal_backtest end to end: a simulated history scored by the simulator's own best score, the real
asset over a real DuckDB file and Dagster instance, the HTML report in headless Chromium."""

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from dagster import AssetKey, instance_for_test, materialize

from turbomode_pipeline.assets.signal_backtest import signal_backtest
from turbomode_pipeline.due import due_sessions
from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline.core import scanner, signal_backtest as backtest
from turbomode_pipeline.core.market_sim import SIM_EPOCH, expected_idiosyncratic_return
from turbomode_pipeline.core.universe import load_universe
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.schemas import (
    DAILY_BARS, SCANNER_SCORES, SIGNAL_HISTORY, SIGNAL_OUTCOMES, DailyBars, ScannerScores, SignalHistory,
    SignalOutcomes, conform,
)
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline_tests.support import range_tags, small_universe

DEMO_SESSIONS = 750  # the history `make demo` builds
WARMUP = 252  # the scanner scores once the features' year of warm-up has passed
SEED = 7
BARRIERS = LabelSettings.from_settings(get_settings()).barriers
H = BARRIERS.horizon
RANGE = 6


def history(predictability: float, folder: Path):
    universe = load_universe(small_universe(folder))
    sessions = due_sessions(datetime.now(UTC), DEMO_SESSIONS)
    bars = SimulatedMarketData(seed=SEED, predictability=predictability).daily_bars(sessions, universe)
    return universe, sessions, bars


def best_scores(universe, sessions, bars, predictability: float) -> pl.DataFrame:
    """The simulator's best possible score (the exact expected idiosyncratic return over H), as a
    probability-like rank in (0, 1) per session: the test is about the backtest, not the models."""
    scored = sessions[WARMUP:]
    expected = expected_idiosyncratic_return(universe, sessions_between(SIM_EPOCH, sessions[-1]), scored, seed=SEED,
                                             predictability=predictability, horizon=H)
    return expected.join(bars.select("session", "symbol", "sector", "close"), on=["session", "symbol"]).with_columns(
        probability_up=pl.col("expected_idio").rank().over("session") / (pl.len().over("session") + 1)
    )


def reversal_scores(bars: pl.DataFrame, sessions) -> pl.DataFrame:
    """A score any trader could compute: minus the last five sessions' return, ranked in (0, 1)."""
    return (
        bars.sort("symbol", "session")
        .with_columns(move=pl.col("close") / pl.col("close").shift(5).over("symbol") - 1)
        .filter(pl.col("session").is_in(pl.Series(sessions[WARMUP:]).implode()))
        .with_columns(probability_up=(-pl.col("move")).rank().over("session") / (pl.len().over("session") + 1))
    )


@pytest.fixture(scope="module")
def backtested(tmp_path_factory):
    """A demo-sized history in the warehouse, then one range run of signal_backtest over its last
    RANGE graded sessions (each partition is a Dagster event: a few keep the test cheap); the
    backtest as of the last one covers the whole graded history."""
    folder = tmp_path_factory.mktemp("signal_backtest")
    universe, sessions, bars = history(0.5, folder)
    scores = best_scores(universe, sessions, bars, 0.5)
    warehouse = Warehouse(path=str(folder / "warehouse.duckdb"), lock_timeout_s=2.0)
    warehouse.replace_partitions(DAILY_BARS, conform(bars.with_columns(ingested_at=pl.lit(datetime.now(UTC))),
                                                     DailyBars), sessions)
    scored = sessions[WARMUP:]
    lineage = dict(model_name=pl.lit("simulator_best_score"), model_version=pl.lit("1"), mlflow_run_id=pl.lit("none"),
                   model_labels_through=pl.col("session").dt.offset_by("-1d"))
    warehouse.replace_partitions(SCANNER_SCORES, conform(scores.with_columns(**lineage).select(list(ScannerScores.to_schema().columns)), ScannerScores), scored)
    with_atr = scores.join(
        bars.sort("symbol", "session")  # a 14-session mean range stands in for ATR(14): the barriers' width
        .with_columns(atr_14=(pl.col("high") - pl.col("low")).rolling_mean(14).over("symbol"))
        .select("session", "symbol", "atr_14"),
        on=["session", "symbol"],
    ).with_columns(**lineage)
    expiry = pl.DataFrame({"session": scored, "expires_at": [datetime.now(UTC)] * len(scored)})
    signals = scanner.signals(with_atr, expiry, 0.8, BARRIERS, datetime.now(UTC))
    warehouse.replace_partitions(SIGNAL_HISTORY, conform(signals, SignalHistory), scored)
    graded_sessions = scored[:-H]
    graded = scanner.relative_outcomes(scanner.outcomes(signals, bars, H), scores, bars, H).filter(
        pl.col("session").is_in(pl.Series(graded_sessions).implode()))
    warehouse.replace_partitions(SIGNAL_OUTCOMES, conform(graded, SignalOutcomes), graded_sessions)
    reports = ReportStore(directory=str(folder / "reports"))
    partitions = graded_sessions[-RANGE:]
    first, last = str(partitions[0]), str(partitions[-1])
    with instance_for_test() as instance:
        result = materialize([signal_backtest], resources={"warehouse": warehouse, "reports": reports, "labels": LabelSettings.from_settings(get_settings())},
                             instance=instance, tags=range_tags(first, last))
        assert result.success
        records = instance.fetch_materializations(AssetKey("signal_backtest"), limit=10_000).records
        events = {r.partition_key: r.asset_materialization.metadata for r in records}
        yield warehouse, partitions, graded, events, bars, scores


def test_the_best_score_earns_a_sharpe_with_t_above_two_after_costs(backtested):
    warehouse, sessions, *_ = backtested
    summary = warehouse.query("SELECT * FROM signal_backtest_summary")
    assert summary["as_of"].unique().to_list() == [sessions[-1]]
    assert summary["days"].to_list() == [DEMO_SESSIONS - WARMUP - H] * 2 + [summary["days"][2]]  # every graded day
    ls = summary.filter(pl.col("strategy") == "long_short").row(0, named=True)
    assert ls["sharpe"] > 0 and ls["t_stat"] > 2, ls
    assert ls["cost_bps"] == 5.0 and ls["quantiles"] == 5
    assert 1 < ls["avg_holding"] <= H + 1e-9  # H-session tranches; a name bought in one and sold in the next nets out
    daily = warehouse.query("SELECT * FROM signal_backtest_daily ORDER BY session")
    assert daily["session"].to_list() == sessions  # one row per partition of the run
    np.testing.assert_allclose(daily["cost"].to_numpy(), daily["turnover"].to_numpy() * 5e-4, rtol=1e-12)
    by_score = warehouse.query("SELECT * FROM signal_backtest_quantiles WHERE strategy = 'long_short' ORDER BY quantile")
    assert by_score["mean_ret"][-1] > by_score["mean_ret"][0]  # the top quantile beats the bottom one


def test_the_signals_as_trades_earn_their_graded_outcomes_less_costs(backtested):
    warehouse, sessions, graded, _, bars, _ = backtested
    trades = warehouse.query("SELECT * FROM signal_backtest_trades")  # the run's partitions: the trades entered then
    entered = graded.filter(pl.col("session").is_in(pl.Series(sessions).implode()))
    assert sorted(trades["id"]) == sorted(entered["id"]) and trades.height > 10
    assert trades["net_ret"].sum() == pytest.approx(entered["ret"].sum() - entered.height * 2 * 5e-4, rel=1e-12)
    # the curve as of the last partition: every graded signal, P&L realised at exit, on capital = peak open trades
    summary = warehouse.query("SELECT * FROM signal_backtest_summary WHERE strategy = 'signals'").row(0, named=True)
    assert summary["observations"] == graded.height > 1000
    curve = warehouse.query("SELECT * FROM signal_backtest_curves WHERE strategy = 'signals' ORDER BY session")
    peak = backtest.trades_curve(backtest.signal_trades(graded, backtest.Costs(5.0)), bars)["open"].max()
    total = graded["ret"].sum() - graded.height * 2 * 5e-4
    assert curve["equity"][-1] == pytest.approx(1 + total / peak, rel=1e-12)


def test_on_a_random_walk_the_same_backtest_finds_nothing(tmp_path):
    # the reversal score finds the planted effect, and nothing on the random walk (the best score there is 0)
    results = {}
    for predictability in (0.5, 0.0):
        _, sessions, bars = history(predictability, tmp_path)
        daily = backtest.long_short(reversal_scores(bars, sessions), bars, H, 5, backtest.Costs(5.0))
        results[predictability] = backtest.performance(backtest.curve(daily, "net_ret"))
    assert results[0.5]["t_stat"] > 2 and results[0.5]["sharpe"] > 0, results
    assert abs(results[0.0]["t_stat"]) < 2, results


def test_each_partition_carries_its_own_numbers_and_the_last_the_backtest(backtested):
    warehouse, sessions, _, events, *_ = backtested
    assert set(events) == {str(day) for day in sessions}
    daily = warehouse.query("SELECT session, net_ret, longs FROM signal_backtest_daily")
    own = {str(row["session"]): row for row in daily.iter_rows(named=True)}
    for key, metadata in events.items():
        assert metadata["long_short_net_ret"].value == pytest.approx(own[key]["net_ret"], rel=1e-3, abs=1e-12)
        assert metadata["longs"].value == own[key]["longs"]
        assert ("report_path" in metadata) == (key == str(sessions[-1]))
    assert len({metadata["long_short_net_ret"].value for metadata in events.values()}) == len(sessions)
    last = events[str(sessions[-1])]
    assert last["equity_curve"].value.startswith("![equity curve](data:image/png;base64,")
    assert last["t_stat"].value == float(f"{last['t_stat'].value:.4g}")  # rounded for reading


def test_the_html_report_shows_its_plots_and_the_warehouse_equity_curve(backtested):
    warehouse, sessions, *_ = backtested
    path = Path(warehouse.query("SELECT report_path FROM signal_backtest_summary LIMIT 1").item())
    assert path.parent.name == "reports" and path.name == f"signal_backtest_{sessions[-1]}.html"
    from turbomode_pipeline_tests.servers import chromium_page

    with chromium_page(width=1400) as page:
        page.goto(path.as_uri())
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
        shown = json.loads(page.eval_on_selector("#equity-data", "element => element.textContent"))
        text = page.inner_text("body")
    assert len(widths) == 3 and all(width > 0 for width in widths)
    assert "Signal backtest as of" in text and "Sharpe" in text
    curves = warehouse.query("SELECT strategy, session, equity FROM signal_backtest_curves ORDER BY strategy, session")
    for strategy in ("long_short", "benchmark", "signals"):
        stored = curves.filter(pl.col("strategy") == strategy)
        assert shown[strategy]["session"] == [str(day) for day in stored["session"]]
        np.testing.assert_allclose(shown[strategy]["equity"], stored["equity"].to_numpy(), rtol=1e-12)
