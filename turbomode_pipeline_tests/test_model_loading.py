"""Loading champions: a pickle is unpickled only when its bytes are the ones the pipeline registered.

Real MLflow SQLite tracking store + registry and local artifact folder, real Dagster instance in process.
"""

import hashlib
import pathlib
import pickle
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from dagster import materialize
from sklearn.linear_model import LogisticRegression

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


@pytest.fixture
def tampered(trained_models, tmp_path):
    """Energy's stacked champion with its model.pkl replaced after registration by a planted pickle."""
    registry = trained_models.registry
    version = registry._client().get_model_version_by_alias(NAME, CHAMPION)
    path = artifact_path(registry, NAME, version.version)
    original = path.read_bytes()
    marker = tmp_path / "unpickled"
    path.write_bytes(pickle.dumps(Planted(marker)))
    forget_loaded(NAME)
    try:
        yield registry, str(version.version), marker
    finally:
        path.write_bytes(original)
        forget_loaded(NAME)


def test_registration_records_the_sha256_of_the_stored_pickle(trained_models):
    registry = trained_models.registry
    version = registry._client().get_model_version_by_alias(NAME, CHAMPION)
    stored = artifact_path(registry, NAME, version.version).read_bytes()
    assert version.tags[SHA256_TAG] == hashlib.sha256(stored).hexdigest()
    assert "serialization_format: pickle" in artifact_path(registry, NAME, version.version, "MLmodel").read_text()
    run = registry._client().get_run(version.run_id)
    assert run.data.tags["model_sha256"] == version.tags[SHA256_TAG]
    forget_loaded(NAME)
    champion = registry.champion(NAME)
    assert champion.version == str(version.version) and champion.model.feature_names


def test_a_tampered_artifact_is_refused_naming_model_and_version(tampered, trained_models, tmp_path, instance):
    registry, version, marker = tampered
    with pytest.raises(UntrustedModel, match=rf"{NAME} version {version}: {MODEL_FILE} has sha256 .* refusing to unpickle"):
        registry.champion(NAME)
    with pytest.raises(UntrustedModel, match=rf"{NAME} version {version}"):
        registry.load(NAME)

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


def _register_by_hand(registry: ModelRegistry, serialization_format: str) -> str:
    """A version logged straight through MLflow, as someone other than the pipeline would: no sha256 tag."""
    import mlflow

    client = registry._client()
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [0.2], [0.9]]), np.array([0, 1, 0, 1]))
    with mlflow.start_run(experiment_id=registry._experiment_id(client)):
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=NAME, serialization_format=serialization_format,
            skops_trusted_types=[] if serialization_format == "skops" else None,
        )
    version = str(info.registered_model_version)
    client.set_registered_model_alias(NAME, CHAMPION, version)
    return version


def test_a_pickle_registered_without_the_pipelines_hash_is_never_unpickled(tmp_path):
    registry = ModelRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "artifacts"))
    version = _register_by_hand(registry, "pickle")
    marker = tmp_path / "unpickled"
    artifact_path(registry, NAME, version).write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(UntrustedModel, match=rf"{NAME} version {version}: a pickle model without the {SHA256_TAG} tag"):
        registry.champion(NAME)
    assert not marker.exists()


def test_a_skops_version_registered_before_the_hash_still_loads(tmp_path):
    """Champions registered before this change (skops, no tag) keep scanning until the next training."""
    registry = ModelRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "artifacts"))
    version = _register_by_hand(registry, "skops")
    model = registry.champion(NAME).model
    assert model.predict(np.array([[0.0], [1.0]])).tolist() == [0, 1]
    assert registry.champion(NAME).version == version
