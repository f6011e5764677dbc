"""The live strategies backtested on history (issue 14): the same decision, risk and fill code as a live tick,
exact trades on a hand-made series, the warehouse's tables and HTML report, `turbomode backtest` and `turbomode replay`."""

import math
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from turbomode_pipeline.assets.strategy_backtest import history_bars, strategy_backtest
from turbomode_pipeline.cli import main as turbomode
from turbomode_pipeline.core.fills import next_open_fills
from turbomode_pipeline.core.risk import RiskLimits, review
from turbomode_pipeline.core.strategies import decide, decide_on_bar, follow_signals, indicator_signals
from turbomode_pipeline.core.strategy_backtest import Costs, backtest_strategy
from turbomode_pipeline.live.trading import LiveTrading, TradingClock, live_trading_job
from turbomode_pipeline.resources.broker import LocalPaperBroker
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.resources.market_data import AlpacaMarketData, SimulatedMarketData
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.schemas import SIGNAL_HISTORY, SignalHistory, conform
from turbomode_pipeline.settings import DEFAULT_UNIVERSE, get_settings
from turbomode_pipeline_tests.alpaca_emulator import KEY_ID, SECRET, AlpacaEmulator
from turbomode_pipeline_tests.servers import chromium_page
from turbomode_pipeline_tests.support import START, minute_series

SESSIONS = ("2026-11-17", "2026-11-19")  # Tuesday..Thursday: three sessions
SHARED = {decide_on_bar.__code__, indicator_signals.__code__, review.__code__, next_open_fills.__code__}
SEED = 11


class CallRecorder:
    """The code objects of every Python function called while it is active (sys.setprofile): what a run really ran."""

    def __init__(self):
        self.called: set = set()

    def _hook(self, frame, event, arg):
        if event == "call":
            self.called.add(frame.f_code)

    def __enter__(self):
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)


def test_donchian_backtest_trades_exactly_at_the_strategy_tests_entry_and_exit():
    closes = [100.0] * 30 + [102.0] * 12 + [98.0, 97.0, 97.0]  # test_live_strategies: entry at bar 30, exit at bar 42
    bars = minute_series(closes)
    costs, limits = Costs(), RiskLimits()
    result = backtest_strategy({"id": "d", "type": "donchian_channel", "symbol": "AAPL", "allocation": 10_000.0,
                                "params": {}}, bars, limits, costs)
    trades = result.trades
    assert trades["bar_time"].to_list() == [START + timedelta(minutes=30), START + timedelta(minutes=42)]
    assert trades["side"].to_list() == ["buy", "sell"] and trades["approved"].all()
    # the local broker's fill: the next bar's open, 5 bp against the trader
    assert trades["fill_time"].to_list() == [START + timedelta(minutes=31), START + timedelta(minutes=43)]
    opens = bars["open"].to_list()
    assert trades["filled_price"].to_list() == [round(opens[31] * 1.0005, 4), round(opens[43] * 0.9995, 4)]
    qty = math.floor(min(10_000.0, costs.starting_cash * limits.max_equity_share) / closes[30])
    assert trades["qty"].to_list() == [qty, qty]
    pnl = qty * (trades["filled_price"][1] - trades["filled_price"][0])
    assert result.summary["pnl"] == pytest.approx(pnl) and result.summary["round_trips"] == 1
    assert result.equity["equity"].to_list() == [pytest.approx(costs.starting_cash + pnl)]

    # the live `decide`, called bar by bar on the growing series with what the backtest held, agrees everywhere
    held, live = 0.0, []
    for i in range(1, len(closes) + 1):  # 45 bars: the live tick's call, once per minute
        decision = decide("donchian_channel", bars.head(i), {}, held)
        if decision.action != "hold":
            live.append((decision.bar_time, decision.action))
            held = qty if decision.action == "buy" else 0.0
    assert live == list(zip(trades["bar_time"], trades["side"], strict=True))


