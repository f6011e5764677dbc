"""`daily_features` and `training_samples` (the backtest data), one partition per session."""

from datetime import date

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    TimeWindowPartitionMapping,
    asset,
)

from turbomode_pipeline.assets.checks import check_specs, evaluate, refuse
from turbomode_pipeline.assets.guards import bars_through_horizon, require_sessions
from turbomode_pipeline.assets.partition_metadata import attach, by_session, log_run
from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.calendar import sessions_before
from turbomode_pipeline.partitions import daily_sessions
from turbomode_pipeline.core.feature_rules import FEATURE_RULES
from turbomode_pipeline.core.features import FEATURES, LOOKBACK_SESSIONS, compute_features
from turbomode_pipeline.core.labels import SAMPLE_RULES, triple_barrier
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.resources.warehouse_reads import BAR_COLUMNS
from turbomode_pipeline.assets.table_schema import table_metadata
from turbomode_pipeline.schemas import DAILY_FEATURES, TRAINING_SAMPLES, DailyFeatures, TrainingSamples
from turbomode_pipeline.settings import get_settings

FEATURES_SCHEMA_CHECK = "features_match_schema"
SAMPLES_SCHEMA_CHECK = "samples_match_schema"
MISSING = "{table} has no rows for {{count}} session(s): {{shown}}; materialise {table} for them first"


@asset(
    partitions_def=daily_sessions(),
    backfill_policy=BackfillPolicy.single_run(),
    pool="warehouse",
    deps=[
        AssetDep(
            daily_bars,
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=-LOOKBACK_SESSIONS, allow_nonexistent_upstream_partitions=True
            ),
        )
    ],
    check_specs=check_specs("daily_features", FEATURES_SCHEMA_CHECK, FEATURE_RULES),
    group_name="features",
    kinds={"duckdb", "polars"},
    metadata={**table_metadata("daily_features", DailyFeatures), "features": len(FEATURES)},
)
def daily_features(context: AssetExecutionContext, warehouse: Warehouse):
    """Technical, cross-sectional and market features per symbol and session, point in time.

    Reads each session's bars with the previous year (260 sessions) of lookback.
    """
    sessions = [date.fromisoformat(key) for key in context.partition_keys]
    lookback = sessions_before(sessions[0], LOOKBACK_SESSIONS)
    bars = warehouse.bars(lookback[0] if lookback else sessions[0], sessions[-1])
    require_sessions(bars["session"], sessions, MISSING.format(table="daily_bars"))
    bars_seen = bars.select("session", "symbol", pl.int_range(1, pl.len() + 1).over("symbol").alias("bars_seen"))
    features = compute_features(bars).filter(pl.col("session").is_in(pl.Series(sessions).implode()))
    checked = features.join(bars_seen, on=["session", "symbol"], how="left")
    validated, failures = yield from evaluate(features, DailyFeatures, FEATURES_SCHEMA_CHECK, FEATURE_RULES,
                                              rule_frame=checked)
    if failures:
        raise refuse("daily_features", failures, sessions)
    rows = warehouse.replace_partitions(DAILY_FEATURES, validated, sessions)
    attach(context, by_session(features, **{
        "dagster/row_count": pl.len(), "symbols": pl.col("symbol").n_unique(),
        "null_share": pl.mean_horizontal(pl.col(FEATURES).is_null().mean()).first(),
    }), context.partition_keys, missing={"dagster/row_count": 0, "symbols": 0})
    log_run(context, "daily_features", rows=rows, sessions=len(sessions))
    yield MaterializeResult(metadata={"features": len(FEATURES)})


@asset(
    partitions_def=daily_sessions(),
    backfill_policy=BackfillPolicy.single_run(),
    pool="warehouse",
    deps=[
        AssetDep(
            daily_bars,
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=0, end_offset=get_settings().label_horizon, allow_nonexistent_upstream_partitions=True
            ),
        ),
        AssetDep(daily_features),
    ],
    check_specs=check_specs("training_samples", SAMPLES_SCHEMA_CHECK, SAMPLE_RULES),
    group_name="features",
    kinds={"duckdb", "polars"},
    metadata={
        **table_metadata("training_samples", TrainingSamples),
        "label_horizon_sessions": get_settings().label_horizon,
        "materialisable": f"partition d once daily_bars holds the {get_settings().label_horizon} sessions after d",
    },
)
def training_samples(context: AssetExecutionContext, warehouse: Warehouse, labels: LabelSettings):
    """Triple-barrier outcome of a trade entered at each session's close (see core/labels.py).

    Partition d needs bars for d through the H-th session after d (H = TURBOMODE_LABEL_HORIZON),
    so it becomes materialisable H sessions after its date.
    """
    sessions = [date.fromisoformat(key) for key in context.partition_keys]
    barriers = labels.barriers
    bars = bars_through_horizon(warehouse, "training_samples", sessions[0], sessions[-1], barriers.horizon, BAR_COLUMNS,
                                "its outcome")
    atr = warehouse.features(sessions, ["atr_14"])
    require_sessions(atr["session"], sessions, MISSING.format(table="daily_features"))
    samples = triple_barrier(bars, atr, barriers).filter(pl.col("session").is_in(pl.Series(sessions).implode()))
    validated, failures = yield from evaluate(samples, TrainingSamples, SAMPLES_SCHEMA_CHECK, SAMPLE_RULES,
                                              horizon=barriers.horizon)
    if failures:
        raise refuse("training_samples", failures, sessions)
    rows = warehouse.replace_partitions(TRAINING_SAMPLES, validated, sessions)
    hits = {f"barrier_{name}": (pl.col("barrier") == name).sum() for name in ("lower", "time", "upper")}
    attach(context, by_session(samples, **{
        "dagster/row_count": pl.len(), "label_up_share": pl.col("label").mean().cast(pl.Float64), **hits,
    }), context.partition_keys, missing={"dagster/row_count": 0})
    log_run(context, "training_samples", rows=rows, sessions=len(sessions),
            label_up_share=float(samples["label"].mean() or 0.0))
    yield MaterializeResult(metadata={"horizon_sessions": barriers.horizon})
