"""`make bench`: wall times of the pipeline's heavy paths, each beside a baseline in the same run.

Benchmarks, not tests: the machines are noisy, so nothing here asserts a time.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dagster import DagsterInstance, materialize

from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START, due_sessions
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import DEFAULT_UNIVERSE

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}\n" + "-" * (width + 16))
    for name, value in rows:
        print(f"{name:<{width}}  {value:>12}")


def bars_backfill() -> None:
    sessions = [d.isoformat() for d in due_sessions(datetime.now(UTC), 2520)]
    with tempfile.TemporaryDirectory() as tmp:
        resources = {
            "market_data": SimulatedMarketData(),
            "warehouse": Warehouse(path=str(Path(tmp) / "warehouse.duckdb")),
            "universe": Universe(path=str(DEFAULT_UNIVERSE)),
        }
        instance = DagsterInstance.ephemeral()

        def run(tags=None, partition_key=None):
            result = materialize(
                [daily_bars], resources=resources, instance=instance, tags=tags, partition_key=partition_key,
                run_config=QUIET, selection=[daily_bars.key],
            )
            assert result.success

        decade = timed(lambda: run(tags={PARTITION_RANGE_START: sessions[0], PARTITION_RANGE_END: sessions[-1]}))
        ten = timed(lambda: [run(partition_key=key) for key in sessions[-10:]])
        rows = Warehouse(path=str(Path(tmp) / "warehouse.duckdb")).query("SELECT count(*) FROM daily_bars").item()
    table(
        f"daily_bars backfill, 242 symbols ({rows:,} rows)",
        [
            (f"one run, {len(sessions)} sessions ({sessions[0]}..{sessions[-1]})", f"{decade:.1f} s"),
            ("ten runs of one session each", f"{ten:.1f} s"),
            ("one session, mean of the ten", f"{ten / 10:.2f} s"),
            ("sessions per second, one range run", f"{len(sessions) / decade:.0f}"),
            ("ratio: per-session cost, single run vs one-by-one", f"{(decade / len(sessions)) / (ten / 10):.4f}"),
            (f"ratio: {len(sessions)} sessions in one run vs 10 separate runs", f"{decade / ten:.2f}"),
        ],
    )


def main() -> None:
    bars_backfill()


if __name__ == "__main__":
    main()
