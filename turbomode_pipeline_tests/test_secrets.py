"""The Alpaca key and secret never reach Dagster's storage, its logs or the alerts.

Runs the real code location with `dagster asset materialize` against a real instance in a
temporary DAGSTER_HOME (the shipped SQLite config, and the shipped PostgreSQL config on a
throwaway server) and the loopback emulator, once successfully and once failing, then reads
every table of the instance's databases (zlib-compressed snapshot blobs decompressed, as
Dagster stores them), every file under DAGSTER_HOME and the data folder, and the alert the
run-failure sensor writes for the failed run. A second test trains a sector's models through the
same code location with the canary keys in its environment, and reads every file of the MLflow
store (the tracking database, params and tags, every artifact).
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
import zlib
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, build_run_status_sensor_context

from turbomode_pipeline.automation.alerts import run_failure_alerts
from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline.core.universe import load_universe
from turbomode_pipeline.resources.alerts import AlertSender
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline_tests.alpaca_emulator import AlpacaEmulator
from turbomode_pipeline_tests.support import small_universe

KEY = f"canary-key-{uuid.uuid4().hex}"
SECRET = f"canary-secret-{uuid.uuid4().hex}"


def as_text(value) -> str:
    """A stored value as text; bytes decompressed first when they are a zlib stream (Dagster's snapshots)."""
    if not isinstance(value, bytes):
        return str(value)
    try:
        value = zlib.decompress(value)
    except zlib.error:
        pass
    return value.decode("utf-8", "replace")


def sqlite_values(db: Path):
    """Every value of every table of `db`, as text; blobs decompressed when they are zlib streams."""
    with sqlite3.connect(db) as con:
        tables = [name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    yield table, as_text(value)


def leaks(folder: Path, canaries: tuple[str, ...]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        if any(c.encode() in raw for c in canaries):
            found.append(str(path))
        if raw.startswith(b"SQLite format 3"):
            found += [f"{path}:{table}" for table, value in sqlite_values(path) if any(c in value for c in canaries)]
    return found


def materialize(env: dict, partition: str) -> subprocess.CompletedProcess:
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "asset", "materialize", "-m", "turbomode_pipeline.definitions", "--select", "daily_bars",
               "--partition", partition]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def postgres_values(url: str):
    """Every value of every table of the PostgreSQL database at `url`, as text (bytea decompressed)."""
    import psycopg2

    with psycopg2.connect(url) as con, con.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        for (table,) in cursor.fetchall():
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                for value in row:
                    yield table, as_text(bytes(value) if isinstance(value, memoryview) else value)


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request, tmp_path):
    """(DAGSTER_HOME, extra environment, a function listing every stored value) for each instance storage."""
    from turbomode_pipeline_tests.servers import REPO, PostgresServer, instance_home

    if request.param == "sqlite":  # the shipped instance config of each
        home = instance_home(tmp_path, REPO / "dagster_home" / "dagster.yaml")
        yield home, {}, lambda: [v for db in home.rglob("*.db") for v in sqlite_values(db)]
        return
    server = PostgresServer()
    try:
        home = instance_home(tmp_path, REPO / "dagster_home_postgres" / "dagster.yaml")
        yield home, {"TURBOMODE_DAGSTER_PG_URL": server.sqlalchemy_url}, lambda: list(postgres_values(server.url))
    finally:
        server.stop()


def test_a_canary_secret_is_in_no_table_no_log_and_no_alert(tmp_path, monkeypatch, storage):
    home, storage_env, stored_values = storage
    data = tmp_path / "data"
    data.mkdir()
    universe = small_universe(tmp_path)
    bars = SimulatedMarketData(seed=3).daily_bars(sessions_between(date(2024, 3, 4), date(2024, 3, 8)),
                                                 load_universe(universe))
    with AlpacaEmulator(bars) as emulator:
        emulator.key_id, emulator.secret = KEY, SECRET
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "TURBOMODE_", "DAGSTER_"))} | {
            "DAGSTER_HOME": str(home), "TURBOMODE_DATA_DIR": str(data), "TURBOMODE_UNIVERSE": str(universe),
            "TURBOMODE_MARKET_DATA": "alpaca", "TURBOMODE_BROKER": "alpaca", "APCA_API_KEY_ID": KEY,
            "APCA_API_SECRET_KEY": SECRET, "APCA_API_DATA_URL": emulator.url, "APCA_API_BASE_URL": emulator.url,
            **storage_env,
        }
        ok = materialize(env, "2024-03-05")
        assert ok.returncode == 0, ok.stderr[-3000:]
        emulator.always_fail = 401  # a refused key: the error a user reads must not quote it
        failed = materialize(env, "2024-03-06")
        assert failed.returncode != 0
    assert "HTTP 401" in failed.stdout + failed.stderr
    assert KEY not in ok.stdout + ok.stderr + failed.stdout + failed.stderr
    assert SECRET not in ok.stdout + ok.stderr + failed.stdout + failed.stderr

    # the alert a person reads for the failed run, written by the real sensor over the real instance
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with DagsterInstance.get() as instance:  # DAGSTER_HOME and the storage's URL are set above
        runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
        assert len(runs) == 1
        run = runs[0]
        failure = next(
            record.event_log_entry.dagster_event
            for record in instance.get_records_for_run(run.run_id).records
            if record.event_log_entry.dagster_event is not None
            and record.event_log_entry.dagster_event.event_type_value == "PIPELINE_FAILURE"
        )
        context = build_run_status_sensor_context(
            sensor_name="run_failure_alerts", dagster_instance=instance, dagster_run=run, dagster_event=failure,
            resources={"alerts": AlertSender(log_path=str(data / "alerts.log"))},
        ).for_run_failure()
        run_failure_alerts(context)
    alert = (data / "alerts.log").read_text()
    assert "daily_bars" in alert and run.run_id in alert

    values = stored_values()
    assert [table for table, value in values if KEY in value or SECRET in value] == []
    assert leaks(home, (KEY, SECRET)) == []  # compute logs, the SQLite files, anything else in DAGSTER_HOME
    assert leaks(data, (KEY, SECRET)) == []  # the warehouse, the ledger, alerts.log
    snapshots = [table for table, value in values if "APCA_API_SECRET_KEY" in value]
    assert snapshots, "the job snapshot names the variable it reads the secret from"


