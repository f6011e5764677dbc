"""The alpaca source through the real alpaca-py SDK against a loopback emulator."""

import re
import time

import polars as pl
import pytest
from dagster import materialize

from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.resources.market_data import AlpacaMarketData, SimulatedMarketData
from turbomode_pipeline_tests.alpaca_emulator import KEY_ID, SECRET, AlpacaEmulator
from turbomode_pipeline_tests.support import range_tags, table

FIRST, LAST = "2024-03-04", "2024-03-08"


@pytest.fixture
def vendor_bars(resources) -> pl.DataFrame:
    """What the vendor holds: a week of simulated bars for the test universe."""
    from datetime import date

    from turbomode_pipeline.calendar import sessions_between

    universe = resources["universe"].load()
    sessions = sessions_between(date(2024, 3, 4), date(2024, 3, 8))
    return SimulatedMarketData(seed=3).daily_bars(sessions, universe)


def alpaca(emulator: AlpacaEmulator, **overrides) -> AlpacaMarketData:
    settings = dict(api_key=KEY_ID, secret_key=SECRET, data_url=emulator.url, backoff_s=0.01, timeout_s=2.0)
    return AlpacaMarketData(**(settings | overrides))


def run(resources, instance, source):
    return materialize(
        [daily_bars], resources=dict(resources, market_data=source), instance=instance,
        tags=range_tags(FIRST, LAST), raise_on_error=False,
    )


def step_error(result) -> str:
    return result.get_step_failure_events()[0].step_failure_data.error.cause.message


def user_message(result) -> str:
    """The cause's message as the UI shows it under the exception's class name."""
    return step_error(result).split(": ", 1)[1].strip()  # "module.Class: message"


def test_all_pages_arrive_and_match_the_vendor(resources, instance, warehouse, vendor_bars):
    with AlpacaEmulator(vendor_bars, page_size=40) as emulator:
        result = run(resources, instance, alpaca(emulator, symbols_per_request=25))
    assert result.success
    stored = table(warehouse)
    assert stored.height == vendor_bars.height == 5 * 44
    columns = ["session", "symbol", "sector", "open", "high", "low", "close", "volume", "vwap", "trade_count"]
    assert stored.select(columns).equals(vendor_bars.sort("session", "symbol").select(columns))
    assert stored["source"].unique().to_list() == ["alpaca"]
    pages = [path for _, path, _ in emulator.requests]
    assert len(pages) == 4 + 3  # 25 symbols x 5 days = 125 bars = 4 pages; 19 x 5 = 95 = 3 pages
    assert sum("page_token=" in path for path in pages) == 5
    assert all("feed=iex" in path and "adjustment=all" in path and "timeframe=1Day" in path for path in pages)


def test_a_burst_of_429s_is_retried_then_succeeds(resources, instance, warehouse, vendor_bars):
    with AlpacaEmulator(vendor_bars) as emulator:
        emulator.fail_next = [429, 429, 429]
        result = run(resources, instance, alpaca(emulator))
    assert result.success
    assert emulator.statuses("/v2/stocks/bars") == [429, 429, 429, 200]
    assert table(warehouse).height == 5 * 44


def test_a_persistent_500_ends_in_a_clear_error_with_nothing_written(resources, instance, warehouse, vendor_bars):
    with AlpacaEmulator(vendor_bars) as emulator:
        emulator.always_fail = 500
        result = run(resources, instance, alpaca(emulator, max_retries=2))
    assert not result.success
    assert emulator.statuses("/v2/stocks/bars") == [500, 500, 500]
    message = step_error(result)
    assert "Alpaca market data request for 44 symbols (AAPL..XOM), sessions 2024-03-04..2024-03-08" in message
    assert "failed with HTTP 500" in message and "internal server error" in message
    assert not warehouse.has_table("daily_bars")


def test_a_hung_server_times_out_with_a_clear_error(resources, instance, warehouse, vendor_bars):
    with AlpacaEmulator(vendor_bars) as emulator:
        emulator.hang_s = 1.0
        result = run(resources, instance, alpaca(emulator, timeout_s=0.2, max_retries=1))
    assert not result.success
    assert "did not answer for sessions 2024-03-04..2024-03-08 after 1 retries" in step_error(result)


def test_an_empty_response_is_reported_not_written(resources, instance, warehouse):
    with AlpacaEmulator(pl.DataFrame()) as emulator:
        result = run(resources, instance, alpaca(emulator))
    assert not result.success
    coverage = next(e for e in result.get_asset_check_evaluations() if e.check_name == "universe_coverage")
    assert not coverage.passed
    assert "2024-03-04: coverage 0.0% of 44 symbols; missing 44: AAPL," in coverage.description
    assert not warehouse.has_table("daily_bars")


