"""A Dagster run whose worker lives in a pid namespace of its own, for test_run_health.

`python -m turbomode_pipeline_tests.pid_namespace_worker <mode> <pid>` runs under
`unshare --pid --fork --mount-proc`: it is pid 1 of a fresh namespace in which nothing else forks,
so writing /proc/sys/kernel/ns_last_pid gives its next child exactly the pid asked for. It starts a
worker process with that pid, which runs `blocking_job` on the instance of DAGSTER_HOME and waits
inside its step. Then, by mode:

- `foreign`: says the run is running, waits for a line on stdin (the test judges the run from its own
  namespace meanwhile), lets the worker finish and says how it ended;
- `reused`: kills the worker (kill -9), starts an unrelated `sleep` that gets the dead worker's pid,
  evaluates dead_run_sensor here (same host, same namespace) and says the run's status.

Every line it says is JSON on stdout.
"""

import json
import subprocess
import sys
from pathlib import Path

from dagster import DagsterInstance, OpExecutionContext, build_sensor_context, job, op


@op
def wait_for_release(context: OpExecutionContext):
    print(json.dumps({"running": context.run_id}), flush=True)
    sys.stdin.readline()


@job
def blocking_job():
    wait_for_release()


def say(**fields) -> None:
    print(json.dumps(fields), flush=True)


def spawn_with_pid(pid: int, argv: list[str], **kwargs) -> subprocess.Popen:
    Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
    process = subprocess.Popen(argv, **kwargs)
    assert process.pid == pid, (process.pid, pid)
    return process


def main(mode: str, pid: int) -> None:
    if mode == "worker":
        with DagsterInstance.get() as instance:
            result = blocking_job.execute_in_process(instance=instance, raise_on_error=False)
        say(worker_success=result.success)
        return
    worker = spawn_with_pid(pid, [sys.executable, "-m", "turbomode_pipeline_tests.pid_namespace_worker", "worker", "0"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    while line := worker.stdout.readline():
        if line.startswith('{"running"'):
            run_id = json.loads(line)["running"]
            break
    else:
        raise RuntimeError("the worker ended before its step ran")
    if mode == "foreign":
        say(run_id=run_id, worker_pid=worker.pid)
        sys.stdin.readline()
        worker.stdin.write("release\n")
        worker.stdin.flush()
        worker.wait(timeout=120)
        say(worker_exit=worker.returncode)
        return
    worker.kill()
    worker.wait()
    impostor = spawn_with_pid(pid, ["sleep", "600"])
    try:
        from turbomode_pipeline.automation.run_health import dead_run_sensor

        with DagsterInstance.get() as instance:
            skip = dead_run_sensor(build_sensor_context(instance=instance)).skip_message
            status = instance.get_run_by_id(run_id).status.value
        say(run_id=run_id, impostor_pid=impostor.pid, impostor_alive=impostor.poll() is None, skip=skip, status=status)
    finally:
        impostor.kill()
        impostor.wait()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
