"""`turbomode signals` and the signals sheet on a warehouse scanned by the real assets (DuckDB, Dagster, MLflow)."""

import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import time_machine
from dagster import instance_for_test, materialize

from turbomode_pipeline.assets.scanner import missing_features, scanner_signals, signal_outcomes
from turbomode_pipeline.automation.scanner import scan_due_at
from turbomode_pipeline.calendar import sessions_after
from turbomode_pipeline.cli import main
from turbomode_pipeline.core.signals_sheet import SignalsSheet, desk_view, render_sheet, sector_track_record
from turbomode_pipeline.due import due_at
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline_tests.servers import chromium_page
from turbomode_pipeline_tests.support import range_tags

SCANNED = 25  # sessions scanned; those whose horizon passed are graded, so the newest sheet has a record


def _run(assets, resources, instance, first, last):
    result = materialize(assets, resources=resources, instance=instance, tags=range_tags(str(first), str(last)),
                         selection=[asset.key for asset in assets])
    assert result.success
    return result


@pytest.fixture(scope="module")
def scanned(trained_models, tmp_path_factory):
    """The last SCANNED sessions scanned, the graded ones' outcomes, then the newest scanned again (as each
    night scans after the grading): the warehouse, its folder, the sessions and the newest scan's metadata."""
    folder = tmp_path_factory.mktemp("signals_view")
    resources = trained_models.resources(folder)
    sessions = trained_models.sessions[-SCANNED:]
    graded = sessions[: -get_settings().label_horizon]
    with instance_for_test() as instance:
        _run([scanner_signals], resources, instance, sessions[0], sessions[-1])
        _run([signal_outcomes], resources, instance, graded[0], graded[-1])
        newest = _run([scanner_signals], resources, instance, sessions[-1], sessions[-1])
    metadata = newest.asset_materializations_for_node("scanner_signals")[0].metadata
    return resources["warehouse"], folder, sessions, metadata


@pytest.fixture
def desk(scanned, trained_models, monkeypatch):
    """The settings of a desk whose data folder is the scanned warehouse's."""
    warehouse, folder, sessions, _ = scanned
    monkeypatch.setenv("TURBOMODE_DATA_DIR", str(folder))
    monkeypatch.setenv("TURBOMODE_UNIVERSE", str(trained_models.universe_path))
    get_settings.cache_clear()
    yield warehouse, sessions
    get_settings.cache_clear()


def turbomode(argv, capsys, at=None):
    """`turbomode ARGV` in-process at `at` (by default an hour after the newest scan was due): exit code, out, err."""
    with time_machine.travel(at, tick=False):
        code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fresh(sessions):
    return scan_due_at(sessions[-1]) + timedelta(hours=1)


def stored(warehouse, session) -> pl.DataFrame:
    """The session's signals as the command shows them (in the desk's timezone)."""
    signals = warehouse.query(f"SELECT * FROM signal_history WHERE session = DATE '{session}'")
    return desk_view(signals, get_settings().timezone).with_columns(pl.col("session").cast(pl.String))


def as_csv(argv, capsys, sessions) -> pl.DataFrame:
    code, out, err = turbomode([*argv, "--format", "csv"], capsys, fresh(sessions))
    assert code == 0, err
    return pl.read_csv(io.StringIO(out), schema_overrides={"session": pl.String})


def test_the_default_is_the_newest_scan_with_when_it_ran(desk, capsys):
    warehouse, sessions = desk
    expected = stored(warehouse, sessions[-1])
    assert expected.height > 3 and set(expected["side"]) == {"BUY", "SELL"}
    code, out, err = turbomode(["signals"], capsys, fresh(sessions))
    assert code == 0 and err == ""
    scanned_at = warehouse.query(f"SELECT max(created_at) AS t FROM signal_history WHERE session = DATE '{sessions[-1]}'")
    local = scanned_at["t"][0].astimezone(ZoneInfo(get_settings().timezone))
    buy = int((expected["side"] == "BUY").sum())
    assert out.splitlines()[0] == (f"signals of {sessions[-1]}, scanned {local:%Y-%m-%d %H:%M %Z}: {expected.height} "
                                   f"signals ({buy} BUY / {expected.height - buy} SELL), {expected.height} shown")
    header = next(line for line in out.splitlines() if "symbol" in line)
    for column in ("symbol", "sector", "side", "confidence", "entry", "target", "stop", "expires", "model"):
        assert column in header
    assert "session" not in header  # one session: the first line names it
    for row in expected.iter_rows(named=True):
        assert row["symbol"] in out and row["expires"] in out and row["model"] in out
    assert " CST" in out or " CDT" in out  # expiry in the desk's timezone
    assert as_csv(["signals"], capsys, sessions).equals(
        expected.sort(["confidence", "symbol"], descending=[True, False]))


