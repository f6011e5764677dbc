"""MLflow tracking and model registry: the only door to trained models.

One parent run per training, one nested run per sector and model type with its params,
metrics, training window, feature importances (table and plot), signature and input
example. Every model is registered as `turbomode-<sector-slug>-<model_type>`; a new version
takes the alias `champion` by the gate of `core.promotion` (skill above the null band, then not
worse than the champion by more than the noise; fast settings never block full ones), otherwise
`challenger`, with the reason in the version's tags. Consumers load models by alias only.

Every version also knows its cutoff (`labels_through`: the last session whose close its training
labels needed), as MLflow params and tags and in the warehouse's own `model_versions` table;
aliases move only for the newest cutoff, and which version was champion from which week on is the
warehouse's append-only `champion_history` (MLflow aliases have no history).

How a model is stored and loaded, and why that is safe: the sklearn flavour's pickle
(`model.pkl`), whose sha256 is recorded at registration in the warehouse's `model_versions`
(and, for people, as the version's `sha256` tag), after checking that the bytes the artifact
store holds are exactly the ones this process pickled. A load is given that digest by the
caller from the warehouse, reads `model.pkl`, and unpickles it only if its sha256 matches. So
the trust boundary is the warehouse file, not MLflow: someone who can write to the MLflow
server (register a version, upload an artifact, set a tag, move an alias) cannot make the
pipeline run their code; a changed or foreign file is refused with an error naming the model
and version, and never unpickled. A stacked ensemble loads about 20 times faster than through
MLflow's skops load_model (`make bench`).
"""

from __future__ import annotations

import hashlib
import pickle
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from dagster import ConfigurableResource

from turbomode_pipeline.core.model_types import STACKED
from turbomode_pipeline.core.promotion import FAST, FULL, Contender, replaces_champion, significance_refusal
from turbomode_pipeline.core.universe import sector_slug
from turbomode_pipeline.settings import is_uri

if TYPE_CHECKING:  # training imports scikit-learn: seconds at every process start
    from turbomode_pipeline.core.training import SectorTraining, TrainedModel

CHAMPION, CHALLENGER = "champion", "challenger"
ARCHIVED_TAG = "archived"
EXPERIMENT = "turbomode"
# MLflow's UI opens an experiment on its training-runs view only with this tag (else on the GenAI
# view); the value is the UI's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
SHA256_TAG = "sha256"  # on the model version: sha256 of its model.pkl, written at registration
MODEL_FILE = "model.pkl"  # what the sklearn flavour names its pickle
# Loaded models by (tracking URI, name, version, sha256): a version's verified bytes never
# change, so each process loads it once however many scans it runs.
_LOADED: dict[tuple[str, str, str, str], object] = {}
# One MLflow client per (tracking URI): creating its SQL store checks the schema every time.
_CLIENTS: dict[str, object] = {}


class UntrustedModel(Exception):
    """A model version whose artifact the pipeline cannot vouch for: it is never unpickled."""


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    run_id: str
    model: object


def _rank_ic_text(metrics: dict[str, float]) -> str:
    return (
        f"holdout rank IC {metrics['rank_ic']:+.4f} (overlap-adjusted t {metrics['rank_ic_t']:+.2f}, "
        f"null band +/-{2 * metrics['rank_ic_se']:.4f} at 2 standard errors)"
    )


def registered_name(sector: str, model_type: str) -> str:
    return f"turbomode-{sector_slug(sector)}-{model_type}"


