"""A read-only shell left open on the warehouse, in another process, while `daily_bars` writes.

DuckDB lets many processes read a file or one process write it: a `duckdb -readonly` shell holds a
shared lock on the file for as long as it stays open, and a writer in another process cannot open it
until the shell exits (measured with DuckDB 1.5: the writer's open fails at once, "Conflicting lock is
held in ... (PID n)", however long it retries). So the README promises only what is true (one-shot
queries hold the file for the query) and the writer's error names the shell and says what to do.
"""

import re
import subprocess
from pathlib import Path

from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline_tests.support import materialize_bars

REPO = Path(__file__).resolve().parents[1]
DUCKDB = REPO / ".venv" / "bin" / "duckdb"


def causes(error) -> str:
    words = []
    while error is not None:
        words.append(error.message)
        error = error.cause
    return "\n".join(words)


def test_an_open_read_only_shell_is_named_by_the_writers_error_and_the_next_run_succeeds(resources, instance, tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=0.5, retry_interval_s=0.1)
    resources = {**resources, "warehouse": warehouse}
    assert materialize_bars(resources, instance, partition_key="2024-03-04").success
    shell = subprocess.Popen([str(DUCKDB), "-readonly", warehouse.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        shell.stdin.write(".print open\n")
        shell.stdin.flush()
        assert shell.stdout.readline() == "open\n"  # the shell has the file open (and its lock)
        blocked = materialize_bars(resources, instance, partition_key="2024-03-05")
        assert not blocked.success
        [failure] = [e for e in blocked.all_events if e.event_type_value == "STEP_FAILURE"]
        said = causes(failure.step_failure_data.error)
        assert "WarehouseLockedError" in said
        holder = re.search(r"held by pid (\d+): ([^;]*)", said)
        assert holder, said
        pid = int(holder.group(1))
        assert pid in {shell.pid, *child_pids(shell.pid)}  # the shell itself (the CLI runs its binary as a child)
        assert "-readonly" in holder.group(2) and warehouse.path in holder.group(2)
        assert "close it" in said and f"kill {pid}" in said
    finally:
        shell.stdin.close()
        shell.wait(timeout=60)
    assert materialize_bars(resources, instance, partition_key="2024-03-05").success


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


def test_the_readme_promises_only_what_duckdb_does():
    readme = (REPO / "README.md").read_text()
    assert "never blocks\na running writer for long" not in readme and "never blocks a running writer" not in readme
    assert "an interactive `-readonly` shell keeps every writer out" in " ".join(readme.split())


def test_a_writer_holding_the_warehouse_is_named_and_not_to_be_killed(tmp_path):
    """The other way round: a process writing the file keeps a reader out; the advice is to wait, not to kill it."""
    import sys

    import pytest

    from turbomode_pipeline.resources.warehouse import WarehouseLockedError

    path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
         "sys.stdin.readline()", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        with pytest.raises(WarehouseLockedError) as raised:
            Warehouse(path=str(path), lock_timeout_s=0.2, retry_interval_s=0.1).query("SELECT 1")
        said = str(raised.value)
        assert f"held by pid {holder.pid}: " in said and "a writer holds it" in said and "kill" not in said
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
