"""When the scanner runs: `overnight_scanner` at 23:30, late features through
`scanner_signals`' automation condition (see assets/scanner.py, evaluated by
`scanner_automation_sensor`), and the freshness check of its signals.
"""

import json
from datetime import date, datetime, time, timedelta

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset_check,
    define_asset_job,
    schedule,
    sensor,
)

from turbomode_pipeline import clock
from turbomode_pipeline.assets.scanner import scanner_signals, signal_outcomes
from turbomode_pipeline.assets.signal_backtest import signal_backtest
from turbomode_pipeline.automation.market_data import freshness_evaluation, held_sessions, session_gaps
from turbomode_pipeline.due import desk_timezone, judged_at, research_note
from turbomode_pipeline.calendar import is_session, session_close, sessions_before, sessions_between
from turbomode_pipeline.partitions import daily_sessions
from turbomode_pipeline.resources.warehouse import Warehouse, WarehouseLockedError
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline.automation.run_health import max_runtime

SCAN_DEADLINE = time(0, 30)  # the night after the session, in the schedule's timezone
FRESHNESS_CHECK = "scanner_signals_fresh"

scanner_job = define_asset_job(
    "scanner_job",
    selection=AssetSelection.assets(scanner_signals, signal_outcomes, signal_backtest),
    partitions_def=daily_sessions(),
    description="Scan a session for signals; grade the signals whose horizon ended and backtest the graded history.",
    tags=max_runtime(minutes=30),
)


scanner_automation_sensor = AutomationConditionSensorDefinition(
    "scanner_automation_sensor",
    target=AssetSelection.assets(scanner_signals),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Scans a recent session as soon as its daily_features land after the 23:30 schedule.",
)


def scan_due_at(session: date) -> datetime:
    return datetime.combine(session + timedelta(days=1), SCAN_DEADLINE, tzinfo=desk_timezone())


def latest_due_scan(now: datetime) -> date | None:
    """The newest session whose signals should exist at `now`."""
    local = now.astimezone(desk_timezone()).date()
    due = [day for day in sessions_between(local - timedelta(days=14), local) if scan_due_at(day) <= now]
    return due[-1] if due else None


def pending_scan(now: datetime) -> date | None:
    """The session whose partition exists (it closed) but whose scan is not due yet: the UI draws it as missing."""
    local = now.astimezone(desk_timezone()).date()
    waiting = [day for day in sessions_between(local - timedelta(days=7), local)
               if session_close(day) <= now < scan_due_at(day)]
    return waiting[-1] if waiting else None


def unscanned(instance: DagsterInstance, sessions: list[date], asset: str = "scanner_signals") -> list[date]:
    """Sessions whose partition of `asset` is not (yet) materialised: missing, failed or still running."""
    return session_gaps(instance, sessions, asset, in_progress_is_gap=True)


def scanner_freshness(instance: DagsterInstance, warehouse: Warehouse, now: datetime) -> tuple[bool, str, date | None]:
    """Whether the newest due session was scanned: materialised, and its scores are in the warehouse."""
    note = research_note(now)
    prefix = f"{note}: " if note else ""
    day, pending = latest_due_scan(judged_at(now)), pending_scan(judged_at(now))
    suffix = f"; {pending} is not due until {scan_due_at(pending):%Y-%m-%d %H:%M %Z}" if pending else ""
    if day is None:
        return True, f"{prefix}no scan is due yet{suffix}", None
    if not held_sessions(instance, warehouse, [day], "scanner_signals", "scanner_scores"):
        return False, (
            f"{prefix}no signals for session {day}: scanner_signals was due by {scan_due_at(day):%Y-%m-%d %H:%M %Z} "
            f"and has not run successfully for it{suffix}"
        ), day
    return True, f"{prefix}scanner_signals holds the newest due session {day}{suffix}", day


@asset_check(asset=scanner_signals, name=FRESHNESS_CHECK, description="the newest session was scanned by 00:30")
def scanner_signals_fresh(context: AssetCheckExecutionContext, warehouse: Warehouse) -> AssetCheckResult:
    passed, message, day = scanner_freshness(context.instance, warehouse, clock.now())
    return AssetCheckResult(passed=passed, description=message, metadata={"latest_due_session": str(day)})


@sensor(
    name="scanner_freshness_sensor",
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.RUNNING,
    description="Records scanner_signals_fresh whenever its result changes, so a late scan shows in the UI.",
)
def scanner_freshness_sensor(context: SensorEvaluationContext, warehouse: Warehouse):
    now = clock.now()
    try:
        passed, message, day = scanner_freshness(context.instance, warehouse, now)
    except WarehouseLockedError as error:
        return SensorResult(skip_reason=f"the warehouse is busy, read again next tick: {error}", cursor=context.cursor)
    state = json.dumps([passed, str(day), str(pending_scan(judged_at(now)))])
    if context.cursor == state:
        return SensorResult(skip_reason=f"unchanged: {message}", cursor=state)
    evaluation = freshness_evaluation(scanner_signals.key, FRESHNESS_CHECK, passed, message, day)
    return SensorResult(asset_events=[evaluation], cursor=state)


@schedule(
    name="overnight_scanner",
    cron_schedule="30 23 * * *",
    execution_timezone=get_settings().timezone,
    job=scanner_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="23:30: scan the day's session; grade (and backtest) the signals of the session whose horizon ended today.",
)
def overnight_scanner(context: ScheduleEvaluationContext):
    day = context.scheduled_execution_time.astimezone(desk_timezone()).date()
    if not is_session(day):
        return SkipReason(f"{day} ({day:%A}) is not an NYSE session: nothing to scan")
    graded = sessions_before(day, get_settings().label_horizon)[0]
    return [
        RunRequest(run_key=f"scanner_signals:{day}", partition_key=day.isoformat(), asset_selection=[scanner_signals.key]),
        RunRequest(
            run_key=f"signal_outcomes:{graded}", partition_key=graded.isoformat(),
            asset_selection=[signal_outcomes.key, signal_backtest.key],
        ),
    ]
