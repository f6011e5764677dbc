"""The live loop end to end on a real Dagster instance: live_trading_sensor -> live_trading_job ->
local paper broker -> trading ledger, with an injected clock through a simulated session; the
report asset; and a tick while another process holds the warehouse's write lock."""

import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta

import duckdb
import polars as pl
import pytest
from dagster import DagsterRunStatus, RunRequest, SkipReason, materialize

from turbomode_pipeline.live.report import paper_trading_report, strategy_pnl
from turbomode_pipeline.live.trading import LiveTrading, live_trading_job
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.schemas import SIGNAL_HISTORY
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline_tests.support import evaluate_sensor

SESSION_OPEN = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)  # a Friday, 09:30 New York


@pytest.fixture
def fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()




def run_tick(instance, live: dict, request: RunRequest):
    return live_trading_job.execute_in_process(
        run_config=request.run_config, instance=instance, resources=live, tags=request.tags, raise_on_error=False
    )


def orders(live: dict) -> pl.DataFrame:
    return live["ledger"].query("SELECT * FROM orders ORDER BY submitted_at, client_order_id")


def broker_orders(live: dict) -> int:
    return live["ledger"].query("SELECT count(*) FROM paper_orders").item()


def test_a_simulated_session_places_orders_reconciles_and_never_repeats_one(instance, live):
    live["market_data"] = SimulatedMarketData(seed=14)  # a seed whose NVDA Keltner round-trips in these minutes
    repeated = False
    for minute in range(18, 25):  # 14:48 .. 14:54 UTC: NVDA's Keltner buys and sells
        now = SESSION_OPEN + timedelta(minutes=minute, seconds=7)
        request = evaluate_sensor(instance, live, now)
        assert isinstance(request, RunRequest), request
        assert request.run_key == f"live:{now.replace(second=0).isoformat()}"
        before = orders(live).height
        assert run_tick(instance, live, request).success
        if orders(live).height > before and not repeated:  # the tick that submitted: run it again
            sent = broker_orders(live)
            assert run_tick(instance, live, request).success
            assert (orders(live).height, broker_orders(live)) == (before + 1, sent)
            repeated = True
        again = evaluate_sensor(instance, live, now + timedelta(seconds=20))
        assert isinstance(again, SkipReason) and "no strategy is due" in again.skip_message

    placed = orders(live)
    assert repeated and placed.height >= 2
    assert set(placed["status"]) == {"filled"}
    assert placed["client_order_id"].str.contains(r"^[a-z-]+-20261120T\d{4}-(buy|sell)$").all()
    positions = live["ledger"].query("SELECT * FROM positions")
    assert positions.height > 0 and positions["reconciled"].cast(pl.Boolean).all()
    held = live["ledger"].holdings().group_by("symbol").agg(pl.col("held_qty").sum()).filter(pl.col("held_qty") != 0)
    assert sorted(held.rows()) == sorted(live["broker"].positions().select("symbol", "qty").rows())
    strategies = live["ledger"].strategies()
    assert strategies.height == 10 and (strategies["last_check"] == "2026-11-20T14:54:00+00:00").all()
    assert strategies["total_signals"].sum() == live["ledger"].query(
        "SELECT count(*) FROM strategy_signals WHERE action != 'hold'").item()

    report = materialize([paper_trading_report], partition_key="2026-11-20", instance=instance,
                         resources={"ledger": live["ledger"]})
    metadata = report.asset_materializations_for_node("paper_trading_report")[0].metadata
    assert metadata["orders"].value == placed.height
    assert metadata["ticks"].value == 7  # the repeated tick rewrote its minute's equity row
    assert metadata["equity_curve"].value.startswith("![equity curve](data:image/png;base64,")
    assert "nvda-keltner" in metadata["pnl_by_strategy"].value
    pnl = dict(strategy_pnl(live["ledger"], date(2026, 11, 20)).select("strategy_id", "pnl").rows())
    fills = live["ledger"].query("SELECT strategy_id, side, qty, price FROM fills ORDER BY filled_at")
    trip = fills.filter(pl.col("strategy_id") == "nvda-keltner")
    assert trip["side"].to_list() == ["buy", "sell"]  # a round trip: its P&L is the price difference
    assert pnl["nvda-keltner"] == round(trip["qty"][0] * (trip["price"][1] - trip["price"][0]), 2)
    # beside each P&L: round trips, the costs the local broker recorded, the Sharpe with its standard error
    from turbomode_pipeline.live.report import strategy_statistics

    stats = strategy_statistics(live["ledger"], date(2026, 11, 20)).filter(pl.col("strategy_id") == "nvda-keltner").row(0, named=True)
    slippage = live["ledger"].query("SELECT SUM(slippage) FROM paper_orders p JOIN fills f USING (client_order_id) "
                                    "WHERE f.strategy_id = 'nvda-keltner'").item()
    assert stats["round_trips"] == 1 and stats["costs"] == pytest.approx(slippage) and slippage > 0
    assert stats["sharpe_se"] > 0 and "sharpe_se" in metadata["pnl_by_strategy"].value
    assert metadata["pnl_total"].value == pytest.approx(sum(pnl.values()))


