"""Shared fixtures: a real temporary Dagster instance, a real DuckDB file, a small universe, trained models,
the live-trading resources. Helpers that tests import live in support.py."""

import os

# Hermetic: the package reads its settings once, at import, so the shell's own variables are
# dropped before anything of ours is imported. A test that needs a value sets it itself.
HOST_PREFIXES = ("TURBOMODE_", "APCA_", "ALPACA_", "MLFLOW_", "DAGSTER_")
for _name in [name for name in os.environ if name.startswith(HOST_PREFIXES)]:
    del os.environ[_name]
# What the Makefile and the services' environment set for every Dagster process (dagster_home/dagster.yaml).
DESK_ENV = {"DAGSTER_EVENT_BATCH_SIZE": "500"}
os.environ.update(DESK_ENV)
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from dagster import instance_for_test, materialize

from turbomode_pipeline.resources.broker import LocalPaperBroker
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.model_registry import ModelRegistry
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.settings import DEFAULT_UNIVERSE, get_settings
from turbomode_pipeline_tests.support import (
    FAST_TRAINING, SCANNABLE_SESSIONS, TRAINING_SESSIONS, TrainedModels, small_universe,
)


@pytest.fixture
def instance():
    with instance_for_test() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def small_universe_path(tmp_path: Path) -> Path:
    """4 symbols of each sector: 44."""
    return small_universe(tmp_path)


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(path=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=2.0)


@pytest.fixture
def resources(warehouse: Warehouse, small_universe_path: Path, tmp_path: Path) -> dict:
    return {
        "market_data": SimulatedMarketData(seed=11, predictability=0.5),
        "warehouse": warehouse,
        "universe": Universe(path=str(small_universe_path)),
        "labels": LabelSettings.from_settings(get_settings()),
        "reports": ReportStore(directory=str(tmp_path / "reports")),
    }


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    """What one test set in the environment never reaches the next: the settings' variables are cleared again."""
    for name in list(os.environ):
        if name.startswith(HOST_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in DESK_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> TrainedModels:
    """The 44-symbol small universe over the latest 700 sessions: bars, features and labels written
    with the core functions, then one real `sector_models` run into a temporary MLflow store, for the
    week of the 45th newest session: every later session is out of sample and can be scanned."""
    from turbomode_pipeline.assets.models import sector_models
    from turbomode_pipeline.core.point_in_time import serving_week
    from turbomode_pipeline.due import due_sessions
    from turbomode_pipeline.core.features import compute_features
    from turbomode_pipeline.core.labels import triple_barrier
    from turbomode_pipeline.core.universe import load_universe
    from turbomode_pipeline.schemas import (
        DAILY_BARS, DAILY_FEATURES, TRAINING_SAMPLES, DailyBars, DailyFeatures, TrainingSamples, conform,
    )

    folder = tmp_path_factory.mktemp("trained_models")
    universe_path = small_universe(folder)
    sessions = due_sessions(datetime.now(UTC), TRAINING_SESSIONS)
    seed = 7
    bars = SimulatedMarketData(seed=seed, predictability=0.5).daily_bars(sessions, load_universe(universe_path))
    features = compute_features(bars)
    warehouse = Warehouse(path=str(folder / "warehouse.duckdb"))
    warehouse.replace_partitions(DAILY_BARS, conform(bars.with_columns(ingested_at=pl.lit(datetime.now(UTC))), DailyBars), sessions)
    warehouse.replace_partitions(DAILY_FEATURES, conform(features, DailyFeatures), sessions)
    warehouse.replace_partitions(TRAINING_SAMPLES, conform(triple_barrier(bars, features), TrainingSamples), sessions)
    registry = ModelRegistry(
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", artifact_root=str(folder / "mlartifacts")
    )
    week = serving_week(sessions[-SCANNABLE_SESSIONS])
    with instance_for_test() as dagster_instance:
        result = materialize(
            [sector_models], resources={"warehouse": warehouse, "model_registry": registry,
                                        "labels": LabelSettings.from_settings(get_settings())},
            instance=dagster_instance, run_config=FAST_TRAINING, partition_key=week.isoformat(),
        )
        assert result.success
        yield TrainedModels(folder, universe_path, Path(warehouse.path), sessions, registry, dagster_instance, seed, week)


@pytest.fixture
def live(tmp_path: Path) -> dict:
    """The live-trading resources over three symbols, a local paper broker and a ledger in tmp_path."""
    universe = tmp_path / "universe.csv"
    pl.read_csv(DEFAULT_UNIVERSE).filter(pl.col("symbol").is_in(["AAPL", "AMD", "NVDA"])).write_csv(universe)
    ledger_path = str(tmp_path / "trading.sqlite")
    from turbomode_pipeline.live.trading import LiveTrading, TradingClock

    return {
        "ledger": Ledger(path=ledger_path),
        "broker": LocalPaperBroker(ledger_path=ledger_path),
        "market_data": SimulatedMarketData(seed=11),
        "universe": Universe(path=str(universe)),
        "live_warehouse": Warehouse(path=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=0.5),
        "trading_clock": TradingClock(),
        "live_trading": LiveTrading.from_settings(get_settings()),
    }
