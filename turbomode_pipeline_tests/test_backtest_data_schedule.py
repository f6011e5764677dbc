"""The weekly backtest_data schedule fills exactly the missing, eligible training samples."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

from dagster import RunRequest, SkipReason, build_schedule_context

from turbomode_pipeline.assets.features import daily_features, training_samples
from turbomode_pipeline.automation.features import backtest_data
from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START
from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline_tests.support import materialize_bars, materialized_keys, range_tags

SESSIONS = [d.isoformat() for d in sessions_between(date(2024, 1, 2), date(2024, 3, 28))]  # 61 sessions
SATURDAY = datetime(2024, 3, 30, 23, 5, tzinfo=ZoneInfo("America/Chicago"))


def tick(instance):
    return backtest_data(build_schedule_context(instance=instance, scheduled_execution_time=SATURDAY))


def test_one_run_covers_every_missing_eligible_session_then_nothing(resources, instance):
    assert materialize_bars(resources, instance, tags=range_tags(SESSIONS[0], SESSIONS[-1])).success
    assert materialize_bars(resources, instance, assets=(daily_features,), tags=range_tags(SESSIONS[0], SESSIONS[20])).success

    [request] = tick(instance)
    assert isinstance(request, RunRequest)
    # Every session with 10 later sessions of bars is eligible: the first 51; none has samples yet.
    assert (request.tags[PARTITION_RANGE_START], request.tags[PARTITION_RANGE_END]) == (SESSIONS[0], SESSIONS[-11])

    result = materialize_bars(resources, instance, assets=(daily_features, training_samples), tags=dict(request.tags))
    assert result.success
    assert materialized_keys(instance, "training_samples") == set(SESSIONS[:-10])
    assert isinstance(tick(instance), SkipReason)


def test_a_hole_in_the_bars_splits_the_work_at_the_hole(resources, instance):
    assert materialize_bars(resources, instance, tags=range_tags(SESSIONS[0], SESSIONS[20])).success
    assert materialize_bars(resources, instance, tags=range_tags(SESSIONS[30], SESSIONS[-1])).success
    spans = [(r.tags[PARTITION_RANGE_START], r.tags[PARTITION_RANGE_END]) for r in tick(instance)]
    assert spans == [(SESSIONS[0], SESSIONS[10]), (SESSIONS[30], SESSIONS[-11])]