def test_a_canary_secret_is_in_no_mlflow_param_tag_or_artifact(tmp_path, trained_models):
    """`sector_models` for one sector through `dagster asset materialize`, the keys in the environment."""
    from turbomode_pipeline.resources.warehouse import Warehouse
    from turbomode_pipeline_tests.support import FAST_TRAINING
    from turbomode_pipeline_tests.servers import REPO, instance_home

    home = instance_home(tmp_path, REPO / "dagster_home" / "dagster.yaml")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(trained_models.warehouse_path, data / "warehouse.duckdb")  # its training samples
    Warehouse(path=str(data / "warehouse.duckdb")).execute("DROP TABLE model_versions", "DROP TABLE champion_history")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "TURBOMODE_", "DAGSTER_", "MLFLOW_"))} | {
        "DAGSTER_HOME": str(home), "TURBOMODE_DATA_DIR": str(data), "TURBOMODE_UNIVERSE": str(trained_models.universe_path),
        "APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET, "TURBOMODE_MARKET_DATA": "alpaca",
        "TURBOMODE_BROKER": "alpaca", "APCA_API_DATA_URL": "http://127.0.0.1:9", "APCA_API_BASE_URL": "http://127.0.0.1:9",
    }
    dagster = str(Path(sys.executable).with_name("dagster"))
    energy = {"ops": {"sector_models": {"config": {**FAST_TRAINING["ops"]["sector_models"]["config"], "sectors": ["energy"]}}}}
    trained = subprocess.run(
        [dagster, "asset", "materialize", "-m", "turbomode_pipeline.definitions", "--select", "sector_models",
         "--partition", str(trained_models.week), "--config-json", json.dumps(energy)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    mlflow_files = [p for p in data.rglob("*") if p.is_file() and ("mlflow" in p.name or "mlartifacts" in p.parts)]
    assert any(p.name == "mlflow.db" for p in mlflow_files) and len(mlflow_files) > 6  # params, models, reliability
    assert leaks(data, (KEY, SECRET)) == []  # mlflow.db's every table, every artifact, the warehouse
    assert leaks(home, (KEY, SECRET)) == []
    assert KEY not in trained.stdout + trained.stderr and SECRET not in trained.stdout + trained.stderr


def test_the_launchpad_shows_each_secret_as_the_variable_it_is_read_from():
    """Every resource of the code location as the launchpad scaffolds its config: the Alpaca keys and the
    alert webhook appear as `{"env": NAME}`, and no secret's value is anywhere in any resource's config."""
    from turbomode_pipeline.definitions import resources
    from turbomode_pipeline.settings import load_settings

    webhook = f"https://hooks.example/{uuid.uuid4().hex}"
    env = {"TURBOMODE_MARKET_DATA": "alpaca", "TURBOMODE_BROKER": "alpaca", "APCA_API_KEY_ID": KEY,
           "APCA_API_SECRET_KEY": SECRET, "APCA_API_BASE_URL": "https://paper-api.alpaca.markets",
           "TURBOMODE_ALERT_WEBHOOK": webhook}
    launchpad = {name: resource.get_resource_definition().config_schema.as_field().default_value
                 for name, resource in resources(load_settings(env)).items()}
    for name in ("market_data", "broker"):
        assert launchpad[name]["api_key"] == {"env": "APCA_API_KEY_ID"}
        assert launchpad[name]["secret_key"] == {"env": "APCA_API_SECRET_KEY"}
    assert launchpad["alerts"]["webhook_url"] == {"env": "TURBOMODE_ALERT_WEBHOOK"}
    shown = json.dumps(launchpad, default=str)
    assert KEY not in shown and SECRET not in shown and webhook not in shown
