"""The Dagster instance's SQLite storage, writing a range run's per-partition events in batches.

One run over a range of sessions records two events per partition (materialisation planned,
materialisation). Dagster's SQLite event log opens an engine and commits once per event per
shard, about 12 ms an event here, so a ten-year single-run backfill spent a minute on that
bookkeeping alone. With DAGSTER_EVENT_BATCH_SIZE > 0 Dagster hands such events to
`store_event_batch` in groups (it reads the variable with os.getenv at every event, in the
process that runs the steps: the environment of every such process sets it, see
dagster_home/dagster.yaml; without it this storage writes event by event, the same records); its PostgreSQL storage writes a group at once, its SQLite
storage loops over `store_event`. `BatchingSqliteEventLogStorage` writes a group as
`store_event` writes one event (the run shard, then the cross-run index with the asset's tags
and latest-event columns), in one transaction per shard. Same files and tables as Dagster's
own `storage: sqlite`, which it replaces in dagster.yaml.

It also records a planned asset check the way Dagster does (a row per partition of the run, each
holding the planned event) but serialises that event once instead of once per row: the event
carries the partitions definition with its ~150 holiday exclusions (13.5 kB), so a ten-year run
spent about 5 s per check serialising it 2,520 times.

Both storages here (this SQLite one and `RecordingPostgresStorage`, which the PostgreSQL instances
configure) also record the run worker: after a run's RUN_START, written by the process that executes
the run, they write an engine event with that process's host, boot id, pid namespace, pid and start
time (run_worker.py), so that `dead_run_sensor` judges only workers it can see. Every way a run
executes (the daemon's launcher, `dagster asset materialize`, `execute_in_process`) passes here.

It leans on Dagster's private classes (seven `dagster._core` names) and overrides a private
method, so it holds only for the Dagster it was checked against, CHECKED_DAGSTER_VERSION:
test_instance_storage fails on any other until the storage is checked again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from dagster._core.events import ASSET_EVENTS, DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import serialize_value

# The Dagster whose private storage classes this file was read against and tested with.
CHECKED_DAGSTER_VERSION = "1.13.27"
# Events per write: the DAGSTER_EVENT_BATCH_SIZE that the Makefile, deploy/turbomode.env.example
# and the tests' environment set.
EVENT_BATCH_SIZE = "500"


def _is_asset_event(event: EventLogEntry) -> bool:
    return event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS


WORKER_MESSAGE = "run worker: host {worker_host}, pid {worker_pid} in {worker_pid_namespace}"


class RecordsRunWorker:
    """Mixed into an event log storage: after a RUN_START this process wrote, an engine event naming this process."""

    def store_event(self, event: EventLogEntry) -> None:
        super().store_event(event)
        self._record_worker(event)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        super().store_event_batch(events)
        for event in events:
            self._record_worker(event)

    def _record_worker(self, event: EventLogEntry) -> None:
        started = event.dagster_event
        if started is None or started.event_type != DagsterEventType.RUN_START or started.pid != os.getpid():
            return
        recorded = self.__dict__.setdefault("_workers_recorded", set())
        if event.run_id in recorded:  # the SQLite batch path stores through store_event too
            return
        recorded.add(event.run_id)
        from turbomode_pipeline.run_worker import this_process

        identity = this_process()
        if identity is None:
            return
        message = WORKER_MESSAGE.format(**identity)
        super().store_event(EventLogEntry(
            error_info=None, level=logging.DEBUG, user_message=message, run_id=event.run_id, timestamp=time.time(),
            step_key=None, job_name=event.job_name,
            dagster_event=DagsterEvent(
                event_type_value=DagsterEventType.ENGINE_EVENT.value, job_name=event.job_name or "", message=message,
                event_specific_data=EngineEventData(metadata=identity), pid=os.getpid(),
            ),
        ))


class BatchingSqliteEventLogStorage(RecordsRunWorker, SqliteEventLogStorage):
    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Each run's asset events in one transaction per shard; anything else (e.g. a planned asset
        check) as Dagster stores it, one by one."""
        for event in events:
            if not _is_asset_event(event):
                self.store_event(event)
        asset_events = [event for event in events if _is_asset_event(event)]
        for run_id in dict.fromkeys(event.run_id for event in asset_events):
            self._store_asset_events(run_id, [event for event in asset_events if event.run_id == run_id])

    def _store_asset_events(self, run_id: str, events: list[EventLogEntry]) -> None:
        """What `store_event` does for each asset event: the run's shard, then the cross-run index
        (the event, its tags, and the asset's latest-event columns, which the last event of each
        kind overwrites)."""
        with self.run_connection(run_id) as conn:
            conn.execute(self.prepare_insert_event_batch(events))
        with self.index_transaction() as conn:
            ids = [conn.execute(self.prepare_insert_event(event)).inserted_primary_key[0] for event in events]
            self._store_asset_event_tags(conn, events, ids)
            latest = {(event.dagster_event.asset_key, event.dagster_event_type): i for i, event in enumerate(events)}
            for i in sorted(latest.values()):
                self._store_asset_event(conn, events[i], ids[i])

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        planned = event.get_dagster_event().event_specific_data
        partitions = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        row = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert().values([{**row, "partition": key} for key in partitions]))


class BatchingSqliteStorage(DagsterSqliteStorage):
    """`storage: sqlite` with the batching event log (configured the same way, `base_dir`)."""

    def __init__(self, base_dir: str, inst_data=None):
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = BatchingSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BatchingSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)


def prune_planned_checks(instance, run_ids: Sequence[str]) -> int:
    """Delete the `PLANNED` asset-check rows of finished runs; how many went.

    A range run plans every check once per partition (a row holding the ~13.5 kB planned event) and
    evaluates it once for the whole range, so those rows stay `PLANNED` for ever: 2,520 partitions x 7
    checks for a ten-year `daily_bars` run. Nothing reads them once the run has finished; its
    materialisations and its evaluated checks are kept. Works on SQLite and PostgreSQL storage alike.
    """
    table = AssetCheckExecutionsTable
    deleted = 0
    with instance.event_log_storage.index_connection() as conn:
        for start in range(0, len(run_ids), 500):  # bounded IN lists
            chunk = list(run_ids[start : start + 500])
            result = conn.execute(table.delete().where(
                table.c.run_id.in_(chunk), table.c.execution_status == AssetCheckExecutionRecordStatus.PLANNED.value
            ))
            deleted += result.rowcount or 0
    return deleted
