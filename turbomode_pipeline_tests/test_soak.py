"""The soak (turbomode_pipeline_tests/soak.py) over the newest two sessions of the trained models'
history, ticking every 5th market minute: two kill -9s and one slow-server night at seeded
random points. `make soak` runs five sessions, every minute, and prints the same report."""

import os

import pytest

from turbomode_pipeline_tests.alpaca_emulator import AlpacaEmulator
from turbomode_pipeline_tests.soak import TICK_SYMBOLS, print_report, run_soak


@pytest.mark.slow
def test_a_week_with_two_kills_and_a_slow_night_loses_no_session_and_no_order(trained_models, tmp_path):
    sessions = trained_models.sessions[-int(os.environ.get("TEST_SOAK_SESSIONS", "2")):]
    with AlpacaEmulator() as emulator:
        emulator.prices = {symbol: price for symbol, price in zip(TICK_SYMBOLS, (190.0, 120.0, 480.0), strict=True)}
        report = run_soak(trained_models, emulator, tmp_path, sessions, every=int(os.environ.get("TEST_SOAK_EVERY", "5")))
    print_report(report)
    reruns = report["what went wrong and was run again"]
    assert sorted(r.split(" (")[0] for r in reruns if "killed" in r) == ["nightly worker killed", "tick worker killed"]
    assert any(r.startswith("slow server on") and "total deadline of 1 s per request" in r for r in reruns), reruns
    assert report["failed runs (after recovery)"] == [] and report["lock errors"] == []
    assert report["runs left STARTED"] == []
    for table, rows in report["rows per session"].items():
        assert sorted(rows) == [s.isoformat() for s in sessions], (table, rows)
    assert set(report["rows per session"]["daily_bars"].values()) == {44}
    assert report["orders the broker holds"] > 0
    assert report["orders in the ledger"] == report["orders the broker holds"]
    assert report["duplicate client_order_ids"] == 0 and report["broker orders the ledger lacks"] == []
    assert report["ledger orders left submitting"] == []
