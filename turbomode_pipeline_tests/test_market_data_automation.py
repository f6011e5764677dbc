"""The nightly schedule, the gap-healing sensor and the freshness check, on a real instance."""

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from dagster import RunRequest, SkipReason, build_schedule_context, build_sensor_context

from turbomode_pipeline.automation.market_data import (
    PARTITION_RANGE_END,
    PARTITION_RANGE_START,
    due_sessions,
    market_data_ingestion,
    missed_sessions_sensor,
)
from turbomode_pipeline_tests.conftest import materialize_bars, materialized_keys, range_tags

CHICAGO = ZoneInfo("America/Chicago")


def tick(instance, when: datetime):
    return market_data_ingestion(build_schedule_context(instance=instance, scheduled_execution_time=when))


def test_schedule_requests_the_days_session_after_the_close(instance):
    request = tick(instance, datetime(2024, 3, 5, 22, 45, tzinfo=CHICAGO))
    assert isinstance(request, RunRequest)
    assert request.partition_key == "2024-03-05" and request.run_key == "daily_bars:2024-03-05"


def test_schedule_requests_nothing_on_a_saturday_or_a_holiday(instance):
    saturday = tick(instance, datetime(2024, 3, 9, 22, 45, tzinfo=CHICAGO))
    assert isinstance(saturday, SkipReason)
    assert saturday.skip_message == "2024-03-09 (Saturday) is not an NYSE session: no market data to fetch"
    holiday = tick(instance, datetime(2024, 7, 4, 22, 45, tzinfo=CHICAGO))
    assert isinstance(holiday, SkipReason) and "2024-07-04 (Thursday) is not an NYSE session" in holiday.skip_message


def evaluate(instance, cursor=None):
    return missed_sessions_sensor(build_sensor_context(instance=instance, cursor=cursor))


def test_sensor_heals_three_missing_sessions_with_one_run_and_then_rests(resources, instance):
    recent = [day.isoformat() for day in due_sessions(datetime.now(UTC), 10)]
    assert len(recent) == 10
    missing = recent[4:7]
    assert materialize_bars(resources, instance, tags=range_tags(recent[0], recent[3])).success
    assert materialize_bars(resources, instance, tags=range_tags(recent[7], recent[9])).success

    result = evaluate(instance)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert (request.tags[PARTITION_RANGE_START], request.tags[PARTITION_RANGE_END]) == (missing[0], missing[-1])
    assert request.run_key == "heal:" + ",".join(missing)

    again = evaluate(instance, cursor=result.cursor)
    assert not again.run_requests
    assert again.skip_reason.skip_message.startswith(f"a run was already requested for {', '.join(missing)}")

    healed = materialize_bars(resources, instance, tags=dict(request.tags))
    assert healed.success
    assert set(recent) <= materialized_keys(instance)
    rested = evaluate(instance, cursor=again.cursor)
    assert not rested.run_requests and rested.skip_reason.skip_message == "no missing sessions"


def test_a_failed_session_is_a_gap_too(resources, instance):
    from turbomode_pipeline_tests.test_daily_bars import CorruptedSource

    recent = [day.isoformat() for day in due_sessions(datetime.now(UTC), 10)]
    assert materialize_bars(resources, instance, tags=range_tags(recent[0], recent[-1])).success
    broken = dict(resources, market_data=CorruptedSource(seed=11, damage="negative_price"))
    assert not materialize_bars(broken, instance, partition_key=recent[-2]).success
    request = evaluate(instance).run_requests[0]
    assert request.run_key == f"heal:{recent[-2]}"


def test_sensor_reports_freshness_only_when_it_changes(resources, instance):
    latest = due_sessions(datetime.now(UTC), 1)[0].isoformat()
    stale = evaluate(instance)
    [evaluation] = stale.asset_events
    assert evaluation.check_name == "daily_bars_fresh" and not evaluation.passed
    assert evaluation.description.startswith(f"daily_bars for session {latest} is missing; it was due at")
    assert json.loads(stale.cursor)["fresh"] == [False, latest]
    assert evaluate(instance, cursor=stale.cursor).asset_events == []

    assert materialize_bars(resources, instance, partition_key=latest).success
    [fresh] = evaluate(instance, cursor=stale.cursor).asset_events
    assert fresh.passed and fresh.description == f"daily_bars holds the latest due session {latest}"
