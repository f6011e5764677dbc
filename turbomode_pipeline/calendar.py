"""NYSE sessions and the Dagster partitions built from them.

Partition keys are exactly the XNYS sessions (exchange_calendars) from the history start:
weekends are excluded by cron and holidays by date, so neither ever shows as a missing
partition. One partition spans a session's calendar day in New York.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd
from dagster import DailyPartitionsDefinition

EXCHANGE_TZ = ZoneInfo("America/New_York")
WEEKEND_CRONS = ("0 0 * * 6", "0 0 * * 0")
# exchange_calendars knows sessions up to about a year ahead of today.
CALENDAR_END = pd.Timestamp.today().normalize() + pd.DateOffset(years=1)


@cache
def xnys() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS", start="2000-01-03", end=CALENDAR_END)


def sessions_between(start: date, end: date) -> list[date]:
    """NYSE sessions in [start, end], oldest first."""
    if end < start:
        return []
    return [ts.date() for ts in xnys().sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))]


def is_session(day: date) -> bool:
    return xnys().is_session(pd.Timestamp(day))


def session_close(day: date) -> datetime:
    """The session's closing time (early closes included), timezone-aware."""
    return xnys().session_close(pd.Timestamp(day)).to_pydatetime()


def session_open(day: date) -> datetime:
    return xnys().session_open(pd.Timestamp(day)).to_pydatetime()


def sessions_before(day: date, count: int) -> list[date]:
    """The `count` sessions strictly before `day`, oldest first."""
    window = sessions_between(day - timedelta(days=count * 2 + 10), day - timedelta(days=1))
    return window[-count:] if count else []


def sessions_after(day: date, count: int) -> list[date]:
    """The `count` sessions strictly after `day`, oldest first."""
    return sessions_between(day + timedelta(days=1), day + timedelta(days=count * 2 + 10))[:count]


def holidays_between(start: date, end: date) -> list[date]:
    """Weekdays in [start, end] on which NYSE holds no session."""
    weekdays = pd.bdate_range(start, end)
    sessions = set(sessions_between(start, end))
    return [d.date() for d in weekdays if d.date() not in sessions]


@cache
def session_partitions(history_start: date) -> DailyPartitionsDefinition:
    """Daily partitions whose keys are exactly the NYSE sessions from `history_start`.

    `end_offset=1` makes today's session a partition from midnight New York time, so the
    evening schedule can request it on its own date.
    """
    holidays = holidays_between(history_start, CALENDAR_END.date())
    return DailyPartitionsDefinition(
        start_date=history_start.isoformat(),
        timezone=str(EXCHANGE_TZ),
        end_offset=1,
        exclusions=[*WEEKEND_CRONS, *(datetime.combine(day, time(), tzinfo=EXCHANGE_TZ) for day in holidays)],
    )


def daily_sessions() -> DailyPartitionsDefinition:
    """The session partitions from the configured history start."""
    from turbomode_pipeline.settings import get_settings

    return session_partitions(get_settings().history_start)
