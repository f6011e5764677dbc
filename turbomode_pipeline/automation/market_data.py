"""When `daily_bars` runs: the nightly schedule, the gap-healing sensor and the freshness check.

Dagster's scheduler launches only the latest missed tick of a partitioned schedule after
downtime (dagster issue #10335), so healing older gaps is `missed_sessions_sensor`'s job.
"""

import json
from datetime import date, datetime

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

from turbomode_pipeline import clock
from turbomode_pipeline.assets.features import daily_features
from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.calendar import is_session, session_close
from turbomode_pipeline.due import (
    desk_timezone, due_at, due_sessions, ingestion_cron, judged_at, pending_session, research_note,
)
from turbomode_pipeline.partitions import daily_sessions
from turbomode_pipeline.resources.warehouse import Warehouse, WarehouseLockedError
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline.automation.run_health import max_runtime

HEAL_ATTEMPTS = 3  # runs the sensor requests for the same gaps before it asks for a person
FRESHNESS_CHECK = "daily_bars_fresh"
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"

market_data_job = define_asset_job(
    "market_data_job",
    selection=AssetSelection.assets(daily_bars, daily_features),
    partitions_def=daily_sessions(),
    description="The nightly chain for the run's sessions: fetch, validate and store bars, then features.",
    tags=max_runtime(minutes=60),
)


def session_gaps(
    instance: DagsterInstance, sessions: list[date], asset: str = "daily_bars", in_progress_is_gap: bool = False
) -> list[date]:
    """Sessions whose partition of `asset` is missing or failed (in-progress ones too, when asked)."""
    status = partition_statuses(instance, sessions, asset)
    healthy = {AssetPartitionStatus.MATERIALIZED} | (set() if in_progress_is_gap else {AssetPartitionStatus.IN_PROGRESS})
    return [day for day in sessions if status[day] not in healthy]


def partition_statuses(
    instance: DagsterInstance, sessions: list[date], asset: str = "daily_bars"
) -> dict[date, AssetPartitionStatus | None]:
    """Each session's partition status of `asset` (None: never planned)."""
    status = instance.get_status_by_partition(AssetKey(asset), [day.isoformat() for day in sessions], daily_sessions())
    return {day: (status or {}).get(day.isoformat()) for day in sessions}


def held_sessions(
    instance: DagsterInstance, warehouse: Warehouse, sessions: list[date], asset: str = "daily_bars",
    table: str = "daily_bars",
) -> set[date]:
    """Sessions that a run of `asset` once materialised and whose rows `table` still holds. A session only
    a run in flight (or one that died) has planned does not count; one whose re-run failed does, since an
    atomic write kept its last good rows."""
    materialised = instance.get_materialized_partitions(AssetKey(asset))
    candidates = sorted(day for day in sessions if day.isoformat() in materialised)
    return warehouse.held_sessions(table, candidates)


def heal_request(gaps: list[date], attempt: int = 1) -> RunRequest:
    """One run over the range from the first to the last gap (re-writing a good session in between is idempotent)."""
    first, last = gaps[0].isoformat(), gaps[-1].isoformat()
    sessions = ",".join(day.isoformat() for day in gaps)
    return RunRequest(
        run_key=f"heal:{sessions}" + (f"#{attempt}" if attempt > 1 else ""),
        tags={PARTITION_RANGE_START: first, PARTITION_RANGE_END: last, "turbomode/healing": sessions},
    )


def freshness(instance: DagsterInstance, warehouse: Warehouse, now: datetime) -> tuple[bool, str, date | None]:
    """Whether the warehouse holds every due session of the catch-up window, the latest included."""
    due = due_sessions(judged_at(now), get_settings().catchup_sessions)
    return freshness_verdict(due, held_sessions(instance, warehouse, due), research_note(now),
                             pending_session(judged_at(now)))


def freshness_verdict(due: list[date], held: set[date], note: str | None = None,
                      pending: date | None = None) -> tuple[bool, str, date | None]:
    passed, message, latest = _verdict(due, held)
    if pending is not None:
        message += f"; {pending} is not due until {due_at(pending):%H:%M %Z}"
    return passed, f"{note}: {message}" if note else message, latest


