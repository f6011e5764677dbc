"""The DuckDB warehouse: the only door to `warehouse.duckdb`.

DuckDB lets one process at a time open a file for writing, and a writer excludes readers
in other processes. Writers are serialised by the Dagster `warehouse` pool; every
connection here retries briefly on a lock and then fails with a message that names the
file and the process holding it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl
from dagster import ConfigurableResource

from turbomode_pipeline.resources.warehouse_reads import WarehouseReads
from turbomode_pipeline.schemas import Table


class WarehouseError(RuntimeError):
    """A query the warehouse cannot answer, e.g. a table nothing has written yet."""


class WarehouseSpaceError(WarehouseError):
    """Too little free space beside a DuckDB file to compact it; nothing was changed."""


class WarehouseLockedError(RuntimeError):
    """The warehouse file stayed locked by another process for the whole retry window."""


class Warehouse(WarehouseReads, ConfigurableResource):
    """DuckDB warehouse at `path`; connections retry on a lock for `lock_timeout_s`. Its named reads and
    writes (`bars`, `features`, `signals`, ...) are in resources/warehouse_reads.py."""

    path: str
    lock_timeout_s: float = 20.0
    retry_interval_s: float = 0.25
    # free space a compaction needs before it starts, as a multiple of the file's size (and its WAL's): the copy
    # of the live rows is at most that large, and DuckDB writes it through a WAL first, so at its peak it holds
    # the copy twice (measured: a 3.9 MB file's copy failed writing its WAL with 3 MB free)
    compact_headroom: float = 2.0

    @contextmanager
    def connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only and not Path(self.path).exists():
            connection = duckdb.connect()  # nothing written yet: an empty in-memory database
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            connection = self._connect_with_retry(read_only)
        try:
            yield connection
        finally:
            connection.close()

    def _connect_with_retry(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                return duckdb.connect(self.path, read_only=read_only)
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise
                if time.monotonic() >= deadline:
                    mode = "read" if read_only else "write"
                    raise WarehouseLockedError(
                        f"warehouse {self.path} stayed locked for {self.lock_timeout_s:g} s, so it could not "
                        f"be opened to {mode}{_holders_and_what_to_do(self.path, str(error))}: {error}"
                    ) from error
                time.sleep(self.retry_interval_s)

    def has_table(self, table: str) -> bool:
        with self.connection(read_only=True) as con:
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()
        return bool(found and found[0])

    def query(self, sql: str, params: Sequence | None = None) -> pl.DataFrame:
        """Run a read-only query and return its result as a polars frame."""
        with self.connection(read_only=True) as con:
            try:
                return con.execute(sql, params or []).pl()
            except duckdb.CatalogException as error:
                first_line = str(error).splitlines()[0]
                raise WarehouseError(f"{self.path}: {first_line}; materialise the asset that writes it first") from None

    def execute(self, *statements: str) -> None:
        """Run DDL or update statements in one transaction (views, derived flags)."""
        with self.connection() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for statement in statements:
                    con.execute(statement)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def update(self, sql: str, params: Sequence | None = None) -> int:
        """Run one writing statement (UPDATE, DELETE) and return how many rows it changed."""
        with self.connection() as con:
            changed = con.execute(sql, params or []).fetchone()
        return int(changed[0]) if changed else 0

    def compact(self) -> dict[str, int]:
        """Rewrite the file into a fresh one (`COPY FROM DATABASE`) and swap it in atomically; sizes before and after.

        DuckDB reuses the blocks a DELETE frees only partly and VACUUM returns none of them to the file
        system: rewriting a range sixteen times grew a file sevenfold. The copy holds only live rows.
        While it runs this connection holds the file's write lock, and the rename happens before the
        lock is released, so no writer can slip in between; a crash before the rename leaves the old
        file as it was (and a stray `.compacting` file, removed by the next compaction); any failure short of a
        crash removes the partial copy at once, and a compaction that `compact_headroom` says cannot fit is
        refused before it starts, saying how much it needs and how much is free.
        """
        path = Path(self.path)
        if not path.exists():
            return {"bytes_before": 0, "bytes_after": 0}
        before = path.stat().st_size
        fresh = path.with_name(path.name + ".compacting")
        partial = (fresh, fresh.with_name(fresh.name + ".wal"))
        for stale in partial:
            stale.unlink(missing_ok=True)
        self._check_space_to_compact(path)
        try:
            with self.connection() as con:
                con.execute("CHECKPOINT")
                name = con.execute("SELECT current_database()").fetchone()[0]
                quoted = str(fresh).replace("'", "''")  # ATTACH takes no parameters
                con.execute(f"ATTACH '{quoted}' AS compacted")
                try:
                    con.execute(f'COPY FROM DATABASE "{name}" TO compacted')
                except BaseException:
                    try:  # after ENOSPC the DETACH may fail too: the copy's error is the one to report
                        con.execute("DETACH compacted")
                    except duckdb.Error:
                        pass
                    raise
                con.execute("DETACH compacted")
                fresh.replace(path)  # atomic on POSIX; readers that opened the old file keep reading it
        except BaseException:
            # any failure (a full disk, a lock, an interrupt): the partial copy goes, after the connection that
            # held it open is closed (an unlinked file that is still open keeps its blocks)
            for stale in partial:
                stale.unlink(missing_ok=True)
            raise
        return {"bytes_before": before, "bytes_after": path.stat().st_size}

    def _check_space_to_compact(self, path: Path) -> None:
        wal = path.with_name(path.name + ".wal")
        size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        needed = int(size * self.compact_headroom)
        free = shutil.disk_usage(path.parent).free
        if free < needed:
            raise WarehouseSpaceError(
                f"not compacting {path}: it needs {needed / 1e6:.1f} MB free in {path.parent} (the copy of its live "
                f"rows is at most the file's {size / 1e6:.1f} MB, and it goes through a WAL first: "
                f"{self.compact_headroom:g} x the file), and "
                f"{free / 1e6:.1f} MB are free. Nothing was changed; free space there, then run the maintenance again"
            )

    def replace_partitions(self, table: Table, frame: pl.DataFrame, partitions: Sequence) -> int:
        """Replace exactly `partitions` of `table` with `frame`, in one transaction.

        A crash mid-write leaves the previous content intact. Where the table has a stamp
        column (ingested_at), rows whose values did not change keep their old stamp, so
        re-writing the same data leaves the table's content unchanged.
        """
        with self.connection() as con:
            con.execute(table.ddl)
            con.register("incoming_frame", frame.to_arrow())
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute("CREATE TEMP TABLE incoming AS SELECT * FROM incoming_frame")
                _add_new_columns(con, table.name)
                if table.stamp_column:
                    con.execute(_keep_unchanged_stamps_sql(table, frame.columns))
                con.execute(
                    f"DELETE FROM {table.name} WHERE {table.partition_column} IN (SELECT unnest(?))",
                    [list(partitions)],
                )
                order = ", ".join(table.key_columns)
                con.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM incoming ORDER BY {order}")
                con.execute("DROP TABLE incoming")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("incoming_frame")
        return frame.height

    def append_new(self, table: Table, frame: pl.DataFrame) -> int:
        """Insert the rows of `frame` whose key `table` does not hold yet, in one transaction; rows it
        holds stay exactly as they were (append-only tables). Returns how many rows were added."""
        with self.connection() as con:
            con.execute(table.ddl)
            con.register("incoming_frame", frame.to_arrow())
            try:
                keys = " AND ".join(f"old.{c} = incoming_frame.{c}" for c in table.key_columns)
                before = con.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]
                con.execute(
                    f"INSERT INTO {table.name} BY NAME SELECT * FROM incoming_frame "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {table.name} AS old WHERE {keys})"
                )
                return con.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0] - before
            finally:
                con.unregister("incoming_frame")


def lock_holders(path: str, message: str = "") -> dict[int, str]:
    """The other processes holding a lock on `path` and how ("READ": a read-only connection, "WRITE": a writer),
    from /proc/locks (Linux), else from DuckDB's message ("Conflicting lock is held in ... (PID n)", "unknown")."""
    holders: dict[int, str] = {}
    try:
        stat = os.stat(path)
        device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()  # "1: POSIX  ADVISORY  READ 12927 fe:00:2147075 0 EOF" ("->" marks a waiter)
            if "->" not in fields and len(fields) >= 6 and fields[5] == device:
                holders[int(fields[4])] = fields[3]
    except (OSError, ValueError):
        pass
    if not holders:
        holders = {int(pid): "unknown" for pid in re.findall(r"\(PID (\d+)\)", message)}
    holders.pop(os.getpid(), None)
    return dict(sorted(holders.items()))


