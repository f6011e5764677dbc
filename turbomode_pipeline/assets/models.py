"""`sector_models`: the six models of each sector, trained weekly as of the week's cutoff and registered in MLflow.

Partitioned by the week a model set serves (partitions.training_weeks): a backfill over past weeks is a
walk-forward, each week's models trained only on labels known before it (core/point_in_time.py).
"""

import os
import socket
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import polars as pl
from dagster import (
    AllPartitionMapping, AssetIn, BackfillPolicy, Config, Failure, In, MetadataValue, Nothing, OpExecutionContext,
    config_mapping, graph_asset, op,
)
from pydantic import Field
from threadpoolctl import threadpool_limits

from turbomode_pipeline import clock
from turbomode_pipeline.assets.features import training_samples
from turbomode_pipeline.assets.partition_metadata import readable
from turbomode_pipeline.calendar import sessions_after, sessions_before
from turbomode_pipeline.core import point_in_time
from turbomode_pipeline.core.features import MODEL_FEATURES
from turbomode_pipeline.core.labels import without_sector_median
from turbomode_pipeline.core.model_types import MODEL_TYPES, ModelSettings
from turbomode_pipeline.core.universe import sector_slug
from turbomode_pipeline.partitions import SECTOR_BY_KEY, SECTORS, sector_of, training_weeks, week_cutoff
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.model_registry import CHAMPION, ModelRegistry
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.schemas import CHAMPION_HISTORY, MODEL_VERSIONS, ChampionHistory, ModelVersions, conform
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
    sectors: list[str] = []  # the sectors to train (names or partition-style slugs); empty means all of them
    # which of the run's weeks train: every week, or the first of each month or quarter (the others are
    # served by the newest model before them); the weekly schedule trains every week
    cadence: str = Field(default="weekly", pattern="^(weekly|monthly|quarterly)$")


def _samples(warehouse: Warehouse, sector: str, label_target: str, last_entry: date) -> pl.DataFrame:
    """One sector's learnt label (TURBOMODE_LABEL_TARGET) joined to the features known at entry, for entries
    through `last_entry`; rows with a missing feature dropped, and for the sector-relative label each
    session's median stock."""
    samples = warehouse.labelled_features(sector, LABEL_COLUMNS[label_target], MODEL_FEATURES, last_entry)
    return (without_sector_median(samples) if label_target == "relative" else samples).drop_nulls(list(MODEL_FEATURES))


def _step(key: str) -> str:
    """The name of a sector's training step: `train_information_technology`."""
    return "train_" + key.replace("-", "_")


STEP_SECTORS = {_step(key): key for key in SECTOR_BY_KEY}


def selected_sectors(config: TrainingConfig) -> set[str]:
    """The sector keys the run trains, from the config's names or slugs."""
    if not config.sectors:
        return set(SECTOR_BY_KEY)
    keys = {sector_slug(name) if name in SECTORS else name for name in config.sectors}
    unknown = sorted(keys - set(SECTOR_BY_KEY))
    if unknown:
        raise Failure(description=f"unknown sector(s) {unknown} in the training config; the universe's sectors are "
                                  f"{', '.join(SECTOR_BY_KEY)}")
    return keys


def training_settings(config: TrainingConfig, labels: LabelSettings, features: list[str], source: str) -> dict:
    """Everything a version depends on besides its cutoff: the same settings and cutoff give the same model.
    The model settings themselves are part of it: a version trained by other estimators (issue 29's "hist"
    recipe against the "exact" one before it) is another model, never reused for this one."""
    return {"fast": config.fast, "model_settings": asdict(ModelSettings.fast() if config.fast else ModelSettings()), "holdout_sessions": config.holdout_sessions, "features": features,
            "label_target": labels.target, "horizon": labels.horizon, "k_up": labels.k_up, "k_dn": labels.k_dn,
            "source": source}


@dataclass
class Period:
    """One sector's training as of one week's cutoff: trained, skipped (with why) or reused."""

    week: date
    sector: str
    labels_through: date | None
    outcome: object  # a SectorTraining, the reason it was skipped (str), or REUSED
    settings_key: str


REUSED = "reused"


