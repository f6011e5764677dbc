"""`turbomode`: the operator's command line (also `python -m turbomode_pipeline`)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta

from turbomode_pipeline import signals_view  # `turbomode signals`
from turbomode_pipeline import walk_forward_command

# The console log level of the runs the CLI starts: CRITICAL (quiet) unless --verbose. A failure is
# told once, by the CLI, with its traceback, instead of by both the step's and the run's events.
LOG_LEVEL = {"level": "CRITICAL"}
FEATURE_WARMUP = 252  # the 52-week high/low: a sample's features exist from its 252nd session
DEMO_SESSIONS = 1300  # the fewest that give the demo a 500-session holdout: every sector's champion gate passes
# The demo's holdout: 500 sessions where the history holds twice that many sessions of samples, else 120, which
# leaves the walk-forward blocks before it enough samples on a small universe. The champion gate's rank-IC test
# needs them: at 1,300 sessions (500) no sector was refused, t 2.8-5.2, in 2 min 30 s on an idle machine; at 800
# (250) 4 of 11 were (t 1.5-1.6), at 750 (120) 5.
DEMO_HOLDOUT = (120, 500)


def _samples_before_cutoff(session_count: int, horizon: int) -> int:
    """Sessions of samples before the demo's models' cutoff: after the warm-up, before the label horizon and the
    scanned sessions with up to a week before them (the models are trained as of the week before the scan)."""
    return session_count - (FEATURE_WARMUP - 1) - horizon - SCANNED_SESSIONS - 5


def demo_holdout(session_count: int, horizon: int) -> int:
    long = DEMO_HOLDOUT[1]
    return long if _samples_before_cutoff(session_count, horizon) >= 2 * long else DEMO_HOLDOUT[0]


def min_training_sessions(horizon: int) -> int:
    """The fewest sessions the demo trains on: two of the shortest holdouts of samples before the cutoff."""
    return session_count_for(2 * DEMO_HOLDOUT[0], horizon)  # 536 with the defaults


def session_count_for(samples: int, horizon: int) -> int:
    return samples + (FEATURE_WARMUP - 1) + horizon + SCANNED_SESSIONS + 5


class StepFailed(Exception):
    """A demo step's run failed; the message says where, why, and how to retry it; `traceback` is the step's."""

    def __init__(self, message: str, traceback: str = ""):
        super().__init__(message)
        self.traceback = traceback


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
        run_config={"loggers": {"console": {"config": {"log_level": LOG_LEVEL["level"]}}}, **(run_config or {})},
        raise_on_error=False,
    )
    elapsed = time.perf_counter() - started
    if not result.success:
        raise StepFailed(_failure_message(result, name, elapsed, selected, first, last, run_config), _traceback(result))
    print(f"{name}: run {result.run_id} over {first}..{last} succeeded in {elapsed:.1f} s")
    return result


def _traceback(result) -> str:
    """The first failed step's error with its causes, as Python prints a traceback; empty when no step failed."""
    failures = [event for event in result.all_events if event.is_step_failure]
    return failures[0].step_failure_data.error.to_string() if failures else ""


def _dagster_home() -> str | None:
    from turbomode_pipeline.settings import dagster_home

    return dagster_home()


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
            f"retry that step: DAGSTER_HOME={_dagster_home() or '<your DAGSTER_HOME>'} "
            f".venv/bin/{retry}\n"
            "or read the run in the UI: make ui")


def demo(args: argparse.Namespace) -> int:
    """The main jobs on the configured instance, each as one run over the latest sessions, and a summary.

    Whatever happens, it ends with where things are and how to look at them; a failed step is
    named with its reason and the command that retries it.
    """
    from turbomode_pipeline.settings import get_settings

    if args.sessions < 1:
        return _one_line("demo", f"--sessions must be at least 1, got {args.sessions}")
    settings = get_settings()
    code = 0
    try:
        if _demo_chain(args.sessions):
            from turbomode_pipeline.definitions import defs

            print(_drift_summary(defs.resources["warehouse"]))
            print(_backtest_summary(defs.resources["warehouse"]))
    except StepFailed as failure:
        print(f"{failure.traceback}\nTurboMode demo stopped: {failure}", file=sys.stderr)
        code = 1
    finally:
        print(f"\nwarehouse:           {settings.warehouse_path}")
        print(f"query the warehouse: .venv/bin/duckdb -readonly {settings.warehouse_path}")
        print("open the UI:         make ui   (then http://127.0.0.1:3000)")
        print("open MLflow:         make mlflow   (then http://127.0.0.1:5000: Model training, experiment turbomode)")
        print(f"open the reports:    {settings.reports_dir}/*.html   (tonight's signals: {_newest_sheet(settings.reports_dir)}"
              "; in a terminal: .venv/bin/turbomode signals)")
    return code


