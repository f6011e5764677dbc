"""`sector_models`: the six models of each sector, trained weekly and registered in MLflow."""

import os
import socket
from pathlib import Path

import polars as pl
from dagster import (
    AllPartitionMapping, AssetIn, BackfillPolicy, Config, Failure, In, MetadataValue, Nothing, OpExecutionContext,
    config_mapping, graph_asset, op,
)
from threadpoolctl import threadpool_limits

from turbomode_pipeline.assets.features import training_samples
from turbomode_pipeline.assets.partition_metadata import readable
from turbomode_pipeline.core.features import MODEL_FEATURES
from turbomode_pipeline.core.labels import without_sector_median
from turbomode_pipeline.core.model_types import ModelSettings
from turbomode_pipeline.partitions import SECTOR_BY_KEY, SECTOR_PARTITIONS, SECTORS, sector_of
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.model_registry import ModelRegistry
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import get_settings

# The column of training_samples each TURBOMODE_LABEL_TARGET learns.
LABEL_COLUMNS = {"relative": "beats_sector", "absolute": "label"}


class TrainingConfig(Config):
    fast: bool = False  # smaller models and fewer folds: for demos and tests
    holdout_sessions: int = 250
    features: list[str] = []  # a subset of the features to train on; empty means all of them
    # the champion gate's null band in standard errors of the holdout rank IC; default: the code
    # location's TURBOMODE_CHAMPION_MIN_RANK_IC_T
    champion_min_rank_ic_t: float = get_settings().champion_min_rank_ic_t


def _samples(warehouse: Warehouse, sector: str, label_target: str) -> pl.DataFrame:
    """One sector's learnt label (TURBOMODE_LABEL_TARGET) joined to the features known at entry; rows
    with a missing feature dropped, and for the sector-relative label each session's median stock."""
    samples = warehouse.labelled_features(sector, LABEL_COLUMNS[label_target], MODEL_FEATURES)
    return (without_sector_median(samples) if label_target == "relative" else samples).drop_nulls(list(MODEL_FEATURES))


def _step(key: str) -> str:
    """The name of a sector partition's training step: `train_information_technology`."""
    return "train_" + key.replace("-", "_")


STEP_SECTORS = {_step(key): key for key in SECTOR_BY_KEY}


# One static step per sector of the universe (aliases of this op), not dynamic outputs nor optional
# ones: dagster-dask's executor plans every step before the run starts and cannot skip a step.
@op(ins={"training_samples": In(Nothing)})
def train_sector_models(
    context: OpExecutionContext, config: TrainingConfig, warehouse: Warehouse, labels: LabelSettings
):
    """The six models of the step's sector, trained and evaluated, not yet registered: a
    `SectorTraining`, or the reason why its samples are too few to train on, with the sector's name;
    None when the sector is not in the run."""
    from turbomode_pipeline.core.training import TooFewSamples, train_sector  # scikit-learn: only where it trains

    key = STEP_SECTORS[context.op_handle.name]
    if key not in context.partition_keys:
        return None
    sector = sector_of(key)
    features = config.features or list(MODEL_FEATURES)
    unknown = sorted(set(features) - set(MODEL_FEATURES))
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown} in the training config; known: {', '.join(MODEL_FEATURES)}")
    rows = _samples(warehouse, sector, labels.target)
    # where it runs: the executor (a dask worker, a forked process) decides; host and pid say which
    where = f"{context.op_handle} on {socket.gethostname()} pid {os.getpid()}"
    context.log.info(f"{where}: {sector}: training 6 models on {rows.height:,} samples")
    settings = ModelSettings.fast() if config.fast else ModelSettings()
    # Every model is single-threaded (n_jobs=1); BLAS too, so that one step per core never oversubscribes.
    with threadpool_limits(limits=1):
        try:
            return sector, train_sector(
                sector, rows, features, horizon=labels.horizon,
                holdout_sessions=config.holdout_sessions, settings=settings,
            )
        except TooFewSamples as error:
            return sector, str(error)


