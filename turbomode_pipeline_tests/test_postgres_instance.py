"""The Dagster instance on a real PostgreSQL server: dagster_home_postgres/dagster.yaml, as shipped.

The server is a throwaway cluster (initdb) on a free loopback port; `.ci/run` installs
Debian's PostgreSQL server binaries when the machine lacks them.
"""

import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import psycopg2
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, materialize
from dagster_postgres import (
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)

from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.due import INGESTION_TIME, due_sessions
from turbomode_pipeline.definitions import resources as configured_resources
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import load_settings
from turbomode_pipeline_tests.support import range_tags, small_universe
from turbomode_pipeline_tests.servers import (
    REPO,
    GraphQL,
    PostgresServer,
    backdate_schedule,
    dagster_daemon,
    dagster_webserver,
    daily_ticks_between,
    instance_home,
    schedule_state,
    server_env,
    wait_until,
)


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory, postgres):
    """A DAGSTER_HOME using the PostgreSQL config, its server environment and the instance it opens."""
    root = tmp_path_factory.mktemp("pg")
    home = instance_home(root, REPO / "dagster_home_postgres" / "dagster.yaml")
    env = server_env(root, home, small_universe(root, per_sector=1), TURBOMODE_DAGSTER_PG_URL=postgres.sqlalchemy_url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        patch.setenv("TURBOMODE_DAGSTER_PG_URL", postgres.sqlalchemy_url)
        with DagsterInstance.get() as instance:
            yield {"root": root, "env": env, "instance": instance, "settings": load_settings(env)}


def sql(postgres: PostgresServer, query: str) -> list[tuple]:
    with psycopg2.connect(postgres.url) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchall()


def test_the_instance_config_puts_runs_events_and_schedules_in_postgres(home):
    instance = home["instance"]
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)


def test_a_partitioned_range_run_is_recorded_in_postgres(home, postgres):
    sessions = [day.isoformat() for day in due_sessions(datetime.now(UTC), 20)[:3]]
    result = materialize([daily_bars], resources=configured_resources(home["settings"]), instance=home["instance"],
                         tags=range_tags(sessions[0], sessions[-1]))
    assert result.success
    assert set(sessions) <= set(home["instance"].get_materialized_partitions(AssetKey("daily_bars")))
    recorded = sql(postgres, "SELECT partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
                             f"AND run_id = '{result.run_id}' ORDER BY partition")
    assert [partition for (partition,) in recorded] == sessions
    from turbomode_pipeline.automation.run_health import recorded_worker  # the storage names the run's worker
    assert recorded_worker(home["instance"], result.run_id)["worker_pid"] == os.getpid()
    warehouse = Warehouse(path=str(home["settings"].warehouse_path))
    counts = warehouse.query("SELECT session::VARCHAR AS session, count(*) AS bars FROM daily_bars GROUP BY 1 ORDER BY 1")
    assert counts.filter(pl.col("session").is_in(sessions))["bars"].to_list() == [11, 11, 11]


def test_the_daemon_ticks_a_schedule_and_launches_runs_on_postgres(home, postgres):
    """The real daemon on the PostgreSQL instance: the schedule's latest tick and the catch-up sensor's run."""
    instance, zone = home["instance"], ZoneInfo(home["settings"].timezone)
    now = datetime.now(UTC)
    latest_tick = daily_ticks_between(now - timedelta(days=2), now, INGESTION_TIME, zone)[-1]
    webserver, url = dagster_webserver(home["env"], home["root"])
    daemon = None
    try:
        graphql = GraphQL(url)
        backdate_schedule(instance, graphql, "market_data_ingestion", latest_tick - timedelta(minutes=1))
        daemon = dagster_daemon(home["env"], home["root"])
        def finished_ticks():  # a tick is recorded STARTED, then updated when its run request is made
            ticks = schedule_state(graphql, "market_data_ingestion")["ticks"]
            return ticks if ticks and all(tick["status"] != "STARTED" for tick in ticks) else None

        ticks = wait_until(finished_ticks, 120, "a finished tick")
        assert [datetime.fromtimestamp(tick["timestamp"], UTC) for tick in ticks] == [latest_tick]
        stored = sql(postgres, "SELECT status FROM job_ticks WHERE type = 'SCHEDULE'")
        assert stored == [(ticks[0]["status"],)]

        runs = wait_until(lambda: [run for run in instance.get_runs() if run.is_finished and
                                   run.tags.get("dagster/sensor_name") == "missed_sessions_sensor"], 180, "the sensor's run")
        assert runs[0].status == DagsterRunStatus.SUCCESS, daemon.tail()
        recent = [day.isoformat() for day in due_sessions(datetime.now(UTC), 10)]
        assert set(recent) <= set(instance.get_materialized_partitions(AssetKey("daily_bars")))
    finally:
        if daemon:
            daemon.stop()
        webserver.stop()