def test_symbols_without_bars_are_named(resources, instance, warehouse, vendor_bars):
    partial = vendor_bars.filter(~pl.col("symbol").is_in(["NVDA", "XOM"]))
    with AlpacaEmulator(partial) as emulator:
        result = run(resources, instance, alpaca(emulator))
    assert not result.success  # 42 of 44 is 95.5%, under the 98% floor
    coverage = next(e for e in result.get_asset_check_evaluations() if e.check_name == "universe_coverage")
    assert "2024-03-04: coverage 95.5% of 44 symbols; missing 2: NVDA, XOM" in coverage.description


def test_a_server_trickling_bytes_is_cut_by_the_total_deadline_per_request(resources, instance, warehouse, vendor_bars):
    """A per-read timeout never trips on one byte at a time: the run used to hang for minutes, then succeed."""
    with AlpacaEmulator(vendor_bars) as emulator:
        emulator.trickle_s = 0.002
        started = time.monotonic()
        result = run(resources, instance, alpaca(emulator, request_deadline_s=1.0))
    assert time.monotonic() - started < 15
    assert not result.success
    message = user_message(result)
    assert re.fullmatch(
        r"Alpaca market data for sessions 2024-03-04\.\.2024-03-08: http://127\.0\.0\.1:\d+/v2/stocks/bars\?\S+ "
        r"exceeded the total deadline of 1 s per request: \d+ bytes in 1\.\d s, the answer still incomplete", message
    ), message
    assert emulator.statuses("/v2/stocks/bars") == [200]  # answered, so not retried as a silent server
    assert not warehouse.has_table("daily_bars")


def test_the_total_deadline_per_run_cuts_a_run_of_individually_quick_requests(resources, instance, warehouse, vendor_bars):
    with AlpacaEmulator(vendor_bars) as emulator:
        emulator.hang_s = 0.6  # each of the 4 batches is well inside the per-request deadline
        result = run(resources, instance, alpaca(emulator, symbols_per_request=11, run_deadline_s=1.0))
    assert not result.success
    assert re.fullmatch(
        r"Alpaca market data for sessions 2024-03-04\.\.2024-03-08: http://127\.0\.0\.1:\d+/v2/stocks/bars\?\S+ "
        r"exceeded the total deadline of 1 s per run: \d+ bytes in \d\.\d s, the answer still incomplete", user_message(result)
    ), user_message(result)
    assert len(emulator.statuses("/v2/stocks/bars")) == 2  # of 4 batches: the second is cut


@pytest.mark.parametrize(
    ("content_type", "body", "shown"),
    [
        ("application/json", b'{"bars": {"AAPL": [{"t": "2024-03-04T05:00:00Z", "o": 18', "application/json, 56 bytes"),
        ("text/html", b"<html><body><h1>Captive portal: please log in</h1></body></html>", "text/html, 64 bytes"),
    ],
)
def test_a_body_that_is_not_json_is_named_as_such_with_the_url(resources, instance, warehouse, content_type, body, shown):
    with AlpacaEmulator(pl.DataFrame()) as emulator:
        emulator.raw_body = (content_type, body)
        result = run(resources, instance, alpaca(emulator))
    assert not result.success
    message = user_message(result)
    assert re.fullmatch(
        r"Alpaca market data for sessions 2024-03-04\.\.2024-03-08: http://127\.0\.0\.1:\d+/v2/stocks/bars\?\S+ "
        rf"answered HTTP 200 with a body that is not JSON \({shown}, starting b'{re.escape(body[:40].decode())}'\): .+",
        message,
    ), message
    assert "did not answer" not in message and "retries" not in message
    assert KEY_ID not in message and SECRET not in message
    assert emulator.statuses("/v2/stocks/bars") == [200]


def test_a_string_price_names_symbol_session_and_field(resources, instance, warehouse, vendor_bars):
    with AlpacaEmulator(vendor_bars) as emulator:
        emulator.patch_bars = {("KO", "2024-03-06"): {"o": "12O.5"}}
        result = run(resources, instance, alpaca(emulator))
    assert not result.success
    assert user_message(result) == (
        "Alpaca sent 1 wrong-typed field(s): KO 2024-03-06: field 'o' (open) is '12O.5', expected a number"
    )
    assert not warehouse.has_table("daily_bars")


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"h": float("nan")}, "KO 2024-03-06: high=NaN fails not_nullable; KO 2024-03-06: high=NaN fails finite"),
        ({"c": None}, "KO 2024-03-06: close=null fails not_nullable"),
    ],
)
def test_nan_and_null_prices_name_the_symbol_and_session(resources, instance, warehouse, vendor_bars, patch, expected):
    with AlpacaEmulator(vendor_bars) as emulator:
        emulator.patch_bars = {("KO", "2024-03-06"): patch}
        result = run(resources, instance, alpaca(emulator))
    assert not result.success
    schema = next(e for e in result.get_asset_check_evaluations() if e.check_name == "bars_match_schema")
    assert schema.description.startswith("bars_match_schema failed, "), schema.description
    assert expected in schema.description, schema.description
    assert not warehouse.has_table("daily_bars")
