"""Runs whose worker died.

Dagster's run monitoring fails runs that do not start or do not cancel in time, enforces
`dagster/max_runtime` and frees the pool slots of finished runs, but the default run
launcher cannot check a worker's health (`supports_check_run_worker_health` is False), so a
run whose process was killed stays STARTED for ever: its partitions show in progress and it
keeps the `warehouse` pool's only slot. This sensor finds STARTED runs whose worker process,
by the pid Dagster logged when it began executing, is gone, and reports them failed through
the instance: their partitions turn failed (the catch-up sensor heals them) and their slots
are freed at once. Pids are this machine's: with a launcher that runs workers elsewhere
(Docker, Kubernetes) that launcher's own health check does this job, and the sensor stands down.
"""

from __future__ import annotations

import os
from pathlib import Path

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

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MAX_RUNTIME_TAG = "dagster/max_runtime"  # run monitoring fails a run that runs longer (seconds)
PID_REUSE_SLACK_S = 2.0  # a worker started at most this long after the event that named it is still that worker


def max_runtime(minutes: int) -> dict[str, str]:
    """A job's tag for run monitoring's time limit: generous against the job's measured time, finite for a stuck run."""
    return {MAX_RUNTIME_TAG: str(minutes * 60)}


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_alive(pid: int, seen_at: float) -> bool:
    """Whether the process that had `pid` at time `seen_at` still runs (not a zombie, not a newer process with that pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (command)": state is field 3, starttime field 22
    if fields[0] in ("Z", "X"):
        return False
    started = _boot_time() + int(fields[19]) / CLOCK_TICKS
    return started <= seen_at + PID_REUSE_SLACK_S


def worker_pid(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of the process executing the run's steps and when it said so, from the run's engine events."""
    for record in reversed(instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)):
        data = record.dagster_event.engine_event_data if record.dagster_event else None
        pid = data.metadata.get("pid") if data and data.metadata else None
        if pid is not None:
            return int(pid.value), record.timestamp
    return None


def dead_runs(instance: DagsterInstance) -> list[tuple[str, int]]:
    """(run id, pid) of every STARTED run whose worker process is gone."""
    dead = []
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        worker = worker_pid(instance, run.run_id)
        if worker is not None and not process_alive(*worker):
            dead.append((run.run_id, worker[0]))
    return dead


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
    dead = dead_runs(context.instance)
    for run_id, pid in dead:
        context.log.warning(f"run {run_id}: worker process {pid} is gone; reporting the run failed")
        fail_dead_run(context.instance, run_id, pid)
    if not dead:
        return SkipReason("every STARTED run's worker is alive")
    return SkipReason(f"reported {len(dead)} dead run(s) failed: {', '.join(run_id for run_id, _ in dead)}")