class ModelRegistry(ConfigurableResource):
    """MLflow at `tracking_uri` (a SQLite file by default) with artifacts under `artifact_root`.

    `artifact_root` is a local folder or a URI the tracking server understands (`s3://...`, or
    `mlflow-artifacts:/...` when the server proxies artifacts), so a shared server is configuration.
    """

    tracking_uri: str
    artifact_root: str

    def _client(self):
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        if self.tracking_uri not in _CLIENTS:
            _CLIENTS[self.tracking_uri] = mlflow.MlflowClient(self.tracking_uri, self.tracking_uri)
        return _CLIENTS[self.tracking_uri]

    def _experiment_id(self, client) -> str:
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            if experiment.tags.get("mlflow.experimentKind") is None:  # created before the tag was set
                client.set_experiment_tag(experiment.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
            return experiment.experiment_id
        if is_uri(self.artifact_root):
            return client.create_experiment(EXPERIMENT, artifact_location=self.artifact_root, tags=EXPERIMENT_KIND)
        Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        location = Path(self.artifact_root).resolve().as_uri()
        return client.create_experiment(EXPERIMENT, artifact_location=location, tags=EXPERIMENT_KIND)

    def log_training(
        self, trainings: list[SectorTraining], run_name: str, tags: dict[str, str], min_rank_ic_t: float,
        samples_source: str, standing: Callable[[str, date], tuple[str | None, bool]],
    ) -> list[dict]:
        """Log, register and promote every model of `trainings` (one cutoff); one row per model for the caller,
        with the version's sha256 and cutoff for the warehouse's own record.

        `tags` name the `label_target` the models learnt; `min_rank_ic_t`: the champion gate's null band in
        standard errors; `samples_source`: where the training samples were read (the warehouse file);
        `standing(name, labels_through)`: the champion a new version must beat as of its cutoff, and whether it
        is the newest version of its model (core/point_in_time.standing)."""
        settings = FAST if tags.get("fast") == "True" else FULL
        import mlflow

        client = self._client()
        experiment_id = self._experiment_id(client)
        rows = []
        label = tags["label_target"]
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as parent:
            mlflow.log_params({"sectors": len(trainings), "model_types": len(trainings[0].models) if trainings else 0})
            for training in trainings:
                dataset = _training_dataset(training, samples_source)
                for trained in training.models.values():
                    rows.append(self._log_model(client, experiment_id, parent.info.run_id, training, trained,
                                                min_rank_ic_t, settings, dataset, label, standing))
        return rows

    def _log_model(
        self, client, experiment_id: str, parent_id: str, training: SectorTraining, trained: TrainedModel, gate: float,
        settings: str, dataset, label: str, standing: Callable[[str, date], tuple[str | None, bool]],
    ):
        import mlflow
        from mlflow.models import infer_signature

        name = registered_name(training.sector, trained.model_type)
        example = training.holdout.select(training.feature_names).head(5).to_pandas()
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=name, nested=True, parent_run_id=parent_id,
            tags={"sector": training.sector, "model_type": trained.model_type, "settings": settings},
        ) as run:
            mlflow.log_params(
                {
                    "sector": training.sector, "model_type": trained.model_type,
                    "train_start": str(training.train_window[0]), "train_end": str(training.train_window[1]),
                    "validation_train_start": str(training.validation_window[0]),
                    "validation_train_end": str(training.validation_window[1]),
                    "holdout_start": str(training.split.holdout_start), "holdout_end": str(training.split.holdout_end),
                    "features": len(training.feature_names), **_cutoff(training),
                    **{f"model__{k}": str(v)[:250] for k, v in _model_params(trained.model).items()},
                }
            )
            mlflow.log_metrics({f"holdout_{k}": v for k, v in trained.metrics.items()})
            if dataset is not None:
                mlflow.log_input(dataset, context="training")
            if trained.importances:
                _log_importances(trained.importances, trained.model_type == STACKED)
            if trained.reliability is not None:
                mlflow.log_table(trained.reliability.to_pandas(), "reliability.json")
            signature = infer_signature(example, trained.model.predict_proba(example))
            info = mlflow.sklearn.log_model(
                trained.model, name="model", signature=signature, input_example=example,
                serialization_format="pickle", pip_requirements=_requirements(),
            )
            version = _register(client, name, info, run.info.run_id, _description(training, trained, label))
            digest = self._record_hash(client, name, version, trained.model)
            mlflow.set_tags({"model_sha256": digest})
            client.set_model_version_tag(name, version, "settings", settings)
            for key, value in _cutoff(training).items():
                client.set_model_version_tag(name, version, key, value)
            incumbent, newest = standing(name, training.labels_through)
            alias, reason = self._promote(client, name, version, trained, gate, settings, incumbent, newest)
            mlflow.set_tags({"promotion": alias, "promotion_reason": reason})
            client.set_model_version_tag(name, version, "promotion_reason", reason)
        return {
            "sector": training.sector, "model_type": trained.model_type, "registered_model": name, "version": version,
            "alias": alias, "reason": reason, "run_id": run.info.run_id, "sha256": digest,
            "labels_through": training.labels_through, "last_sample_session": training.train_window[1], **trained.metrics,
        }

    def _record_hash(self, client, name: str, version: str, model) -> str:
        """Tag the version with the sha256 of its stored model.pkl, once that file is known to hold
        exactly the bytes this process pickles for `model` (MLflow writes it with the default protocol)."""
        stored = _artifact_bytes(client, name, version)
        digest = hashlib.sha256(stored).hexdigest()
        written = hashlib.sha256(pickle.dumps(model, protocol=pickle.DEFAULT_PROTOCOL)).hexdigest()
        if digest != written:
            raise UntrustedModel(
                f"{name} version {version}: the artifact store holds a {MODEL_FILE} (sha256 {digest[:12]}) that is not "
                f"the model this run pickled (sha256 {written[:12]}); not recording a hash for it"
            )
        client.set_model_version_tag(name, version, SHA256_TAG, digest)
        return digest

    def _promote(self, client, name: str, version: str, trained: TrainedModel, gate: float, settings: str,
                 incumbent: str | None, newest: bool):
        """The gate of `core.promotion`, against `incumbent`: the champion as of the new version's cutoff.
        The registered version is refit on every labelled sample, the holdout included, so each version is
        judged by the holdout metrics its validated model logged, not by scoring it on a holdout it has
        learnt from. Only the `newest` version of its model moves an alias: training an old week never does."""

        def verdict(alias: str, reason: str) -> tuple[str, str]:
            if newest:
                client.set_registered_model_alias(name, alias, version)
            return alias, reason

        refused = significance_refusal(trained.metrics, gate)
        if refused:
            client.set_model_version_tag(name, version, "refused", refused)
            return verdict(CHALLENGER, refused)
        new = Contender(version, trained.metrics["roc_auc"], trained.metrics.get("roc_auc_se"), settings)
        if incumbent is None:
            return verdict(CHAMPION, f"no champion before its cutoff: holdout AUC {new.auc:.4f}, "
                                     f"{_rank_ic_text(trained.metrics)}")
        current = client.get_model_version(name, incumbent)
        metrics = client.get_run(current.run_id).data.metrics
        champion = Contender(
            str(current.version), float(metrics["holdout_roc_auc"]), metrics.get("holdout_roc_auc_se"),
            (current.tags or {}).get("settings"),
        )
        replaces, reason = replaces_champion(new, champion)
        return verdict(CHAMPION if replaces else CHALLENGER, reason)

    def load(self, name: str, version: str, sha256: str) -> Champion:
        """Version `version` of `name`, unpickled only if its model.pkl has `sha256`: the digest the pipeline
        recorded in its own warehouse at registration (model_versions), never one read from MLflow, so
        write access to MLflow alone cannot make this process run code. Loaded once per process."""
        key = (self.tracking_uri, name, str(version), sha256)
        if key not in _LOADED:
            client = self._client()
            found = client.get_model_version(name, str(version))
            _LOADED[key] = Champion(name, str(version), found.run_id, _verified_unpickle(client, name, str(version), sha256))
        return _LOADED[key]

    def champion_metric(self, name: str, metric: str = "holdout_roc_auc") -> float:
        """A metric logged by the run that produced `name`'s champion version."""
        client = self._client()
        version = client.get_model_version_by_alias(name, CHAMPION)
        return float(client.get_run(version.run_id).data.metrics[metric])

    def champion_run(self, name: str) -> dict | None:
        """The champion version of `name` with its run's params and metrics; None without a champion."""
        from mlflow.exceptions import MlflowException

        client = self._client()
        try:
            version = client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None
        run = client.get_run(version.run_id)
        return {"version": str(version.version), "params": run.data.params, "metrics": run.data.metrics}

    def refusal(self, name: str) -> str:
        """Why `name`'s challenger (its newest version, refused by the gate) is not champion."""
        from mlflow.exceptions import MlflowException

        try:
            version = self._client().get_model_version_by_alias(name, CHALLENGER)
        except MlflowException:
            return "no version"
        return (version.tags or {}).get("promotion_reason", "see the version's promotion_reason tag")

    def archive_stale_versions(self, older_than_ms: int, note: str) -> list[str]:
        """Tag `archived` on every version that is neither champion nor challenger and was created
        before `older_than_ms` (epoch milliseconds). Nothing is deleted: the version, its run and
        artifacts stay for lineage, and the MLflow model browser shows the tag. Returns name/version."""
        client = self._client()
        archived = []
        for model in client.search_registered_models(filter_string="name LIKE 'turbomode-%'"):
            kept = {str(v) for alias, v in (model.aliases or {}).items() if alias in (CHAMPION, CHALLENGER)}
            for version in client.search_model_versions(f"name = '{model.name}'"):
                stale = version.creation_timestamp < older_than_ms and str(version.version) not in kept
                if stale and ARCHIVED_TAG not in (version.tags or {}):
                    client.set_model_version_tag(model.name, version.version, ARCHIVED_TAG, note)
                    archived.append(f"{model.name}/{version.version}")
        return archived

    def aliases(self) -> pl.DataFrame:
        """Every registered turbomode model with the versions behind its aliases."""
        client = self._client()
        rows = []
        for model in client.search_registered_models(filter_string="name LIKE 'turbomode-%'"):
            for alias, version in (model.aliases or {}).items():
                rows.append({"registered_model": model.name, "alias": alias, "version": str(version)})
        return pl.DataFrame(rows, schema={"registered_model": pl.String, "alias": pl.String, "version": pl.String})


