"""When a session is due: the policy every freshness judgement shares (the bars' check and sensor,
the scanner's, the drift report, `turbomode status` and the CLI's backfill).

A session's bars are due at its scheduled ingestion (INGESTION_TIME in the desk's timezone,
TURBOMODE_TIMEZONE, never before the close) plus GRACE: 23:15 on the session's own date. Pure:
the wall clock comes in as `now`.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from turbomode_pipeline.calendar import session_close, sessions_between
from turbomode_pipeline.settings import get_settings

INGESTION_TIME = time(22, 45)  # the market_data_ingestion schedule's tick, in the desk's timezone
GRACE = timedelta(minutes=30)  # a session counts as late this long after its scheduled ingestion


def ingestion_cron() -> str:
    """INGESTION_TIME every day, as the schedule's cron (it skips the days that are no session)."""
    return f"{INGESTION_TIME.minute} {INGESTION_TIME.hour} * * *"


def desk_timezone() -> ZoneInfo:
    """The schedules' timezone (TURBOMODE_TIMEZONE)."""
    return ZoneInfo(get_settings().timezone)


def due_at(session: date) -> datetime:
    """When a session's bars are overdue: its scheduled ingestion (never before the close) plus grace."""
    scheduled = datetime.combine(session, INGESTION_TIME, tzinfo=desk_timezone())
    return max(scheduled, session_close(session)) + GRACE


def judged_at(now: datetime) -> datetime:
    """The moment freshness is judged at: `now`, or in research mode (TURBOMODE_HISTORY_END in the
    past) noon after the history's last session, when its bars and its scan were both due."""
    end = get_settings().history_end
    if end is None:
        return now
    last = sessions_between(end - timedelta(days=14), end)[-1]  # the last session on or before the end
    return min(now, datetime.combine(last + timedelta(days=1), time(12, 0), tzinfo=desk_timezone()))


def research_note(now: datetime) -> str | None:
    """What research mode says wherever it judges freshness; None when it is off."""
    end = get_settings().history_end
    if end is None or judged_at(now) == now:
        return None
    return f"research mode: the history ends on {end} (TURBOMODE_HISTORY_END), judged as of that end, not the wall clock"


def due_sessions(now: datetime, count: int) -> list[date]:
    """The `count` most recent sessions whose bars should exist at `now`, oldest first."""
    start = max(get_settings().history_start, now.date() - timedelta(days=count * 2 + 14))
    candidates = sessions_between(start, now.astimezone(desk_timezone()).date())
    return [day for day in candidates if due_at(day) <= now][-count:]


def pending_session(now: datetime) -> date | None:
    """Today's session once its partition exists (from the close, see partitions.PARTITION_TZ) until its
    bars are due: the UI draws it as missing meanwhile, so the freshness check says when it is due."""
    today = now.astimezone(desk_timezone()).date()
    recent = sessions_between(today - timedelta(days=7), today)
    return recent[-1] if recent and session_close(recent[-1]) <= now < due_at(recent[-1]) else None