def process_command(pid: int, limit: int = 200) -> str:
    """A process's command line, long arguments elided (the DuckDB CLI passes a page of SQL with -cmd)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return "command unknown"
    command = " ".join(arg if len(arg) <= 80 else "..." for arg in argv if arg)
    return command[:limit] or "command unknown"


def _holders_and_what_to_do(path: str, message: str) -> str:
    holders = lock_holders(path, message)
    if not holders:
        return ""
    named = "; ".join(f"held by pid {pid}: {process_command(pid)}" for pid in holders)
    readers = [pid for pid, kind in holders.items() if kind == "READ"]
    if readers:
        advice = (
            "a read-only connection, such as an interactive `duckdb -readonly` shell or a notebook, keeps every writer "
            f"out for as long as it stays open: close it (or `kill {readers[0]}`) and run this again; one-shot "
            'queries, `duckdb -readonly FILE "SELECT ..."`, hold the file only while they run'
        )
    else:
        advice = ("a writer holds it (a run of the pipeline, or a shell opened without -readonly): wait for the run "
                  "to end, or close that shell, and run this again")
    return f" ({named}; {advice})"


def _add_new_columns(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Columns a newer version of the pipeline writes that a file from an older one lacks (NULL in the old rows):
    `CREATE TABLE IF NOT EXISTS` keeps an existing table as it was, so without this the first write would fail."""
    present = {row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()}
    for column, kind, *_ in con.execute("DESCRIBE incoming").fetchall():
        if column not in present:
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {kind}')


def _keep_unchanged_stamps_sql(table: Table, columns: Sequence[str]) -> str:
    keys = " AND ".join(f"old.{c} = incoming.{c}" for c in table.key_columns)
    values = " AND ".join(
        f"old.{c} IS NOT DISTINCT FROM incoming.{c}"
        for c in columns
        if c not in table.key_columns and c != table.stamp_column
    )
    stamp = table.stamp_column
    return f"UPDATE incoming SET {stamp} = old.{stamp} FROM {table.name} AS old WHERE {keys} AND {values}"
