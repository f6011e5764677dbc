"""NYSE sessions (exchange_calendars' XNYS): which days are sessions, their opens and closes.

Pure session arithmetic, no Dagster: the partitions built from these sessions live in
partitions.py.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

EXCHANGE_TZ = ZoneInfo("America/New_York")
# A fixed bound, not "today plus a year": nothing that loads may depend on the date it loads on
# (a bound that is not itself a session made exchange_calendars raise on Fridays and Saturdays).
# exchange_calendars projects NYSE's holiday rules this far; building to it costs ~0.3 s.
CALENDAR_START = date(2000, 1, 3)
CALENDAR_END = date(2040, 12, 31)


@cache
def xnys() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS", start=CALENDAR_START.isoformat(), end=CALENDAR_END.isoformat())


def sessions_between(start: date, end: date) -> list[date]:
    """NYSE sessions in [start, end], oldest first (clipped to the calendar's bounds)."""
    start, end = max(start, CALENDAR_START), min(end, CALENDAR_END)
    if end < start:
        return []
    return [ts.date() for ts in xnys().sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))]


def is_session(day: date) -> bool:
    """False outside the calendar's bounds, where exchange_calendars would raise."""
    return not outside_calendar(day) and xnys().is_session(pd.Timestamp(day))


def outside_calendar(day: date) -> str | None:
    """None for a day within the calendar's bounds; otherwise the one-line reason."""
    if CALENDAR_START <= day <= CALENDAR_END:
        return None
    return f"{day} is outside the NYSE calendar this pipeline knows ({CALENDAR_START} to {CALENDAR_END})"


def last_closed_session(now: datetime) -> date:
    """The newest session whose close is at or before `now`."""
    recent = sessions_before(now.date() + timedelta(days=1), 2)
    return recent[-1] if session_close(recent[-1]) <= now else recent[0]


def session_close(day: date) -> datetime:
    """The session's closing time (early closes included), timezone-aware."""
    return xnys().session_close(pd.Timestamp(day)).to_pydatetime()


def session_open(day: date) -> datetime:
    return xnys().session_open(pd.Timestamp(day)).to_pydatetime()


def session_minutes(days: list[date]) -> list[int]:
    """Each session's length in minutes (390, or fewer on an early close), in one lookup."""
    if not days:
        return []
    index = pd.DatetimeIndex([pd.Timestamp(day) for day in days])
    calendar = xnys()
    length = (calendar.closes.reindex(index) - calendar.opens.reindex(index)).dt.total_seconds() // 60
    return [int(m) for m in length]


def sessions_before(day: date, count: int) -> list[date]:
    """The `count` sessions strictly before `day`, oldest first."""
    window = sessions_between(day - timedelta(days=count * 2 + 10), day - timedelta(days=1))
    return window[-count:] if count else []


def sessions_after(day: date, count: int) -> list[date]:
    """The `count` sessions strictly after `day`, oldest first."""
    return sessions_between(day + timedelta(days=1), day + timedelta(days=count * 2 + 10))[:count]


def holidays_between(start: date, end: date) -> list[date]:
    """Weekdays in [start, end] on which NYSE holds no session."""
    weekdays = pd.bdate_range(max(start, CALENDAR_START), min(end, CALENDAR_END))
    return [day.date() for day in weekdays.difference(xnys().sessions)]


def not_a_session(day: date) -> str | None:
    """None for an NYSE session; otherwise a one-line reason naming the nearest sessions either side."""
    if is_session(day):
        return None
    if outside_calendar(day):
        return outside_calendar(day)
    before, after = sessions_before(day, 1), sessions_after(day, 1)
    nearest = " and ".join(f"{s} ({s:%a})" for s in (*before, *after))
    return f"{day} ({day:%a}) is not an NYSE session; the nearest are {nearest}"
