"""The weekly drift report's schedule, and the sensor that retrains exactly the sectors it marks `drift`."""

from datetime import date, timedelta

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    define_asset_job,
    schedule,
    sensor,
)

from turbomode_pipeline.assets.drift import drift_report
from turbomode_pipeline.automation.models import model_training_job
from turbomode_pipeline.core.universe import sector_slug
from turbomode_pipeline.partitions import drift_weeks, training_weeks
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline.automation.run_health import max_runtime

drift_monitoring_job = define_asset_job(
    "drift_monitoring_job",
    selection=AssetSelection.assets(drift_report),
    partitions_def=drift_weeks(),
    description="The week's drift report: table, HTML report and per-sector status.",
    tags=max_runtime(minutes=30),
)


@schedule(
    name="drift_monitoring",
    cron_schedule="10 23 * * 6",
    execution_timezone=get_settings().timezone,
    job=drift_monitoring_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Saturday 23:10: the drift report of the week ending that day.",
)
def drift_monitoring(context: ScheduleEvaluationContext):
    saturday = context.scheduled_execution_time.date()
    week = (saturday - timedelta(days=6)).isoformat()
    return RunRequest(run_key=f"drift_report:{week}", partition_key=week)


@sensor(
    name="drift_retrain_sensor",
    job=model_training_job,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.RUNNING,
    description="Retrains sector_models for exactly the sectors a new drift report marks `drift`, once per report.",
)
def drift_retrain_sensor(context: SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    reports = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("drift_report"), after_storage_id=after), limit=20, ascending=True
    ).records
    if not reports:
        return SensorResult(skip_reason="no new drift report", cursor=context.cursor)
    requests = []
    for report in reports:  # one per new report, normally one a week
        materialization = report.asset_materialization
        week = materialization.partition
        drifted = materialization.metadata["drifted_sectors"].value if "drifted_sectors" in materialization.metadata else []
        context.log.info(f"drift report {report.storage_id} (week {week}) marks drift: {', '.join(drifted) or 'none'}")
        serving = (date.fromisoformat(week) + timedelta(days=7)).isoformat()
        if drifted and serving > (training_weeks().get_last_partition_key() or ""):
            context.log.info(f"drift report of week {week} is of a week still in progress: the models that follow it "
                             f"(week {serving}) can be trained once it has ended; the Sunday run will")
        elif drifted:  # the week after the report's: its models are trained as of the report's last session
            requests.append(RunRequest(
                run_key=f"drift_retrain:{report.storage_id}",
                partition_key=serving,
                run_config={"ops": {"sector_models": {"config": {"sectors": [sector_slug(s) for s in drifted]}}}},
                tags={"turbomode/trigger": f"drift_report {week}"},
            ))
    cursor = str(reports[-1].storage_id)
    if not requests:
        return SensorResult(skip_reason="the new drift report marks no sector `drift`", cursor=cursor)
    return SensorResult(run_requests=requests, cursor=cursor)
