from datetime import date

import exchange_calendars as xcals
import pandas as pd

from turbomode_pipeline.calendar import is_session, session_close, sessions_between
from turbomode_pipeline.partitions import session_partitions


def test_partition_keys_are_exactly_the_nyse_sessions_2015_to_2026():
    keys = session_partitions(date(2015, 1, 2)).get_partition_keys()
    in_range = [k for k in keys if k <= "2026-11-20"]
    reference = xcals.get_calendar("XNYS", start="2015-01-01", end="2026-12-31")
    expected = [d.date().isoformat() for d in reference.sessions_in_range("2015-01-02", "2026-11-20")]
    assert in_range == expected
    assert len([k for k in keys if k.startswith("2024")]) == 252


def test_weekends_and_holidays_are_not_partitions():
    keys = set(session_partitions(date(2015, 1, 2)).get_partition_keys())
    assert "2024-07-04" not in keys  # Independence Day
    assert "2025-01-09" not in keys  # National Day of Mourning for President Carter
    assert "2018-12-05" not in keys  # National Day of Mourning for President Bush
    assert "2024-03-09" not in keys and "2024-03-10" not in keys  # a weekend
    assert {"2015-01-02", "2024-07-03", "2024-07-05", "2024-11-29"} <= keys


def test_session_helpers_follow_the_exchange():
    assert is_session(date(2024, 11, 29)) and not is_session(date(2024, 11, 28))
    assert session_close(date(2024, 11, 29)) == pd.Timestamp("2024-11-29 18:00", tz="UTC")  # early close, 13:00 NY
    assert sessions_between(date(2024, 12, 23), date(2024, 12, 27)) == [
        date(2024, 12, 23), date(2024, 12, 24), date(2024, 12, 26), date(2024, 12, 27)
    ]


def test_the_session_arithmetic_and_the_due_policy_import_no_dagster():
    """Partitions live in partitions.py; calendar.py and due.py stay pure, no sensor or partition code."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "turbomode_pipeline"
    for module in ("calendar.py", "due.py"):
        tree = ast.parse((package / module).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {name for name in imported if name.split(".")[0] == "dagster"}, module
