"""Alerts: a failed run, or a failed freshness or blocking check, reaches a person.

The checks sensor reads the instance's event log for check evaluations (those of runs and
those the freshness sensor reports) and alerts on every failed one of severity ERROR.
"""

from datetime import UTC, datetime

from dagster import (
    AssetCheckSeverity,
    DagsterEventType,
    DefaultSensorStatus,
    EventRecordsFilter,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SensorResult,
    run_failure_sensor,
    sensor,
)

from turbomode_pipeline.core.alerts import check_failure_alert, partition_of, run_failure_alert
from turbomode_pipeline.resources.alerts import AlertSender

CHECK_BATCH = 200


@run_failure_sensor(
    name="run_failure_alerts",
    default_status=DefaultSensorStatus.RUNNING,
    description="Every failed run: a line in alerts.log and, if configured, a webhook POST.",
)
def run_failure_alerts(context: RunFailureSensorContext, alerts: AlertSender):
    run = context.dagster_run
    error = context.failure_event.message or "no error message"
    alert = run_failure_alert(run.job_name, run.run_id, run.tags, error, alerts.ui_base_url, datetime.now(UTC))
    context.log.info(f"alert for run {run.run_id}: {alerts.send(alert)}")


@sensor(
    name="failed_check_alerts",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Every failed check of severity ERROR (freshness, blocking data checks): an alert.",
)
def failed_check_alerts(context: SensorEvaluationContext, alerts: AlertSender):
    after = int(context.cursor) if context.cursor else None
    if after is None:  # first tick: start from now, not from the whole history
        latest = context.instance.get_event_records(
            EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION), limit=1
        )
        return SensorResult(skip_reason="watching check evaluations from now on",
                            cursor=str(latest[0].storage_id if latest else 0))
    records = context.instance.get_event_records(
        EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after),
        limit=CHECK_BATCH, ascending=True,
    )
    sent = []
    for record in records:  # a handful of evaluations per run
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.passed or evaluation.severity != AssetCheckSeverity.ERROR:
            continue
        partition = evaluation.partition or _partition(context.instance, record.event_log_entry.run_id, evaluation)
        alert = check_failure_alert(
            evaluation.asset_key.path, evaluation.check_name, partition, evaluation.description,
            record.event_log_entry.run_id, alerts.ui_base_url, datetime.now(UTC),
        )
        sent.append(f"{evaluation.check_name}: {alerts.send(alert)}")
    cursor = str(records[-1].storage_id) if records else context.cursor
    if not sent:
        return SensorResult(skip_reason="no failed check since the last tick", cursor=cursor)
    context.log.info("; ".join(sent))
    return SensorResult(cursor=cursor)


def _partition(instance, run_id: str, evaluation) -> str | None:
    """The run's partition (range), or for the freshness check the session it found missing."""
    run = instance.get_run_by_id(run_id) if run_id else None
    if run is not None and partition_of(run.tags):
        return partition_of(run.tags)
    due = evaluation.metadata.get("latest_due_session")
    return str(due.value) if due is not None else None