def _verdict(due: list[date], held: set[date]) -> tuple[bool, str, date | None]:
    if not due:
        return True, "no session is due yet", None
    lacking = [day for day in due if day not in held]
    latest = due[-1]
    if lacking:
        return False, (
            f"the warehouse lacks daily_bars for {len(lacking)} of the last {len(due)} due sessions: "
            f"{', '.join(map(str, lacking))} (the latest, {latest}, was due at {due_at(latest):%Y-%m-%d %H:%M %Z})"
        ), latest
    return True, f"daily_bars holds the last {len(due)} due sessions, through {latest}", latest


def freshness_evaluation(asset: AssetKey, check: str, passed: bool, message: str, latest: date) -> AssetCheckEvaluation:
    """A freshness check's result as a sensor records it, naming the latest due session."""
    return AssetCheckEvaluation(
        asset_key=asset, check_name=check, passed=passed, description=message,
        metadata={"latest_due_session": str(latest)},
    )


@asset_check(asset=daily_bars, name=FRESHNESS_CHECK, description="the warehouse holds every recent due session")
def daily_bars_fresh(context: AssetCheckExecutionContext, warehouse: Warehouse) -> AssetCheckResult:
    passed, message, latest = freshness(context.instance, warehouse, clock.now())
    return AssetCheckResult(passed=passed, description=message, metadata={"latest_due_session": str(latest)})


@schedule(
    name="market_data_ingestion",
    cron_schedule=ingestion_cron(),
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
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Fills recent daily_bars sessions the warehouse lacks (missing, failed, or lost with a dead run) with a single run, and records daily_bars_fresh.",
)
def missed_sessions_sensor(context: SensorEvaluationContext, warehouse: Warehouse):
    now = clock.now()
    cursor = json.loads(context.cursor) if context.cursor else {}
    due = due_sessions(judged_at(now), get_settings().catchup_sessions)
    try:
        held = held_sessions(context.instance, warehouse, due)
    except WarehouseLockedError as error:
        return SensorResult(skip_reason=f"the warehouse is busy, gaps are read again next tick: {error}",
                            cursor=context.cursor)
    pending = pending_session(judged_at(now))
    passed, message, latest = freshness_verdict(due, held, research_note(now), pending)
    events = []
    if cursor.get("fresh") != [passed, str(latest), str(pending)]:
        events.append(freshness_evaluation(daily_bars.key, FRESHNESS_CHECK, passed, message, latest))
    cursor["fresh"] = [passed, str(latest), str(pending)]
    statuses = partition_statuses(context.instance, due)
    in_flight = {day for day in due if statuses[day] == AssetPartitionStatus.IN_PROGRESS}
    failed = {day for day in due if statuses[day] == AssetPartitionStatus.FAILED}
    gaps = [day for day in due if (day not in held or day in failed) and day not in in_flight]
    if not gaps:
        reason = "no missing sessions" + (f" ({len(in_flight)} in flight)" if in_flight else "")
        return SensorResult(skip_reason=reason, cursor=json.dumps(cursor), asset_events=events)
    key = ",".join(map(str, gaps))
    attempt = cursor.get("attempts", {}).get(key, 0) + 1
    if attempt > HEAL_ATTEMPTS:
        reason = (f"{HEAL_ATTEMPTS} runs did not heal {', '.join(map(str, gaps))}; read their failures in the UI, "
                  f"then backfill by hand: dagster asset materialize -m turbomode_pipeline.definitions "
                  f"--select daily_bars,daily_features --partition-range {gaps[0]}...{gaps[-1]}")
        return SensorResult(skip_reason=reason, cursor=json.dumps(cursor), asset_events=events)
    cursor["attempts"] = {key: attempt}
    context.log.info(f"requesting one run (attempt {attempt}) for {len(gaps)} missing session(s): {key}")
    return SensorResult(run_requests=[heal_request(gaps, attempt)], cursor=json.dumps(cursor), asset_events=events)