def _newest_sheet(reports_dir) -> str:
    """The newest scan's signals sheet (scanner_signals writes one per session), or where they will be."""
    sheets = sorted(reports_dir.glob("signals_*.html"))
    return str(sheets[-1]) if sheets else f"{reports_dir}/signals_<session>.html, once a session is scanned"


def _demo_chain(session_count: int) -> bool:
    """Bars, features, samples, then (with enough history) models, the scan and the drift report; True when trained."""
    from dagster import DagsterInstance

    from turbomode_pipeline import clock
    from turbomode_pipeline.automation.features import backfill_ranges
    from turbomode_pipeline.due import due_sessions, judged_at, research_note
    from turbomode_pipeline.core.features import FEATURES
    from turbomode_pipeline.core.point_in_time import serving_week
    from turbomode_pipeline.partitions import week_cutoff
    from turbomode_pipeline.definitions import defs
    from turbomode_pipeline.partitions import SECTORS
    from turbomode_pipeline.settings import get_settings

    settings = get_settings()
    sessions = due_sessions(judged_at(clock.now()), session_count)  # in research mode, the history's last sessions
    first, last = sessions[0].isoformat(), sessions[-1].isoformat()
    print(f"TurboMode demo: {settings.market_data} market data, {len(sessions)} sessions {first}..{last}")
    if research_note(clock.now()):
        print(research_note(clock.now()))
    _run_job("market_data_job", first, last)
    for start, end in backfill_ranges(DagsterInstance.get()):
        _run_job("backtest_data_job", start.isoformat(), end.isoformat())

    minimum = min_training_sessions(settings.label_horizon)
    trained = len(sessions) >= minimum
    if trained:
        # the models of the week holding the first scanned session: every scanned session lies after their labels
        week = serving_week(sessions[-SCANNED_SESSIONS])
        holdout = demo_holdout(len(sessions), settings.label_horizon)
        fast = {"ops": {"sector_models": {"config": {"fast": True, "holdout_sessions": holdout}}}}
        print(f"sector_models: the universe's {len(SECTORS)} sectors x 6 models as of {week_cutoff(week)} (the week "
              f"before the scanned sessions), fast demo settings (smaller models, 3 folds, {holdout}-session holdout)")
        _run_job("model_training_job", week.isoformat(), week.isoformat(), run_config=fast)
    else:
        print(f"sector_models: skipped: {len(sessions)} sessions are too few to train on; the features' "
              f"{FEATURE_WARMUP}-session warm-up, the {settings.label_horizon}-session label horizon and a "
              f"{DEMO_HOLDOUT[0]}-session holdout with as many before it need --sessions {minimum} or more")

    warehouse = defs.resources["warehouse"]
    bars = warehouse.bar_totals(sessions[0], sessions[-1])
    features = warehouse.feature_rows()
    balance = warehouse.barrier_balance()
    up_share = warehouse.label_up_share()
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

    from turbomode_pipeline.status import collect, render
    from turbomode_pipeline.definitions import defs
    from turbomode_pipeline.settings import get_settings

    scanned = sessions[-SCANNED_SESSIONS:]
    print(f"\nscanner_signals: {len(scanned)} sessions {scanned[0]}..{scanned[-1]}, each scored by its sector's "
          "champion as of the session (models trained before it)")
    _run_job("scanner_job", str(scanned[0]), str(scanned[-1]), assets=["scanner_signals"])
    graded = scanned[: -get_settings().label_horizon]
    outcomes = _run_job("scanner_job", str(graded[0]), str(graded[-1]), assets=["signal_outcomes", "signal_backtest"])
    quality = outcomes.asset_materializations_for_node("signal_outcomes")[-1].metadata  # the windows: on the last
    cutoffs = sorted(set(defs.resources["warehouse"].scores(graded)["model_labels_through"]))
    print(f"signal quality over the last {len(graded)} graded sessions, out of sample (models' labels through "
          f"{', '.join(map(str, cutoffs))}): "
          + ", ".join(f"{k} {quality[f'{k}_20d'].value:.3f}" for k in ("ic_mean", "icir", "rank_ic_mean", "rank_icir"))
          + f", target hit rate {quality['hit_rate_overall_20d'].value:.1%}")
    warehouse = defs.resources["warehouse"]
    top = warehouse.top_signals(scanned[-1])
    with pl.Config(tbl_rows=10, tbl_width_chars=160, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(f"\ntop 10 signals of {scanned[-1]} by confidence:\n{top}")
    report = collect(DagsterInstance.get(), warehouse, defs.resources["model_registry"], [s.name for s in defs.schedules])
    print("\n" + render(report, champions=False))


def _model_summary(registry) -> str:
    """Per sector: the stacked champion's validated holdout AUC, rank IC and its t, or why there is none."""
    import polars as pl

    from turbomode_pipeline.core.model_types import STACKED
    from turbomode_pipeline.partitions import SECTORS
    from turbomode_pipeline.resources.model_registry import registered_name

    rows = []
    registered = set(registry.aliases()["registered_model"])
    for sector in SECTORS:
        name = registered_name(sector, STACKED)
        run = registry.champion_run(name)
        metrics = run["metrics"] if run else {}
        why = "refused: see promotion_reason" if name in registered else "skipped: too few samples, see the run's log"
        rows.append({
            "sector": sector, "champion": run["version"] if run else f"none ({why})",
            **{k: round(metrics[f"holdout_{k}"], 3) if run else None for k in ("roc_auc", "rank_ic", "rank_ic_t", "ece")},
        })
    with pl.Config(tbl_rows=20, tbl_cols=10, tbl_width_chars=160, tbl_hide_dataframe_shape=True, fmt_str_lengths=60,
                   tbl_hide_column_data_types=True):
        return f"\nstacked champions' validated holdout (AUC, daily rank IC within the sector, its t, ECE):\n{pl.DataFrame(rows)}"


def _signal_summary(warehouse, scanned) -> str:
    """BUY/SELL counts of the scan, and the reliability of its confidence by decile on the graded sessions."""
    import polars as pl

    from turbomode_pipeline.core.scanner import balance, realised_relative
    from turbomode_pipeline.core.training import reliability_table
    from turbomode_pipeline.settings import get_settings

    signals = warehouse.signals_between(scanned[0], scanned[-1], ["session", "signal_type"])
    counts = balance(signals)
    newest = counts.filter(pl.col("session") == scanned[-1])
    buy, sell = int(counts["buy"].sum()), int(counts["sell"].sum())
    lines = [
        f"\nsignals over {len(scanned)} scanned sessions: {buy} BUY / {sell} SELL"
        f" (BUY share {buy / max(buy + sell, 1):.0%}); newest session {scanned[-1]}: "
        + (f"{newest['buy'][0]} BUY / {newest['sell'][0]} SELL" if newest.height else "no signals"),
    ]
    scores = warehouse.scores_between(scanned[0], scanned[-1], ["session", "symbol", "sector", "probability_up"])
    bars = warehouse.bars(scanned[0], columns=["session", "symbol", "close"], ordered=False)
    graded = realised_relative(scores, bars, get_settings().label_horizon)
    if graded.height:
        table = reliability_table(graded["beat"].to_numpy(), graded["probability_up"].to_numpy())
        with pl.Config(tbl_rows=12, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            lines.append(
                f"reliability of the confidence on the {graded['session'].n_unique()} graded sessions, out of sample (every scored symbol; "
                f"predicted P(beats its sector) vs observed share that did):\n"
                f"{table.with_columns(pl.col('predicted', 'observed').round(3))}"
            )
    return "\n".join(lines)


def strategies(args: argparse.Namespace) -> int:
    """Manage the live paper-trading strategies in the trading ledger (seeded from the YAML file)."""
    import polars as pl

    from turbomode_pipeline.resources.ledger import Ledger
    from turbomode_pipeline.settings import get_settings

    settings = get_settings()
    ledger = Ledger(path=str(settings.ledger_path))
    ledger.seed_strategies(str(settings.strategies_file))
    try:
        if args.action == "add":
            _add_strategy(ledger, args, settings)
        elif args.action == "remove":
            ledger.remove_strategy(args.id)
        elif args.action in ("enable", "disable"):
            ledger.set_enabled(args.id, args.action == "enable")
    except ValueError as error:
        return _one_line(f"strategies {args.action}", str(error))
    columns = ["id", "type", "symbol", "allocation", "enabled", "check_interval_s", "last_check", "total_signals", "status"]
    with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(ledger.strategies().select(columns))
    return 0


def _add_strategy(ledger, args: argparse.Namespace, settings) -> None:
    """Add the strategy after checking its symbol against the universe and its --params; ValueError says why not."""
    import json

    from turbomode_pipeline.core.universe import load_universe

    try:
        params = json.loads(args.params) if args.params else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"--params is not valid JSON ({error}): {args.params}") from None
    if not isinstance(params, dict):
        raise ValueError(f'--params must be a JSON object like \'{{"timeframe_minutes": 5}}\', got {args.params}')
    ledger.add_strategy(args.id, args.type, args.symbol, args.allocation, name=args.name, params=params,
                        check_interval_s=args.interval, universe=load_universe(settings.universe_path)["symbol"])


def status(args: argparse.Namespace) -> int:
    """Print the pipeline's state; 1 when a nightly asset misses a recent session, a model has no champion,
    or an asset, schedule or job failed its last run."""
    from dagster import DagsterInstance

    from turbomode_pipeline.status import collect, exit_code, render
    from turbomode_pipeline.definitions import defs

    report = collect(
        DagsterInstance.get(), defs.resources["warehouse"], defs.resources["model_registry"],
        [schedule.name for schedule in defs.schedules],
        assets=[key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()],
        jobs=[job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")],
    )
    print(render(report))
    return exit_code(report)


def _backtest_summary(warehouse) -> str:
    """The signal backtest as of its newest session: the long-short book's numbers and the report."""
    row = warehouse.latest_backtest_summary("long_short")
    return (
        f"\nsignal backtest, out of sample, as of {row['as_of']} ({row['days']} sessions {row['first_session']}..{row['last_session']}, "
        f"{row['cost_bps']:g} bps per side):\n"
        f"long-short Sharpe {row['sharpe']:.2f} (t {row['t_stat']:.2f}), annualised return "
        f"{100 * row['ann_return']:.2f}%, max drawdown {100 * row['max_drawdown']:.2f}%\n"
        f"backtest report: {row['report_path']}"
    )


def _drift_summary(warehouse) -> str:
    import polars as pl

    report = warehouse.latest_drift_report()
    with pl.Config(tbl_rows=20, tbl_width_chars=160, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        table = str(report.drop("report_path"))
    return f"\ndrift report: {report['report_path'][0]}\nper-sector status:\n{table}"


def _one_line(command: str, message: str) -> int:
    print(f"turbomode {command}: {message}", file=sys.stderr)
    return 2


def _session_range(first: str, last: str):
    """The NYSE sessions first..last, or the one-line reason there are none (or some have not closed yet)."""
    from datetime import date

    from turbomode_pipeline import clock
    from turbomode_pipeline.calendar import last_closed_session, not_a_session, outside_calendar, session_close, sessions_between

    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError as error:
        return None, f"--from and --to must be dates like 2026-01-30: {error}"
    for flag, day in (("--from", start), ("--to", end)):
        if outside_calendar(day):
            return None, f"{flag} {outside_calendar(day)}"
    if start > end:
        return None, f"--from {start} is after --to {end}"
    sessions = sessions_between(start, end)
    if sessions and session_close(sessions[-1]) > clock.now():
        return None, (f"--to {end} is in the future; the newest session a backtest can use is the last one that has "
                      f"closed, {last_closed_session(clock.now())}")
    if sessions:
        return sessions, None
    return None, f"no NYSE session between {start} and {end}: " + not_a_session(start).split("; ")[1]


def _strategy_ids(text: str, flag: str, all_too: bool):
    """The ids joined by commas in `text`, or the one-line reason one of them is empty."""
    ids = [part.strip() for part in text.split(",")]
    if all(ids):
        return ids, None
    return None, f"{flag}{text!r} hold an empty id; give ids joined by commas{', or all' if all_too else ''}"


def _one_line_errors(parser: argparse.ArgumentParser, command: str) -> None:
    """The parser's own mistakes (a missing or malformed option) in one line instead of usage and error."""
    name = f"turbomode {command}".strip()

    def error(message: str):
        print(f"{name}: {message} ({name} --help)", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error


SHARPE_NOTE = ("sharpe after costs (sharpe_gross before), se its standard error (~1 per year of data: within 2 se of 0 is "
               "no evidence of an edge), t, deflated = P(true Sharpe > 0) for the best of the strategies compared")


def backtest(args: argparse.Namespace) -> int:
    """Run the live strategies over history (the strategy_backtest asset) and print the table."""
    import polars as pl
    from dagster import DagsterInstance, materialize

    from turbomode_pipeline.assets.strategy_backtest import NO_SIGNALS, selected_strategies, strategy_backtest
    from turbomode_pipeline.definitions import resources
    from turbomode_pipeline.resources.ledger import Ledger
    from turbomode_pipeline.settings import get_settings

    settings = get_settings()
    ids, problem = ([], None) if args.strategy == "all" else _strategy_ids(args.strategy, "strategy ids ", all_too=True)
    sessions, problem = (None, problem) if problem else _session_range(args.start, args.end)
    if problem:
        return _one_line("backtest", problem)
    ledger = Ledger(path=str(settings.ledger_path))
    ledger.seed_strategies(str(settings.strategies_file))
    try:
        chosen = selected_strategies(ledger, ids)
    except ValueError as error:
        return _one_line("backtest", str(error))
    doors = resources(settings)  # built from the settings read now, as the code location builds its own
    if (chosen["type"] == "turbomode_signals").all() and not doors["warehouse"].has_table("signal_history"):
        return _one_line("backtest", f"{', '.join(chosen['id'])}: {NO_SIGNALS}")
    started = time.perf_counter()
    result = materialize(
        [strategy_backtest], resources=doors, instance=DagsterInstance.get(), raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": LOG_LEVEL["level"]}}}, "ops": {"strategy_backtest": {"config": {
            "start": str(sessions[0]), "end": str(sessions[-1]), "strategy_ids": ids}}}},
    )
    if not result.success:
        failure = _failure_message(result, "strategy_backtest", time.perf_counter() - started, ["strategy_backtest"],
                                   sessions[0], sessions[-1], None)
        print(f"turbomode backtest: {failure.splitlines()[0]}", file=sys.stderr)  # the step, the run and the reason
        return 1
    metadata = result.asset_materializations_for_node("strategy_backtest")[0].metadata
    summary = doors["warehouse"].strategy_backtests(
        [f"{sid}:{sessions[0]}..{sessions[-1]}" for sid in metadata["strategies"].value]
    )
    print(f"strategy backtest {sessions[0]}..{sessions[-1]} ({len(sessions)} sessions, {settings.market_data} bars) "
          f"in {time.perf_counter() - started:.1f} s")
    with pl.Config(tbl_rows=100, tbl_cols=30, tbl_width_chars=320, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(summary)
    print(SHARPE_NOTE)
    for note in metadata["not_backtested"].value:
        print(note)
    print(f"report: {metadata['report_path'].value}")
    return 0


def replay(args: argparse.Namespace) -> int:
    """Run the paper-trading ticks of a past session, minute by minute, into a ledger of the replay's own."""
    from datetime import date

    from turbomode_pipeline import clock
    from turbomode_pipeline.calendar import not_a_session, outside_calendar, session_close
    from turbomode_pipeline.definitions import resources
    from turbomode_pipeline.live.replay import replay_session
    from turbomode_pipeline.resources.ledger import Ledger
    from turbomode_pipeline.settings import get_settings

    try:
        session = date.fromisoformat(args.session)
    except ValueError as error:
        return _one_line("replay", f"--session must be a date like 2026-01-30: {error}")
    if outside_calendar(session):
        return _one_line("replay", f"--session {outside_calendar(session)}")
    ids, problem = _strategy_ids(args.strategies, "--strategies ", all_too=False) if args.strategies is not None else (None, None)
    if problem:
        return _one_line("replay", problem)
    if not_a_session(session):
        return _one_line("replay", not_a_session(session))
    if session_close(session) > clock.now():
        return _one_line("replay", f"{session} has not closed yet (it closes {session_close(session):%Y-%m-%d %H:%M} UTC)")
    if args.every < 1:
        return _one_line("replay", f"--every must be at least 1 minute, got {args.every}")
    settings = get_settings()
    strategies = Ledger(path=str(settings.ledger_path))
    strategies.seed_strategies(str(settings.strategies_file))
    unknown = sorted(set(ids or []) - set(strategies.strategies()["id"]))
    if unknown:
        return _one_line("replay", f"no strategy with id {', '.join(unknown)} in live_strategies")
    doors = resources(settings)
    live = {name: doors[name] for name in ("market_data", "universe", "live_warehouse", "trading_clock", "live_trading")}
    print(f"replaying {session} every {args.every} min ({settings.market_data} bars, local paper broker)")
    result = replay_session(session, args.every, live, strategies, settings.data_dir / "replay", settings.paper_starting_cash,
                            settings.slippage_bps, settings.commission_per_share, ids)
    print(f"{result.ticks} ticks in {result.seconds:.1f} s ({result.seconds / max(result.ticks, 1):.2f} s a tick)"
          + (f"; {len(result.failed)} failed, first at {result.failed[0]}" if result.failed else ""))
    report = result.report
    print(f"orders {report['orders']}, rejections {report['rejections']}, P&L {report['pnl_total']:,.2f}"
          + (f", equity at the close {report['equity_close']:,.2f}" if "equity_close" in report else ""))
    print(f"P&L by strategy:\n{report['pnl_by_strategy']}")
    for strategy_id, state in Ledger(path=str(result.ledger_path)).strategies().select("id", "status").rows():
        if (state or "").startswith("error"):  # the ticks went on without it
            print(f"{strategy_id}: {state}")
    print(f"ledger: {result.ledger_path}")
    return 1 if result.failed else 0


def _quiet(verbose: bool) -> None:
    """MLflow's and Dagster's informational logging off unless --verbose (before either is imported)."""
    LOG_LEVEL["level"] = "INFO" if verbose else "CRITICAL"
    if not verbose:
        import warnings

        from turbomode_pipeline.settings import quiet_mlflow

        quiet_mlflow()
        # the libraries' notices to developers (pandas, SQLAlchemy and Dagster deprecations), not the operator's
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="turbomode", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="MLflow's and Dagster's informational logging")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run the main jobs over the latest sessions and print a summary")
    demo_parser.add_argument("--sessions", type=int, default=DEMO_SESSIONS,
                             help=f"how many recent sessions (default {DEMO_SESSIONS}: a 500-session holdout)")
    demo_parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="MLflow's and Dagster's informational logging")
    demo_parser.set_defaults(handler=demo)
    _one_line_errors(demo_parser, "demo")
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
    strategy_actions.add_parser("remove", help="delete a strategy that holds no position").add_argument("id")
    for action, action_parser in strategy_actions.choices.items():
        _one_line_errors(action_parser, f"strategies {action}")
    strategies_parser.set_defaults(handler=strategies)
    _one_line_errors(strategies_parser, "strategies")
    status_parser = commands.add_parser("status", help="each asset's newest partition and gaps, signals, schedules, "
                                        "champions; exit 1 when stale")
    status_parser.set_defaults(handler=status)
    backtest_parser = commands.add_parser("backtest", help="run live strategies over history and print P&L, Sharpe, "
                                          "drawdown, exposure")
    backtest_parser.add_argument("strategy", help="a strategy id, several joined by commas, or all")
    backtest_parser.add_argument("--from", dest="start", required=True, help="first session, e.g. 2026-01-02")
    backtest_parser.add_argument("--to", dest="end", required=True, help="last session")
    backtest_parser.set_defaults(handler=backtest)
    _one_line_errors(backtest_parser, "backtest")
    replay_parser = commands.add_parser("replay", help="run a past session's paper-trading ticks minute by minute")
    replay_parser.add_argument("--session", required=True, help="the session, e.g. 2026-11-20")
    replay_parser.add_argument("--every", type=int, default=1, help="tick every N minutes (default 1)")
    replay_parser.add_argument("--strategies", help="strategy ids joined by commas (default: every enabled one)")
    replay_parser.set_defaults(handler=replay)
    _one_line_errors(replay_parser, "replay")
    _one_line_errors(walk_forward_command.register(commands), "walk-forward")
    _one_line_errors(signals_view.add_parser(commands), "signals")
    _one_line_errors(parser, "")
    _one_line_errors(status_parser, "status")
    args = parser.parse_args(argv)
    if args.command in ("demo", "status", "backtest", "walk-forward") and not _dagster_home():
        return _one_line(args.command, "DAGSTER_HOME is not set: export DAGSTER_HOME=$PWD/dagster_home (the instance's "
                         "folder; make demo sets it)")
    _quiet(args.verbose)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
