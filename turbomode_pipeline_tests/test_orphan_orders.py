"""A tick killed (kill -9) after the broker accepted its order and before the ledger heard of it.

The tick runs in its own process against the loopback Alpaca emulator through the real
alpaca-py SDK; the emulator holds its answer to the order until the test has killed the
process. The next tick must adopt the broker's order by its client_order_id, so the ledger,
the strategies and the risk limits see the position; a position nothing in the ledger explains
halts its symbol's strategies with a message that says so.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, build_sensor_context

from turbomode_pipeline.automation.alerts import halted_strategy_alerts
from turbomode_pipeline.live.trading import LiveTrading, TradingClock, live_trading_job
from turbomode_pipeline.resources.alerts import AlertSender
from turbomode_pipeline.resources.broker import AlpacaPaperBroker
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import DEFAULT_STRATEGIES, DEFAULT_UNIVERSE, load_settings
from turbomode_pipeline_tests.alpaca_emulator import KEY_ID, SECRET, AlpacaEmulator

SESSION_OPEN = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)  # a Friday, 09:30 New York
FIRST_MINUTE, LAST_MINUTE = 18, 30

TICKS = """
import sys
from datetime import UTC, datetime, timedelta
from dagster import DagsterInstance, build_sensor_context
from turbomode_pipeline_tests.test_orphan_orders import live_resources, tick
folder, url, first, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
resources = live_resources(folder, url)
with DagsterInstance.ephemeral() as instance:
    for minute in range(first, last + 1):
        assert tick(instance, resources, minute).success
        print("tick", minute, flush=True)