def test_a_range_and_a_session(desk, capsys):
    warehouse, sessions = desk
    earlier = as_csv(["signals", "--session", str(sessions[-3])], capsys, sessions)
    assert set(earlier["session"]) == {str(sessions[-3])}
    assert earlier.sort("symbol").equals(stored(warehouse, sessions[-3]).sort("symbol"))
    week = as_csv(["signals", "--from", str(sessions[-5]), "--to", str(sessions[-2])], capsys, sessions)
    assert week["session"].unique().sort().to_list() == [str(day) for day in sessions[-5:-1]]
    assert week["session"].is_sorted()  # session by session


FILTERS = {
    "sector": (["--sector", "Energy"], pl.col("sector") == "Energy"),
    "side": (["--side", "sell"], pl.col("side") == "SELL"),
    "min-confidence": (["--min-confidence", "0.63"], pl.col("confidence") >= 0.63),
    "symbol": (["--symbol", "{symbol}"], pl.col("symbol") == "{symbol}"),
}


@pytest.mark.parametrize("name", FILTERS)
def test_each_filter_keeps_exactly_its_signals(name, desk, capsys):
    warehouse, sessions = desk
    expected = stored(warehouse, sessions[-1])
    argv, keep = FILTERS[name]
    if name == "symbol":  # the most confident signal's symbol, typed in lower case
        symbol = expected.sort("confidence", descending=True)["symbol"][0]
        argv, keep = ["--symbol", symbol.lower()], pl.col("symbol") == symbol
    shown = as_csv(["signals", *argv], capsys, sessions)
    assert shown.sort("symbol").equals(expected.filter(keep).sort("symbol"))
    assert 0 < shown.height < expected.height or (name == "sector" and shown.height <= expected.height)


SORTS = {
    "confidence": (["confidence", "symbol"], [True, False]),
    "sector": (["sector", "confidence", "symbol"], [False, True, False]),
    "symbol": (["symbol"], [False]),
}


@pytest.mark.parametrize("key", SORTS)
def test_each_sort(key, desk, capsys):
    warehouse, sessions = desk
    shown = as_csv(["signals", "--sort", key], capsys, sessions)
    columns, descending = SORTS[key]
    assert shown.equals(stored(warehouse, sessions[-1]).sort(columns, descending=descending))
    assert shown[columns[0]].to_list() != stored(warehouse, sessions[-1])[columns[0]].to_list() or key == "symbol"


def test_csv_and_json_round_trip_to_the_same_rows(desk, capsys):
    warehouse, sessions = desk
    from_csv = as_csv(["signals"], capsys, sessions)
    code, out, err = turbomode(["signals", "--format", "json"], capsys, fresh(sessions))
    assert code == 0 and err.startswith(f"signals of {sessions[-1]}, scanned ")  # the notes stay off stdout
    from_json = pl.DataFrame(json.loads(out), schema=from_csv.schema)
    assert from_json.equals(from_csv)
    assert from_csv.sort("symbol").equals(stored(warehouse, sessions[-1]).sort("symbol"))


def test_it_warns_when_the_clock_is_a_session_past_the_newest_scan(desk, capsys):
    _, sessions = desk
    following = sessions_after(sessions[-1], 1)[-1]
    code, out, err = turbomode(["signals"], capsys, scan_due_at(following) + timedelta(minutes=1))
    assert code == 0 and out.startswith(f"signals of {sessions[-1]}, scanned ")
    assert err.splitlines() == [f"WARNING: stale: the newest scan is of {sessions[-1]}, but the scan of {following} "
                                f"was due by {scan_due_at(following):%Y-%m-%d %H:%M %Z}; turbomode status says what "
                                "is missing"]
    assert turbomode(["signals"], capsys, scan_due_at(following) - timedelta(minutes=1))[2] == ""


def test_an_unknown_sector_or_an_unscanned_session_gets_one_line(desk, capsys):
    _, sessions = desk
    before = sessions[0] - timedelta(days=7)
    before = before if before.weekday() < 5 else before - timedelta(days=2)
    code, out, err = turbomode(["signals", "--session", str(before)], capsys, fresh(sessions))
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"turbomode signals: no scan of {before}: the newest scanned session is {sessions[-1]}; "
                                f"materialise scanner_signals {before} first"]
    code, out, err = turbomode(["signals", "--sector", "Enrgy"], capsys, fresh(sessions))
    assert (code, out) == (2, "") and len(err.splitlines()) == 1
    assert err.startswith("turbomode signals: no sector 'Enrgy' in the universe; did you mean Energy? its sectors are ")


def test_the_scan_names_its_unscored_symbols_and_links_its_sheet(scanned):
    warehouse, folder, sessions, metadata = scanned
    features = warehouse.query(f"SELECT count(*) AS n FROM daily_features WHERE session = DATE '{sessions[-1]}'").item()
    unscored = metadata["symbols_without_champion"].value + metadata["symbols_with_incomplete_features"].value
    assert metadata["symbols_scored"].value + unscored == features
    assert "symbols_without_complete_features" not in metadata
    assert metadata["signals_sheet"].value == str((folder / "reports" / f"signals_{sessions[-1]}.html").resolve())


