"""`turbomode`: the operator's command line (also `python -m turbomode_pipeline`)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _run_job(name: str, first: str, last: str):
    """Run a job over a session range as one run on the configured instance; None on failure."""
    from dagster import DagsterInstance

    from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START
    from turbomode_pipeline.definitions import defs

    started = time.perf_counter()
    result = defs.resolve_job_def(name).execute_in_process(
        instance=DagsterInstance.get(),
        tags={PARTITION_RANGE_START: first, PARTITION_RANGE_END: last, "turbomode/demo": "true"},
        run_config=QUIET,
        raise_on_error=False,
    )
    elapsed = time.perf_counter() - started
    if not result.success:
        print(f"{name} run {result.run_id} failed after {elapsed:.1f} s; open the UI (make ui) to read why", file=sys.stderr)
        return None
    print(f"{name}: run {result.run_id} over {first}..{last} succeeded in {elapsed:.1f} s")
    return result


def demo(args: argparse.Namespace) -> int:
    """The main jobs on the configured instance, each as one run over the latest sessions, and a summary."""
    from dagster import DagsterInstance

    from turbomode_pipeline.automation.features import backfill_ranges
    from turbomode_pipeline.automation.market_data import due_sessions
    from turbomode_pipeline.core.features import FEATURES
    from turbomode_pipeline.definitions import defs
    from turbomode_pipeline.settings import get_settings

    settings = get_settings()
    sessions = due_sessions(datetime.now(UTC), args.sessions)
    first, last = sessions[0].isoformat(), sessions[-1].isoformat()
    print(f"TurboMode demo: {settings.market_data} market data, {len(sessions)} sessions {first}..{last}")
    if not _run_job("market_data_job", first, last):
        return 1
    for start, end in backfill_ranges(DagsterInstance.get()):
        if not _run_job("backtest_data_job", start.isoformat(), end.isoformat()):
            return 1

    warehouse = defs.resources["warehouse"]
    bars = warehouse.query(
        "SELECT count(*) AS rows, count(DISTINCT symbol) AS symbols, count(DISTINCT session) AS sessions "
        "FROM daily_bars WHERE session BETWEEN ? AND ?",
        [sessions[0], sessions[-1]],
    ).row(0, named=True)
    features = warehouse.query("SELECT count(*) AS rows FROM daily_features").item()
    balance = warehouse.query(
        "SELECT barrier, count(*) AS samples, round(100 * count(*) / sum(count(*)) OVER (), 1) AS pct, "
        "round(100 * avg(ret), 2) AS avg_return_pct, round(avg(days_held), 1) AS avg_days "
        "FROM training_samples GROUP BY barrier ORDER BY barrier"
    )
    up_share = warehouse.query("SELECT avg(label) FROM training_samples").item()
    print(f"\ndaily_bars:       {bars['rows']:,} rows, {bars['symbols']} symbols, {bars['sessions']} sessions")
    print(f"daily_features:   {len(FEATURES)} features, {features:,} rows")
    print(f"training_samples: {balance['samples'].sum():,} samples; label 'up' {100 * up_share:.1f}%, by barrier:")
    for row in balance.iter_rows(named=True):
        print(f"  {row['barrier']:<6} {row['samples']:>9,}  {row['pct']:>5}%  avg return {row['avg_return_pct']:>6}%  "
              f"avg days held {row['avg_days']}")
    print(f"\nwarehouse:           {settings.warehouse_path}")
    print("open the UI:         make ui   (then http://127.0.0.1:3000)")
    print(f"query the warehouse: .venv/bin/duckdb -readonly {settings.warehouse_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="turbomode", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run the main jobs over the latest sessions and print a summary")
    demo_parser.add_argument("--sessions", type=int, default=750, help="how many recent sessions (default 750)")
    demo_parser.set_defaults(handler=demo)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
