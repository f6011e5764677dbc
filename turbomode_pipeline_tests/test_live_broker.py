"""The paper brokers: Alpaca's through the real alpaca-py SDK against the loopback emulator
(clock, account, orders, order by client id, positions, close position, 422/429/500), and
the local one's fills at the next bar's open."""

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from turbomode_pipeline.resources.broker import (
    AlpacaPaperBroker,
    BrokerError,
    LiveTradingRefused,
    LocalPaperBroker,
    client_order_id,
)
from turbomode_pipeline.settings import SettingsError, load_settings
from turbomode_pipeline_tests.alpaca_emulator import KEY_ID, SECRET, AlpacaEmulator

BAR = datetime(2026, 11, 20, 15, 31, tzinfo=UTC)


@pytest.fixture
def emulator():
    with AlpacaEmulator() as running:
        running.prices = {"AAPL": 190.0, "NVDA": 480.0}
        yield running


def alpaca(emulator: AlpacaEmulator, **overrides) -> AlpacaPaperBroker:
    return AlpacaPaperBroker(api_key=KEY_ID, secret_key=SECRET, base_url=emulator.url, backoff_s=0.01, **overrides)


def test_orders_positions_and_close_through_the_sdk(emulator):
    broker = alpaca(emulator)
    clock = broker.clock(BAR)
    assert clock.is_open and clock.timestamp == emulator.now
    order = broker.submit_market_order(client_order_id("aapl-keltner", BAR, "buy"), "AAPL", "buy", 10, BAR)
    assert (order.client_order_id, order.status, order.filled_qty, order.filled_avg_price) == (
        "aapl-keltner-20261120T1531-buy", "filled", 10.0, 190.0)
    assert broker.order_by_client_id("aapl-keltner-20261120T1531-buy") == order
    assert broker.order_by_client_id("never-sent") is None
    assert broker.positions().rows() == [("AAPL", 10.0, 190.0)]
    assert broker.account_equity() == (98_100.0, 100_000.0)
    closed = broker.close_position("AAPL", BAR)
    assert (closed.side, closed.qty, closed.status) == ("sell", 10.0, "filled")
    assert broker.positions().is_empty()


def test_a_repeated_order_is_read_back_not_submitted_twice(emulator):
    broker = alpaca(emulator)
    client_id = client_order_id("nvda-donchian", BAR, "buy")
    first = broker.submit_market_order(client_id, "NVDA", "buy", 5, BAR)
    again = broker.submit_market_order(client_id, "NVDA", "buy", 5, BAR)
    assert again == first
    assert emulator.statuses("/v2/orders") == [200, 422, 200]  # the 422 duplicate, then the read-back by client id
    assert broker.positions().rows() == [("NVDA", 5.0, 480.0)]  # bought once


def test_a_429_burst_is_retried_and_the_order_goes_through_once(emulator):
    emulator.fail_next = [429, 429, 429]
    order = alpaca(emulator).submit_market_order("amd-ichimoku-20261120T1531-buy", "AAPL", "buy", 1, BAR)
    assert order.status == "filled"
    assert [s for _, path, s in emulator.requests if path == "/v2/orders"] == [429, 429, 429, 200]
    assert len(emulator.orders) == 1


def test_a_500_after_the_retries_raises_a_broker_error_that_names_the_order(emulator):
    emulator.always_fail = 500
    with pytest.raises(BrokerError, match=r"order aapl-donchian-20261120T1531-buy \(buy 3 AAPL\) with HTTP 500"):
        alpaca(emulator, max_retries=2).submit_market_order("aapl-donchian-20261120T1531-buy", "AAPL", "buy", 3, BAR)
    assert emulator.statuses("/v2/orders") == [500, 500, 500]  # first try and two retries
    emulator.always_fail = None
    emulator.fail_next = [500]
    assert alpaca(emulator).positions().is_empty()  # a single 500 is retried away


def test_live_money_is_refused_unless_enabled():
    broker = AlpacaPaperBroker(api_key=KEY_ID, secret_key=SECRET, base_url="https://api.alpaca.markets")
    with pytest.raises(LiveTradingRefused, match="TURBOMODE_ALLOW_LIVE_TRADING=1"):
        broker.positions()
    env = {"TURBOMODE_BROKER": "alpaca", "APCA_API_BASE_URL": "https://api.alpaca.markets"}
    with pytest.raises(SettingsError, match="TURBOMODE_BROKER='alpaca' needs APCA_API_KEY_ID"):
        load_settings(env)
    with pytest.raises(SettingsError, match="TURBOMODE_ALLOW_LIVE_TRADING='maybe' is invalid"):
        load_settings({"TURBOMODE_ALLOW_LIVE_TRADING": "maybe"})



