"""dead_run_sensor judges only the workers it can see: real runs, real processes, real pid namespaces.

A worker in another pid namespace (a container; another host of a shared PostgreSQL instance looks the
same from here) runs under `unshare --pid --fork --mount-proc`: its pid means another process, or none,
here, and the sensor must leave its run alone. A killed worker whose pid a new process took must be
judged dead: the start time recorded with the pid tells them apart.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, build_sensor_context

from turbomode_pipeline.automation.run_health import dead_run_sensor
from turbomode_pipeline_tests.servers import REPO, instance_home

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


@pytest.fixture(scope="module")
def can_unshare():
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a pid namespace here (needs root or CAP_SYS_ADMIN): {probe.stderr.strip()}")


def free_pid() -> int:
    """A pid no process has in this namespace (near pid_max, where pids are rarely handed out)."""
    top = int(Path("/proc/sys/kernel/pid_max").read_text()) - 100
    return next(pid for pid in range(top, top - 10_000, -1) if not Path(f"/proc/{pid}").exists())


@pytest.fixture
def home(tmp_path, monkeypatch):
    """The shipped instance config (its storage records each run's worker) in a fresh DAGSTER_HOME."""
    home = instance_home(tmp_path, REPO / "dagster_home" / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def namespaced(mode: str, pid: int, home: Path) -> subprocess.Popen:
    env = {"PATH": os.environ["PATH"], "HOME": str(home.parent), "DAGSTER_HOME": str(home), "PYTHONWARNINGS": "ignore",
           "DAGSTER_EVENT_BATCH_SIZE": "500"}
    return subprocess.Popen([*UNSHARE, sys.executable, "-m", "turbomode_pipeline_tests.pid_namespace_worker", mode,
                             str(pid)], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def heard(process: subprocess.Popen) -> dict:
    line = process.stdout.readline()
    assert line, f"the namespaced helper ended (exit {process.wait()})"
    return json.loads(line)


def test_a_run_whose_worker_is_in_another_pid_namespace_is_left_alone(can_unshare, home):
    helper = namespaced("foreign", free_pid(), home)
    try:
        running = heard(helper)
        with DagsterInstance.get() as instance:
            assert instance.get_run_by_id(running["run_id"]).status == DagsterRunStatus.STARTED
            skip = dead_run_sensor(build_sensor_context(instance=instance)).skip_message
            assert instance.get_run_by_id(running["run_id"]).status == DagsterRunStatus.STARTED, skip
            assert "1 STARTED run(s) with a worker not visible from here left to run monitoring" in skip
            helper.stdin.write("go on\n")
            helper.stdin.flush()
            assert heard(helper) == {"worker_exit": 0}
            assert instance.get_run_by_id(running["run_id"]).status == DagsterRunStatus.SUCCESS  # it was alive
    finally:
        helper.kill()
        helper.wait()


def test_a_killed_run_whose_pid_a_new_process_took_is_failed(can_unshare, home):
    helper = namespaced("reused", free_pid(), home)
    try:
        verdict = heard(helper)
    finally:
        helper.wait(timeout=120)
    assert verdict["impostor_alive"]  # a live process holds the dead worker's pid...
    assert verdict["status"] == "FAILURE", verdict  # ...and the run is failed all the same
    assert verdict["skip"].startswith("reported 1 dead run(s) failed")
    with DagsterInstance.get() as instance:
        assert instance.get_run_by_id(verdict["run_id"]).status == DagsterRunStatus.FAILURE
