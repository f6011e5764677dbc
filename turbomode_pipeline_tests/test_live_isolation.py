"""Issue 28, findings 2 and 3: inside a tick, one strategy's failure and one order's refusal are recorded against
that strategy and that order, alerted once, and every other strategy and order of the minute goes on.

The replay through the CLI's own entry with a real SQLite ledger and real Dagster runs; the refusal through the real
alpaca-py SDK against the loopback emulator, which answers 403 the way Alpaca does."""

import json
import logging
from datetime import datetime, timedelta

import polars as pl
from dagster import DagsterInstance, build_sensor_context

from turbomode_pipeline.automation.alerts import halted_strategy_alerts
from turbomode_pipeline.calendar import sessions_before
from turbomode_pipeline.cli import main
from turbomode_pipeline.core.risk import RiskLimits
from turbomode_pipeline.core.strategies import indicator_signals
from turbomode_pipeline.live.tick import run_tick
from turbomode_pipeline.resources.alerts import AlertSender
from turbomode_pipeline.resources.broker import AlpacaPaperBroker
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import DEFAULT_UNIVERSE
from turbomode_pipeline_tests.alpaca_emulator import KEY_ID, SECRET, AlpacaEmulator
from turbomode_pipeline_tests.test_cli_mistakes import desk  # noqa: F401  (the fixture)

SESSION = "2026-11-20"
S5_PROBLEM = "strategy s5: params.timeframe_minutes must be a whole number from 1 to 1440, got 0"


def replay(ids: str, folder, capsys) -> tuple[int, str, pl.DataFrame, Ledger]:
    code = main(["replay", "--session", SESSION, "--every", "10", "--strategies", ids])
    out = capsys.readouterr().out
    ledger = Ledger(path=str(folder / "replay" / f"trading_{SESSION}.sqlite"))
    orders = ledger.query("SELECT client_order_id, strategy_id, side, qty, status FROM orders ORDER BY client_order_id")
    return code, out, orders, ledger


def test_a_strategy_the_tick_cannot_run_leaves_the_healthy_one_trading_in_a_replay(desk, capsys):  # noqa: F811
    ledger = Ledger(path=str(desk / "trading.sqlite"))
    assert main(["strategies", "list"]) == 0  # seeds the default strategies
    # an old ledger's row, written before the door checked params: the tick must not trust the ledger
    ledger.append("live_strategies", pl.DataFrame([{
        "id": "s5", "name": "MSFT Donchian", "type": "donchian_channel", "symbol": "MSFT", "allocation": 5000.0,
        "params": json.dumps({"entry": 20, "exit": 10, "timeframe_minutes": 0}), "enabled": 1, "check_interval_s": 60}]))
    code, out, alone, _ = replay("aapl-donchian", desk, capsys)  # what the healthy strategy does by itself
    assert code == 0, out
    assert not alone.is_empty(), "aapl-donchian places no order in this replay: pick a session where it trades"

    code, out, both, replayed = replay("s5,aapl-donchian", desk, capsys)
    assert code == 0, out
    assert "failed" not in next(line for line in out.splitlines() if " ticks in " in line), out  # no tick failed
    assert both.equals(alone)  # the healthy Donchian's orders, as if s5 were not there
    assert replayed.query("SELECT status FROM live_strategies WHERE id = 's5'").item() == f"error: {S5_PROBLEM}"
    errors = replayed.query("SELECT DISTINCT action, reason FROM strategy_signals WHERE strategy_id = 's5'")
    assert errors.rows() == [("error", S5_PROBLEM)]
    assert f"s5: error: {S5_PROBLEM}" in out

    # alerted once, however many ticks it failed
    sender = AlertSender(log_path=str(desk / "alerts.log"))
    with DagsterInstance.ephemeral() as instance:
        context = lambda cursor: build_sensor_context(  # noqa: E731
            instance=instance, cursor=cursor, resources={"ledger": replayed, "alerts": sender})
        first = halted_strategy_alerts(context(None))
        again = halted_strategy_alerts(context(first.cursor))
    alerts = [json.loads(line) for line in (desk / "alerts.log").read_text().splitlines()]
    assert [a["summary"] for a in alerts] == [f"live strategy s5 (MSFT) failed: {S5_PROBLEM}"]
    assert again.skip_reason.skip_message == "no newly halted strategy"


