"""The nightly schedule, the gap-healing sensor and the freshness check, on a real instance."""

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from dagster import RunRequest, SkipReason, build_schedule_context, build_sensor_context

from turbomode_pipeline.automation.market_data import (
    PARTITION_RANGE_END,
    PARTITION_RANGE_START,
    freshness_verdict,
    market_data_ingestion,
    missed_sessions_sensor,
)
from turbomode_pipeline.due import due_sessions, pending_session
from turbomode_pipeline_tests.support import materialize_bars, materialized_keys, range_tags

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


def evaluate(instance, resources, cursor=None):
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"warehouse": resources["warehouse"]})
    return missed_sessions_sensor(context)


def test_sensor_heals_three_missing_sessions_with_one_run_and_then_rests(resources, instance):
    recent = [day.isoformat() for day in due_sessions(datetime.now(UTC), 10)]
    assert len(recent) == 10
    missing = recent[4:7]
    assert materialize_bars(resources, instance, tags=range_tags(recent[0], recent[3])).success
    assert materialize_bars(resources, instance, tags=range_tags(recent[7], recent[9])).success

    result = evaluate(instance, resources)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert (request.tags[PARTITION_RANGE_START], request.tags[PARTITION_RANGE_END]) == (missing[0], missing[-1])
    assert request.run_key == "heal:" + ",".join(missing)

    healed = materialize_bars(resources, instance, tags=dict(request.tags))
    assert healed.success
    assert set(recent) <= materialized_keys(instance)
    rested = evaluate(instance, resources, cursor=result.cursor)
    assert not rested.run_requests and rested.skip_reason.skip_message == "no missing sessions"


def test_a_failed_session_is_a_gap_too(resources, instance):
    from turbomode_pipeline_tests.support import CorruptedSource

    recent = [day.isoformat() for day in due_sessions(datetime.now(UTC), 10)]
    assert materialize_bars(resources, instance, tags=range_tags(recent[0], recent[-1])).success
    broken = dict(resources, market_data=CorruptedSource(seed=11, damage="negative_price"))
    assert not materialize_bars(broken, instance, partition_key=recent[-2]).success
    request = evaluate(instance, resources).run_requests[0]
    assert request.run_key == f"heal:{recent[-2]}"


def test_sensor_reports_freshness_only_when_it_changes(resources, instance):
    recent = [day.isoformat() for day in due_sessions(datetime.now(UTC), 10)]
    stale = evaluate(instance, resources)
    [evaluation] = stale.asset_events
    assert evaluation.check_name == "daily_bars_fresh" and not evaluation.passed
    assert evaluation.description.startswith(
        f"the warehouse lacks daily_bars for 10 of the last 10 due sessions: {', '.join(recent)} (the latest, "
        f"{recent[-1]}, was due at"
    )
    assert json.loads(stale.cursor)["fresh"][:2] == [False, recent[-1]]
    assert evaluate(instance, resources, cursor=stale.cursor).asset_events == []

    assert materialize_bars(resources, instance, tags=range_tags(recent[0], recent[-1])).success
    [fresh] = evaluate(instance, resources, cursor=stale.cursor).asset_events
    # a session between its close and its due time adds "; <day> is not due until ..." (pending_session)
    assert fresh.passed and fresh.description.startswith(f"daily_bars holds the last 10 due sessions, through {recent[-1]}")


def test_a_session_whose_rows_the_warehouse_lost_is_stale_and_healed(resources, instance):
    recent = [day.isoformat() for day in due_sessions(datetime.now(UTC), 10)]
    assert materialize_bars(resources, instance, tags=range_tags(recent[0], recent[-1])).success
    resources["warehouse"].update("DELETE FROM daily_bars WHERE session = ?", [recent[5]])
    result = evaluate(instance, resources)
    [evaluation] = result.asset_events
    assert not evaluation.passed and f"1 of the last 10 due sessions: {recent[5]} " in evaluation.description
    assert result.run_requests[0].run_key == f"heal:{recent[5]}"


def test_a_sensor_gives_up_after_three_failed_heals_and_says_how_to_backfill(resources, instance):
    from turbomode_pipeline_tests.support import CorruptedSource

    recent = [day.isoformat() for day in due_sessions(datetime.now(UTC), 10)]
    broken = dict(resources, market_data=CorruptedSource(seed=11, damage="negative_price"))
    cursor = None
    for attempt in (1, 2, 3):
        result = evaluate(instance, resources, cursor=cursor)
        [request] = result.run_requests
        assert request.run_key == "heal:" + ",".join(recent) + (f"#{attempt}" if attempt > 1 else "")
        assert not materialize_bars(broken, instance, tags=dict(request.tags)).success
        cursor = result.cursor
    tired = evaluate(instance, resources, cursor=cursor)
    assert not tired.run_requests
    assert tired.skip_reason.skip_message.startswith(f"3 runs did not heal {', '.join(recent)}")
    assert f"--partition-range {recent[0]}...{recent[-1]}" in tired.skip_reason.skip_message


def test_todays_session_before_its_ingestion_is_not_due_yet_and_the_check_says_until_when():
    from datetime import date

    after_close = datetime(2026, 12, 2, 22, 0, tzinfo=UTC)  # a Wednesday, 16:00 in Chicago: the partition exists
    assert pending_session(after_close) == date(2026, 12, 2)
    assert pending_session(datetime(2026, 12, 2, 20, 0, tzinfo=UTC)) is None  # before the close: no partition yet
    assert pending_session(datetime(2026, 12, 3, 5, 30, tzinfo=UTC)) is None  # due at 23:15 Chicago
    due = due_sessions(after_close, 3)
    passed, message, _ = freshness_verdict(due, set(due), pending=pending_session(after_close))
    assert passed and message.endswith("; 2026-12-02 is not due until 23:15 CST")
    from turbomode_pipeline.automation.scanner import pending_scan

    assert pending_scan(after_close) == date(2026, 12, 2)  # its scan is due at 00:30 the next night
    assert pending_scan(datetime(2026, 12, 3, 6, 0, tzinfo=UTC)) == date(2026, 12, 2)
    assert pending_scan(datetime(2026, 12, 3, 6, 31, tzinfo=UTC)) is None
