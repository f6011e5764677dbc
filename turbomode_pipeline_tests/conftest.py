"""Shared fixtures: a real temporary Dagster instance, a real DuckDB file, a small universe."""

import os
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, instance_for_test, materialize

from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import DEFAULT_UNIVERSE


@pytest.fixture
def instance():
    with instance_for_test() as dagster_instance:
        yield dagster_instance


def small_universe(folder: Path, per_sector: int = 4) -> Path:
    """The largest names of each of the 11 sectors (the file lists them first), as a universe file."""
    universe = pl.read_csv(DEFAULT_UNIVERSE)
    path = folder / "universe.csv"
    universe.group_by("sector", maintain_order=True).head(per_sector).sort("symbol").write_csv(path)
    return path


@pytest.fixture
def small_universe_path(tmp_path: Path) -> Path:
    """4 symbols of each sector: 44."""
    return small_universe(tmp_path)


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(path=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=2.0)


@pytest.fixture
def resources(warehouse: Warehouse, small_universe_path: Path) -> dict:
    return {
        "market_data": SimulatedMarketData(seed=11, predictability=0.5),
        "warehouse": warehouse,
        "universe": Universe(path=str(small_universe_path)),
    }


def range_tags(first: str, last: str) -> dict[str, str]:
    return {PARTITION_RANGE_START: first, PARTITION_RANGE_END: last}


def materialize_bars(resources: dict, instance, *, partition_key=None, tags=None, assets=(daily_bars,)):
    return materialize(
        list(assets), resources=resources, instance=instance, partition_key=partition_key, tags=tags,
        raise_on_error=False,
    )


def materialized_keys(instance, asset: str = "daily_bars") -> set[str]:
    return set(instance.get_materialized_partitions(AssetKey(asset)))


def table(warehouse: Warehouse, sql: str = "SELECT * FROM daily_bars ORDER BY session, symbol") -> pl.DataFrame:
    return warehouse.query(sql)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    """Tests never reach Alpaca by accident: its variables are cleared unless a test sets them."""
    for name in list(os.environ):
        if name.startswith("APCA_") or name.startswith("TURBOMODE_"):
            monkeypatch.delenv(name)
