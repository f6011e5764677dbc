"""The simulated market gives nothing away inside the day: at predictability 0 its minutes are a
fair random walk (issue 27). Each statistic is tested against its null band: |t| < 4, the
t-statistic clustered by session (stocks of one session share the market's and their sector's
minutes, so sessions, not paths, are the independent draws). The bars are deterministic for the
seed, so the tests are too."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from turbomode_pipeline.calendar import session_minutes, sessions_between
from turbomode_pipeline.core.universe import load_universe
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.settings import DEFAULT_UNIVERSE

UNIVERSE = load_universe(DEFAULT_UNIVERSE)
SESSIONS = sessions_between(date(2024, 1, 2), date(2024, 6, 28))  # 124 full sessions
NULL_BAND = 4.0


@pytest.fixture(scope="module")
def paths() -> np.ndarray:
    """Log prices at minute 0..390 (sessions x symbols x 391: the open, then each minute's close)."""
    universe = UNIVERSE.sample(60, seed=1)
    bars = SimulatedMarketData(predictability=0.0).minute_bars(SESSIONS, universe).sort("symbol", "time")
    assert bars.height == len(SESSIONS) * universe.height * 390
    closes = bars["close"].to_numpy().reshape(universe.height, len(SESSIONS), 390)
    opens = bars["open"].to_numpy().reshape(universe.height, len(SESSIONS), 390)[..., :1]
    return np.log(np.concatenate([opens, closes], axis=2)).transpose(1, 0, 2)


def clustered_t(products: np.ndarray) -> float:
    """t of the mean of `products` (sessions x anything, NaN ignored), clustered by session."""
    per_session = np.nanmean(products.reshape(len(products), -1), axis=1)
    return float(per_session.mean() / (per_session.std(ddof=1) / np.sqrt(len(per_session))))


def standardised(returns: np.ndarray) -> np.ndarray:
    """Returns over each symbol's sd (sessions x symbols x ...), so every stock weighs the same."""
    return returns / returns.std(axis=(0, 2), keepdims=True)


@pytest.mark.parametrize("minute", [5, 15, 30, 60, 120, 195, 270, 330, 375])
def test_the_morning_says_nothing_about_the_afternoon(paths, minute):
    """corr(open -> t, t -> close) is within its null band at every t (a bridge through the day's high
    and low, the old design, put it far outside)."""
    before = paths[..., minute] - paths[..., 0]
    after = paths[..., -1] - paths[..., minute]
    before, after = before / before.std(axis=0), after / after.std(axis=0)
    assert abs(clustered_t(before * after)) < NULL_BAND


def test_the_market_so_far_says_nothing_about_a_stocks_rest_of_day(paths):
    """Across stocks too: the equal-weighted market's return to midday does not predict a stock's afternoon."""
    midday = 195
    market = (paths[..., midday] - paths[..., 0]).mean(axis=1, keepdims=True)
    after = standardised((paths[..., -1] - paths[..., midday])[..., None])[..., 0]
    assert abs(clustered_t(market / market.std() * after)) < NULL_BAND


def test_the_return_after_a_new_intraday_high_is_not_predictable(paths):
    """A breakout (a minute's close above every earlier close of the session, after the first 15
    minutes) is followed by returns that average zero, over the next 10 minutes and to the close."""
    closes = paths[..., 1:]
    breakout = closes > np.maximum.accumulate(np.concatenate([paths[..., :1], closes[..., :-1]], axis=2), axis=2)
    breakout[..., :15] = False
    breakout[..., -10:] = False
    minute_sd = np.diff(paths, axis=2).std(axis=(0, 2), keepdims=True)
    ahead = (np.concatenate([closes[..., 10:], np.repeat(closes[..., -1:], 10, axis=2)], axis=2) - closes) / minute_sd
    to_close = (closes[..., -1:] - closes) / minute_sd
    assert breakout.sum() > 100_000
    for following in (ahead, to_close):
        assert abs(clustered_t(np.where(breakout, following, np.nan))) < NULL_BAND
    lows = closes < np.minimum.accumulate(np.concatenate([paths[..., :1], closes[..., :-1]], axis=2), axis=2)
    lows[..., :15] = False
    lows[..., -10:] = False
    assert abs(clustered_t(np.where(lows, ahead, np.nan))) < NULL_BAND


@pytest.mark.parametrize("lag", [1, 2, 3, 5, 10, 30])
def test_minute_returns_have_no_autocorrelation(paths, lag):
    returns = standardised(np.diff(paths, axis=2))
    products = returns[..., lag:] * returns[..., :-lag]
    assert abs(clustered_t(products)) < NULL_BAND


def test_daily_bars_are_exactly_the_minutes_aggregate_early_close_included():
    source = SimulatedMarketData()
    days = [date(2025, 11, 28), date(2025, 12, 1), date(2020, 3, 16)]  # the first an early close
    assert session_minutes(days) == [210, 390, 390]
    universe = UNIVERSE.head(25)
    minutes = source.minute_bars(days, universe).with_columns(
        session=pl.col("time").dt.convert_time_zone("America/New_York").dt.date())
    daily = source.daily_bars(days, universe)
    aggregate = minutes.sort("time").group_by("session", "symbol").agg(
        pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(), pl.col("volume").sum(),
        minutes=pl.len())
    joined = daily.join(aggregate, on=["session", "symbol"], suffix="_minutes")
    assert joined.height == daily.height == 3 * universe.height
    for column in ("open", "high", "low", "close", "volume"):
        assert (joined[column] == joined[f"{column}_minutes"]).all(), column
    assert dict(joined.group_by("session").agg(pl.col("minutes").max()).iter_rows()) == {
        date(2025, 11, 28): 210, date(2025, 12, 1): 390, date(2020, 3, 16): 390}
    alone = source.minute_bars([days[1]], universe).sort("symbol", "time")
    together = minutes.filter(pl.col("session") == days[1]).drop("session").sort("symbol", "time")
    assert alone.equals(together)  # a session's minutes never depend on what else was asked for
