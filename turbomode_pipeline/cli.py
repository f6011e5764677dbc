"""`turbomode`: the operator's command line (also `python -m turbomode_pipeline`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
MIN_TRAINING_SESSIONS = 500


class StepFailed(Exception):
    """A demo step's run failed; the message says where, why, and how to retry it."""


def _run_job(name: str, first: str, last: str, run_config: dict | None = None, assets: list[str] | None = None):
    """Run a job over a session range as one run on the configured instance; StepFailed on failure."""
    from dagster import AssetKey, DagsterInstance

    from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START
    from turbomode_pipeline.definitions import defs

    started = time.perf_counter()
    job = defs.resolve_job_def(name)
    selected = assets or sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys)
    result = job.execute_in_process(
        instance=DagsterInstance.get(),
        asset_selection=[AssetKey(asset) for asset in selected],
        tags={PARTITION_RANGE_START: first, PARTITION_RANGE_END: last, "turbomode/demo": "true"},
        run_config={**QUIET, **(run_config or {})},
        raise_on_error=False,
    )
    elapsed = time.perf_counter() - started
    if not result.success:
        raise StepFailed(_failure_message(result, name, elapsed, selected, first, last, run_config))
    print(f"{name}: run {result.run_id} over {first}..{last} succeeded in {elapsed:.1f} s")
    return result


def _failure_message(result, name, elapsed, assets, first, last, run_config) -> str:
    import json
    import shlex

    failures = [event for event in result.all_events if event.is_step_failure]
    step = failures[0].step_key if failures else name
    error = failures[0].step_failure_data.error if failures else None
    while error is not None and error.cause is not None and "DagsterExecutionStepExecutionError" in error.cls_name:
        error = error.cause
    reason = error.message.strip().splitlines()[-1] if error is not None else "the run failed before any step ran"
    retry = (f"dagster asset materialize -m turbomode_pipeline.definitions --select {','.join(assets)} "
             f"--partition-range {first}...{last}")
    if run_config:
        retry += f" --config-json {shlex.quote(json.dumps(run_config))}"
    return (f"step {step} of {name} failed after {elapsed:.1f} s (run {result.run_id}): {reason}\n"
            f"retry that step: DAGSTER_HOME={os.environ.get('DAGSTER_HOME', '<your DAGSTER_HOME>')} "
            f".venv/bin/{retry}\n"
            "or read the run in the UI: make ui")


def demo(args: argparse.Namespace) -> int:
    """The main jobs on the configured instance, each as one run over the latest sessions, and a summary.

    Whatever happens, it ends with where things are and how to look at them; a failed step is
    named with its reason and the command that retries it.
    """
    from turbomode_pipeline.settings import get_settings

    settings = get_settings()
    try:
        trained = _demo_chain(args.sessions)
    except StepFailed as failure:
        print(f"\nTurboMode demo stopped: {failure}", file=sys.stderr)
        return 1
    finally:
        print(f"\nwarehouse:           {settings.warehouse_path}")
        print("open the UI:         make ui   (then http://127.0.0.1:3000)")
        print("open MLflow:         make mlflow   (then http://127.0.0.1:5000)")
        print(f"query the warehouse: .venv/bin/duckdb -readonly {settings.warehouse_path}")
    if trained:
        from turbomode_pipeline.definitions import defs

        print(_drift_summary(defs.resources["warehouse"]))
    return 0


def _demo_chain(session_count: int) -> bool:
    """Bars, features, samples, then (with enough history) models, the scan and the drift report; True when trained."""
    from dagster import DagsterInstance

    from turbomode_pipeline import clock
    from turbomode_pipeline.automation.features import backfill_ranges
    from turbomode_pipeline.automation.market_data import due_sessions
    from turbomode_pipeline.automation.models import all_sectors_tags
    from turbomode_pipeline.core.features import FEATURES
    from turbomode_pipeline.definitions import defs
    from turbomode_pipeline.partitions import SECTORS
    from turbomode_pipeline.settings import get_settings

    settings = get_settings()
    sessions = due_sessions(clock.now(), session_count)
    first, last = sessions[0].isoformat(), sessions[-1].isoformat()
    print(f"TurboMode demo: {settings.market_data} market data, {len(sessions)} sessions {first}..{last}")
    _run_job("market_data_job", first, last)
    for start, end in backfill_ranges(DagsterInstance.get()):
        _run_job("backtest_data_job", start.isoformat(), end.isoformat())

    trained = len(sessions) >= MIN_TRAINING_SESSIONS
    if trained:
        fast = {"ops": {"sector_models": {"config": {"fast": True, "holdout_sessions": 120}}}}
        print(f"sector_models: the universe's {len(SECTORS)} sectors x 6 models, fast demo settings "
              "(smaller models, 3 folds, 120-session holdout)")
        _run_job("model_training_job", *all_sectors_tags().values(), run_config=fast)
    else:
        print(f"sector_models: skipped: {len(sessions)} sessions are too few to train on; the features' 252-session "
              f"warm-up, a 120-session holdout and three walk-forward blocks need {MIN_TRAINING_SESSIONS}")

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
    if trained:
        print(_model_summary(defs.resources["model_registry"]))
        _scan(sessions)
        print(_signal_summary(warehouse, sessions[-SCANNED_SESSIONS:]))
        week = drift_week(sessions[-1])
        _run_job("drift_monitoring_job", week, week)  # after the scan: it reads the week's signals
    return trained


