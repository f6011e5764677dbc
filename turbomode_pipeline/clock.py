"""The pipeline's one "now".

Every due session, freshness verdict, demo window, status line and market-hours decision
asks this function. Tests move it with time-machine, which also moves Dagster's own clock
(`dagster._time`) and exchange_calendars', so the product and its orchestrator agree on
what day it is.
"""

from datetime import UTC, datetime


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