def _cutoff(training: SectorTraining) -> dict[str, str]:
    """The version's point in time, as MLflow params and version tags (the warehouse keeps the same record)."""
    return {"labels_through": str(training.labels_through), "last_sample_session": str(training.train_window[1]),
            "training_week": str(training.training_week)}


def _register(client, name: str, info, run_id: str, description: str) -> str:
    """A new version of `name` from the logged model, described; the registered model takes the same
    description. Through the client: MLflow's fluent registration prints two lines per model."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
        client.update_registered_model(name, description=description)
    version = client.create_model_version(name, source=info.model_uri, run_id=run_id, description=description,
                                          model_id=info.model_id)
    return str(version.version)


LABELS = {"relative": "P(the stock beats its sector over the label horizon)",
          "absolute": "P(the triple barrier's outcome is up)"}


def _description(training: SectorTraining, trained: TrainedModel, label: str) -> str:
    """What a registered model is, for the MLflow model page: sector, type, label, features, windows, holdout metrics."""
    metrics = ", ".join(f"{k} {trained.metrics[k]:.4f}" for k in ("roc_auc", "rank_ic", "rank_ic_t", "ece")
                        if k in trained.metrics)
    return (
        f"{trained.model_type} for the {training.sector} sector. Label: {label} ({LABELS.get(label, 'see the run')}). "
        f"{len(training.feature_names)} features: {', '.join(training.feature_names)}. "
        f"Fitted on entry sessions {training.train_window[0]}..{training.train_window[1]}; validated on "
        f"{training.validation_window[0]}..{training.validation_window[1]}, judged on the holdout "
        f"{training.split.holdout_start}..{training.split.holdout_end}: {metrics}."
    )


def _training_dataset(training: SectorTraining, source: str):
    """The sector's training samples as an MLflow dataset (digest, schema, row count; no copy of the rows)."""
    if training.samples is None:
        return None
    import warnings

    import mlflow

    # the session as a datetime: MLflow's schema has no date type and warns on every dataset otherwise
    frame = training.samples.select(pl.col("session").cast(pl.Datetime("ms")), "symbol", "label", *training.feature_names)
    with warnings.catch_warnings():  # MLflow registers its local-file source twice, and says so on every resolve
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        return mlflow.data.from_polars(frame, source=source, targets="label",
                                       name=f"training_samples {sector_slug(training.sector)}")