# One static step per sector of the universe (aliases of this op), not dynamic outputs nor optional
# ones: dagster-dask's executor plans every step before the run starts and cannot skip a step.
@op(ins={"training_samples": In(Nothing)})
def train_sector_models(
    context: OpExecutionContext, config: TrainingConfig, warehouse: Warehouse, labels: LabelSettings
) -> list[Period]:
    """The six models of the step's sector for each week of the run its cadence trains, each as of the
    session before its week, not yet registered. A week whose cutoff and settings were trained before is
    reused, not trained again; a week whose samples are too few is skipped with the reason."""
    from turbomode_pipeline.core.training import TooFewSamples, train_sector  # scikit-learn: only where it trains

    key = STEP_SECTORS[context.op_handle.name]
    if key not in selected_sectors(config):
        return []
    sector = sector_of(key)
    features = config.features or list(MODEL_FEATURES)
    unknown = sorted(set(features) - set(MODEL_FEATURES))
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown} in the training config; known: {', '.join(MODEL_FEATURES)}")
    settings_key = point_in_time.settings_key(training_settings(config, labels, features, str(Path(warehouse.path).resolve())))
    trained = warehouse.model_versions()
    settings = ModelSettings.fast() if config.fast else ModelSettings()
    # where it runs: the executor (a dask worker, a forked process) decides; host and pid say which
    where = f"{context.op_handle} on {socket.gethostname()} pid {os.getpid()}"
    periods = []
    for week in _weeks(context.partition_keys, config.cadence):
        rows = _samples(warehouse, sector, labels.target, sessions_before(week_cutoff(week), labels.horizon)[0])
        labels_through = sessions_after(rows["session"].max(), labels.horizon)[-1] if rows.height else None
        if labels_through and _already_trained(trained, sector, labels_through, settings_key):
            context.log.info(f"{where}: {sector} as of {labels_through}: reused, trained before with these settings")
            periods.append(Period(week, sector, labels_through, REUSED, settings_key))
            continue
        context.log.info(f"{where}: {sector} as of {labels_through}: training 6 models on {rows.height:,} samples")
        # Every model is single-threaded (n_jobs=1); BLAS too, so that one step per core never oversubscribes.
        with threadpool_limits(limits=1):
            try:
                outcome = train_sector(sector, rows, features, horizon=labels.horizon,
                                       holdout_sessions=config.holdout_sessions, settings=settings)
            except TooFewSamples as error:
                outcome = str(error)
        periods.append(Period(week, sector, labels_through, outcome, settings_key))
    return periods


def _weeks(partition_keys: list[str], cadence: str) -> list[date]:
    return [week for week in map(date.fromisoformat, partition_keys) if point_in_time.trains_in(week, cadence)]


def _already_trained(versions: pl.DataFrame, sector: str, labels_through: date, settings_key: str) -> bool:
    """Whether all six model types of `sector` were registered before with this cutoff and these settings."""
    if versions.is_empty():
        return False
    same = versions.filter((pl.col("sector") == sector) & (pl.col("labels_through") == labels_through)
                           & (pl.col("settings_key") == settings_key))
    return same["model_type"].n_unique() == len(MODEL_TYPES)


# An input per sector step, not one fan-in list: on a dask worker a fan-in input finds no upstream output. No
# `warehouse` pool: dagster-dask cannot ship a plan that holds op concurrency; its two small appends wait for the
# warehouse's write lock like any writer (Warehouse.lock_timeout_s).
@op(ins={step: In() for step in STEP_SECTORS})
def register_sector_models(
    context: OpExecutionContext, config: TrainingConfig, model_registry: ModelRegistry, labels: LabelSettings,
    warehouse: Warehouse, **steps
) -> None:
    """Register every trained sector's models, week by week, once every sector's step has ended (a failed or
    killed step leaves nothing of the run registered): each version's cutoff and sha256 in the warehouse's
    model_versions, each promotion in champion_history (append-only). The `champion` alias moves only for a
    version newer than every other of its model: training an old week never takes it."""
    periods = sorted((p for outcomes in steps.values() for p in outcomes),
                     key=lambda p: (p.week, SECTORS.index(p.sector)))
    skipped = {f"{p.sector} {p.week}": p.outcome for p in periods if isinstance(p.outcome, str) and p.outcome != REUSED}
    for reason in skipped.values():
        context.log.warning(f"skipped, no new version: {reason}; the other sectors train")
    rows = []
    for week in sorted({p.week for p in periods}):
        of_week = [p for p in periods if p.week == week]
        rows += _register_week(context, config, model_registry, labels, warehouse, week, of_week)
    if not rows and not any(p.outcome == REUSED for p in periods):
        if not periods:
            context.add_output_metadata({"weeks_trained": MetadataValue.json([]),
                                         "note": f"no week of the run starts a {config.cadence} period"})
            return
        raise Failure(
            description=f"no sector could be trained: {'; '.join(skipped.values())}; "
            "build training_samples over more sessions (the backtest_data job) or lower holdout_sessions",
            metadata={"skipped_sectors": MetadataValue.json(skipped)},
        )
    context.add_output_metadata(_metadata(rows, periods, skipped, labels.target))


def _register_week(context, config, model_registry, labels, warehouse, week: date, periods: list[Period]) -> list[dict]:
    """Log and register one week's trained sectors, record their versions and promotions in the warehouse,
    and carry reused versions' promotions into the week's champion history."""
    trainings = [p for p in periods if not isinstance(p.outcome, str)]
    rows = []
    if trainings:
        for period in trainings:
            period.outcome.labels_through, period.outcome.training_week = period.labels_through, week
        versions, history = warehouse.model_versions(), warehouse.champion_history()
        rows = model_registry.log_training(
            [p.outcome for p in trainings], run_name=f"training {week} {context.run.run_id[:8]}",
            tags={"dagster_run_id": context.run.run_id, "fast": str(config.fast), "label_target": labels.target,
                  "training_week": str(week)},
            min_rank_ic_t=config.champion_min_rank_ic_t, samples_source=str(Path(warehouse.path).resolve()),
            standing=lambda name, through: point_in_time.standing(versions, history, name, through),
        )
        keys = {p.sector: p.settings_key for p in trainings}
        recorded = pl.DataFrame([_version_record(row, week, labels.horizon, keys[row["sector"]]) for row in rows])
        warehouse.append_new(MODEL_VERSIONS, conform(recorded, ModelVersions))
    promoted = _promotions(rows, week, [p for p in periods if p.outcome == REUSED], warehouse)
    if promoted.height:
        warehouse.append_new(CHAMPION_HISTORY, conform(promoted, ChampionHistory))
    return rows


