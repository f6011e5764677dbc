"""weekly_maintenance on a real warehouse, Dagster instance and MLflow registry; run twice, the second changes nothing."""

import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from dagster import job, op

from turbomode_pipeline.automation.maintenance import weekly_maintenance_job
from turbomode_pipeline.resources.model_registry import ModelRegistry
from turbomode_pipeline.schemas import SIGNAL_HISTORY, SignalHistory, conform

NOW = datetime.now(UTC)
IMMEDIATE = {"ops": {"tidy_up": {"config": {"live_run_retention_days": 0, "model_archive_weeks": 0}}}}


@op
def trade():
    pass


@job(name="live_trading_job")
def live_trading_job():
    trade()


@job(name="market_data_job")
def market_data_job():
    trade()


def signal(session: date, expires: datetime, active: bool = True) -> dict:
    return {
        "id": f"{session}-XOM", "session": session, "symbol": "XOM", "signal_type": "BUY", "confidence": 0.7,
        "entry_price": 100.0, "target_price": 105.0, "stop_loss": 97.0, "sector": "Energy",
        "created_at": datetime.combine(session, datetime.min.time(), UTC), "expires_at": expires, "is_active": active,
        "model_name": "turbomode-energy-stacked_ensemble", "model_version": "1", "mlflow_run_id": "0" * 32,
        "model_labels_through": session - timedelta(days=7),
    }


def registry_with_three_versions(tmp_path) -> ModelRegistry:
    registry = ModelRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "mlartifacts"))
    client = registry._client()
    name = "turbomode-energy-xgboost"
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, source=(tmp_path / "model").as_uri())
    client.set_registered_model_alias(name, "champion", "3")
    client.set_registered_model_alias(name, "challenger", "2")
    return registry


def maintain(instance, resources, run_config=None) -> dict:
    result = weekly_maintenance_job.execute_in_process(instance=instance, resources=resources, run_config=run_config)
    [materialization] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in materialization.event_specific_data.metadata.items()}


def test_maintenance_tidies_once_respects_retention_and_then_changes_nothing(instance, warehouse, tmp_path):
    today = NOW.date()
    rows = [
        signal(today - timedelta(days=800), NOW - timedelta(days=780)),  # beyond retention
        signal(today - timedelta(days=20), NOW - timedelta(days=5)),  # expired, still flagged active
        signal(today - timedelta(days=2), NOW + timedelta(days=10)),  # live
    ]
    sessions = [row["session"] for row in rows]
    warehouse.replace_partitions(SIGNAL_HISTORY, conform(pl.DataFrame(rows), SignalHistory), sessions)
    registry = registry_with_three_versions(tmp_path)
    resources = {"warehouse": warehouse, "model_registry": registry}
    for _ in range(2):
        assert live_trading_job.execute_in_process(instance=instance).success
    assert market_data_job.execute_in_process(instance=instance).success

    first = maintain(instance, resources)  # the default retentions: a week of runs, 8 weeks of models
    assert (first["signals_expired"], first["signals_dropped"]) == (2, 1)
    assert (first["live_runs_deleted"], first["model_versions_archived"]) == (0, 0)
    assert set(first["duckdb_bytes"]) == {"warehouse.duckdb"}

    second = maintain(instance, resources, IMMEDIATE)
    assert (second["live_runs_deleted"], second["model_versions_archived"]) == (2, 1)
    assert second["archived_versions"] == ["turbomode-energy-xgboost/1"]
    assert {r.job_name for r in instance.get_runs()} == {"market_data_job", "weekly_maintenance_job"}
    version = registry._client().get_model_version("turbomode-energy-xgboost", "1")
    assert "neither champion nor challenger" in version.tags["archived"]
    left = warehouse.query("SELECT session, is_active FROM signal_history ORDER BY session")
    assert left.rows() == [(sessions[1], False), (sessions[2], True)]

    third = maintain(instance, resources, IMMEDIATE)
    assert all(third[k] == 0 for k in ("signals_expired", "signals_dropped", "live_runs_deleted", "model_versions_archived"))
    assert warehouse.query("SELECT session, is_active FROM signal_history ORDER BY session").rows() == left.rows()
    assert registry._client().get_model_version("turbomode-energy-xgboost", "1").tags == version.tags


def test_sixteen_rewrites_of_two_years_compact_to_within_one_and_a_half_of_one(resources, instance, warehouse, tmp_path):
    """Re-writing a range deletes and re-inserts it; DuckDB's VACUUM returned none of the space (9 MB grew to
    60 MB for the full universe). The writes go through the warehouse resource as `daily_bars` makes them
    (a Dagster run per rewrite spends minutes on per-partition bookkeeping and adds nothing here)."""
    from pathlib import Path

    from turbomode_pipeline.calendar import sessions_between
    from turbomode_pipeline.schemas import DAILY_BARS, DailyBars

    sessions = sessions_between(date(2022, 1, 3), date(2023, 12, 29))
    bars = resources["market_data"].daily_bars(sessions, resources["universe"].load())
    bars = conform(bars.with_columns(ingested_at=pl.lit(NOW)), DailyBars)
    warehouse.replace_partitions(DAILY_BARS, bars, sessions)
    one = Path(warehouse.path).stat().st_size
    for _ in range(15):
        warehouse.replace_partitions(DAILY_BARS, bars, sessions)
    grown = Path(warehouse.path).stat().st_size
    registry = ModelRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "mlartifacts"))
    compacted = maintain(instance, {"warehouse": warehouse, "model_registry": registry})["duckdb_bytes"]["warehouse.duckdb"]
    print(f"warehouse: one write {one / 1e6:.1f} MB, 16 writes {grown / 1e6:.1f} MB, compacted {compacted / 1e6:.1f} MB")
    assert grown > 2 * one  # the growth this guards against
    assert compacted == Path(warehouse.path).stat().st_size <= 1.5 * one
    stored = warehouse.query("SELECT * FROM daily_bars ORDER BY session, symbol")
    assert stored.drop("ingested_at").equals(bars.sort("session", "symbol").drop("ingested_at"))  # every row kept
    assert sorted(p.name for p in Path(warehouse.path).parent.glob("warehouse.duckdb*")) == ["warehouse.duckdb"]