def test_a_missing_or_not_yet_due_session_names_the_partition_to_materialise_first():
    day = date(2026, 12, 7)
    late = missing_features([day], due_at(day) + timedelta(hours=1)).format(shown=day)
    assert late.startswith(f"scanner not run: daily_features has no rows for session(s) {day}. Materialise "
                           f"daily_features {day} first")
    early = missing_features([day], due_at(day) - timedelta(hours=3)).format(shown=day)
    assert f"({day} not due yet: a session's bars are ingested at 22:45 and due by 23:15 CST on its own date). " \
           f"Materialise daily_features {day} first" in early
    assert early.endswith("(it writes a session only once that session's daily_bars passed every blocking check: "
                          "if daily_bars failed, fix and re-materialise it first)")


def _visible(page, key):
    return page.eval_on_selector_all(
        f'#signals tbody tr:not([hidden]) td[data-key="{key}"]', "cells => cells.map(c => c.getAttribute('data-sort'))")


def test_the_sheet_sorts_and_filters_in_chromium(scanned, tmp_path):
    warehouse, folder, sessions, metadata = scanned
    path = Path(metadata["signals_sheet"].value)
    expected = stored(warehouse, sessions[-1])
    with chromium_page(width=1500, height=900) as page:
        page.goto(path.as_uri())
        assert sorted(_visible(page, "symbol")) == sorted(expected["symbol"])  # every signal of the session
        page.click('th[data-key="confidence"]')
        shown = [float(value) for value in _visible(page, "confidence")]
        assert shown == sorted(shown, reverse=True) and len(shown) == expected.height
        page.click('th[data-key="confidence"]')
        assert [float(value) for value in _visible(page, "confidence")] == sorted(shown)
        sector = expected["sector"].mode().sort()[0]
        page.select_option("#sector-filter", sector)
        assert set(_visible(page, "sector")) == {sector}
        assert len(_visible(page, "sector")) == expected.filter(pl.col("sector") == sector).height
        assert page.inner_text("#shown") == str(expected.filter(pl.col("sector") == sector).height)
        page.select_option("#sector-filter", "")
        page.screenshot(path=str(tmp_path / "signals_sheet.png"), full_page=True)
        rates = _visible(page, "sector_hit_rate")
        text = page.inner_text("body")
    assert any(rate != "" for rate in rates), "the graded sessions give some sector a hit rate"
    assert f"Signals of {sessions[-1]}" in text and "Sectors' recent record" in text
    print(f"screenshot: {tmp_path / 'signals_sheet.png'}")


def test_a_hostile_symbol_stays_text_in_the_sheet(tmp_path):
    hostile = '<img src=x onerror="document.title=\'owned\'">'
    signals = pl.DataFrame({
        "session": [date(2026, 12, 4)] * 2, "symbol": [hostile, "AAA"],
        "signal_type": ["BUY", "SELL"], "confidence": [0.7, 0.66], "entry_price": [10.0, 20.0],
        "target_price": [11.0, 19.0], "stop_loss": [9.5, 21.0], "sector": ['Energy"><b>x</b>', "Energy"],
        "expires_at": [datetime(2026, 12, 18, 21, tzinfo=UTC)] * 2,
        "model_name": ["turbomode-energy-stacked_ensemble"] * 2, "model_version": ["3"] * 2,
    })
    sheet = SignalsSheet("2026-12-04", datetime(2026, 12, 5, 5, tzinfo=UTC),
                         "America/Chicago", desk_view(signals, "America/Chicago"),
                         sector_track_record(pl.DataFrame(schema={"sector": pl.String, "signal_type": pl.String,
                                                                  "confidence": pl.Float64, "outcome": pl.String,
                                                                  "excess_ret": pl.Float64})),
                         "2026-08-01..2026-11-19", pl.DataFrame(schema={"sector": pl.String, "reason": pl.String,
                                                                      "symbols": pl.List(pl.String)}))
    page_path = tmp_path / "hostile.html"
    page_path.write_text(render_sheet(sheet))
    with chromium_page() as page:
        page.goto(page_path.as_uri())
        assert page.title() == "Signals of 2026-12-04"
        assert page.eval_on_selector_all("#signals img, #signals b", "found => found.length") == 0
        assert hostile in page.inner_text("#signals")
        page.fill("#symbol-filter", "aaa")
        assert _visible(page, "symbol") == ["AAA"]


def test_unscored_symbols_are_named_by_sector_and_reason():
    from turbomode_pipeline.core.scanner import unscored

    day = date(2026, 12, 4)
    features = pl.DataFrame({"session": [day] * 5, "symbol": ["XOM", "CVX", "AAPL", "MSFT", "LIN"],
                             "sector": ["Energy", "Energy", "Information Technology", "Information Technology", "Materials"]})
    scored = pl.DataFrame({"session": [day, day], "symbol": ["XOM", "AAPL"]})
    assert unscored(features, scored, ["Materials"]).rows() == [
        (day, "Energy", "incomplete features", ["CVX"]),
        (day, "Information Technology", "incomplete features", ["MSFT"]),
        (day, "Materials", "no champion", ["LIN"]),
    ]