LIVE_SPELLINGS = [
    ("https://api.alpaca.markets.", "api.alpaca.markets is Alpaca's live-money API"),  # the hole: same host to DNS and TLS
    ("https://API.Alpaca.Markets", "api.alpaca.markets is Alpaca's live-money API"),
    ("https://api.alpaca.markets:443/", "api.alpaca.markets is Alpaca's live-money API"),
    ("https://api.alpaca.markets.:443/v2", "api.alpaca.markets is Alpaca's live-money API"),
    ("https://104.18.0.1", "104.18.0.1 is not one of Alpaca's paper hosts nor loopback"),
    ("https://[2606:4700::6812:1]:443", "2606:4700::6812:1 is not one of Alpaca's paper hosts nor loopback"),
    ("https://1746534401", "1746534401 is not one of Alpaca's paper hosts nor loopback"),  # an IPv4 as one integer
    ("https://paper-api.alpaca.markets.evil.example", "paper-api.alpaca.markets.evil.example is not one of Alpaca's paper hosts nor loopback"),
]


@pytest.mark.parametrize(("url", "reason"), LIVE_SPELLINGS)
def test_every_spelling_of_a_live_host_is_refused_when_settings_load(url, reason):
    env = {"TURBOMODE_BROKER": "alpaca", "APCA_API_KEY_ID": KEY_ID, "APCA_API_SECRET_KEY": SECRET, "APCA_API_BASE_URL": url}
    with pytest.raises(SettingsError) as refused:
        load_settings(env)
    assert str(refused.value) == (
        f"APCA_API_BASE_URL={url!r} is refused: its host {reason}, and this pipeline paper-trades. "
        "Point APCA_API_BASE_URL at https://paper-api.alpaca.markets, or set TURBOMODE_ALLOW_LIVE_TRADING=1 to trade "
        "real money."
    )
    assert load_settings(env | {"TURBOMODE_ALLOW_LIVE_TRADING": "1"}).apca_api_base_url == url  # explicit switch
    broker = AlpacaPaperBroker(api_key=KEY_ID, secret_key=SECRET, base_url=url)  # a resource built past settings
    with pytest.raises(LiveTradingRefused, match=re.escape(reason)):
        broker.positions()


@pytest.mark.parametrize(
    "url",
    ["https://paper-api.alpaca.markets@api.alpaca.markets", "https://key:hunter2@paper-api.alpaca.markets",
     "https://api.alpaca.markets\\@paper-api.alpaca.markets"],
)
def test_a_url_with_userinfo_is_refused_even_when_live_trading_is_allowed_and_its_password_never_shown(url):
    env = {"APCA_API_BASE_URL": url, "TURBOMODE_ALLOW_LIVE_TRADING": "1"}
    with pytest.raises(SettingsError, match=r"^APCA_API_BASE_URL='.*' is refused: it holds userinfo, a backslash or "
                                            r"whitespace, so its host is ambiguous$") as refused:
        load_settings(env)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    ["https://paper-api.alpaca.markets", "https://PAPER-API.alpaca.markets.:443/", "http://127.0.0.1:8123",
     "http://localhost:8123", "http://[::1]:8123"],
)
def test_paper_and_loopback_hosts_load_without_the_switch(url):
    settings = load_settings({"APCA_API_BASE_URL": url})
    assert settings.apca_api_base_url == url and not settings.allow_live_trading