def test_outside_market_hours_the_sensor_says_when_the_market_opens(instance, live):
    saturday = evaluate_sensor(instance, live, datetime(2026, 11, 21, 15, 0, tzinfo=UTC))
    assert saturday.skip_message == (
        "market closed at 2026-11-21 15:00 UTC; it next opens Mon 2026-11-23 09:30 EST"
    )
    early = evaluate_sensor(instance, live, datetime(2026, 11, 20, 14, 29, tzinfo=UTC))
    assert "next opens Fri 2026-11-20 09:30 EST" in early.skip_message
    thanksgiving = evaluate_sensor(instance, live, datetime(2026, 11, 26, 16, 0, tzinfo=UTC))
    assert "next opens Fri 2026-11-27 09:30 EST" in thanksgiving.skip_message


def test_ticks_never_overlap(instance, live):
    now = SESSION_OPEN + timedelta(minutes=20)
    running = instance.create_run_for_job(live_trading_job, run_config={"ops": {"live_trading_tick": {"config": {
        "tick_time": now.isoformat(), "strategy_ids": ["aapl-keltner"]}}}}, status=DagsterRunStatus.STARTED)
    skipped = evaluate_sensor(instance, live, now + timedelta(minutes=1))
    assert skipped.skip_message == f"the previous tick (run {running.run_id}) has not finished; ticks never overlap"


def test_the_kill_switch_halts_the_sensor_and_every_order(instance, live, monkeypatch, fresh_settings):
    monkeypatch.setenv("TURBOMODE_KILL_SWITCH", "1")
    live["live_trading"] = LiveTrading.from_settings(get_settings())  # as definitions.py builds it
    skipped = evaluate_sensor(instance, live, SESSION_OPEN + timedelta(minutes=20))
    assert skipped.skip_message == "TURBOMODE_KILL_SWITCH is on: live trading is halted"
    live["ledger"].seed_strategies(str(get_settings().strategies_file))
    everyone = live["ledger"].strategies()["id"].to_list()
    for minute in range(21, 24):  # the minutes in which the session above submits its orders
        tick = SESSION_OPEN + timedelta(minutes=minute)
        config = {"ops": {"live_trading_tick": {"config": {"tick_time": tick.isoformat(), "strategy_ids": everyone}}}}
        assert run_tick(instance, live, RunRequest(run_config=config)).success
    assert orders(live).is_empty() and broker_orders(live) == 0
    rejected = live["ledger"].query("SELECT reason, approved FROM risk_decisions")
    assert rejected.height > 0
    assert set(rejected.rows()) == {("kill switch is on: all trading halted", 0)}
    assert set(live["ledger"].strategies()["status"]) == {"halted: kill switch"}


def nvda_signal(live: dict, now: datetime) -> pl.DataFrame:
    price = live["market_data"].minute_bars([date(2026, 11, 20)], live["universe"].load()).filter(
        pl.col("symbol") == "NVDA")["close"][0]
    return pl.DataFrame({
        "id": ["2026-11-19-NVDA"], "session": [date(2026, 11, 19)], "symbol": ["NVDA"], "signal_type": ["BUY"],
        "confidence": [0.72], "entry_price": [price], "target_price": [price * 1.5], "stop_loss": [price * 0.5],
        "sector": ["Information Technology"], "created_at": [now - timedelta(hours=16)],
        "expires_at": [now + timedelta(days=10)], "is_active": [True], "model_name": ["it_stacked"],
        "model_version": ["3"], "mlflow_run_id": ["abc123"], "model_labels_through": [date(2026, 11, 13)],
    })


