"""A simulated trading day under load: the nightly chain (bars, features, scanner) runs in one
process while live_trading_sensor -> live_trading_job ticks run in another, on the same
warehouse file, the ticks' clock accelerated to one simulated minute per tick.

What must hold: no lock error in either process, no order submitted twice, no signal lost.
The counts are printed (`pytest -s`) for the issue's report.
"""

import json
import subprocess
import sys
from datetime import UTC, date, timedelta
from pathlib import Path

import polars as pl
from dagster import DagsterEventType, EventRecordsFilter, RunRequest, SkipReason, materialize

from turbomode_pipeline.calendar import session_open
from turbomode_pipeline.live.trading import live_trading_job
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline_tests.support import evaluate_sensor

CACHED = "using the ledger's copy"


def nightly_chain(warehouse_path: str, universe_path: str, registry: dict, seed: int, sessions: list[str]) -> None:
    """One run per session of the nightly chain, as the schedules and the catch-up sensor launch them."""
    from dagster import DagsterInstance

    from turbomode_pipeline.assets.features import daily_features
    from turbomode_pipeline.assets.market_data import daily_bars
    from turbomode_pipeline.assets.scanner import scanner_signals
    from turbomode_pipeline.resources.market_data import SimulatedMarketData
    from turbomode_pipeline.resources.model_registry import ModelRegistry
    from turbomode_pipeline.resources.reports import ReportStore
    from turbomode_pipeline.resources.universe import Universe
    from turbomode_pipeline.resources.labels import LabelSettings
    from turbomode_pipeline.resources.warehouse import Warehouse
    from turbomode_pipeline.settings import get_settings

    resources = {
        "market_data": SimulatedMarketData(seed=seed, predictability=0.5),
        "warehouse": Warehouse(path=warehouse_path, lock_timeout_s=30.0),
        "universe": Universe(path=universe_path),
        "model_registry": ModelRegistry(**registry),
        "labels": LabelSettings.from_settings(get_settings()),
        "reports": ReportStore(directory=str(Path(warehouse_path).parent / "reports")),
    }
    written = {}
    with DagsterInstance.ephemeral() as instance:
        for session in sessions:
            result = materialize([daily_bars, daily_features, scanner_signals], resources=resources,
                                 instance=instance, partition_key=session, raise_on_error=False)
            assert result.success, f"nightly chain failed for {session}"
            metadata = result.asset_materializations_for_node("scanner_signals")[0].metadata
            written[session] = metadata["dagster/row_count"].value
    print(json.dumps(written), flush=True)


def start_nightly_chain(trained_models, warehouse_path: Path, sessions: list[date]) -> subprocess.Popen:
    arguments = [str(warehouse_path), str(trained_models.universe_path), trained_models.registry.model_dump(),
                 trained_models.seed, [s.isoformat() for s in sessions]]
    code = f"from {__name__} import nightly_chain; nightly_chain(*{arguments!r})"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tick_logs(instance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def test_the_nightly_chain_and_live_ticks_share_the_warehouse_without_losing_anything(trained_models, live, instance, tmp_path):  # noqa: F811
    pipeline = trained_models.resources(tmp_path)
    warehouse = pipeline["warehouse"]
    live["live_warehouse"] = Warehouse(path=warehouse.path, lock_timeout_s=0.5)
    nightly = trained_models.sessions[-3:]
    chain = start_nightly_chain(trained_models, Path(warehouse.path), nightly)

    trading_day = trained_models.sessions[-4]
    minute = session_open(trading_day).astimezone(UTC) + timedelta(minutes=1)
    ticks, cached, skipped = [], 0, 0
    while chain.poll() is None or len(ticks) < 20:
        request = evaluate_sensor(instance, live, minute)
        minute += timedelta(minutes=1)
        if isinstance(request, SkipReason):
            skipped += 1
            continue
        assert isinstance(request, RunRequest)
        result = live_trading_job.execute_in_process(run_config=request.run_config, instance=instance,
                                                     resources=live, tags=request.tags, raise_on_error=False)
        ticks.append(result.success)
        cached += any(CACHED in message for message in tick_logs(instance, result.run_id))
    out, err = chain.communicate()
    assert chain.returncode == 0, err[-3000:]
    written = json.loads(out.strip().splitlines()[-1])

    ledger = live["ledger"]
    orders = ledger.query("SELECT client_order_id FROM orders")
    broker_orders = ledger.query("SELECT count(*) FROM paper_orders").item()
    stored = warehouse.query("SELECT session, count(*) AS signals FROM signal_history GROUP BY session")
    stored = {str(day): count for day, count in stored.filter(pl.col("session").is_in(nightly)).iter_rows()}
    newest = warehouse.query("SELECT count(*) FROM signal_history WHERE session = ?", [nightly[-1]]).item()
    failed_materialisations = instance.get_event_records(EventRecordsFilter(DagsterEventType.RUN_FAILURE))
    counts = {
        "nightly runs (bars + features + scanner)": len(nightly),
        "signals written by the scanner": sum(written.values()),
        "signals stored": sum(stored.values()),
        "live ticks run": len(ticks),
        "live ticks that failed": ticks.count(False),
        "ticks that read the ledger's cached signals (warehouse busy)": cached,
        "sensor skips": skipped,
        "orders submitted": orders.height,
        "duplicate client_order_ids": orders.height - orders["client_order_id"].n_unique(),
        "orders the broker holds": broker_orders,
    }
    print("\n" + "\n".join(f"{name:>62}: {value}" for name, value in counts.items()))

    assert all(ticks) and not failed_materialisations
    assert orders["client_order_id"].n_unique() == orders.height == broker_orders
    assert stored == written  # every signal of every nightly run is in the warehouse
    assert warehouse.query("SELECT count(*) FROM active_signals").item() == newest