# An input per sector step, not one fan-in list: on a dask worker a fan-in input finds no upstream output.
@op(ins={step: In() for step in STEP_SECTORS})
def register_sector_models(
    context: OpExecutionContext, config: TrainingConfig, model_registry: ModelRegistry, labels: LabelSettings,
    warehouse: Warehouse, **steps
) -> None:
    """Register every trained sector's models in one MLflow run, only once every sector's step has
    ended: a failed or killed step leaves nothing of the run registered."""
    outcomes = sorted(filter(None, steps.values()), key=lambda outcome: SECTORS.index(outcome[0]))
    skipped = {sector: outcome for sector, outcome in outcomes if isinstance(outcome, str)}
    for reason in skipped.values():
        context.log.warning(f"skipped, no new version and no champion: {reason}; the other sectors train")
    trainings = [outcome for _, outcome in outcomes if not isinstance(outcome, str)]
    if not trainings:
        raise Failure(
            description=f"no sector could be trained: {'; '.join(skipped.values())}; "
            "build training_samples over more sessions (the backtest_data job) or lower holdout_sessions",
            metadata={"skipped_sectors": MetadataValue.json(skipped)},
        )
    label_target = labels.target
    rows = model_registry.log_training(
        trainings, run_name=f"training {context.run.run_id[:8]}",
        tags={"dagster_run_id": context.run.run_id, "fast": str(config.fast), "label_target": label_target},
        min_rank_ic_t=config.champion_min_rank_ic_t, samples_source=str(Path(warehouse.path).resolve()),
    )
    context.add_output_metadata(_metadata(rows, trainings, skipped, label_target))


def _metadata(rows: list[dict], trainings: list, skipped: dict[str, str], label_target: str) -> dict:
    table = pl.DataFrame(rows).select("sector", "model_type", "version", "alias", "roc_auc", "rank_ic", "ece", "samples")
    champions = pl.DataFrame(rows).filter(pl.col("alias") == "champion")
    return {
        "models": len(rows),
        "sectors_trained": MetadataValue.json([training.sector for training in trainings]),
        "skipped_sectors": MetadataValue.json(skipped),
        "champions_promoted": champions.height,
        "label_target": label_target,
        "stacked_not_promoted": MetadataValue.json(
            table.filter((pl.col("model_type") == "stacked_ensemble") & (pl.col("alias") != "champion"))["sector"].to_list()
        ),
        "holdout": MetadataValue.md(
            table.with_columns(pl.col("roc_auc", "rank_ic", "ece").round(4)).to_pandas().to_markdown(index=False)
        ),
        "min_stacked_auc": MetadataValue.float(
            readable(float(table.filter(pl.col("model_type") == "stacked_ensemble")["roc_auc"].min()))
        ),
    }


@config_mapping
def _training_config(config: TrainingConfig) -> dict:
    """`{"ops": {"sector_models": {"config": ...}}}` stays the run config: both steps read it."""
    values = {"config": config.model_dump()}
    return {**{_step(key): values for key in SECTOR_BY_KEY}, "register_sector_models": values}


@graph_asset(
    partitions_def=SECTOR_PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
    ins={"training_samples": AssetIn(key=training_samples.key, partition_mapping=AllPartitionMapping(), dagster_type=Nothing)},
    config=_training_config,
    group_name="models",
    kinds={"mlflow", "sklearn", "xgboost"},
    metadata={"models_per_sector": 6, "registered_as": "turbomode-<sector>-<model_type>"},
)
def sector_models(training_samples):
    """Train, calibrate, evaluate and register the six models of each sector in the run.

    One step per sector (`train_<sector>`), so the job's executor decides where
    and how many at a time: the multiprocess executor on one machine, a dask or celery cluster
    beyond it. Steps read the warehouse read-only (no `warehouse` pool). A sector whose samples
    cannot fill the holdout and the folds is skipped with a warning naming it (no new version, no
    champion), and the others train; the run fails only when none can.
    """
    return register_sector_models(**{step: train_sector_models.alias(step)(training_samples) for step in STEP_SECTORS})
