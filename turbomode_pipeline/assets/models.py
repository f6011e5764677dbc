"""`sector_models`: the six models of each sector, trained weekly and registered in MLflow."""

from concurrent.futures import ThreadPoolExecutor

import polars as pl
from dagster import (
    AllPartitionMapping, AssetDep, AssetExecutionContext, BackfillPolicy, Config, Failure, MaterializeResult, MetadataValue,
    asset,
)

from turbomode_pipeline.assets.features import BARRIERS, training_samples
from turbomode_pipeline.core.features import MODEL_FEATURES
from turbomode_pipeline.core.model_zoo import ModelSettings
from turbomode_pipeline.core.training import TooFewSamples, train_sector
from turbomode_pipeline.partitions import SECTOR_PARTITIONS, sector_of
from turbomode_pipeline.resources.model_registry import ModelRegistry
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import get_settings

# The column of training_samples each TURBOMODE_LABEL_TARGET learns.
LABEL_COLUMNS = {"relative": "beats_sector", "absolute": "label"}


class TrainingConfig(Config):
    fast: bool = False  # smaller models and fewer folds: for demos and tests
    holdout_sessions: int = 250
    parallel_sectors: int = 2  # one per core; every model inside is single-threaded
    features: list[str] = []  # a subset of the features to train on; empty means all of them
    # the champion gate's null band in standard errors of the holdout rank IC; None: the setting
    # TURBOMODE_CHAMPION_MIN_RANK_IC_T
    champion_min_rank_ic_t: float | None = None


def _samples(warehouse: Warehouse, sectors: list[str], label_target: str) -> pl.DataFrame:
    """The learnt label (TURBOMODE_LABEL_TARGET) joined to the features known at entry; rows
    with a missing feature dropped."""
    columns = ", ".join(f"f.{name}" for name in MODEL_FEATURES)
    return warehouse.query(
        f"""
        SELECT s.session, s.symbol, s.sector, s.{LABEL_COLUMNS[label_target]} AS label, s.barrier, s.t1, s.fwd_ret,
               {columns}
        FROM training_samples s JOIN daily_features f USING (session, symbol)
        WHERE s.sector IN (SELECT unnest(?))
        """,
        [sectors],
    ).drop_nulls(list(MODEL_FEATURES))


@asset(
    partitions_def=SECTOR_PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[AssetDep(training_samples, partition_mapping=AllPartitionMapping())],
    group_name="models",
    kinds={"mlflow", "sklearn", "xgboost"},
    metadata={"models_per_sector": 6, "registered_as": "turbomode-<sector>-<model_type>"},
)
def sector_models(context: AssetExecutionContext, config: TrainingConfig, warehouse: Warehouse, model_registry: ModelRegistry):
    """Train, calibrate, evaluate and register the six models of each sector in the run.

    Reads the warehouse read-only (no `warehouse` pool); sectors train in parallel threads. A
    sector whose samples cannot fill the holdout and the folds is skipped with a warning naming
    it (no new version, no champion), and the others train; the run fails only when none can.
    """
    sectors = [sector_of(key) for key in context.partition_keys]
    label_target = get_settings().label_target
    samples = _samples(warehouse, sectors, label_target)
    settings = ModelSettings.fast() if config.fast else ModelSettings()
    features = config.features or list(MODEL_FEATURES)
    unknown = sorted(set(features) - set(MODEL_FEATURES))
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown} in the training config; known: {', '.join(MODEL_FEATURES)}")

    def train(sector: str):
        rows = samples.filter(pl.col("sector") == sector)
        context.log.info(f"{sector}: training 6 models on {rows.height:,} samples")
        try:
            return train_sector(
                sector, rows, features, horizon=BARRIERS.horizon,
                holdout_sessions=config.holdout_sessions, settings=settings,
            )
        except TooFewSamples as error:
            return str(error)

    with ThreadPoolExecutor(max_workers=config.parallel_sectors) as pool:
        outcomes = list(pool.map(train, sectors))
    skipped = {sector: reason for sector, reason in zip(sectors, outcomes, strict=True) if isinstance(reason, str)}
    for reason in skipped.values():
        context.log.warning(f"skipped, no new version and no champion: {reason}; the other sectors train")
    trainings = [outcome for outcome in outcomes if not isinstance(outcome, str)]
    if not trainings:
        raise Failure(
            description=f"no sector could be trained: {'; '.join(skipped.values())}; "
            "build training_samples over more sessions (the backtest_data job) or lower holdout_sessions",
            metadata={"skipped_sectors": MetadataValue.json(skipped)},
        )
    rows = model_registry.log_training(
        trainings, run_name=f"training {context.run.run_id[:8]}",
        tags={"dagster_run_id": context.run.run_id, "fast": str(config.fast), "label_target": label_target},
        min_rank_ic_t=config.champion_min_rank_ic_t,
    )
    table = pl.DataFrame(rows).select("sector", "model_type", "version", "alias", "roc_auc", "rank_ic", "ece", "samples")
    champions = pl.DataFrame(rows).filter(pl.col("alias") == "champion")
    return MaterializeResult(
        metadata={
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
                float(table.filter(pl.col("model_type") == "stacked_ensemble")["roc_auc"].min())
            ),
        }
    )