def test_the_strategy_backtest_notes_the_strategy_it_cannot_run_and_backtests_the_rest(desk, capsys):  # noqa: F811
    ledger = Ledger(path=str(desk / "trading.sqlite"))
    assert main(["strategies", "list"]) == 0
    ledger.append("live_strategies", pl.DataFrame([{
        "id": "s5", "name": "MSFT Donchian", "type": "donchian_channel", "symbol": "MSFT", "allocation": 5000.0,
        "params": json.dumps({"entry": 20, "exit": 10, "timeframe_minutes": 0}), "enabled": 1, "check_interval_s": 60}]))
    (desk / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    capsys.readouterr()
    code = main(["backtest", "s5,aapl-donchian", "--from", "2026-11-16", "--to", SESSION])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    assert f"s5 not backtested: {S5_PROBLEM}" in out.splitlines()
    assert "aapl-donchian" in out and "| s5 " not in out


# -- finding 3: one refused order ---------------------------------------------------------------------------------

def test_a_refused_order_is_recorded_with_the_brokers_words_and_the_other_order_of_the_minute_is_sent(tmp_path):
    market_data, universe = SimulatedMarketData(seed=11), pl.read_csv(DEFAULT_UNIVERSE)
    day = datetime.fromisoformat(SESSION).date()
    # the session's first entry as the tick sees it: on the bars of the previous session and this one
    bars = market_data.minute_bars([*sessions_before(day, 1), day], universe.filter(pl.col("symbol") == "AMD"))
    entries = indicator_signals("keltner_channel", bars, {}).filter(pl.col("entry") & (pl.col("time").dt.date() == day))
    entry = entries["time"][0]  # from the simulator
    now = entry + timedelta(minutes=1)
    ledger = Ledger(path=str(tmp_path / "trading.sqlite"))
    for strategy_id in ("amd-keltner", "amd-keltner2"):  # the same rule on the same bar: two orders in one minute
        ledger.add_strategy(strategy_id, "keltner_channel", "AMD", 10_000)
    refused_id, sent_id = (f"{sid}-{entry:%Y%m%dT%H%M}-buy" for sid in ("amd-keltner", "amd-keltner2"))
    with AlpacaEmulator() as emulator:
        emulator.prices = {"AMD": 280.0}
        emulator.refuse = {refused_id: (403, "insufficient buying power")}  # the first order of the minute
        broker = AlpacaPaperBroker(api_key=KEY_ID, secret_key=SECRET, base_url=emulator.url, backoff_s=0.01)
        result = run_tick(now, ["amd-keltner", "amd-keltner2"], ledger=ledger, broker=broker, market_data=market_data,
                          universe=universe, warehouse=Warehouse(path=str(tmp_path / "w.duckdb"), lock_timeout_s=0.2),
                          limits=RiskLimits(), kill_switch=False, log=logging.getLogger("test"))
        assert emulator.statuses("/v2/orders") == [403, 200]
        assert list(emulator.orders) == [sent_id]
    assert result.submitted == [sent_id]
    words = f"Alpaca refused order {refused_id} (buy {result.reviewed['qty'][0]:g} AMD) with HTTP 403: insufficient buying power"
    orders = ledger.query("SELECT client_order_id, status, error FROM orders ORDER BY client_order_id")
    assert orders.rows() == [(refused_id, "refused", words), (sent_id, "filled", None)]
    statuses = dict(ledger.query("SELECT id, status FROM live_strategies").rows())
    assert statuses == {"amd-keltner": f"error: {words}", "amd-keltner2": "active"}
    assert result.positions.select("symbol", "reconciled").rows() == [("AMD", True)]

    sender = AlertSender(log_path=str(tmp_path / "alerts.log"))
    with DagsterInstance.ephemeral() as instance:
        context = lambda cursor: build_sensor_context(  # noqa: E731
            instance=instance, cursor=cursor, resources={"ledger": ledger, "alerts": sender})
        first = halted_strategy_alerts(context(None))
        halted_strategy_alerts(context(first.cursor))
    alerts = [json.loads(line) for line in (tmp_path / "alerts.log").read_text().splitlines()]
    assert [a["summary"] for a in alerts] == [f"live strategy amd-keltner (AMD) failed: {words}"]
