"""`weekly_maintenance`: keep the warehouse, the Dagster instance and the model registry tidy.

Every step is idempotent: a second run right after the first changes nothing and reports zeros.
"""

from datetime import datetime, timedelta
from pathlib import Path

from dagster import (
    Config,
    DagsterRunStatus,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    job,
    op,
    schedule,
)

from turbomode_pipeline import clock
from turbomode_pipeline.resources.model_registry import ModelRegistry
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline.automation.run_health import max_runtime

LIVE_TRADING_JOB = "live_trading_job"
FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]


class MaintenanceConfig(Config):
    signal_retention_days: int = get_settings().signal_retention_days
    live_run_retention_days: float = get_settings().live_run_retention_days
    model_archive_weeks: float = get_settings().model_archive_weeks
    planned_check_retention_days: float = 7  # finished runs keep their never-evaluated planned-check rows this long


def _signals(warehouse: Warehouse, now: datetime, retention_days: int) -> dict[str, int]:
    if not warehouse.has_table("signal_history"):
        return {"signals_expired": 0, "signals_dropped": 0}
    expired = warehouse.expire_signals(now)
    dropped = warehouse.drop_signals_before((now - timedelta(days=retention_days)).date())
    return {"signals_expired": expired, "signals_dropped": dropped}


def _live_runs(context: OpExecutionContext, cutoff: datetime) -> int:
    records = context.instance.get_run_records(
        RunsFilter(job_name=LIVE_TRADING_JOB, created_before=cutoff, statuses=FINISHED)
    )
    for record in records:  # at most a week of minutes, weekly
        context.instance.delete_run(record.dagster_run.run_id)
    return len(records)


def _planned_checks(context: OpExecutionContext, cutoff: datetime) -> int:
    """The never-evaluated planned-check rows of finished runs created before `cutoff` (range runs leave one
    per partition and check; a one-partition run leaves one per check, its evaluation is recorded apart)."""
    records = context.instance.get_run_records(RunsFilter(created_before=cutoff, statuses=FINISHED))
    from turbomode_pipeline.instance_storage import prune_planned_checks  # Dagster's storage internals: ~0.5 s

    return prune_planned_checks(context.instance, [record.dagster_run.run_id for record in records])


def _compact(warehouse: Warehouse) -> dict[str, int]:
    """Every DuckDB file beside the warehouse (the live ledger too), each through the warehouse's door."""
    sizes = {}
    for path in sorted(Path(warehouse.path).parent.glob("*.duckdb")):
        sizes[path.name] = Warehouse(
            path=str(path), lock_timeout_s=warehouse.lock_timeout_s, compact_headroom=warehouse.compact_headroom
        ).compact()["bytes_after"]
    return sizes


@op(pool="warehouse")
def tidy_up(context: OpExecutionContext, config: MaintenanceConfig, warehouse: Warehouse, model_registry: ModelRegistry):
    """Expire signals, drop old signal history, delete old live-trading runs, archive stale models, compact DuckDB."""
    now = clock.now()
    counts = _signals(warehouse, now, config.signal_retention_days)
    counts["live_runs_deleted"] = _live_runs(context, now - timedelta(days=config.live_run_retention_days))
    counts["planned_check_rows_deleted"] = _planned_checks(context, now - timedelta(days=config.planned_check_retention_days))
    stale_before = now - timedelta(weeks=config.model_archive_weeks)
    archived = model_registry.archive_stale_versions(
        int(stale_before.timestamp() * 1000), f"{now:%Y-%m-%d}: neither champion nor challenger, created before {stale_before:%Y-%m-%d}"
    )
    counts["model_versions_archived"] = len(archived)
    sizes = _compact(warehouse)
    context.log.info(", ".join(f"{k}={v}" for k, v in counts.items()))
    context.add_output_metadata(
        {**counts, "archived_versions": MetadataValue.json(archived), "duckdb_bytes": MetadataValue.json(sizes)}
    )
    return counts


@job(name="weekly_maintenance_job", tags=max_runtime(minutes=60), description="Weekly housekeeping of signals, runs, models and DuckDB files.")
def weekly_maintenance_job():
    tidy_up()


@schedule(
    name="weekly_maintenance",
    cron_schedule="0 23 * * 6",
    execution_timezone=get_settings().timezone,
    job=weekly_maintenance_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Saturday 23:00: expire and prune signals, delete old live-trading runs, archive stale models, compact.",
)
def weekly_maintenance(context: ScheduleEvaluationContext):
    return RunRequest(run_key=f"weekly_maintenance:{context.scheduled_execution_time:%Y-%m-%d}")