def test_a_tick_succeeds_while_another_process_holds_the_warehouse_write_lock(instance, live):
    now = SESSION_OPEN + timedelta(minutes=20)
    warehouse = live["live_warehouse"].path
    with duckdb.connect(warehouse) as con:
        con.execute(SIGNAL_HISTORY.ddl)
        con.register("incoming", nvda_signal(live, now).to_arrow())
        con.execute("INSERT INTO signal_history SELECT * FROM incoming")
        con.execute("CREATE TABLE scanner_scores AS SELECT DISTINCT session FROM signal_history")  # the newest scan
    signal_follower = {"tick_time": None, "strategy_ids": ["nvda-turbomode"]}
    live["ledger"].seed_strategies(str(get_settings().strategies_file))
    live["ledger"].set_enabled("nvda-turbomode", True)
    first = {"ops": {"live_trading_tick": {"config": {**signal_follower, "tick_time": now.isoformat()}}}}
    assert run_tick(instance, live, RunRequest(run_config=first)).success  # reads the warehouse, caches the signals

    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
         "time.sleep(120)", warehouse],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(warehouse, read_only=True)
        later = now + timedelta(minutes=1)
        second = {"ops": {"live_trading_tick": {"config": {**signal_follower, "tick_time": later.isoformat()}}}}
        started = time.perf_counter()
        result = run_tick(instance, live, RunRequest(run_config=second))
        elapsed = time.perf_counter() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.success and elapsed < 20
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("using the ledger's copy: 1 min old (cached 2026-11-20 14:50 UTC)" in m for m in messages)
    decisions = live["ledger"].query(
        "SELECT tick_time, action, reason FROM strategy_signals WHERE strategy_id = 'nvda-turbomode' ORDER BY tick_time")
    assert decisions.rows() == [
        (now.isoformat(), "buy", "scanner BUY signal 2026-11-19-NVDA (confidence 0.72)"),
        (later.isoformat(), "hold", "holding on signal 2026-11-19-NVDA"),
    ]


def test_the_report_schedule_runs_on_sessions_only():
    from dagster import build_schedule_context

    from turbomode_pipeline.live.report import paper_trading_report_schedule

    friday = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 20, 21, 30, tzinfo=UTC))
    request = paper_trading_report_schedule(friday)
    assert (request.partition_key, request.run_key) == ("2026-11-20", "paper_trading_report:2026-11-20")
    thanksgiving = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 26, 21, 30, tzinfo=UTC))
    assert paper_trading_report_schedule(thanksgiving).skip_message == (
        "2026-11-26 is not an NYSE session: no paper trading to report")


def test_strategies_cli_lists_adds_enables_and_disables(tmp_path, monkeypatch, capsys, fresh_settings):
    from turbomode_pipeline.cli import main

    monkeypatch.setenv("TURBOMODE_DATA_DIR", str(tmp_path))
    assert main(["strategies", "list"]) == 0
    assert "nvda-turbomode" in capsys.readouterr().out
    assert main(["strategies", "add", "msft-kc", "--type", "keltner_channel", "--symbol", "msft", "--allocation", "5000",
                 "--params", '{"timeframe_minutes": 5}']) == 0
    assert main(["strategies", "disable", "aapl-keltner"]) == 0
    ledger = Ledger(path=str(tmp_path / "trading.sqlite"))
    rows = ledger.strategies().filter(pl.col("id").is_in(["msft-kc", "aapl-keltner"])).select("id", "symbol", "enabled", "status")
    assert rows.rows() == [("aapl-keltner", "AAPL", 0, "disabled"), ("msft-kc", "MSFT", 1, "idle")]
    assert '"timeframe_minutes": 5' in ledger.strategies().filter(pl.col("id") == "msft-kc")["params"].item()
    assert main(["strategies", "enable", "aapl-keltner"]) == 0
    assert ledger.due_strategies(SESSION_OPEN) == sorted([*ledger.strategies()["id"]])
    capsys.readouterr()
    assert main(["strategies", "add", "x", "--type", "momentum", "--symbol", "A", "--allocation", "1"]) == 2
    assert "strategy x: unknown type 'momentum'; expected one of keltner_channel" in capsys.readouterr().err
    assert main(["strategies", "enable", "nope"]) == 2
