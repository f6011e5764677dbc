"""When `daily_bars` runs: the nightly schedule, the gap-healing sensor and the freshness check.

Dagster's scheduler launches only the latest missed tick of a partitioned schedule after
downtime (dagster issue #10335), so healing older gaps is `missed_sessions_sensor`'s job.
"""

import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetKey,
    AssetPartitionStatus,
    AssetSelection,
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

from turbomode_pipeline.assets.features import daily_features
from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.calendar import daily_sessions, is_session, session_close, sessions_between
from turbomode_pipeline.settings import get_settings

INGESTION_TIME = time(22, 45)
GRACE = timedelta(minutes=30)  # a session counts as late this long after its scheduled ingestion
FRESHNESS_CHECK = "daily_bars_fresh"
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"

market_data_job = define_asset_job(
    "market_data_job",
    selection=AssetSelection.assets(daily_bars, daily_features),
    partitions_def=daily_sessions(),
    description="The nightly chain for the run's sessions: fetch, validate and store bars, then features.",
)


def desk_timezone() -> ZoneInfo:
    """The schedules' timezone (TURBOMODE_TIMEZONE)."""
    return ZoneInfo(get_settings().timezone)


def due_at(session: date) -> datetime:
    """When a session's bars are overdue: its scheduled ingestion (never before the close) plus grace."""
    scheduled = datetime.combine(session, INGESTION_TIME, tzinfo=desk_timezone())
    return max(scheduled, session_close(session)) + GRACE


def due_sessions(now: datetime, count: int) -> list[date]:
    """The `count` most recent sessions whose bars should exist at `now`, oldest first."""
    start = max(get_settings().history_start, now.date() - timedelta(days=count * 2 + 14))
    candidates = sessions_between(start, now.astimezone(desk_timezone()).date())
    return [day for day in candidates if due_at(day) <= now][-count:]


def session_gaps(
    instance: DagsterInstance, sessions: list[date], asset: str = "daily_bars", in_progress_is_gap: bool = False
) -> list[date]:
    """Sessions whose partition of `asset` is missing or failed (in-progress ones too, when asked)."""
    keys = [day.isoformat() for day in sessions]
    status = instance.get_status_by_partition(AssetKey(asset), keys, daily_sessions()) or {}
    healthy = {AssetPartitionStatus.MATERIALIZED} | (set() if in_progress_is_gap else {AssetPartitionStatus.IN_PROGRESS})
    return [day for day in sessions if status.get(day.isoformat()) not in healthy]


def heal_request(gaps: list[date]) -> RunRequest:
    """One run over the range from the first to the last gap (re-writing a good session in between is idempotent)."""
    first, last = gaps[0].isoformat(), gaps[-1].isoformat()
    return RunRequest(
        run_key="heal:" + ",".join(day.isoformat() for day in gaps),
        tags={PARTITION_RANGE_START: first, PARTITION_RANGE_END: last, "turbomode/healing": ",".join(map(str, gaps))},
    )


def freshness(instance: DagsterInstance, now: datetime) -> tuple[bool, str, date | None]:
    latest = due_sessions(now, 1)
    if not latest:
        return True, "no session is due yet", None
    day = latest[0]
    if session_gaps(instance, [day]):
        return False, f"daily_bars for session {day} is missing; it was due at {due_at(day):%Y-%m-%d %H:%M %Z}", day
    return True, f"daily_bars holds the latest due session {day}", day


def freshness_evaluation(asset: AssetKey, check: str, passed: bool, message: str, latest: date) -> AssetCheckEvaluation:
    """A freshness check's result as a sensor records it, naming the latest due session."""
    return AssetCheckEvaluation(
        asset_key=asset, check_name=check, passed=passed, description=message,
        metadata={"latest_due_session": str(latest)},
    )


@asset_check(asset=daily_bars, name=FRESHNESS_CHECK, description="the latest due session has bars")
def daily_bars_fresh(context: AssetCheckExecutionContext) -> AssetCheckResult:
    passed, message, latest = freshness(context.instance, datetime.now(UTC))
    return AssetCheckResult(passed=passed, description=message, metadata={"latest_due_session": str(latest)})


@schedule(
    name="market_data_ingestion",
    cron_schedule="45 22 * * *",
    execution_timezone=get_settings().timezone,
    job=market_data_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Fetch the day's session after the close; skips weekends and NYSE holidays.",
)
def market_data_ingestion(context: ScheduleEvaluationContext):
    tick = context.scheduled_execution_time
    day = tick.astimezone(desk_timezone()).date()
    if not is_session(day):
        return SkipReason(f"{day} ({day:%A}) is not an NYSE session: no market data to fetch")
    if tick < session_close(day):
        return SkipReason(f"the {day} session closes at {session_close(day):%H:%M %Z}, after this tick")
    return RunRequest(run_key=f"daily_bars:{day}", partition_key=day.isoformat())


@sensor(
    name="missed_sessions_sensor",
    job=market_data_job,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.RUNNING,
    description="Fills missing or failed daily_bars sessions among the recent ones with a single run.",
)
def missed_sessions_sensor(context: SensorEvaluationContext):
    now = datetime.now(UTC)
    cursor = json.loads(context.cursor) if context.cursor else {}
    gaps = session_gaps(context.instance, due_sessions(now, get_settings().catchup_sessions))
    passed, message, latest = freshness(context.instance, now)
    events = []
    if cursor.get("fresh") != [passed, str(latest)]:
        events.append(freshness_evaluation(daily_bars.key, FRESHNESS_CHECK, passed, message, latest))
    cursor["fresh"] = [passed, str(latest)]
    requested = set(cursor.get("requested", []))
    if not gaps:
        return SensorResult(skip_reason="no missing sessions", cursor=json.dumps(cursor), asset_events=events)
    if {str(day) for day in gaps} <= requested:
        reason = f"a run was already requested for {', '.join(map(str, gaps))}; backfill by hand if it failed"
        return SensorResult(skip_reason=reason, cursor=json.dumps(cursor), asset_events=events)
    cursor["requested"] = [str(day) for day in gaps]
    context.log.info(f"requesting one run for {len(gaps)} missing session(s): {', '.join(map(str, gaps))}")
    return SensorResult(run_requests=[heal_request(gaps)], cursor=json.dumps(cursor), asset_events=events)
