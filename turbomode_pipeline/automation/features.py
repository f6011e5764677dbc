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

from turbomode_pipeline.assets.features import daily_features, training_samples
from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START
from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline.partitions import daily_sessions
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline.automation.run_health import max_runtime

backtest_data_job = define_asset_job(
    "backtest_data_job",
    selection=AssetSelection.assets(daily_features, training_samples),
    partitions_def=daily_sessions(),
    description="Label the history: features where missing, then triple-barrier training samples.",
    tags=max_runtime(minutes=60),
)


def _materialized(instance: DagsterInstance, asset: str) -> set[date]:
    return {date.fromisoformat(key) for key in instance.get_materialized_partitions(AssetKey(asset))}


def backfill_ranges(instance: DagsterInstance) -> list[tuple[date, date]]:
    """Session ranges to label, one per unbroken stretch of daily_bars (normally just one).

    Each runs from the stretch's first session missing features or samples to its last
    session whose outcome can be labelled (the H-th later session has bars too).
    """
    bars = sorted(_materialized(instance, "daily_bars"))
    if not bars:
        return []
    done = _materialized(instance, "daily_features") & _materialized(instance, "training_samples")
    ranges = []
    for stretch in _unbroken_stretches(bars):
        eligible = stretch[: max(len(stretch) - get_settings().label_horizon, 0)]
        missing = [day for day in eligible if day not in done]
        if missing:
            ranges.append((missing[0], eligible[-1]))
    return ranges


def _unbroken_stretches(days: list[date]) -> list[list[date]]:
    """`days` split wherever an NYSE session between two of them is absent."""
    sessions = sessions_between(days[0], days[-1])
    present = set(days)
    stretches, current = [], []
    for session in sessions:
        if session in present:
            current.append(session)
        elif current:
            stretches.append(current)
            current = []
    return [*stretches, current] if current else stretches


@schedule(
    name="backtest_data",
    cron_schedule="5 23 * * 6",
    execution_timezone=get_settings().timezone,
    job=backtest_data_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Saturday 23:05: one run filling every missing, eligible training_samples partition "
    "(one per unbroken stretch of bars, if the history has holes).",
)
def backtest_data(context: ScheduleEvaluationContext):
    ranges = backfill_ranges(context.instance)
    if not ranges:
        return SkipReason("every session with a full label horizon of bars already has training samples")
    return [
        RunRequest(
            run_key=f"backtest_data:{first}..{last}",
            tags={PARTITION_RANGE_START: first.isoformat(), PARTITION_RANGE_END: last.isoformat()},
        )
        for first, last in ranges
    ]