def test_a_live_url_fails_the_code_location_load_naming_the_variable(tmp_path):
    """`dagster definitions validate` imports the code location as the daemon and the UI do."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "TURBOMODE_", "DAGSTER_"))} | {
        "TURBOMODE_DATA_DIR": str(tmp_path), "TURBOMODE_BROKER": "alpaca", "APCA_API_KEY_ID": KEY_ID,
        "APCA_API_SECRET_KEY": SECRET, "APCA_API_BASE_URL": "https://api.alpaca.markets.",
    }
    command = [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-m", "turbomode_pipeline.definitions"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert (
        "SettingsError: APCA_API_BASE_URL='https://api.alpaca.markets.' is refused: its host api.alpaca.markets is "
        "Alpaca's live-money API, and this pipeline paper-trades." in done.stdout + done.stderr
    )
    assert SECRET not in done.stdout + done.stderr


def bars(opens: list[float]) -> pl.DataFrame:
    return pl.DataFrame({
        "symbol": "AAPL", "time": [BAR + timedelta(minutes=i) for i in range(len(opens))], "open": opens,
        "high": [o + 1 for o in opens], "low": [o - 1 for o in opens], "close": opens, "volume": 100.0,
    })


def test_local_broker_fills_at_the_next_bar_open_with_slippage_and_commission(tmp_path):
    broker = LocalPaperBroker(ledger_path=str(tmp_path / "trading.sqlite"), starting_cash=10_000, slippage_bps=10,
                              commission_per_share=0.01)
    client_id = client_order_id("aapl-keltner", BAR, "buy")
    submitted = broker.submit_market_order(client_id, "AAPL", "buy", 10, BAR + timedelta(minutes=1, seconds=5))
    assert submitted.status == "new"
    broker.observe(bars([100.0]))  # only the bar before the order: nothing to fill at yet
    assert broker.order_by_client_id(client_id).status == "new"
    broker.observe(bars([100.0, 101.0, 102.0]))
    filled = broker.order_by_client_id(client_id)
    assert (filled.status, filled.filled_avg_price, filled.filled_at) == ("filled", 101.101, BAR + timedelta(minutes=1))
    assert broker.submit_market_order(client_id, "AAPL", "buy", 10, BAR) == filled  # the same client id: no new order
    assert broker.positions().rows() == [("AAPL", 10.0, 101.101)]
    cash, equity = broker.account_equity()
    assert cash == pytest.approx(10_000 - 1011.01 - 0.10)
    assert equity == pytest.approx(cash + 10 * 102.0)  # marked at the newest close


def test_alpaca_minute_bars_keep_regular_hours_only():
    from datetime import date

    from turbomode_pipeline.resources.market_data import AlpacaMarketData, SimulatedMarketData
    from turbomode_pipeline.settings import DEFAULT_UNIVERSE

    universe = pl.read_csv(DEFAULT_UNIVERSE).filter(pl.col("symbol").is_in(["AAPL", "NVDA"]))
    sessions = [date(2026, 11, 20), date(2026, 11, 23)]
    minutes = SimulatedMarketData(seed=3).minute_bars(sessions, universe)
    premarket = minutes.head(1).with_columns(pl.col("time") - timedelta(hours=1))  # 08:30 New York
    with AlpacaEmulator(minute_bars=pl.concat([premarket, minutes]), page_size=500) as emulator:
        source = AlpacaMarketData(api_key=KEY_ID, secret_key=SECRET, data_url=emulator.url, backoff_s=0.01)
        fetched = source.minute_bars(sessions, universe)
        pages = len(emulator.statuses("/v2/stocks/bars"))
    assert fetched.equals(minutes)
    assert pages == 4  # one request per session, its 780 bars over two pages of 500


def test_a_tick_trades_through_the_alpaca_sdk_and_reconciles(tmp_path, emulator):
    import logging

    from turbomode_pipeline.core.risk import RiskLimits
    from turbomode_pipeline.live.tick import run_tick
    from turbomode_pipeline.resources.ledger import Ledger
    from turbomode_pipeline.resources.market_data import SimulatedMarketData
    from turbomode_pipeline.resources.warehouse import Warehouse
    from turbomode_pipeline.settings import DEFAULT_STRATEGIES, DEFAULT_UNIVERSE

    ledger = Ledger(path=str(tmp_path / "trading.sqlite"))
    ledger.seed_strategies(str(DEFAULT_STRATEGIES))
    emulator.prices = {"AMD": 280.0}
    tick = dict(ledger=ledger, broker=alpaca(emulator), market_data=SimulatedMarketData(seed=17),
                universe=pl.read_csv(DEFAULT_UNIVERSE), warehouse=Warehouse(path=str(tmp_path / "w.duckdb"), lock_timeout_s=0.2),
                limits=RiskLimits(), kill_switch=False, log=logging.getLogger("test"))
    now = datetime(2026, 11, 20, 14, 51, tzinfo=UTC)  # AMD's Keltner entry on the 14:50 bar (seed 17)
    result = run_tick(now, ["amd-keltner"], **tick)
    assert result.submitted == ["amd-keltner-20261120T1450-buy"]
    assert list(emulator.orders) == result.submitted
    bar = tick["market_data"].minute_bars([now.date()], tick["universe"].filter(pl.col("symbol") == "AMD"))
    qty = float(10_000 // bar.filter(pl.col("time") == datetime(2026, 11, 20, 14, 50, tzinfo=UTC))["close"][0])
    # the risk manager's size: the strategy's $10,000 allocation at the 14:50 bar's close
    assert result.positions.select("symbol", "broker_qty", "ledger_qty", "reconciled").rows() == [("AMD", qty, qty, True)]
    assert ledger.query("SELECT status, filled_avg_price FROM orders").rows() == [("filled", 280.0)]
    again = run_tick(now, ["amd-keltner"], **tick)  # the same minute again: the strategy holds, nothing is sent
    assert again.submitted == [] and len(emulator.orders) == 1
