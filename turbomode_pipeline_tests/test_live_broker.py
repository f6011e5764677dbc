"""The paper brokers: Alpaca's through the real alpaca-py SDK against the loopback emulator
(clock, account, orders, order by client id, positions, close position, 422/429/500), and
the local one's fills at the next bar's open."""

from datetime import UTC, datetime, timedelta

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
    tick = dict(ledger=ledger, broker=alpaca(emulator), market_data=SimulatedMarketData(seed=11),
                universe=pl.read_csv(DEFAULT_UNIVERSE), warehouse=Warehouse(path=str(tmp_path / "w.duckdb"), lock_timeout_s=0.2),
                limits=RiskLimits(), kill_switch=False, log=logging.getLogger("test"))
    now = datetime(2026, 11, 20, 14, 51, tzinfo=UTC)  # AMD's Keltner entry on the 14:50 bar (seed 11)
    result = run_tick(now, ["amd-keltner"], **tick)
    assert result.submitted == ["amd-keltner-20261120T1450-buy"]
    assert list(emulator.orders) == result.submitted
    assert result.positions.select("symbol", "broker_qty", "ledger_qty", "reconciled").rows() == [("AMD", 35.0, 35.0, True)]
    assert ledger.query("SELECT status, filled_avg_price FROM orders").rows() == [("filled", 280.0)]
    again = run_tick(now, ["amd-keltner"], **tick)  # the same minute again: the strategy holds, nothing is sent
    assert again.submitted == [] and len(emulator.orders) == 1