def _version_record(row: dict, week: date, horizon: int, settings_key: str) -> dict:
    return {
        "registered_model": row["registered_model"], "version": row["version"], "sector": row["sector"],
        "model_type": row["model_type"], "training_week": week, "labels_through": row["labels_through"],
        "last_sample_session": row["last_sample_session"], "embargo_sessions": horizon, "settings_key": settings_key,
        "sha256": row["sha256"], "mlflow_run_id": row["run_id"], "promotion": row["alias"], "registered_at": clock.now(),
    }


def _promotions(rows: list[dict], week: date, reused: list[Period], warehouse: Warehouse) -> pl.DataFrame:
    """champion_history rows for the week: its promoted new versions, and the reused versions that were promoted
    when first trained."""
    entries = [
        {"registered_model": r["registered_model"], "sector": r["sector"], "model_type": r["model_type"],
         "training_week": week, "labels_through": r["labels_through"], "version": r["version"], "reason": r["reason"],
         "promoted_at": clock.now()}
        for r in rows if r["alias"] == CHAMPION
    ]
    if reused:
        versions = warehouse.model_versions()
        for period in reused:
            again = versions.filter((pl.col("sector") == period.sector) & (pl.col("labels_through") == period.labels_through)
                                    & (pl.col("settings_key") == period.settings_key) & (pl.col("promotion") == CHAMPION))
            entries += [
                {"registered_model": v["registered_model"], "sector": v["sector"], "model_type": v["model_type"],
                 "training_week": week, "labels_through": v["labels_through"], "version": v["version"],
                 "reason": f"reused: trained for the week of {v['training_week']} with the same cutoff and settings",
                 "promoted_at": clock.now()}
                for v in again.unique(["registered_model"], keep="last").iter_rows(named=True)
            ]
    return pl.DataFrame(entries)


def _metadata(rows: list[dict], periods: list[Period], skipped: dict[str, str], label_target: str) -> dict:
    reused = sorted({f"{p.sector} {p.week}" for p in periods if p.outcome == REUSED})
    metadata = {
        "models": len(rows),
        "weeks_trained": MetadataValue.json(sorted({str(p.week) for p in periods})),
        "cutoffs": MetadataValue.json(sorted({str(p.labels_through) for p in periods if p.labels_through})),
        "sectors_trained": MetadataValue.json(sorted({p.sector for p in periods if not isinstance(p.outcome, str)})),
        "reused": MetadataValue.json(reused),
        "skipped_sectors": MetadataValue.json(skipped),
        "label_target": label_target,
    }
    if not rows:
        return metadata
    table = pl.DataFrame(rows).select("sector", "model_type", "version", "labels_through", "alias", "roc_auc",
                                      "rank_ic", "ece", "samples")
    champions = table.filter(pl.col("alias") == CHAMPION)
    return {
        **metadata,
        "champions_promoted": champions.height,
        "stacked_not_promoted": MetadataValue.json(
            table.filter((pl.col("model_type") == "stacked_ensemble") & (pl.col("alias") != CHAMPION))["sector"].to_list()
        ),
        "holdout": MetadataValue.md(
            table.with_columns(pl.col("roc_auc", "rank_ic", "ece").round(4), pl.col("labels_through").cast(pl.String))
            .to_pandas().to_markdown(index=False)
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
    partitions_def=training_weeks(),
    backfill_policy=BackfillPolicy.single_run(),
    ins={"training_samples": AssetIn(key=training_samples.key, partition_mapping=AllPartitionMapping(), dagster_type=Nothing)},
    config=_training_config,
    group_name="models",
    kinds={"mlflow", "sklearn", "xgboost"},
    metadata={"models_per_sector": 6, "registered_as": "turbomode-<sector>-<model_type>"},
)
def sector_models(training_samples):
    """Train, calibrate, evaluate and register the six models of each sector for each week of the run,
    as of the session before the week: only samples whose label horizon had closed by then.

    One step per sector (`train_<sector>`, looping over the run's weeks), so the job's executor decides
    where and how many at a time: the multiprocess executor on one machine, a dask or celery cluster
    beyond it. Steps read the warehouse read-only; the registration step records each version's cutoff
    and sha256 and each promotion (model_versions, champion_history). A cutoff trained before with the
    same settings is reused. A sector whose samples cannot fill the holdout and the folds is skipped with
    a warning naming it (no new version), and the others train; the run fails only when none can.
    """
    return register_sector_models(**{step: train_sector_models.alias(step)(training_samples) for step in STEP_SECTORS})
