"""`turbomode demo`, its whole chain (bars, features, samples, training, scan, grading, drift), with the
clock set to the days and hours where time bites: every weekday of Thanksgiving week (Thanksgiving
itself and the early-closing Friday after it), either side of the 22:45 ingestion, the 23:30 scan
and midnight in the desk's timezone, a Saturday, and both Sundays on which America/Chicago
changes its clocks. Each run is a fresh user's: its own instance, warehouse and MLflow store, on a
small universe (4 symbols a sector) to stay cheap. At that size a sector's holdout holds too few
independent outcomes for the champion gate's rank-IC test (it would pass one sector in eleven), so
the gate asks only for a rank IC above zero: what is tested here is time, not the models.

The whole chain runs at three of the eight moments (a weekday after the ingestion, the holiday,
the Sunday the clocks go back; test_real_closes runs it a fourth time, in research mode); at all
eight, the window the demo asks for (`due_sessions`, what `turbomode demo` calls) is checked
against an independent XNYS in-process, which is where the other five differ.
"""

import os
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd
import pytest
import time_machine

from turbomode_pipeline.due import due_sessions
from turbomode_pipeline_tests.support import small_universe

CHICAGO = ZoneInfo("America/Chicago")
REPO = Path(__file__).resolve().parents[1]
SESSIONS = 700  # the fewest that train every sector's three walk-forward blocks on 4 symbols a sector
REFERENCE = xcals.get_calendar("XNYS", start="2020-01-02", end="2028-12-29")

MOMENTS = {
    "monday-before-22:45": "2026-11-23T22:44:00",
    "tuesday-after-22:45": "2026-11-24T22:46:00",
    "wednesday-before-23:30": "2026-11-25T23:29:00",
    "thanksgiving-after-23:30": "2026-11-26T23:31:00",
    "black-friday-before-midnight": "2026-11-27T23:59:00",
    "saturday-after-midnight": "2026-11-28T00:01:00",
    "dst-starts-sunday": "2026-03-08T03:01:00",
    "dst-ends-sunday": "2026-11-01T01:30:00",
}

WHOLE_CHAIN = ("tuesday-after-22:45", "thanksgiving-after-23:30", "dst-ends-sunday")


def expected_newest_session(now: datetime) -> date:
    """Independently of the product: the newest session whose bars were due (22:45 + 30 min, Chicago) by `now`."""
    day = now.date()
    while True:
        if REFERENCE.is_session(pd.Timestamp(day)) and datetime.combine(day, time(23, 15), tzinfo=CHICAGO) <= now:
            return day
        day -= timedelta(days=1)


@pytest.mark.parametrize("moment", MOMENTS.values(), ids=MOMENTS.keys())
def test_the_demos_window_ends_at_the_newest_due_session_at(moment):
    now = datetime.fromisoformat(moment).replace(tzinfo=CHICAGO)
    with time_machine.travel(now, tick=False):
        window = due_sessions(now, SESSIONS)
    assert len(window) == SESSIONS and window[-1] == expected_newest_session(now)
    assert all(REFERENCE.is_session(pd.Timestamp(day)) for day in window)


@pytest.mark.slow
@pytest.mark.parametrize("moment", [MOMENTS[name] for name in WHOLE_CHAIN], ids=WHOLE_CHAIN)
def test_the_demos_whole_chain_passes_at(moment, tmp_path):
    now = datetime.fromisoformat(moment).replace(tzinfo=CHICAGO)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ, "DAGSTER_HOME": str(home), "TURBOMODE_DATA_DIR": str(tmp_path / "data"),
        "TURBOMODE_UNIVERSE": str(small_universe(tmp_path)), "TURBOMODE_CHAMPION_MIN_RANK_IC_T": "0",
    }
    demo = subprocess.run(
        [sys.executable, "-m", "turbomode_pipeline_tests.at_time", now.isoformat(), "turbomode", "demo",
         "--sessions", str(SESSIONS)],
        capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path,
    )
    out = demo.stdout
    assert demo.returncode == 0, (out + demo.stderr)[-4000:]
    newest = expected_newest_session(now)
    assert re.search(rf"{SESSIONS} sessions \d{{4}}-\d\d-\d\d\.\.{newest}\n", out), out[:500]
    assert f"top 10 signals of {newest} by confidence" in out
    assert "drift_monitoring_job: run" in out and "drift report:" in out
    # quiet: under 150 lines in all, no MLflow or Dagster chatter, and it ends with what to open next
    lines = (out + demo.stderr).splitlines()
    assert len(lines) < 150, out + demo.stderr
    chatter = r"^\d{4}/\d\d/\d\d .*(INFO|WARNING) mlflow|- dagster - |Warning: |Successfully registered|Created version"
    assert not [line for line in lines if re.search(chatter, line)]
    assert [line.split(":")[0] for line in out.rstrip().splitlines()[-4:]] == [
        "query the warehouse", "open the UI", "open MLflow", "open the reports"]
    saturday = newest + timedelta(days=(5 - newest.weekday()) % 7)
    assert (tmp_path / "data" / "reports" / f"drift_report_{saturday}.html").exists()
    # before them, the signal backtest: the long-short book's Sharpe, annualised return, max drawdown and its report
    last_lines = out.rstrip().splitlines()[-8:-6]
    assert re.fullmatch(r"long-short Sharpe -?\d+\.\d\d \(t -?\d+\.\d\d\), annualised return -?\d+\.\d\d%, "
                        r"max drawdown -?\d+\.\d\d%", last_lines[0]), last_lines
    report = Path(last_lines[1].removeprefix("backtest report: "))
    assert report.parent == tmp_path / "data" / "reports" and report.name.startswith("signal_backtest_")
    assert report.exists()


def test_a_failed_demo_step_names_itself_its_reason_and_the_retry_command_and_still_ends_with_next_steps(tmp_path):
    from turbomode_pipeline_tests.alpaca_emulator import AlpacaEmulator

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with AlpacaEmulator() as emulator:
        emulator.always_fail = 401  # the data server refuses the key
        env = {
            **os.environ, "DAGSTER_HOME": str(home), "TURBOMODE_DATA_DIR": str(tmp_path / "data"),
            "TURBOMODE_UNIVERSE": str(small_universe(tmp_path, per_sector=1)), "TURBOMODE_MARKET_DATA": "alpaca",
            "APCA_API_KEY_ID": emulator.key_id, "APCA_API_SECRET_KEY": emulator.secret,
            "APCA_API_DATA_URL": emulator.url,
        }
        demo = subprocess.run(
            [sys.executable, "-m", "turbomode_pipeline.cli", "demo", "--sessions", "20"],
            capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
        )
    assert demo.returncode == 1
    stopped = next(line for line in demo.stderr.splitlines() if line.startswith("TurboMode demo stopped: "))
    assert stopped.startswith("TurboMode demo stopped: step daily_bars of market_data_job failed after ")
    assert "401" in stopped
    assert (f"retry that step: DAGSTER_HOME={home} .venv/bin/dagster asset materialize -m turbomode_pipeline.definitions "
            "--select daily_bars,daily_features --partition-range ") in demo.stderr
    assert demo.stdout.rstrip().splitlines()[-1].startswith("open the reports: ")
    # the failure is told once, by the demo (the step's error and its causes), not again by Dagster's log of the run
    assert demo.stderr.count("TurboMode demo stopped: ") == 1 and " - dagster - " not in demo.stderr
