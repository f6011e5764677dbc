"""Replay a past session's paper trading: the live tick at every minute (or every N) of that session.

Each tick is a real `live_trading_job` run whose tick time is that minute (the seam the sensor
uses: the tick reads no other clock), against a ledger and a local paper broker of the replay's
own ($TURBOMODE_DATA_DIR/replay/trading_<session>.sqlite, rebuilt each time), so a replay never
touches the live ledger or sends an order to Alpaca. The runs go to an in-memory Dagster instance;
the session's paper_trading_report is materialised from the replay's ledger at the end.
"""

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from dagster import DagsterInstance, materialize

from turbomode_pipeline.calendar import session_close, session_open
from turbomode_pipeline.live.report import paper_trading_report
from turbomode_pipeline.live.trading import live_trading_job
from turbomode_pipeline.resources.broker import LocalPaperBroker
from turbomode_pipeline.resources.ledger import Ledger

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class Replay:
    ledger_path: Path
    ticks: int
    failed: list[str]  # tick times whose run failed
    seconds: float
    report: dict  # paper_trading_report's metadata values


def tick_times(session: date, every: int) -> list[datetime]:
    """The minutes a live sensor ticks at: the first minute bar's close to the session's close, every `every` minutes."""
    first, close = session_open(session) + timedelta(minutes=1), session_close(session)
    count = int((close - first).total_seconds() // 60) + 1
    return [(first + timedelta(minutes=i)).astimezone(UTC) for i in range(0, count, every)]


def replay_session(session: date, every: int, live: dict, strategies: Ledger, folder: Path, starting_cash: float,
                   slippage_bps: float, commission_per_share: float, strategy_ids: list[str] | None = None,
                   progress=print) -> Replay:
    """`live`: the run's market_data, universe, live_warehouse and live_trading resources; `strategies`: the ledger whose
    live_strategies are replayed (the enabled ones, or `strategy_ids`)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"trading_{session}.sqlite"
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    ledger = Ledger(path=str(path))
    rows = strategies.strategies()
    rows = rows.filter(rows["id"].is_in(strategy_ids)) if strategy_ids else rows.filter(rows["enabled"] == 1)
    ledger.append("live_strategies", rows.select("id", "name", "type", "symbol", "allocation", "params", "enabled",
                                                "check_interval_s"))
    resources = {**live, "ledger": ledger, "broker": LocalPaperBroker(
        ledger_path=str(path), starting_cash=starting_cash, slippage_bps=slippage_bps,
        commission_per_share=commission_per_share)}
    instance, failed, started = DagsterInstance.ephemeral(), [], time.perf_counter()
    times = tick_times(session, every)
    for i, now in enumerate(times):  # one run per tick, as the sensor launches them
        due = ledger.due_strategies(now)
        if not due:
            continue
        result = live_trading_job.execute_in_process(
            run_config={**QUIET, "ops": {"live_trading_tick": {"config": {"tick_time": now.isoformat(), "strategy_ids": due}}}},
            instance=instance, resources=resources, raise_on_error=False)
        if not result.success:
            failed.append(now.isoformat())
        if progress and (i + 1) % 30 == 0:
            progress(f"  {i + 1}/{len(times)} ticks, {now:%H:%M} UTC, {time.perf_counter() - started:.0f} s")
    elapsed = time.perf_counter() - started
    report = materialize([paper_trading_report], partition_key=str(session), instance=instance,
                         resources={"ledger": ledger}, run_config=QUIET)
    metadata = report.asset_materializations_for_node("paper_trading_report")[0].metadata
    return Replay(path, len(times), failed, elapsed, {key: value.value for key, value in metadata.items()})
