"""MLflow tracking and model registry: the only door to trained models.

One parent run per training, one nested run per sector and model type with its params,
metrics, training window, feature importances (table and plot), signature and input
example. Every model is registered as `turbomode-<sector-slug>-<model_type>`; a new version
takes the alias `champion` only if it beats the current champion on the same holdout,
otherwise `challenger`, with the reason recorded. Consumers load models by alias only.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from dagster import ConfigurableResource

from turbomode_pipeline.core.training import SectorTraining, TrainedModel
from turbomode_pipeline.core.universe import sector_slug
from turbomode_pipeline.settings import get_settings, is_uri

CHAMPION, CHALLENGER = "champion", "challenger"
ARCHIVED_TAG = "archived"
EXPERIMENT = "turbomode"
# Loaded models by (tracking URI, name, version): a version never changes, so each process
# loads it once however many scans it runs.
_LOADED: dict[tuple[str, str, str], object] = {}


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


def significance_refusal(metrics: dict[str, float], min_t: float) -> str | None:
    """Why a version may not become champion: its holdout rank IC is not above zero by
    `min_t` overlap-adjusted standard errors (the null band of a model without skill); else None."""
    if "rank_ic_t" not in metrics:
        return None
    if metrics["rank_ic_t"] > min_t:
        return None
    return (
        f"refused as champion: holdout rank IC {metrics['rank_ic']:+.4f} is not above zero by the null band "
        f"(+/-{min_t * metrics['rank_ic_se']:.4f} = {min_t:g} overlap-adjusted standard errors; t {metrics['rank_ic_t']:+.2f})"
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
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return MlflowClient(self.tracking_uri, self.tracking_uri)

    def _experiment_id(self, client) -> str:
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        if is_uri(self.artifact_root):
            return client.create_experiment(EXPERIMENT, artifact_location=self.artifact_root)
        Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        return client.create_experiment(EXPERIMENT, artifact_location=Path(self.artifact_root).resolve().as_uri())

    def log_training(
        self, trainings: list[SectorTraining], run_name: str, tags: dict[str, str], min_rank_ic_t: float | None = None
    ) -> list[dict]:
        """Log, register and promote every model of `trainings`; one row per model for the caller.

        `min_rank_ic_t`: the champion gate's null band in standard errors (default: the setting
        TURBOMODE_CHAMPION_MIN_RANK_IC_T)."""
        gate = get_settings().champion_min_rank_ic_t if min_rank_ic_t is None else min_rank_ic_t
        import mlflow

        client = self._client()
        experiment_id = self._experiment_id(client)
        rows = []
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as parent:
            mlflow.log_params({"sectors": len(trainings), "model_types": len(trainings[0].models) if trainings else 0})
            for training in trainings:
                for trained in training.models.values():
                    rows.append(self._log_model(client, experiment_id, parent.info.run_id, training, trained, gate))
        return rows

    def _log_model(self, client, experiment_id: str, parent_id: str, training: SectorTraining, trained: TrainedModel, gate: float):
        import mlflow
        from mlflow.models import infer_signature

        name = registered_name(training.sector, trained.model_type)
        example = training.holdout.select(training.feature_names).head(5).to_pandas()
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=name, nested=True, parent_run_id=parent_id,
            tags={"sector": training.sector, "model_type": trained.model_type},
        ) as run:
            mlflow.log_params(
                {
                    "sector": training.sector, "model_type": trained.model_type,
                    "train_start": str(training.train_window[0]), "train_end": str(training.train_window[1]),
                    "validation_train_start": str(training.validation_window[0]),
                    "validation_train_end": str(training.validation_window[1]),
                    "holdout_start": str(training.split.holdout_start), "holdout_end": str(training.split.holdout_end),
                    "features": len(training.feature_names),
                    **{f"model__{k}": str(v)[:250] for k, v in _model_params(trained.model).items()},
                }
            )
            mlflow.log_metrics({f"holdout_{k}": v for k, v in trained.metrics.items()})
            if trained.importances:
                _log_importances(trained.importances)
            if trained.reliability is not None:
                mlflow.log_table(trained.reliability.to_pandas(), "reliability.json")
            signature = infer_signature(example, trained.model.predict_proba(example))
            info = mlflow.sklearn.log_model(
                trained.model, name="model", signature=signature, input_example=example, registered_model_name=name,
                skops_trusted_types=_trusted_types(trained.model), pip_requirements=_requirements(),
            )
            version = str(info.registered_model_version)
            alias, reason = self._promote(client, name, version, training, trained, gate)
            mlflow.set_tags({"promotion": alias, "promotion_reason": reason})
            client.set_model_version_tag(name, version, "promotion_reason", reason)
        return {
            "sector": training.sector, "model_type": trained.model_type, "registered_model": name, "version": version,
            "alias": alias, "reason": reason, "run_id": run.info.run_id, **trained.metrics,
        }

    def _promote(self, client, name: str, version: str, training: SectorTraining, trained: TrainedModel, gate: float):
        """Champion only if its holdout rank IC is above zero by the null band and, when a champion
        exists, its validated holdout AUC beats the champion's. The registered version is refit on
        every labelled sample, the holdout included, so a champion is judged by the holdout metrics
        its validated model logged, not by scoring it on a holdout it has learnt from."""
        from mlflow.exceptions import MlflowException

        try:
            current = client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            current = None
        refused = significance_refusal(trained.metrics, gate)
        if refused:
            client.set_registered_model_alias(name, CHALLENGER, version)
            client.set_model_version_tag(name, version, "refused", refused)
            return CHALLENGER, refused
        new_auc = trained.metrics["roc_auc"]
        if current is None:
            client.set_registered_model_alias(name, CHAMPION, version)
            return CHAMPION, f"first version: holdout AUC {new_auc:.4f}, {_rank_ic_text(trained.metrics)}"
        champion_auc = float(client.get_run(current.run_id).data.metrics["holdout_roc_auc"])
        if new_auc > champion_auc:
            client.set_registered_model_alias(name, CHAMPION, version)
            return CHAMPION, f"holdout AUC {new_auc:.4f} beats champion v{current.version} ({champion_auc:.4f}, its validated holdout)"
        client.set_registered_model_alias(name, CHALLENGER, version)
        return CHALLENGER, (
            f"holdout AUC {new_auc:.4f} does not beat champion v{current.version} ({champion_auc:.4f}, its validated holdout); "
            f"this version's holdout {training.split.holdout_start}..{training.split.holdout_end}"
        )

    def holdout_auc(self, name: str, alias: str, training: SectorTraining) -> float:
        from sklearn.metrics import roc_auc_score

        model = self.load(name, alias)
        holdout = training.holdout
        probability = model.predict_proba(holdout.select(model.feature_names).to_pandas())[:, 1]
        return float(roc_auc_score(holdout["label"].to_numpy(), probability))

    def load(self, name: str, alias: str = CHAMPION):
        import mlflow

        self._client()
        return mlflow.sklearn.load_model(f"models:/{name}@{alias}")

    def champion(self, name: str) -> Champion:
        """The version behind `name`'s champion alias, with its run, loaded once per process."""
        import mlflow

        version = self._client().get_model_version_by_alias(name, CHAMPION)
        key = (self.tracking_uri, name, str(version.version))
        if key not in _LOADED:
            _LOADED[key] = mlflow.sklearn.load_model(f"models:/{name}/{version.version}")
        return Champion(name, str(version.version), version.run_id, _LOADED[key])

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


TRUSTED_PREFIXES = ("turbomode_pipeline.core.model_zoo.", "xgboost.", "sklearn.")


def _trusted_types(model) -> list[str]:
    """The types skops must be told to trust: our model wrappers and xgboost's, nothing else."""
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = [name for name in found if not name.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise TypeError(f"the model holds types we do not trust for serialisation: {foreign}")
    return found


def _requirements() -> list[str]:
    """Pinned from the running environment: saves MLflow inferring them for every model."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("scikit-learn", "xgboost-cpu", "numpy", "skops")]


def _model_params(model) -> dict:
    inner = getattr(model, "model", None)
    if inner is None:
        return {"meta": "logistic_regression over base probabilities"}
    return {k: v for k, v in inner.get_params().items() if np.isscalar(v) or v is None}


def _log_importances(importances: dict[str, float]) -> None:
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
        axis.set_title("feature importance (top 20)")
        figure.tight_layout()
        mlflow.log_figure(figure, "feature_importances.png")
        plt.close(figure)
