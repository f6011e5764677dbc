"""`model_training`: the six models of every sector of the universe, Sundays at midnight, as one run: the
models that serve the week starting that Sunday, trained as of the Friday before (core/point_in_time.py)."""

from dagster import (
    AssetSelection, DefaultScheduleStatus, ExecutorDefinition, RunRequest, ScheduleEvaluationContext, define_asset_job,
    multiprocess_executor, schedule,
)

from turbomode_pipeline.assets.models import sector_models
from turbomode_pipeline.partitions import training_weeks
from turbomode_pipeline.settings import Settings, get_settings
from turbomode_pipeline.automation.run_health import max_runtime

def training_executor(settings: Settings) -> ExecutorDefinition:
    """Where a training run's sector steps run: the workers of a dask cluster when
    TURBOMODE_DASK_SCHEDULER names its scheduler, else processes on this machine, one per core
    (each step single-threaded), forked from a server that has imported the code location once."""
    if settings.dask_scheduler:
        from turbomode_pipeline.automation.dask_training import dask_training_executor

        return dask_training_executor(settings.dask_scheduler)
    return multiprocess_executor.configured(
        {"max_concurrent": settings.training_processes, "start_method": {"forkserver": {}}}, name="multiprocess"
    )


model_training_job = define_asset_job(
    "model_training_job",
    selection=AssetSelection.assets(sector_models),
    partitions_def=training_weeks(),
    description="Train and register the six models of every sector (or the config's sectors) for the run's weeks, "
    "each week as of the session before it.",
    tags=max_runtime(minutes=120),
    executor_def=training_executor(get_settings()),
)


@schedule(
    name="model_training",
    cron_schedule="0 0 * * 0",
    execution_timezone=get_settings().timezone,
    job=model_training_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Sunday 00:00: every sector of the universe x 6 models in one run, for the week starting that day.",
)
def model_training(context: ScheduleEvaluationContext):
    week = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return RunRequest(run_key=f"model_training:{week}", partition_key=week)
