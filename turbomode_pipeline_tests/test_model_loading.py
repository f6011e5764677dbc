"""Loading champions: a pickle is unpickled only when its bytes are the ones the pipeline registered, by the
digest the pipeline recorded in its own warehouse (write access to MLflow alone cannot run code).

Real MLflow SQLite tracking store + registry and local artifact folder, real Dagster instance in process.
"""

import hashlib
import pathlib
import pickle
import urllib.parse
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from dagster import materialize

from turbomode_pipeline.assets.scanner import scanner_signals
from turbomode_pipeline.core.model_zoo import STACKED
from turbomode_pipeline.resources import model_registry
from turbomode_pipeline.resources.model_registry import (
    CHAMPION,
    MODEL_FILE,
    SHA256_TAG,
    ModelRegistry,
    UntrustedModel,
    registered_name,
)
from turbomode_pipeline.resources.warehouse import Warehouse

NAME = registered_name("Energy", STACKED)


class Planted:
    """A pickle that, once unpickled, leaves a file behind: proof that nothing unpickled it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def artifact_path(registry: ModelRegistry, name: str, version: str, file: str = MODEL_FILE) -> Path:
    uri = registry._client().get_model_version_download_uri(name, version)
    return Path(urllib.request.url2pathname(urllib.parse.urlparse(uri).path)) / file


def forget_loaded(name: str) -> None:
    """As in a fresh process: the next load of `name` reads its artifact again."""
    for key in [k for k in model_registry._LOADED if k[1] == name]:
        del model_registry._LOADED[key]


def recorded(trained_models, name: str = NAME) -> dict:
    """The warehouse's own record of `name`'s version: its number and the sha256 registration wrote there."""
    versions = Warehouse(path=str(trained_models.warehouse_path)).model_versions()
    return versions.filter(pl.col("registered_model") == name).row(0, named=True)


@pytest.fixture
def tampered(trained_models, tmp_path):
    """Energy's stacked champion with its model.pkl replaced after registration by a planted pickle."""
    registry = trained_models.registry
    version = recorded(trained_models)["version"]
    path = artifact_path(registry, NAME, version)
    original = path.read_bytes()
    marker = tmp_path / "unpickled"
    path.write_bytes(pickle.dumps(Planted(marker)))
    forget_loaded(NAME)
    try:
        yield registry, version, marker
    finally:
        path.write_bytes(original)
        forget_loaded(NAME)


def test_registration_records_the_sha256_of_the_stored_pickle_in_the_warehouse(trained_models):
    registry = trained_models.registry
    record = recorded(trained_models)
    version = registry._client().get_model_version(NAME, record["version"])
    stored = artifact_path(registry, NAME, record["version"]).read_bytes()
    assert record["sha256"] == hashlib.sha256(stored).hexdigest() == version.tags[SHA256_TAG]
    assert "serialization_format: pickle" in artifact_path(registry, NAME, record["version"], "MLmodel").read_text()
    assert registry._client().get_run(version.run_id).data.tags["model_sha256"] == record["sha256"]
    forget_loaded(NAME)
    champion = registry.load(NAME, record["version"], record["sha256"])
    assert champion.version == record["version"] and champion.model.feature_names


def test_a_tampered_artifact_is_refused_naming_model_and_version(tampered, trained_models, tmp_path, instance):
    registry, version, marker = tampered
    with pytest.raises(UntrustedModel, match=rf"{NAME} version {version}: {MODEL_FILE} has sha256 .* refusing to unpickle"):
        registry.load(NAME, version, recorded(trained_models)["sha256"])

    resources = trained_models.resources(tmp_path)
    result = materialize(
        [scanner_signals], resources=resources, instance=instance,
        partition_key=trained_models.sessions[-1].isoformat(), raise_on_error=False,
    )
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert f"scanner not run: {NAME} version {version}" in message and "refusing to unpickle" in message
    assert resources["warehouse"].query("SELECT count(*) AS n FROM information_schema.tables "
                                        "WHERE table_name = 'signal_history'")["n"].item() == 0
    assert not marker.exists()


def test_write_access_to_mlflow_alone_cannot_run_code_in_the_scanner(trained_models, tmp_path, instance):
    """The attack of issue 28: someone who can write to MLflow registers a planted pickle as a new version of the
    Energy champion, tags it with its own sha256 and moves the `champion` alias to it. The scan never unpickles it:
    it loads only versions the warehouse recorded at registration, with the digest recorded there."""
    import mlflow

    resources = trained_models.resources(tmp_path)  # the warehouse copy; the shared MLflow store (restored below)
    registry = trained_models.registry
    client = registry._client()
    legitimate = client.get_model_version_by_alias(NAME, CHAMPION)
    marker = tmp_path / "unpickled"
    planted = pickle.dumps(Planted(marker))
    with mlflow.start_run(experiment_id=registry._experiment_id(client)) as run:
        mlflow.log_text("", "model/MLmodel")
    folder = Path(urllib.request.url2pathname(urllib.parse.urlparse(client.get_run(run.info.run_id).info.artifact_uri).path))
    (folder / "model" / MODEL_FILE).write_bytes(planted)
    forged = client.create_model_version(NAME, source=f"{client.get_run(run.info.run_id).info.artifact_uri}/model",
                                         run_id=run.info.run_id)
    client.set_model_version_tag(NAME, forged.version, SHA256_TAG, hashlib.sha256(planted).hexdigest())
    client.set_registered_model_alias(NAME, CHAMPION, forged.version)
    forget_loaded(NAME)
    try:
        day = trained_models.sessions[-1]
        result = materialize([scanner_signals], resources=resources, instance=instance, partition_key=str(day))
        assert result.success
        energy = resources["warehouse"].query("SELECT DISTINCT model_version FROM scanner_scores WHERE sector = 'Energy'")
        assert energy["model_version"].to_list() == [recorded(trained_models)["version"]] != [str(forged.version)]
        assert not marker.exists()
    finally:
        client.set_registered_model_alias(NAME, CHAMPION, legitimate.version)
        client.delete_model_version(NAME, forged.version)
        forget_loaded(NAME)