def test_the_signal_follower_buys_in_the_band_sells_at_the_target_and_when_its_signal_expires():
    closes = [100.0] * 5 + [105.0] * 5 + [111.0] * 3 + [100.0] * 7
    bars = minute_series(closes, symbol="NVDA")
    signals = pl.DataFrame({"id": ["2026-11-19-NVDA"], "symbol": ["NVDA"], "signal_type": ["BUY"], "confidence": [0.7],
                            "target_price": [110.0], "stop_loss": [95.0], "created_at": [START - timedelta(hours=12)],
                            "expires_at": [START + timedelta(minutes=16)], "trading_session": [START.date()]})
    strategy = {"id": "s", "type": "turbomode_signals", "symbol": "NVDA", "allocation": 10_000.0, "params": {}}
    result = backtest_strategy(strategy, bars, RiskLimits(), Costs(), signals)
    trades = result.trades
    minutes = [int((t - START).total_seconds() // 60) for t in trades["bar_time"]]
    # bar 0 in the 95..110 band; 111 >= target at bar 10; back in the band at 13; the tick at 14:46 no longer sees it
    assert list(zip(minutes, trades["side"], strict=True)) == [(0, "buy"), (10, "sell"), (13, "buy"), (15, "sell")]
    assert trades["decision"][3] == "the scanner's signal is no longer active" and trades["approved"].all()
    held, live = 0.0, []
    for i in range(1, len(closes) + 1):  # the live decide, bar by bar, with what the tick would see active
        now = START + timedelta(minutes=i)
        active = signals.filter(pl.col("expires_at") > now)
        decision = decide("turbomode_signals", bars.head(i), {}, held, active)
        if decision.action != "hold":
            live.append((decision.bar_time, decision.action))
            held = trades["qty"][0] if decision.action == "buy" else 0.0
    assert live == list(zip(trades["bar_time"], trades["side"], strict=True))


def write_signal(warehouse: Warehouse, market_data: SimulatedMarketData, universe: pl.DataFrame) -> None:
    """One scanner BUY signal for NVDA from the scan of 2026-11-16 (the newest scan on the 17th), a 1% band around
    that close, expiring at the close of the 19th; and one for AMD that nothing follows."""
    scan = date(2026, 11, 16)
    bars = market_data.daily_bars([scan], universe).filter(pl.col("symbol").is_in(["AMD", "NVDA"])).sort("symbol")
    signals = bars.select(
        pl.format("{}-{}", pl.col("session"), pl.col("symbol")).alias("id"), "session", "symbol",
        pl.lit("BUY").alias("signal_type"), pl.lit(0.7).alias("confidence"), pl.col("close").alias("entry_price"),
        (pl.col("close") * 1.01).alias("target_price"), (pl.col("close") * 0.99).alias("stop_loss"), "sector",
        pl.lit(datetime(2026, 11, 17, 5, 30, tzinfo=UTC)).alias("created_at"),
        pl.lit(datetime(2026, 11, 19, 21, 0, tzinfo=UTC)).alias("expires_at"), pl.lit(False).alias("is_active"),
        pl.lit("stacked_ensemble").alias("model_name"), pl.lit("1").alias("model_version"), pl.lit("run").alias("mlflow_run_id"),
        pl.lit(date(2026, 11, 6)).alias("model_labels_through"),
    )
    warehouse.replace_partitions(SIGNAL_HISTORY, conform(signals, SignalHistory), [scan])


@pytest.fixture(scope="module")
def backtested(tmp_path_factory):
    """strategy_backtest materialised over three simulated sessions: two minute strategies, a daily one and the
    scanner follower, with the Python functions the run called."""
    get_settings.cache_clear()
    folder = tmp_path_factory.mktemp("strategy_backtest")
    universe = folder / "universe.csv"
    pl.read_csv(DEFAULT_UNIVERSE).filter(pl.col("symbol").is_in(["AAPL", "AMD", "NVDA"])).write_csv(universe)
    ledger = Ledger(path=str(folder / "trading.sqlite"))
    ledger.seed_strategies(str(get_settings().strategies_file))
    ledger.add_strategy("nvda-donchian-daily", "donchian_channel", "NVDA", 10_000.0, params={"timeframe_minutes": 1440, "entry": 2, "exit": 1})
    resources = {"ledger": ledger, "market_data": SimulatedMarketData(seed=SEED), "universe": Universe(path=str(universe)),
                 "warehouse": Warehouse(path=str(folder / "warehouse.duckdb")),
                 "reports": ReportStore(directory=str(folder / "reports")),
                 "live_trading": LiveTrading.from_settings(get_settings())}
    write_signal(resources["warehouse"], resources["market_data"], resources["universe"].load())
    ids = ["aapl-donchian", "amd-keltner", "nvda-donchian-daily", "nvda-turbomode"]
    with CallRecorder() as recorder:
        result = materialize([strategy_backtest], resources=resources, instance=DagsterInstance.ephemeral(), run_config={
            "ops": {"strategy_backtest": {"config": {"start": SESSIONS[0], "end": SESSIONS[1], "strategy_ids": ids}}}})
    assert result.success
    yield result, resources, recorder.called, folder
    get_settings.cache_clear()


def test_a_live_tick_decides_and_fills_the_backtests_first_trade_through_the_same_functions(backtested, tmp_path):
    _, resources, backtest_called, _ = backtested
    first = resources["warehouse"].query(
        "SELECT * FROM strategy_backtest_trades WHERE strategy_id = 'aapl-donchian' AND approved ORDER BY bar_time LIMIT 1")
    assert first["side"][0] == "buy"
    bar_time = first["bar_time"][0].astimezone(UTC)
    ledger_path = str(tmp_path / "trading.sqlite")
    ledger = Ledger(path=ledger_path)
    ledger.seed_strategies(str(get_settings().strategies_file))
    live = {"ledger": ledger, "broker": LocalPaperBroker(ledger_path=ledger_path), "market_data": resources["market_data"],
            "universe": resources["universe"], "trading_clock": TradingClock(),
            "live_trading": LiveTrading.from_settings(get_settings()),
            "live_warehouse": Warehouse(path=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=0.5)}
    with CallRecorder() as recorder:
        for minutes in (1, 2):  # the tick after the decision bar closes submits; the next one fills
            tick = (bar_time + timedelta(minutes=minutes)).isoformat()
            run = live_trading_job.execute_in_process(
                run_config={"ops": {"live_trading_tick": {"config": {"tick_time": tick, "strategy_ids": ["aapl-donchian"]}}}},
                instance=DagsterInstance.ephemeral(), resources=live)
            assert run.success
    assert SHARED <= recorder.called and SHARED <= backtest_called  # one code path: decision, risk, fill
    assert follow_signals.__code__ in backtest_called  # what the tick's decide calls for turbomode_signals
    fills = ledger.query("SELECT side, qty, price, filled_at FROM fills")
    assert fills.rows() == [("buy", first["qty"][0], first["filled_price"][0],
                             first["fill_time"][0].astimezone(UTC).isoformat())]


def test_the_warehouse_holds_trades_equity_and_a_summary_that_add_up(backtested):
    result, resources, _, _ = backtested
    warehouse = resources["warehouse"]
    summary = warehouse.query("SELECT * FROM strategy_backtest ORDER BY strategy_id")
    assert summary["strategy_id"].to_list() == ["aapl-donchian", "amd-keltner", "nvda-donchian-daily", "nvda-turbomode"]
    metadata = result.asset_materializations_for_node("strategy_backtest")[0].metadata
    assert metadata["not_backtested"].value == []
    follower = warehouse.query("SELECT * FROM strategy_backtest_trades WHERE strategy_id = 'nvda-turbomode' ORDER BY bar_time")
    # bought on the 17th's first bar (the 16th's scan is the newest then); sold on the 18th's first bar at the latest,
    # the 17th's scan having no NVDA signal
    assert follower["bar_time"][0].astimezone(UTC) == datetime(2026, 11, 17, 14, 30, tzinfo=UTC)
    assert follower["decision"][0].startswith("scanner BUY signal 2026-11-16-NVDA")
    assert follower["side"][-1] == "sell" and follower["bar_time"][-1].astimezone(UTC) <= datetime(2026, 11, 18, 14, 30, tzinfo=UTC)
    daily = summary.filter(pl.col("strategy_id") == "nvda-donchian-daily").row(0, named=True)
    assert daily["timeframe_minutes"] == 1440 and daily["bars"] == daily["sessions"] == 3
    assert summary.filter(pl.col("timeframe_minutes") == 1)["bars"].to_list() == [3 * 390] * 3
    closes = SimulatedMarketData(seed=SEED).daily_bars([date.fromisoformat(SESSIONS[1])],
                                                        resources["universe"].load()).select("symbol", "close")
    for row in summary.iter_rows(named=True):  # four strategies
        trades = warehouse.query("SELECT * FROM strategy_backtest_trades WHERE backtest_id = ? AND fill_time IS NOT NULL",
                                 [row["backtest_id"]])
        equity = warehouse.query("SELECT * FROM strategy_backtest_equity WHERE backtest_id = ? ORDER BY session",
                                 [row["backtest_id"]])
        sign = pl.when(pl.col("side") == "buy").then(1.0).otherwise(-1.0)
        held = trades.select((sign * pl.col("qty")).sum()).item()
        cash = row["starting_equity"] + trades.select((-sign * pl.col("qty") * pl.col("filled_price") - pl.col("commission")).sum()).item()
        close = closes.filter(pl.col("symbol") == row["symbol"])["close"].item()  # the last minute's close is the day's
        assert equity["equity"][-1] == pytest.approx(row["final_equity"]) == pytest.approx(cash + held * close)
        assert equity["position"][-1] == held and row["orders_filled"] == trades.height
        assert row["max_drawdown"] <= 0 and 0 <= row["exposure"] <= 1
    assert summary.filter(pl.col("timeframe_minutes") == 1)["orders_filled"].min() > 0


def test_the_html_report_shows_the_warehouses_numbers_and_its_equity_plot_loads(backtested):
    result, resources, _, _ = backtested
    path = Path(result.asset_materializations_for_node("strategy_backtest")[0].metadata["report_path"].value)
    assert path.parent.name == "reports" and path.name == f"strategy_backtest_{SESSIONS[0]}_{SESSIONS[1]}.html"
    with chromium_page() as page:
        page.goto(path.as_uri())
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
        text = page.inner_text("body")
    assert len(widths) == 1 and widths[0] > 0
    shown = result.asset_materializations_for_node("strategy_backtest")[0].metadata["equity_curve"].value
    prefix = "![equity and drawdown](data:image/png;base64,"
    assert shown.startswith(prefix) and f'src="data:image/png;base64,{shown[len(prefix):-1]}"' in path.read_text()
    for row in resources["warehouse"].query("SELECT strategy_id, pnl FROM strategy_backtest").iter_rows(named=True):
        assert row["strategy_id"] in text and f"{row['pnl']:.3f}" in text
    assert "nvda-turbomode" in text


def test_turbomode_backtest_answers_mistakes_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TURBOMODE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # `turbomode backtest` refuses to start without one
    get_settings.cache_clear()
    try:
        for argv, message in [
            (["backtest", "aapl-donchian", "--from", "2026-11-20", "--to", "2026-11-02"], "--from 2026-11-20 is after --to 2026-11-02"),
            (["backtest", "aapl-donchian", "--from", "2026-11-21", "--to", "2026-11-22"], "no NYSE session between"),
            (["backtest", "nope", "--from", "2026-11-02", "--to", "2026-11-20"], "no strategy with id nope in live_strategies"),
            (["backtest", "aapl-donchian", "--from", "2026-13-02", "--to", "2026-11-20"], "must be dates like"),
            (["replay", "--session", "2026-11-21"], "2026-11-21 (Sat) is not an NYSE session; the nearest are 2026-11-20 (Fri)"),
            (["replay", "--session", "2026-11-20", "--every", "0"], "--every must be at least 1"),
        ]:
            assert turbomode(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and message in err, (argv, err)
        for argv, message in [(["backtest", "all", "--from", "2026-11-02"], "the following arguments are required: --to"),
                              (["replay", "--session", "2026-11-20", "--every", "five"], "invalid int value: 'five'")]:
            with pytest.raises(SystemExit) as exited:
                turbomode(argv)
            err = capsys.readouterr().err
            assert exited.value.code == 2 and err.count("\n") == 1 and message in err, (argv, err)
        assert turbomode(["backtest", "nvda-turbomode", "--from", "2026-11-16", "--to", "2026-11-20"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "nvda-turbomode: the warehouse has no signal_history" in err, err
    finally:
        get_settings.cache_clear()


def cli_env(tmp_path: Path) -> dict:
    universe = tmp_path / "universe.csv"
    pl.read_csv(DEFAULT_UNIVERSE).filter(pl.col("symbol").is_in(["AAPL", "AMD", "NVDA"])).write_csv(universe)
    (tmp_path / "home").mkdir()
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "home"),
            "TURBOMODE_DATA_DIR": str(tmp_path / "data"), "TURBOMODE_UNIVERSE": str(universe),
            "TURBOMODE_SIM_SEED": str(SEED), "PYTHONWARNINGS": "ignore"}


def test_turbomode_backtest_prints_the_table_the_warehouse_holds(tmp_path):
    env = cli_env(tmp_path)
    ledger = Ledger(path=str(tmp_path / "data" / "trading.sqlite"))
    ledger.add_strategy("zzzz-keltner", "keltner_channel", "ZZZZ", 1_000.0)
    done = subprocess.run([sys.executable, "-m", "turbomode_pipeline", "backtest", "aapl-donchian,amd-ichimoku,zzzz-keltner",
                           "--from", SESSIONS[0], "--to", SESSIONS[1]], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = Warehouse(path=str(tmp_path / "data" / "warehouse.duckdb")).query(
        "SELECT strategy_id, round(pnl, 2) AS pnl FROM strategy_backtest ORDER BY strategy_id")
    lines = done.stdout.splitlines()
    assert summary["strategy_id"].to_list() == ["aapl-donchian", "amd-ichimoku"]
    for strategy_id, pnl in summary.rows():
        row = next(line for line in lines if f" {strategy_id} " in line)
        assert f" {pnl} " in row or f" {pnl:g} " in row, (row, pnl)
    assert lines[-2] == "zzzz-keltner not backtested: ZZZZ is not in the universe file"
    assert lines[-1] == f"report: {tmp_path / 'data' / 'reports' / f'strategy_backtest_{SESSIONS[0]}_{SESSIONS[1]}.html'}"


def test_turbomode_replay_runs_a_past_sessions_ticks_into_a_ledger_of_its_own(tmp_path):
    env = cli_env(tmp_path)
    when = "2026-11-23T03:00:00+00:00"  # the Monday after, before the open: the session has closed
    done = subprocess.run([sys.executable, "-m", "turbomode_pipeline_tests.at_time", when, "turbomode", "replay",
                           "--session", "2026-11-20", "--every", "60", "--strategies", "nvda-donchian,nvda-keltner"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ticks = [datetime(2026, 11, 20, 14, 31, tzinfo=UTC) + timedelta(minutes=60 * i) for i in range(7)]  # 14:31..20:31
    assert "7 ticks in" in done.stdout
    replayed = sqlite3.connect(tmp_path / "data" / "replay" / "trading_2026-11-20.sqlite")
    assert [row[0] for row in replayed.execute("SELECT tick_time FROM equity ORDER BY tick_time")] == [t.isoformat() for t in ticks]
    assert {row[0] for row in replayed.execute("SELECT strategy_id FROM strategy_signals")} == {"nvda-donchian", "nvda-keltner"}
    orders = replayed.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    assert f"orders {orders}, rejections" in done.stdout and "P&L by strategy" in done.stdout
    live = sqlite3.connect(tmp_path / "data" / "trading.sqlite")  # the live ledger: strategies seeded, nothing traded
    assert live.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0
    assert live.execute("SELECT COUNT(*) FROM equity").fetchone()[0] == 0


def test_alpaca_minute_bars_backtest_to_the_same_trades_as_the_same_bars_simulated():
    universe = pl.read_csv(DEFAULT_UNIVERSE).filter(pl.col("symbol") == "AMD")
    sessions = [date(2026, 11, 19), date(2026, 11, 20)]
    simulated = SimulatedMarketData(seed=SEED)
    strategy = {"id": "amd-keltner", "type": "keltner_channel", "symbol": "AMD", "allocation": 10_000.0, "params": {}}
    expected = backtest_strategy(strategy, history_bars(simulated, universe, ["AMD"], sessions, daily=False), RiskLimits(), Costs())
    with AlpacaEmulator(minute_bars=simulated.minute_bars(sessions, universe)) as emulator:
        source = AlpacaMarketData(api_key=KEY_ID, secret_key=SECRET, data_url=emulator.url, backoff_s=0.01)
        fetched = history_bars(source, universe, ["AMD"], sessions, daily=False)
    result = backtest_strategy(strategy, fetched, RiskLimits(), Costs())
    assert expected.trades.height > 0 and result.trades.equals(expected.trades)
    assert result.summary == expected.summary
