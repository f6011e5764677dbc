"""The live strategies' rules on small hand-made minute series with known entries and exits,
and the simulated minute bars' agreement with the simulated daily bars."""

from datetime import date, timedelta

import polars as pl

from turbomode_pipeline.core.strategies import decide, indicator_signals
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.settings import DEFAULT_UNIVERSE
from turbomode_pipeline_tests.support import START, minute_series





def events(frame: pl.DataFrame, column: str) -> list[int]:
    return frame.with_row_index().filter(pl.col(column))["index"].to_list()


def test_keltner_enters_above_the_upper_band_and_exits_below_the_middle():
    closes = [100.0] * 40 + [105.0, 106.0, 106.0, 106.0, 95.0, 95.0]
    frame = indicator_signals("keltner_channel", minute_series(closes), {})
    # flat bars: EMA 100, true range 1 -> upper band 102; the jump to 105 breaks out.
    assert frame["upper"][39] == 102.0
    assert events(frame, "entry") == [40]
    assert events(frame, "exit") == [44]


def test_donchian_breaks_out_over_20_bars_and_out_under_10():
    closes = [100.0] * 30 + [102.0] * 12 + [98.0, 97.0]
    frame = indicator_signals("donchian_channel", minute_series(closes), {})
    assert events(frame, "entry") == [30]  # above the 20-bar high 100.5
    assert events(frame, "exit") == [42]  # below the 10-bar low 101.5


def test_ichimoku_needs_the_cross_and_the_cloud():
    rise = [100.0 + i for i in range(1, 21)]
    fall = [rise[-1] - 2 * i for i in range(1, 40)]
    closes = [100.0] * 90 + rise + fall
    frame = indicator_signals("ichimoku_cloud", minute_series(closes), {})
    # bar 90 opens at 100, so its low is still 99.5: tenkan's 9-bar low leaves 99.5 at bar 99 (bars 91..99)
    # while kijun's 26-bar low stays 99.5; the cloud, computed 26 bars earlier from the flat stretch, tops at 100.
    assert events(frame, "entry") == [99]
    exits = events(frame, "exit")
    assert len(exits) == 1 and exits[0] > 110
    at_exit = frame.row(exits[0], named=True)
    assert at_exit["tenkan"] < at_exit["kijun"]
    assert at_exit["close"] < min(at_exit["senkou_a"], at_exit["senkou_b"])


def test_resampled_strategy_reads_5_minute_bars():
    closes = [100.0] * 200 + [110.0] * 5
    frame = indicator_signals("donchian_channel", minute_series(closes), {"timeframe_minutes": 5})
    assert frame.height == 41
    assert events(frame, "entry") == [40]


def test_decide_buys_on_entry_only_when_flat_and_sells_on_exit_only_when_holding():
    bars = minute_series([100.0] * 40 + [105.0])
    assert decide("keltner_channel", bars, {}, held_qty=0).action == "buy"
    assert decide("keltner_channel", bars, {}, held_qty=10).action == "hold"
    exit_bars = minute_series([100.0] * 40 + [105.0, 106.0, 106.0, 106.0, 95.0])
    assert decide("keltner_channel", exit_bars, {}, held_qty=10).action == "sell"
    assert decide("keltner_channel", exit_bars, {}, held_qty=0).action == "hold"


def signal(target=110.0, stop=95.0, expires=START + timedelta(days=5), kind="BUY") -> pl.DataFrame:
    return pl.DataFrame({"id": ["2026-11-19-AAPL"], "symbol": ["AAPL"], "signal_type": [kind], "confidence": [0.71],
                         "target_price": [target], "stop_loss": [stop], "created_at": [START - timedelta(hours=16)],
                         "expires_at": [expires]})


def test_turbomode_signals_follow_the_scanner_to_target_stop_or_expiry():
    bars = minute_series([100.0] * 5)
    assert decide("turbomode_signals", bars, {}, 0, signal()).action == "buy"
    assert decide("turbomode_signals", bars, {}, 0, signal(kind="SELL")).action == "hold"
    assert decide("turbomode_signals", bars, {}, 0, None).action == "hold"
    held = decide("turbomode_signals", bars, {}, 10, signal(target=100.0))
    assert (held.action, held.reason) == ("sell", "target 100.00 of signal 2026-11-19-AAPL reached")
    assert decide("turbomode_signals", bars, {}, 10, signal(stop=100.0)).action == "sell"
    expired = decide("turbomode_signals", bars, {}, 10, signal(expires=START))
    assert expired.action == "sell" and "expired" in expired.reason
    assert decide("turbomode_signals", bars, {}, 10, signal()).action == "hold"


def test_simulated_minute_bars_add_up_to_the_simulated_daily_bars():
    universe = pl.read_csv(DEFAULT_UNIVERSE).filter(pl.col("symbol").is_in(["AAPL", "AMD", "NVDA"]))
    source = SimulatedMarketData(seed=11)
    sessions = [date(2026, 11, 25), date(2026, 11, 27)]  # the day after Thanksgiving closes at 13:00
    minutes = source.minute_bars(sessions, universe)
    daily = source.daily_bars(sessions, universe).select("session", "symbol", "open", "high", "low", "close", "volume")
    rebuilt = (
        minutes.with_columns(session=pl.col("time").dt.convert_time_zone("America/New_York").dt.date())
        .group_by("session", "symbol")
        .agg(pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(),
             pl.col("volume").sum(), pl.len().alias("minutes"))
        .sort("session", "symbol")
    )
    assert rebuilt.drop("minutes").equals(daily.sort("session", "symbol"))
    assert rebuilt["minutes"].to_list() == [390] * 3 + [210] * 3
    assert minutes.filter(pl.col("high") < pl.max_horizontal("open", "close")).is_empty()
    assert minutes.equals(source.minute_bars(sessions, universe))  # seeded: the same every time
