"""The PostgreSQL instances' storage (dagster_home_postgres, dagster_home_distributed): Dagster's `storage: postgres`,
same config and tables, whose event log records each run's worker as the SQLite one does (instance_storage.py)."""

from __future__ import annotations

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from turbomode_pipeline.instance_storage import RecordsRunWorker


class RecordingPostgresEventLogStorage(RecordsRunWorker, PostgresEventLogStorage):
    pass


class RecordingPostgresStorage(DagsterPostgresStorage):
    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data=inst_data, token_provider=token_provider)
        self._event_log_storage = RecordingPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> RecordingPostgresStorage:
        return cls(
            pg_url_from_config(config_value), config_value.get("should_autocreate_tables", True),
            inst_data=inst_data, token_provider=get_token_provider_from_config(config_value),
        )
