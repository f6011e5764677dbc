"""A real `mlflow server` as the shared tracking server: 66 models logged over HTTP, listed by its UI in Chromium."""

import re
from datetime import date

import pytest
from dagster import instance_for_test, materialize

from turbomode_pipeline.assets.models import sector_models
from turbomode_pipeline.automation.models import all_sectors_tags
from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline.core.features import compute_features
from turbomode_pipeline.core.labels import triple_barrier
from turbomode_pipeline.core.market_sim import SIM_EPOCH
from turbomode_pipeline.core.model_zoo import MODEL_TYPES
from turbomode_pipeline.core.universe import GICS_SECTORS, load_universe
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.model_registry import ModelRegistry, registered_name
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.schemas import (
    DAILY_FEATURES,
    TRAINING_SAMPLES,
    DailyFeatures,
    TrainingSamples,
    conform,
)
from turbomode_pipeline.settings import load_settings
from turbomode_pipeline_tests.conftest import small_universe
from turbomode_pipeline_tests.servers import chromium_page, mlflow_server

FAST = {"ops": {"sector_models": {"config": {"fast": True, "holdout_sessions": 120}}}}


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """A shared tracking server as a second machine would see it: HTTP for runs, registry and artifacts."""
    folder = tmp_path_factory.mktemp("mlflow")
    server, url = mlflow_server(f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts", folder)
    yield url, folder
    server.stop()


@pytest.fixture(scope="module")
def registry(tracking_server) -> ModelRegistry:
    """66 models trained by `sector_models` (fast settings, 2 symbols a sector, 4 years), logged over HTTP."""
    url, folder = tracking_server
    universe = load_universe(small_universe(folder, per_sector=2))
    sessions = [d for d in sessions_between(SIM_EPOCH, date(2025, 6, 30)) if d >= date(2021, 6, 1)]
    bars = SimulatedMarketData(seed=7, predictability=0.5).daily_bars(sessions, universe)
    features = compute_features(bars)
    warehouse = Warehouse(path=str(folder / "warehouse.duckdb"))
    warehouse.replace_partitions(DAILY_FEATURES, conform(features, DailyFeatures), sessions)
    warehouse.replace_partitions(TRAINING_SAMPLES, conform(triple_barrier(bars, features), TrainingSamples), sessions)
    registry = ModelRegistry(tracking_uri=url, artifact_root="mlflow-artifacts:/turbomode")
    with instance_for_test() as instance:
        trained = materialize([sector_models], resources={"warehouse": warehouse, "model_registry": registry},
                              instance=instance, run_config=FAST, tags=all_sectors_tags())
    assert trained.success
    return registry


def test_models_logged_through_the_tracking_server_land_in_its_artifact_store(registry, tracking_server):
    _, folder = tracking_server
    assert len(list((folder / "artifacts" / "turbomode").rglob("MLmodel"))) >= 66
    model = registry.load(registered_name("Energy", "xgboost"))  # by alias, over HTTP
    assert model.feature_names


def test_the_mlflow_ui_lists_the_66_registered_models(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("TURBOMODE_DATA_DIR", str(tmp_path / "data"))
    screenshots = load_settings().data_dir / "screenshots"
    screenshots.mkdir(parents=True)
    with chromium_page(height=2600) as page:  # tall enough for all 66 rows in the screenshot
        page.goto(f"{registry.tracking_uri}/#/models", wait_until="domcontentloaded")
        page.get_by_text("turbomode-").first.wait_for()
        page.keyboard.press("Escape")  # MLflow's "new Model Registry UI" announcement
        page.get_by_role("dialog").wait_for(state="hidden")
        page.get_by_text("25 / page").click()
        page.get_by_text("100 / page").click()
        page.get_by_text(registered_name(GICS_SECTORS[-1], MODEL_TYPES[-1]), exact=True).wait_for()
        listed = set(re.findall(r"turbomode-[a-z-]+-[a-z_]+", page.inner_text("body")))
        page.screenshot(path=screenshots / "mlflow-registered-models.png", full_page=True)
    assert listed == {registered_name(sector, model) for sector in GICS_SECTORS for model in MODEL_TYPES}
    assert len(listed) == 66
