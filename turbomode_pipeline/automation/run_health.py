"""Runs whose worker died.

Dagster's run monitoring fails runs that do not start or do not cancel in time, enforces
`dagster/max_runtime` and frees the pool slots of finished runs, but the default run
launcher cannot check a worker's health (`supports_check_run_worker_health` is False), so a
run whose process was killed stays STARTED until its max_runtime: its partitions show in
progress and it keeps the `warehouse` pool's only slot. This sensor fails sooner the STARTED
runs whose worker it can see and that is gone: the instance storage records, when a run
starts, its worker's host, boot id, pid namespace, pid and start time (run_worker.py), and a
run is judged only when that worker is on this host in this pid namespace (or the host
restarted since). Its pid gone, or held by a process that started at another time (pid
reuse), means dead: reported failed through the instance, so its partitions turn failed (the
catch-up sensor heals them) and its slots are freed at once. A run whose worker is in a
container, on another host of a shared PostgreSQL instance, or that recorded nothing, is left
to Dagster's run monitoring (max_runtime). With a launcher that runs workers elsewhere (Docker,
Kubernetes) that launcher's own health check does this job, and the sensor stands down.
"""

from __future__ import annotations

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.launcher import DefaultRunLauncher

from turbomode_pipeline.run_worker import IDENTITY_KEYS, PID, verdict

MAX_RUNTIME_TAG = "dagster/max_runtime"  # run monitoring fails a run that runs longer (seconds)


def max_runtime(minutes: int) -> dict[str, str]:
    """A job's tag for run monitoring's time limit: generous against the job's measured time, finite for a stuck run."""
    return {MAX_RUNTIME_TAG: str(minutes * 60)}


def recorded_worker(instance: DagsterInstance, run_id: str) -> dict | None:
    """The worker identity the instance storage recorded when the run started (the latest, if several)."""
    for record in reversed(instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)):
        data = record.dagster_event.engine_event_data if record.dagster_event else None
        metadata = data.metadata if data and data.metadata else {}
        if all(key in metadata for key in IDENTITY_KEYS):
            return {key: metadata[key].value for key in IDENTITY_KEYS}
    return None


def dead_runs(instance: DagsterInstance) -> tuple[list[tuple[str, int]], int]:
    """(run id, pid) of every STARTED run whose worker is visible from here and gone, and how many STARTED
    runs were left to run monitoring (worker elsewhere or unrecorded)."""
    dead, unseen = [], 0
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        worker = recorded_worker(instance, run.run_id)
        judged = verdict(worker)
        if judged == "dead":
            dead.append((run.run_id, int(worker[PID])))
        elif judged == "not visible":
            unseen += 1
    return dead, unseen


def fail_dead_run(instance: DagsterInstance, run_id: str, pid: int) -> None:
    run = instance.get_run_by_id(run_id)
    if run is None or run.status != DagsterRunStatus.STARTED:
        return
    instance.report_run_failed(
        run, f"run worker process {pid} is gone (killed or crashed) while the run was STARTED; "
        "marked failed so its partitions can be re-run and its pool slots are free"
    )
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)


@sensor(
    name="dead_run_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Fails STARTED runs whose worker process died (kill -9, OOM, power loss) and frees their pool slots.",
)
def dead_run_sensor(context: SensorEvaluationContext):
    if not isinstance(context.instance.run_launcher, DefaultRunLauncher):
        return SkipReason("the run launcher checks its own workers' health; nothing to do here")
    dead, unseen = dead_runs(context.instance)
    for run_id, pid in dead:
        context.log.warning(f"run {run_id}: worker process {pid} is gone; reporting the run failed")
        fail_dead_run(context.instance, run_id, pid)
    elsewhere = f"; {unseen} STARTED run(s) with a worker not visible from here left to run monitoring" if unseen else ""
    if not dead:
        return SkipReason(f"every STARTED run's worker visible from here is alive{elsewhere}")
    return SkipReason(f"reported {len(dead)} dead run(s) failed: {', '.join(run_id for run_id, _ in dead)}{elsewhere}")
