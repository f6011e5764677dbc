"""The shipped instance's batching SQLite storage records what Dagster's own SQLite storage records.

Same range runs on both (dagster_home/dagster.yaml as shipped, and `storage: sqlite`): the same
partitions materialised, the same status per partition after a failed run, the same events.
How much faster it is, is in `make bench` (ten-year backfill table)."""

import os
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from unittest.mock import patch

import dagster
from dagster import AssetCheckKey, AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter

from turbomode_pipeline.due import due_sessions
from turbomode_pipeline.partitions import daily_sessions
from turbomode_pipeline.instance_storage import CHECKED_DAGSTER_VERSION, EVENT_BATCH_SIZE, BatchingSqliteEventLogStorage
from turbomode_pipeline_tests.support import materialize_bars, range_tags

REPO = Path(__file__).resolve().parents[1]
STOCK_SQLITE = "storage:\n  sqlite:\n    base_dir:\n      env: DAGSTER_HOME\ntelemetry:\n  enabled: false\n"
BARS = AssetKey("daily_bars")


def instance_from(home: Path, config: str | Path) -> DagsterInstance:
    home.mkdir()
    if isinstance(config, Path):
        shutil.copy(config, home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(config)
    os.environ["DAGSTER_HOME"] = str(home)  # the config's base_dir; the caller restores the environment
    return DagsterInstance.from_config(str(home))


def recorded(instance: DagsterInstance, sessions: list[str]) -> dict:
    """What a user sees of the asset: partition statuses and every asset event, run by run."""
    events = {
        kind.value: Counter(r.partition_key for r in instance.get_event_records(EventRecordsFilter(kind, BARS)))
        for kind in (DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    }
    statuses = instance.get_status_by_partition(BARS, sessions, daily_sessions())
    # The tag names (e.g. dagster/data_version); their values differ per run.
    tags = Counter(frozenset(tags) for tags in instance.get_event_tags_for_asset(BARS))
    check = AssetCheckKey(BARS, "bars_match_schema")
    checks = Counter(
        (r.partition, r.status.value, r.event.dagster_event.event_type_value)
        for r in instance.event_log_storage.get_asset_check_execution_history(check, limit=10_000)
    )
    entry = instance.get_asset_records([BARS])[0].asset_entry  # the asset's row, which the UI's asset list reads
    latest = entry.last_materialization_record.partition_key
    status = {key: value.value for key, value in statuses.items()}
    return {"events": events, "tags": tags, "latest": latest, "checks": checks, "status": status}


def two_range_runs(instance: DagsterInstance, resources: dict, sessions: list[str], broken_universe: Path) -> None:
    """A good run over all sessions, then a run over the last five that fails (a universe file that
    is not there)."""
    assert materialize_bars(resources, instance, tags=range_tags(sessions[0], sessions[-1])).success
    failing = {**resources, "universe": type(resources["universe"])(path=str(broken_universe))}
    assert not materialize_bars(failing, instance, tags=range_tags(sessions[-5], sessions[-1])).success


def test_the_batching_storage_records_what_dagsters_sqlite_storage_records(tmp_path, resources):
    days = 40
    sessions = [d.isoformat() for d in due_sessions(datetime.now(UTC), days)]
    with patch.dict(os.environ):
        os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)
        stock = instance_from(tmp_path / "stock", STOCK_SQLITE)
        two_range_runs(stock, resources, sessions, tmp_path / "missing.csv")
        expected = recorded(stock, sessions)

        shipped = instance_from(tmp_path / "shipped", REPO / "dagster_home" / "dagster.yaml")
        assert isinstance(shipped.event_log_storage, BatchingSqliteEventLogStorage)
        assert "DAGSTER_EVENT_BATCH_SIZE" not in os.environ  # building the storage leaves the environment alone
        os.environ["DAGSTER_EVENT_BATCH_SIZE"] = EVENT_BATCH_SIZE  # the environment turns Dagster's batching on
        two_range_runs(shipped, resources, sessions, tmp_path / "missing.csv")
        assert recorded(shipped, sessions) == expected

    # The failed run's partitions show failed, as Dagster shows them.
    assert Counter(expected["status"].values()) == {"MATERIALIZED": days - 5, "FAILED": 5}
    assert sum(expected["events"]["ASSET_MATERIALIZATION"].values()) == days == expected["tags"].total()
    assert sum(expected["events"]["ASSET_MATERIALIZATION_PLANNED"].values()) == days + 5
    planned_checks = sum(n for (_, status, _), n in expected["checks"].items() if status == "PLANNED")
    assert planned_checks == days + 5  # a planned check execution per partition of each run


def test_the_installed_dagster_is_the_one_the_storage_was_checked_against():
    """instance_storage.py subclasses Dagster's private SQLite event log and overrides a private method:
    a new Dagster may change either without notice, so the storage is checked again before it runs on one."""
    assert dagster.__version__ == CHECKED_DAGSTER_VERSION, (
        f"instance_storage.py was checked against dagster {CHECKED_DAGSTER_VERSION}; the installed is "
        f"{dagster.__version__}: re-run test_instance_storage and the instance_storage bench "
        f"(python -m turbomode_pipeline_tests.bench instance_storage), then update CHECKED_DAGSTER_VERSION"
    )


def test_every_environment_that_runs_steps_on_the_shipped_instance_turns_batching_on():
    """Dagster reads DAGSTER_EVENT_BATCH_SIZE in the process that runs the steps; the storage no longer
    sets it, so the Makefile (make ui, demo, test, bench, soak), the services' environment file and
    the tests' servers do."""
    from turbomode_pipeline_tests.servers import server_env

    setting = f"DAGSTER_EVENT_BATCH_SIZE={EVENT_BATCH_SIZE}"
    assert f"export DAGSTER_EVENT_BATCH_SIZE ?= {EVENT_BATCH_SIZE}" in (REPO / "Makefile").read_text()
    assert setting in (REPO / "deploy" / "turbomode.env.example").read_text().splitlines()
    assert setting in (REPO / "dagster_home" / "dagster.yaml").read_text()
    assert server_env(REPO, REPO, REPO)["DAGSTER_EVENT_BATCH_SIZE"] == EVENT_BATCH_SIZE
