"""A real `mlflow server` as the shared tracking server: champions loaded over HTTP, the 66 models listed by its UI in Chromium."""

import re

import polars as pl
import pytest

from turbomode_pipeline.core.model_zoo import MODEL_TYPES
from turbomode_pipeline.core.universe import GICS_SECTORS
from turbomode_pipeline.resources.model_registry import ModelRegistry, registered_name
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import load_settings
from turbomode_pipeline_tests.servers import chromium_page, mlflow_server


@pytest.fixture(scope="module")
def registry(trained_models, tmp_path_factory) -> ModelRegistry:
    """The session's 66 trained models behind a real `mlflow server`, reached over HTTP as a second machine would."""
    folder = tmp_path_factory.mktemp("mlflow")
    server, url = mlflow_server(trained_models.registry.tracking_uri, folder / "artifacts", folder)
    yield ModelRegistry(tracking_uri=url, artifact_root="mlflow-artifacts:/turbomode")
    server.stop()


def test_consumers_load_champions_through_the_tracking_server(registry, trained_models):
    name = registered_name("Energy", "xgboost")
    records = Warehouse(path=str(trained_models.warehouse_path)).model_versions()
    record = records.filter(pl.col("registered_model") == name).row(0, named=True)
    model = registry.load(name, record["version"], record["sha256"]).model  # read over HTTP, checked by the warehouse
    assert model.feature_names
    assert registry.champion_metric(name) == trained_models.registry.champion_metric(name)


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


def test_the_mlflow_experiment_opens_on_its_training_runs(registry, tmp_path, monkeypatch):
    client = registry._client()
    experiment = client.get_experiment_by_name("turbomode")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI view
    model = client.get_registered_model(registered_name("Energy", "stacked_ensemble"))
    for part in ("stacked_ensemble for the Energy sector", "Label: ", "features: ", "Fitted on entry sessions ",
                 "judged on the holdout ", "roc_auc 0."):
        assert part in model.description
    version = client.get_model_version(model.name, "1")
    assert version.description == model.description
    inputs = client.get_run(version.run_id).inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["training_samples energy"]
    assert '"num_rows"' in inputs[0].dataset.profile

    monkeypatch.setenv("TURBOMODE_DATA_DIR", str(tmp_path / "data"))
    screenshots = load_settings().data_dir / "screenshots"
    screenshots.mkdir(parents=True)
    with chromium_page() as page:
        # MLflow 3.17's own switch between its GenAI and model-training views starts on GenAI in a new browser;
        # this is the page its "Model training" button opens
        page.goto(f"{registry.tracking_uri}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning",
                  wait_until="domcontentloaded")
        # the training's parent run: "training <week> <run id>"
        page.get_by_text(re.compile(r"^training \d{4}-\d\d-\d\d [0-9a-f]{8}$")).first.wait_for(timeout=60_000)
        page.keyboard.press("Escape")
        page.screenshot(path=screenshots / "mlflow-experiment-training-runs.png")
        body = page.inner_text("body")
    assert "Run Name" in body and "Created" in body, body[:2000]
