"""Alerts: a failed run, a failed freshness or blocking check, or a halted live strategy reaches a person.

The checks sensor reads the instance's event log for check evaluations (those of runs and
those the freshness sensor reports) and alerts on every failed one of severity ERROR.
"""

import json

import polars as pl
from dagster import (
    AssetCheckSeverity,
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SensorResult,
    run_failure_sensor,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from turbomode_pipeline import clock
from turbomode_pipeline.core.alerts import check_failure_alert, error_with_causes, partition_of, run_failure_alert, strategy_halt_alert
from turbomode_pipeline.resources.alerts import AlertSender
from turbomode_pipeline.resources.ledger import Ledger

CHECK_HISTORY = 20  # failed evaluations per check looked at per tick


@run_failure_sensor(
    name="run_failure_alerts",
    default_status=DefaultSensorStatus.RUNNING,
    description="Every failed run: a line in alerts.log and, if configured, a webhook POST.",
)
def run_failure_alerts(context: RunFailureSensorContext, alerts: AlertSender):
    run = context.dagster_run
    steps = [
        f"{event.step_key}: {error_with_causes(event.step_failure_data.error)}"
        for event in context.get_step_failure_events()
        if event.step_failure_data.error is not None
    ]
    error = "; ".join(steps) or context.failure_event.message or "no error message"
    alert = run_failure_alert(run.job_name, run.run_id, run.tags, error, alerts.ui_base_url, clock.now())
    context.log.info(f"alert for run {run.run_id}: {alerts.send(alert)}")


@sensor(
    name="failed_check_alerts",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Every failed check of severity ERROR (freshness, blocking data checks): an alert.",
)
def failed_check_alerts(context: SensorEvaluationContext, alerts: AlertSender):
    seen = json.loads(context.cursor) if context.cursor else None
    latest = {}
    sent = []
    for key in sorted(context.repository_def.asset_graph.asset_check_keys, key=str):  # a dozen checks
        history = context.instance.event_log_storage.get_asset_check_execution_history(
            key, limit=CHECK_HISTORY, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        latest[str(key)] = max((record.id for record in history), default=0)
        if seen is None:  # first tick: watch from now on, not the whole history
            continue
        for record in history:
            evaluation = record.event.dagster_event.event_specific_data if record.event else None
            if record.id <= seen.get(str(key), 0) or evaluation is None or evaluation.severity != AssetCheckSeverity.ERROR:
                continue
            partition = evaluation.partition or _partition(context.instance, record.run_id, evaluation)
            alert = check_failure_alert(
                key.asset_key.path, key.name, partition, evaluation.description, record.run_id,
                alerts.ui_base_url, clock.now(),
            )
            sent.append(f"{key.name}: {alerts.send(alert)}")
    cursor = json.dumps(latest, sort_keys=True)
    if not sent:
        return SensorResult(skip_reason="no new failed check", cursor=cursor)
    context.log.info("; ".join(sent))
    return SensorResult(cursor=cursor)


def _partition(instance, run_id: str, evaluation) -> str | None:
    """The run's partition (range), or for the freshness check the session it found missing."""
    run = instance.get_run_by_id(run_id) if run_id else None
    if run is not None and partition_of(run.tags):
        return partition_of(run.tags)
    due = evaluation.metadata.get("latest_due_session")
    return str(due.value) if due is not None else None


@sensor(
    name="halted_strategy_alerts",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="A live strategy the tick halts (unexplained position, loss limit, kill switch) or that fails (a row "
                "it cannot run, an order the broker refused): one alert per halt or failure.",
)
def halted_strategy_alerts(context: SensorEvaluationContext, ledger: Ledger, alerts: AlertSender):
    alerted = set(json.loads(context.cursor)) if context.cursor else set()
    halted = ledger.strategies().filter(pl.col("status").str.starts_with("halted") | pl.col("status").str.starts_with("error"))
    now_halted = {f"{row['id']}|{row['status']}": row for row in halted.iter_rows(named=True)}  # a handful
    sent = [
        f"{row['id']}: {alerts.send(strategy_halt_alert(row['id'], row['symbol'], row['status'], alerts.ui_base_url, clock.now()))}"
        for key, row in now_halted.items() if key not in alerted
    ]
    cursor = json.dumps(sorted(now_halted))  # a strategy resumed and halted again is alerted again
    if not sent:
        return SensorResult(skip_reason="no newly halted strategy", cursor=cursor)
    context.log.info("; ".join(sent))
    return SensorResult(cursor=cursor)