def drift_week(session) -> str:
    """The drift partition (its Sunday) of the week holding `session`: the newest week the demo has data for."""
    return (session - timedelta(days=(session.weekday() + 1) % 7)).isoformat()


SCANNED_SESSIONS = 30  # the newest session and enough before it to grade signals and measure the IC


def _scan(sessions) -> None:
    """Scan the latest sessions in one run, grade those whose horizon passed, print the top signals and the status."""
    import polars as pl
    from dagster import DagsterInstance

    from turbomode_pipeline.assets.features import BARRIERS
    from turbomode_pipeline.automation.status import collect, render
    from turbomode_pipeline.definitions import defs

    scanned = sessions[-SCANNED_SESSIONS:]
    print(f"\nscanner_signals: {len(scanned)} sessions {scanned[0]}..{scanned[-1]}, champions loaded from MLflow")
    _run_job("scanner_job", str(scanned[0]), str(scanned[-1]), assets=["scanner_signals"])
    graded = scanned[: -BARRIERS.horizon]
    outcomes = _run_job("scanner_job", str(graded[0]), str(graded[-1]), assets=["signal_outcomes"])
    quality = outcomes.asset_materializations_for_node("signal_outcomes")[0].metadata
    print(f"signal quality over the last {len(graded)} graded sessions: "
          + ", ".join(f"{k} {quality[f'{k}_20d'].value:.3f}" for k in ("ic_mean", "icir", "rank_ic_mean", "rank_icir"))
          + f", target hit rate {quality['hit_rate_overall_20d'].value:.1%}")
    warehouse = defs.resources["warehouse"]
    top = warehouse.query(
        "SELECT symbol, sector, signal_type, round(confidence, 3) AS confidence, round(entry_price, 2) AS entry, "
        "round(target_price, 2) AS target, round(stop_loss, 2) AS stop, expires_at FROM signal_history "
        "WHERE session = ? ORDER BY confidence DESC, symbol LIMIT 10",
        [scanned[-1]],
    )
    with pl.Config(tbl_rows=10, tbl_width_chars=160, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(f"\ntop 10 signals of {scanned[-1]} by confidence:\n{top}")
    report = collect(DagsterInstance.get(), warehouse, defs.resources["model_registry"], [s.name for s in defs.schedules])
    print("\n" + render(report))


def _model_summary(registry) -> str:
    """Per sector: the stacked champion's validated holdout AUC, rank IC and its t, or why there is none."""
    import polars as pl

    from turbomode_pipeline.core.model_zoo import STACKED
    from turbomode_pipeline.partitions import SECTORS
    from turbomode_pipeline.resources.model_registry import registered_name

    rows = []
    for sector in SECTORS:
        run = registry.champion_run(registered_name(sector, STACKED))
        metrics = run["metrics"] if run else {}
        rows.append({
            "sector": sector, "champion": run["version"] if run else "none (refused: see promotion_reason)",
            **{k: round(metrics[f"holdout_{k}"], 3) if run else None for k in ("roc_auc", "rank_ic", "rank_ic_t", "ece")},
        })
    with pl.Config(tbl_rows=20, tbl_cols=10, tbl_width_chars=160, tbl_hide_dataframe_shape=True, fmt_str_lengths=60):
        return f"\nstacked champions' validated holdout (AUC, daily rank IC within the sector, its t, ECE):\n{pl.DataFrame(rows)}"


def _signal_summary(warehouse, scanned) -> str:
    """BUY/SELL counts of the scan, and the reliability of its confidence by decile on the graded sessions."""
    import polars as pl

    from turbomode_pipeline.assets.features import BARRIERS
    from turbomode_pipeline.core.scanner import balance, realised_relative
    from turbomode_pipeline.core.training import reliability_table

    signals = warehouse.query("SELECT session, signal_type FROM signal_history WHERE session BETWEEN ? AND ?", [scanned[0], scanned[-1]])
    counts = balance(signals)
    newest = counts.filter(pl.col("session") == scanned[-1])
    buy, sell = int(counts["buy"].sum()), int(counts["sell"].sum())
    lines = [
        f"\nsignals over {len(scanned)} scanned sessions: {buy} BUY / {sell} SELL"
        f" (BUY share {buy / max(buy + sell, 1):.0%}); newest session {scanned[-1]}: "
        + (f"{newest['buy'][0]} BUY / {newest['sell'][0]} SELL" if newest.height else "no signals"),
    ]
    scores = warehouse.query("SELECT session, symbol, sector, probability_up FROM scanner_scores WHERE session BETWEEN ? AND ?", [scanned[0], scanned[-1]])
    bars = warehouse.query("SELECT session, symbol, close FROM daily_bars WHERE session >= ?", [scanned[0]])
    graded = realised_relative(scores, bars, BARRIERS.horizon)
    if graded.height:
        table = reliability_table(graded["beat"].to_numpy(), graded["probability_up"].to_numpy())
        with pl.Config(tbl_rows=12, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            lines.append(
                f"reliability of the confidence on the {graded['session'].n_unique()} graded sessions (every scored symbol; "
                f"predicted P(beats its sector) vs observed share that did):\n"
                f"{table.with_columns(pl.col('predicted', 'observed').round(3))}"
            )
    return "\n".join(lines)


def strategies(args: argparse.Namespace) -> int:
    """Manage the live paper-trading strategies in the trading ledger (seeded from the YAML file)."""
    import json

    import polars as pl

    from turbomode_pipeline.resources.ledger import Ledger
    from turbomode_pipeline.settings import get_settings

    settings = get_settings()
    ledger = Ledger(path=str(settings.ledger_path))
    ledger.seed_strategies(str(settings.strategies_file))
    try:
        if args.action == "add":
            params = json.loads(args.params) if args.params else {}
            ledger.add_strategy(args.id, args.type, args.symbol, args.allocation, name=args.name, params=params,
                                check_interval_s=args.interval)
        elif args.action in ("enable", "disable"):
            ledger.set_enabled(args.id, args.action == "enable")
    except ValueError as error:
        print(f"turbomode strategies {args.action}: {error}", file=sys.stderr)
        return 2
    columns = ["id", "type", "symbol", "allocation", "enabled", "check_interval_s", "last_check", "total_signals", "status"]
    with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(ledger.strategies().select(columns))
    return 0


def status(args: argparse.Namespace) -> int:
    """Print the pipeline's state; 1 when a nightly asset misses a recent session or a model has no champion."""
    from dagster import DagsterInstance

    from turbomode_pipeline.automation.status import collect, render
    from turbomode_pipeline.definitions import defs

    report = collect(
        DagsterInstance.get(), defs.resources["warehouse"], defs.resources["model_registry"],
        [schedule.name for schedule in defs.schedules],
    )
    print(render(report))
    return 1 if report.stale else 0


def _drift_summary(warehouse) -> str:
    import polars as pl

    report = warehouse.query(
        "SELECT sector, status, round(median_excess_psi, 3) AS median_excess_psi, top_feature, buy, sell, one_sided, "
        "report_path "
        "FROM drift_report WHERE week_ending = (SELECT max(week_ending) FROM drift_report) ORDER BY sector"
    )
    with pl.Config(tbl_rows=20, tbl_width_chars=160, tbl_hide_dataframe_shape=True):
        table = str(report.drop("report_path"))
    return f"\ndrift report: {report['report_path'][0]}\nper-sector status:\n{table}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="turbomode", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run the main jobs over the latest sessions and print a summary")
    demo_parser.add_argument("--sessions", type=int, default=750, help="how many recent sessions (default 750)")
    demo_parser.set_defaults(handler=demo)
    strategies_parser = commands.add_parser("strategies", help="list, add, enable or disable live paper-trading strategies")
    strategy_actions = strategies_parser.add_subparsers(dest="action", required=True)
    strategy_actions.add_parser("list", help="every strategy with its state")
    add_parser = strategy_actions.add_parser("add", help="add a strategy")
    add_parser.add_argument("id")
    add_parser.add_argument("--type", required=True, help="keltner_channel, donchian_channel, ichimoku_cloud or turbomode_signals")
    add_parser.add_argument("--symbol", required=True)
    add_parser.add_argument("--allocation", type=float, required=True, help="dollars")
    add_parser.add_argument("--name")
    add_parser.add_argument("--params", help='JSON, e.g. \'{"timeframe_minutes": 5}\'')
    add_parser.add_argument("--interval", type=int, default=60, help="check interval in seconds (default 60)")
    for action in ("enable", "disable"):
        strategy_actions.add_parser(action, help=f"{action} a strategy").add_argument("id")
    strategies_parser.set_defaults(handler=strategies)
    status_parser = commands.add_parser("status", help="each asset's newest partition and gaps, signals, schedules, "
                                        "champions; exit 1 when stale")
    status_parser.set_defaults(handler=status)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