"""


def live_resources(folder: str, url: str) -> dict:
    universe = Path(folder) / "universe.csv"
    if not universe.exists():
        pl.read_csv(DEFAULT_UNIVERSE).filter(pl.col("symbol").is_in(["AAPL", "AMD", "NVDA"])).write_csv(universe)
    ledger = Ledger(path=str(Path(folder) / "trading.sqlite"))
    ledger.seed_strategies(str(DEFAULT_STRATEGIES))
    return {
        "ledger": ledger,
        "broker": AlpacaPaperBroker(api_key=KEY_ID, secret_key=SECRET, base_url=url, backoff_s=0.01, timeout_s=120),
        "market_data": SimulatedMarketData(seed=11),
        "universe": Universe(path=str(universe)),
        "live_warehouse": Warehouse(path=str(Path(folder) / "warehouse.duckdb"), lock_timeout_s=0.5),
        "trading_clock": TradingClock(),
        "live_trading": LiveTrading.from_settings(load_settings({})),
    }


def tick(instance, resources: dict, minute: int):
    now = SESSION_OPEN + timedelta(minutes=minute)
    ids = resources["ledger"].strategies()["id"].to_list()
    config = {"ops": {"live_trading_tick": {"config": {"tick_time": now.isoformat(), "strategy_ids": ids}}}}
    return live_trading_job.execute_in_process(run_config=config, instance=instance, resources=resources,
                                               raise_on_error=False)


def run_messages(instance, result) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(result.run_id)]


@pytest.fixture
def emulator():
    with AlpacaEmulator() as running:
        running.prices = {"AAPL": 190.0, "AMD": 120.0, "NVDA": 480.0}
        yield running


def test_a_tick_killed_between_the_brokers_accept_and_the_ledger_update_is_adopted(tmp_path, emulator):
    emulator.order_reply_gate = threading.Event()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "TURBOMODE_", "DAGSTER_"))} | {
        "TURBOMODE_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-c", TICKS, str(tmp_path), emulator.url, str(FIRST_MINUTE), str(LAST_MINUTE)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    waited = time.monotonic()
    while not emulator.orders and process.poll() is None and time.monotonic() - waited < 300:
        time.sleep(0.05)
    assert emulator.orders, f"no order reached the broker: {process.stdout.read() if process.poll() is not None else ''}"
    process.send_signal(signal.SIGKILL)  # the broker has accepted and filled; the tick has not heard back
    process.wait()
    output = process.stdout.read()
    (client_id, accepted), = emulator.orders.items()
    crashed_at = max([int(line.split()[1]) for line in output.splitlines() if line.startswith("tick ")],
                     default=FIRST_MINUTE - 1) + 1
    emulator.order_reply_gate.set()
    emulator.order_reply_gate = None

    resources = live_resources(str(tmp_path), emulator.url)
    ledger = resources["ledger"]
    assert ledger.query("SELECT status FROM orders WHERE client_order_id = ?", [client_id]).item() == "submitting"

    with DagsterInstance.ephemeral() as instance:
        result = tick(instance, resources, crashed_at + 1)
        assert result.success
        messages = run_messages(instance, result)
    assert (f"order {client_id} was being submitted when a tick died; adopted the broker's {accepted['side']} "
            f"{float(accepted['qty']):g} {accepted['symbol']} (filled)") in messages
    adopted = ledger.query("SELECT status, filled_qty, broker_order_id FROM orders WHERE client_order_id = ?", [client_id])
    assert adopted.rows() == [("filled", float(accepted["qty"]), accepted["id"])]
    assert ledger.query("SELECT qty FROM fills WHERE client_order_id = ?", [client_id]).item() == float(accepted["qty"])
    latest = ledger.query("SELECT * FROM positions WHERE tick_time = (SELECT max(tick_time) FROM positions)")
    assert latest.height >= 1 and latest["reconciled"].cast(pl.Boolean).all(), latest
    assert not [m for m in messages if "position mismatch" in m or m.startswith("halted")]
    sent = ledger.query("SELECT client_order_id FROM orders WHERE status != 'unsent'")["client_order_id"].sort().to_list()
    assert sent == sorted(emulator.orders)  # nothing at the broker the ledger does not know, nothing sent twice
    assert emulator.statuses("/v2/orders") .count(422) == 0


def test_a_position_no_ledger_order_explains_halts_its_strategies_with_a_clear_message(tmp_path, emulator):
    emulator.positions = {"AMD": {"qty": 35.0, "avg": 120.0}}  # bought by hand, or by a ledger since lost
    resources = live_resources(str(tmp_path), emulator.url)
    with DagsterInstance.ephemeral() as instance:
        result = tick(instance, resources, 20)
        assert result.success
        messages = run_messages(instance, result)
    reason = ("the broker holds 35.0 AMD, the ledger's fills 0.0; no order in the ledger explains the difference. "
              "Reconcile the position by hand; its strategies stay halted until the two agree")
    assert f"halted AMD's strategies: {reason}" in messages
    statuses = dict(resources["ledger"].query("SELECT id, status FROM live_strategies WHERE symbol = 'AMD'").rows())
    assert statuses == {s: f"halted: {reason}" for s in ("amd-donchian", "amd-ichimoku", "amd-keltner")}
    assert not [o for o in emulator.orders.values() if o["symbol"] == "AMD"]

    # the halt reaches a person once, through the alert sender, not only the run's log
    sender = AlertSender(log_path=str(tmp_path / "alerts.log"))
    context = lambda cursor: build_sensor_context(  # noqa: E731
        instance=DagsterInstance.ephemeral(), cursor=cursor, resources={"ledger": resources["ledger"], "alerts": sender})
    first = halted_strategy_alerts(context(None))
    again = halted_strategy_alerts(context(first.cursor))
    alerts = [json.loads(line) for line in (tmp_path / "alerts.log").read_text().splitlines()]
    assert sorted(a["summary"] for a in alerts) == [f"live strategy {s} (AMD) halted: {reason}"
                                                    for s in ("amd-donchian", "amd-ichimoku", "amd-keltner")]
    assert again.skip_reason.skip_message == "no newly halted strategy"
