"""Every partitions definition: NYSE sessions (daily) and weeks (the drift report's, and the
training weeks sector_models serves), with the universe's GICS sectors the training steps run over.

Session partition keys are exactly the XNYS sessions (calendar.py) from the history start:
weekends are excluded by cron and holidays by date, so neither ever shows as a missing
partition. A session's partition exists from 16:00 New York time in winter (17:00 in summer)
on its own date, once its bars can exist, and not before: see PARTITION_TZ.

Sectors are built when the code location loads, from the universe file (TURBOMODE_UNIVERSE): a
desk whose universe holds 7 sectors has 7 training steps, so the weekly training, the status
and the drift report never ask for a sector it lacks. A changed universe takes effect on the
next load (a restart of the code location, or "Reload" in the UI).
"""

from datetime import date, datetime, time
from functools import cache
from zoneinfo import ZoneInfo

import polars as pl
from dagster import DailyPartitionsDefinition, WeeklyPartitionsDefinition

from turbomode_pipeline.calendar import CALENDAR_END, holidays_between, sessions_before
from turbomode_pipeline.core.universe import GICS_SECTORS, load_universe, sector_slug
from turbomode_pipeline.settings import get_settings

# Partition D's window is [D 00:00, D+1 00:00) in UTC+3 ("Etc/GMT-3": the sign is POSIX's), so it
# completes, and becomes the latest partition, at 21:00 UTC on D: 16:00 New York in winter, 17:00 in
# summer, never before the close, with no end offset. New York with end_offset=1 made D a partition
# from midnight, and on a weekend or holiday that offset reached the next session (on a Saturday,
# Monday's partition existed and showed as missing).
PARTITION_TZ = ZoneInfo("Etc/GMT-3")
WEEKEND_CRONS = ("0 0 * * 6", "0 0 * * 0")


@cache
def session_partitions(history_start: date) -> DailyPartitionsDefinition:
    """Daily partitions whose keys are exactly the NYSE sessions from `history_start`; the newest is the
    latest session whose day has reached 21:00 UTC (see PARTITION_TZ)."""
    holidays = holidays_between(history_start, CALENDAR_END)
    return DailyPartitionsDefinition(
        start_date=history_start.isoformat(),
        timezone=str(PARTITION_TZ),
        exclusions=[*WEEKEND_CRONS, *(datetime.combine(day, time(), tzinfo=PARTITION_TZ) for day in holidays)],
    )


def daily_sessions() -> DailyPartitionsDefinition:
    """The session partitions from the configured history start."""
    return session_partitions(get_settings().history_start)


@cache
def session_weeks(history_start: date) -> WeeklyPartitionsDefinition:
    """Weeks run Sunday to Saturday; the key is the Sunday, the drift report is about the Saturday's last sessions."""
    return WeeklyPartitionsDefinition(
        start_date=history_start.isoformat(), day_offset=0, timezone=str(PARTITION_TZ), end_offset=1
    )


def drift_weeks() -> WeeklyPartitionsDefinition:
    """The drift report's weeks from the configured history start."""
    return session_weeks(get_settings().history_start)


def training_weeks() -> WeeklyPartitionsDefinition:
    """sector_models' partitions: the week (Sunday key) a model set serves, trained as of the session before it
    (core/point_in_time.py). The week in progress is a partition from its start, so Sunday's training has one."""
    return session_weeks(get_settings().history_start)


def week_cutoff(week: date) -> date:
    """The last session before the week starting on `week`: the newest close a model serving that week knew."""
    return sessions_before(week, 1)[0]


def universe_sectors(universe: pl.DataFrame) -> tuple[str, ...]:
    """The sectors the universe holds, in GICS order."""
    present = set(universe["sector"].unique().to_list())
    return tuple(sector for sector in GICS_SECTORS if sector in present)


SECTORS = universe_sectors(load_universe(get_settings().universe_path))
SECTOR_BY_KEY = {sector_slug(sector): sector for sector in SECTORS}


def sector_of(key: str) -> str:
    try:
        return SECTOR_BY_KEY[key]
    except KeyError:
        raise ValueError(
            f"sector partition {key!r} is not a sector of the universe {get_settings().universe_path}; "
            f"its sectors are {', '.join(SECTOR_BY_KEY)}"
        ) from None
