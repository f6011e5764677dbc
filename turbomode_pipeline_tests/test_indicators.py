"""The feature engine's indicators against TA-Lib's own output."""

from datetime import date

import numpy as np
import polars as pl
import pytest
import talib

from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline.core.indicators import reference_indicators
from turbomode_pipeline.core.market_sim import SIM_EPOCH, simulate_daily_bars
from turbomode_pipeline.core.universe import load_universe
from turbomode_pipeline.settings import DEFAULT_UNIVERSE

SYMBOLS = ["AAPL", "XOM", "JPM", "NEE", "PLD"]


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    universe = load_universe(DEFAULT_UNIVERSE).filter(pl.col("symbol").is_in(SYMBOLS))
    grid = sessions_between(SIM_EPOCH, date(2021, 12, 31))
    bars = simulate_daily_bars(universe, grid, [d for d in grid if d >= date(2019, 1, 2)], seed=5, predictability=0.5)
    # Histories of different lengths: XOM "lists" in mid-2020, so the engine must restart per symbol.
    return bars.filter((pl.col("symbol") != "XOM") | (pl.col("session") >= date(2020, 6, 1)))


def talib_reference(symbol_bars: pl.DataFrame) -> dict[str, np.ndarray]:
    high, low, close = (symbol_bars[c].to_numpy() for c in ("high", "low", "close"))
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(close, 20, 2, 2, 0)
    slowk, slowd = talib.STOCH(high, low, close, 14, 3, 0, 3, 0)
    return {
        "rsi_14": talib.RSI(close, 14), "atr_14": talib.ATR(high, low, close, 14), "adx_14": talib.ADX(high, low, close, 14),
        "macd": macd, "macd_signal": signal, "macd_hist": hist,
        "bb_upper": upper, "bb_middle": middle, "bb_lower": lower, "stoch_k": slowk, "stoch_d": slowd,
    }


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_indicators_equal_talib_after_its_lookback(bars, symbol):
    ours = reference_indicators(bars).filter(pl.col("symbol") == symbol).sort("session")
    theirs = talib_reference(bars.filter(pl.col("symbol") == symbol).sort("session"))
    for name, expected in theirs.items():
        actual = ours[name].to_numpy().astype(float)
        # Same warm-up: null exactly where TA-Lib has no value yet, never zero or filled.
        assert np.array_equal(np.isnan(actual), np.isnan(expected)), name
        np.testing.assert_allclose(actual[~np.isnan(expected)], expected[~np.isnan(expected)], rtol=1e-9, atol=1e-9, err_msg=name)


def test_histories_shorter_than_the_windows_are_null_not_an_error(bars):
    """Five bars: too few for any indicator, so every value is null (and nothing crashes)."""
    short = bars.filter(pl.col("session") <= bars["session"].unique().sort()[4])
    ours = reference_indicators(short)
    assert ours.height == short.height
    assert ours.select(pl.col("rsi_14", "atr_14", "macd", "bb_middle", "stoch_k", "adx_14").is_null().all()).row(0) == (True,) * 6


@pytest.fixture(scope="module")
def one_sector_features() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Bars and features of the universe's first six Energy stocks over three years."""
    from turbomode_pipeline.core.features import compute_features

    universe = load_universe(DEFAULT_UNIVERSE).filter(pl.col("sector") == "Energy").head(6)
    grid = sessions_between(SIM_EPOCH, date(2021, 12, 31))
    bars = simulate_daily_bars(universe, grid, [d for d in grid if d >= date(2019, 1, 2)], seed=5, predictability=0.5)
    return bars, compute_features(bars)


@pytest.mark.parametrize("feature", ["rsi_14", "adx_14", "stoch_k"])
def test_sector_ranks_of_indicators_rank_talibs_values(one_sector_features, feature):
    """`<feature>_sector_rank` is the percentile rank of TA-Lib's value among the sector's symbols that session."""
    from scipy.stats import rankdata

    bars, features = one_sector_features
    talib_values = pl.concat(
        rows.sort("session").select("session", "symbol").with_columns(
            talib=pl.Series(talib_reference(rows.sort("session"))[feature])
        )
        for _, rows in bars.group_by("symbol")
    ).with_columns(pl.col("talib").fill_nan(None)).drop_nulls()
    session_ranks = talib_values.sort("symbol").group_by("session", maintain_order=True).agg(
        "symbol", rank=pl.col("talib").map_batches(lambda v: pl.Series((rankdata(v.to_numpy()) - 1) / max(len(v) - 1, 1)))
    ).explode("symbol", "rank")
    joined = features.select("session", "symbol", f"{feature}_sector_rank").join(session_ranks, on=["session", "symbol"])
    assert joined.height > 3000
    np.testing.assert_allclose(joined[f"{feature}_sector_rank"].to_numpy(), joined["rank"].to_numpy(), atol=1e-12)
