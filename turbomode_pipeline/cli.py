"""`turbomode`: the operator's command line (also `python -m turbomode_pipeline`)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime


def demo(args: argparse.Namespace) -> int:
    """Backfill the latest sessions of the main job in one run on the configured instance and summarise."""
    from dagster import DagsterInstance

    from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START, due_sessions
    from turbomode_pipeline.definitions import defs
    from turbomode_pipeline.settings import get_settings

    settings = get_settings()
    sessions = due_sessions(datetime.now(UTC), args.sessions)
    first, last = sessions[0].isoformat(), sessions[-1].isoformat()
    print(f"TurboMode demo: {settings.market_data} market data, {len(sessions)} sessions {first}..{last}, one run")
    started = time.perf_counter()
    job = defs.resolve_job_def("market_data_job")
    result = job.execute_in_process(
        instance=DagsterInstance.get(),
        tags={PARTITION_RANGE_START: first, PARTITION_RANGE_END: last, "turbomode/demo": "true"},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    elapsed = time.perf_counter() - started
    if not result.success:
        print(f"run {result.run_id} failed after {elapsed:.1f} s; open the UI (make ui) to read why", file=sys.stderr)
        return 1
    warehouse = defs.resources["warehouse"]
    summary = warehouse.query(
        "SELECT count(*) AS rows, count(DISTINCT symbol) AS symbols, count(DISTINCT session) AS sessions, "
        "min(session) AS first, max(session) AS last FROM daily_bars WHERE session BETWEEN ? AND ?",
        [sessions[0], sessions[-1]],
    ).row(0, named=True)
    print(f"run {result.run_id} succeeded in {elapsed:.1f} s")
    print(f"daily_bars: {summary['rows']:,} rows, {summary['symbols']} symbols, {summary['sessions']} sessions "
          f"({summary['first']}..{summary['last']}) in {settings.warehouse_path}")
    print("open the UI:        make ui   (then http://127.0.0.1:3000)")
    print(f"query the warehouse: .venv/bin/duckdb -readonly {settings.warehouse_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="turbomode", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="backfill the latest sessions in one run and print a summary")
    demo_parser.add_argument("--sessions", type=int, default=250, help="how many recent sessions (default 250)")
    demo_parser.set_defaults(handler=demo)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
