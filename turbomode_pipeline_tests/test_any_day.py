"""The code location on every day: it loads, and its partitions end where XNYS says.

It once built its calendar to "today plus a year" and failed to load whenever that date was
not a session (every Friday and Saturday, and the days a year before a holiday), so the
suite passed only on good days. Here the clock is set with time-machine, which moves ours,
Dagster's and exchange_calendars' clocks together.
"""

import importlib
import os
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd
import pytest
import time_machine

import turbomode_pipeline.calendar as calendar_module
import turbomode_pipeline.partitions as partitions_module

NEW_YORK = ZoneInfo("America/New_York")
# An independent XNYS (other bounds) to compare against.
REFERENCE = xcals.get_calendar("XNYS", start="2014-01-02", end="2029-12-31")


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def latest_session_on_or_before(day: date) -> date:
    return REFERENCE.date_to_session(pd.Timestamp(day), direction="previous").date()


def latest_partition() -> str:
    """The newest session partition at the (travelled) time now."""
    return partitions_module.session_partitions(date(2015, 1, 2)).get_last_partition_key()


def test_every_day_of_2026_and_2027_the_calendar_loads_and_partitions_end_at_the_latest_closed_session():
    checked = 0
    for day in days(date(2026, 1, 1), date(2027, 12, 31)):
        noon, evening = (datetime.combine(day, time(hour), tzinfo=NEW_YORK) for hour in (12, 20))
        with time_machine.travel(evening, tick=False):
            importlib.reload(calendar_module)  # what runs when the code location imports them, on that day
            importlib.reload(partitions_module)
            assert latest_partition() == latest_session_on_or_before(day).isoformat(), day
            assert calendar_module.is_session(day) == REFERENCE.is_session(pd.Timestamp(day)), day
        with time_machine.travel(noon, tick=False):  # before the close: the day's session is no partition yet
            assert latest_partition() == latest_session_on_or_before(day - timedelta(days=1)).isoformat(), day
        checked += 1
    assert checked == 730
    importlib.reload(calendar_module)
    importlib.reload(partitions_module)


def test_a_sessions_partition_appears_at_21_utc_never_before_the_close():
    winter_close, summer = datetime(2026, 12, 8, 16, 0, tzinfo=NEW_YORK), datetime(2026, 7, 7, 17, 0, tzinfo=NEW_YORK)
    for appears in (winter_close, summer):
        with time_machine.travel(appears - timedelta(minutes=1), tick=False):
            assert latest_partition() != appears.date().isoformat()
        with time_machine.travel(appears, tick=False):
            assert latest_partition() == appears.date().isoformat()


# A Friday and a Saturday (their dates a year on are no session), Thanksgiving, and Christmas Eve,
# a year before a holiday on a Friday.
HARD_DAYS = ["2026-12-04T18:00:00-06:00", "2026-12-05T12:00:00-06:00", "2026-11-26T23:40:00-06:00",
             "2026-12-24T09:00:00-06:00"]


@pytest.mark.parametrize("when", HARD_DAYS)
def test_dagster_loads_the_code_location_on_days_it_once_failed(when, tmp_path):
    validate = subprocess.run(
        [sys.executable, "-m", "turbomode_pipeline_tests.at_time", when, "dagster", "definitions", "validate",
         "-m", "turbomode_pipeline.definitions"],
        capture_output=True, text=True, timeout=300, env=hermetic_env(tmp_path),
    )
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert "All code locations passed validation" in validate.stderr + validate.stdout


def hermetic_env(tmp_path) -> dict[str, str]:
    """The process environment (already free of the settings' variables, see conftest) with its own home and data."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "DAGSTER_HOME": str(home), "TURBOMODE_DATA_DIR": str(tmp_path / "data")}