def test_maintenance_prunes_the_planned_check_rows_of_old_finished_runs(resources, instance, warehouse, tmp_path):
    """A range run leaves a PLANNED row per partition and check (each holding the planned event) for ever."""
    from dagster import AssetKey

    from turbomode_pipeline.assets.market_data import daily_bars
    from turbomode_pipeline_tests.support import materialize_bars, range_tags

    checks = len(list(daily_bars.check_specs))  # the blocking checks and the warnings
    assert checks == 8
    assert materialize_bars(resources, instance, tags=range_tags("2024-03-04", "2024-03-08")).success
    assert materialize_bars(resources, instance, partition_key="2024-03-11").success  # not a range run

    def check_rows():
        with instance.event_log_storage.index_connection() as conn:
            return sorted(conn.exec_driver_sql(
                "SELECT execution_status, count(*) FROM asset_check_executions GROUP BY 1").fetchall())

    assert check_rows() == [("PLANNED", 5 * checks + checks), ("SUCCEEDED", 2 * checks)]  # evaluated without partition
    registry = ModelRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "mlartifacts"))
    pipeline = {"warehouse": warehouse, "model_registry": registry}
    assert maintain(instance, pipeline)["planned_check_rows_deleted"] == 0  # younger than the retention
    prune_now = {"ops": {"tidy_up": {"config": {"planned_check_retention_days": 0}}}}
    assert maintain(instance, pipeline, prune_now)["planned_check_rows_deleted"] == 6 * checks
    assert check_rows() == [("SUCCEEDED", 2 * checks)]  # every evaluated check kept
    assert len(instance.get_materialized_partitions(AssetKey("daily_bars"))) == 6  # and every materialisation
    assert maintain(instance, pipeline, prune_now)["planned_check_rows_deleted"] == 0


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 16 MB tmpfs (the test runs as root in CI and here); skipped, saying why, where mounting is refused."""
    folder = tmp_path / "small_fs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.parametrize("headroom", [2.0, 0.0], ids=["refused_before_it_starts", "copy_fails_midway"])
def test_compaction_on_a_full_small_filesystem_leaves_no_partial_copy_and_the_next_daily_bars_runs(
    small_filesystem, headroom, resources, instance, tmp_path
):
    """A 3.9 MB warehouse on a 16 MB filesystem filled to 3 MB free: the copy of its live rows cannot fit (it goes
    through a WAL as large as the data). With the shipped headroom the compaction is refused before it starts,
    saying how much it needs and how much is free; with none (an estimate proven wrong, another writer filling
    the disk) the copy fails on ENOSPC midway. Either way the partial `.compacting` files are gone, the
    warehouse is as it was, and the next `daily_bars` run (which needs about 2 MB) succeeds."""
    from turbomode_pipeline.calendar import sessions_between
    from turbomode_pipeline.resources.warehouse import Warehouse
    from turbomode_pipeline.schemas import DAILY_BARS, DailyBars
    from turbomode_pipeline_tests.support import materialize_bars

    warehouse = Warehouse(path=str(small_filesystem / "warehouse.duckdb"), lock_timeout_s=2.0, compact_headroom=headroom)
    sessions = sessions_between(date(2021, 1, 4), date(2024, 12, 31))
    bars = resources["market_data"].daily_bars(sessions, resources["universe"].load())
    warehouse.replace_partitions(DAILY_BARS, conform(bars.with_columns(ingested_at=pl.lit(NOW)), DailyBars), sessions)
    before = warehouse.query("SELECT * FROM daily_bars ORDER BY session, symbol")
    with open(small_filesystem / "filler", "wb") as filler:
        filler.write(b"\0" * (shutil.disk_usage(small_filesystem).free - 3_000_000))
    free = shutil.disk_usage(small_filesystem).free

    registry = ModelRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "mlartifacts"))
    result = weekly_maintenance_job.execute_in_process(
        instance=instance, resources={"warehouse": warehouse, "model_registry": registry}, raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    if headroom:
        needed = 2 * Path(warehouse.path).stat().st_size
        assert f"needs {needed / 1e6:.1f} MB free" in error.message and f"{free / 1e6:.1f} MB are free" in error.message
    else:
        assert "No space left on device" in error.message
    assert sorted(p.name for p in small_filesystem.iterdir()) == ["filler", "warehouse.duckdb"]  # no partial copy
    assert warehouse.query("SELECT * FROM daily_bars ORDER BY session, symbol").equals(before)

    assert materialize_bars({**resources, "warehouse": warehouse}, instance, partition_key="2025-01-02").success
    assert warehouse.query("SELECT count(*) AS n FROM daily_bars WHERE session = '2025-01-02'")["n"][0] == 44
