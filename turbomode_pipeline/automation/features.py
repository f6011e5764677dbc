"""`backtest_data`: the weekly run that fills every missing, eligible training_samples partition."""

from datetime import date

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from turbomode_pipeline.assets.features import BARRIERS, daily_features, training_samples
from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START
from turbomode_pipeline.calendar import daily_sessions, sessions_after
from turbomode_pipeline.settings import get_settings

backtest_data_job = define_asset_job(
    "backtest_data_job",
    selection=AssetSelection.assets(daily_features, training_samples),
    partitions_def=daily_sessions(),
    description="Label the history: features where missing, then triple-barrier training samples.",
)


def _materialized(instance: DagsterInstance, asset: str) -> set[date]:
    return {date.fromisoformat(key) for key in instance.get_materialized_partitions(AssetKey(asset))}


def backfill_range(instance: DagsterInstance) -> tuple[date, date] | None:
    """The sessions from the first missing features or samples partition to the last session
    whose outcome can be labelled (H later sessions of bars exist); None when nothing is due."""
    bars = _materialized(instance, "daily_bars")
    if not bars:
        return None
    eligible = sorted(day for day in bars if (after := sessions_after(day, BARRIERS.horizon)) and after[-1] in bars)
    if not eligible:
        return None
    features, samples = _materialized(instance, "daily_features"), _materialized(instance, "training_samples")
    missing = [day for day in eligible if day not in samples or day not in features]
    return (missing[0], eligible[-1]) if missing else None


@schedule(
    name="backtest_data",
    cron_schedule="5 23 * * 6",
    execution_timezone=get_settings().timezone,
    job=backtest_data_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Saturday 23:05: one run filling every missing, eligible training_samples partition.",
)
def backtest_data(context: ScheduleEvaluationContext):
    span = backfill_range(context.instance)
    if span is None:
        return SkipReason("every session with a full label horizon of bars already has training samples")
    first, last = (day.isoformat() for day in span)
    return RunRequest(
        run_key=f"backtest_data:{first}..{last}",
        tags={PARTITION_RANGE_START: first, PARTITION_RANGE_END: last},
    )