def _artifact_uri(client, name: str, version: str, file: str) -> str:
    return f"{client.get_model_version_download_uri(name, version).rstrip('/')}/{file}"


def _artifact_bytes(client, name: str, version: str, file: str = MODEL_FILE) -> bytes:
    """One file of a version's model: read in place from a local artifact folder, else downloaded."""
    uri = _artifact_uri(client, name, version, file)
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(urllib.request.url2pathname(parsed.path) if parsed.scheme else uri).read_bytes()
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=client.tracking_uri)
        return Path(local).read_bytes()


def _verified_unpickle(client, name: str, version: str, recorded: str):
    """Unpickle the version's model.pkl only if its sha256 is the one recorded at registration."""
    try:
        data = _artifact_bytes(client, name, version)
    except Exception as error:  # a missing file, or a download the artifact store refused
        raise UntrustedModel(f"{name} version {version}: cannot read its {MODEL_FILE} ({error})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise UntrustedModel(
            f"{name} version {version}: {MODEL_FILE} has sha256 {actual[:16]}..., but registration recorded "
            f"{recorded[:16]}...: the file changed after the pipeline wrote it; refusing to unpickle it. "
            "Retrain (materialise sector_models) or point the champion alias at a version whose artifact is intact"
        )
    return pickle.loads(data)  # noqa: S301 - bytes verified against the hash the pipeline recorded


def _requirements() -> list[str]:
    """Pinned from the running environment: saves MLflow inferring them for every model."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("scikit-learn", "xgboost-cpu", "numpy")]


def _model_params(model) -> dict:
    inner = getattr(model, "model", None)
    if inner is None:
        return {"meta": "logistic_regression over base probabilities"}
    return {k: v for k, v in inner.get_params().items() if np.isscalar(v) or v is None}


def _log_importances(importances: dict[str, float], meta: bool = False) -> None:
    """The importances as a table and a bar plot; `meta`: the stacked model's signed weights on its base models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    table = pl.DataFrame({"feature": list(importances), "importance": list(importances.values())}).sort(
        "importance", descending=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feature_importances.csv"
        table.write_csv(path)
        mlflow.log_artifact(str(path))
        top = table.head(20).reverse()
        figure, axis = plt.subplots(figsize=(7, 6))
        axis.barh(top["feature"].to_list(), top["importance"].to_list())
        axis.set_title("stacked meta-model: weight of each base model's probability" if meta
                       else "feature importance (top 20)")
        figure.tight_layout()
        mlflow.log_figure(figure, "feature_importances.png")
        plt.close(figure)
