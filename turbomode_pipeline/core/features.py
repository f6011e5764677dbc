"""The feature engine: daily bars in, one row of features per (session, symbol) out.

Every feature for session d is computed from bars up to d's close only (point in time),
vectorised over all symbols and sessions with polars (no Python loop over symbols or rows).
Indicators follow TA-Lib's definitions (see `indicators.py`). A feature is null during its
symbol's warm-up (`WARMUP`, in bars of the symbol's history) and never after it.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from turbomode_pipeline.core.indicators import (
    POSITION,
    REFERENCE_COLUMNS,
    Grid,
    ema,
    in_symbol_blocks,
    lag,
    reference_block,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_std,
    rolling_sum,
    sorted_by_symbol,
    wilder,
)

col = pl.col
LOOKBACK_SESSIONS = 260  # the longest warm-up (52-week high/low: 252 bars) plus a margin
RETURN_HORIZONS = (1, 5, 10, 20, 60)
VOLATILITY_WINDOWS = (10, 20, 60)

# Bars of a symbol's own history a feature needs before it has a value.
WARMUP: dict[str, int] = {
    **{f"ret_{n}": n for n in RETURN_HORIZONS},
    **{f"vol_{n}": n for n in VOLATILITY_WINDOWS},
    "rsi_14": 14,
    "macd_norm": 33,
    "macd_signal_norm": 33,
    "macd_hist_norm": 33,
    "atr_pct": 14,
    "bb_pct_b": 19,
    "bb_bandwidth": 19,
    "keltner_pos": 19,
    "donchian_pos": 19,
    "ichimoku_cloud_top_dist": 77,
    "ichimoku_cloud_bottom_dist": 77,
    "ichimoku_tk_spread": 25,
    "stoch_k": 17,
    "stoch_d": 17,
    "adx_14": 27,
    "di_spread": 14,
    "volume_z_20": 19,
    "gap": 1,
    "high_52w_dist": 251,
    "low_52w_dist": 251,
    "beta_60": 60,
    "resid_ret_20": 79,
    "rel_sector_5": 5,
    "rel_sector_20": 20,
    "market_regime": 199,
    "breadth_50": 49,
}
# Features of the whole market, the same for every stock of a session: they can time the
# market but not pick a stock, so the stock models leave them out (the drift report keeps them).
MARKET_WIDE = ("market_regime", "breadth_50")
RAW_FEATURES = tuple(WARMUP)
STOCK_FEATURES = tuple(name for name in RAW_FEATURES if name not in MARKET_WIDE)
RANK_SUFFIX = "_sector_rank"
# Each stock feature's percentile rank among its sector's symbols that session (0 lowest, 1 highest).
SECTOR_RANKS = tuple(f"{name}{RANK_SUFFIX}" for name in STOCK_FEATURES)
WARMUP.update({f"{name}{RANK_SUFFIX}": WARMUP[name] for name in STOCK_FEATURES})
FEATURES = tuple(WARMUP)  # every column of daily_features besides ID_COLUMNS
MODEL_FEATURES = (*STOCK_FEATURES, *SECTOR_RANKS)  # what the sector models learn from

# Possible values of bounded features; anything outside is a bug or bad data.
RANGES: dict[str, tuple[float, float]] = {
    "rsi_14": (0, 100),
    "stoch_k": (0, 100),
    "stoch_d": (0, 100),
    "adx_14": (0, 100),
    "di_spread": (-100, 100),
    "bb_bandwidth": (0, float("inf")),
    "donchian_pos": (0, 1),
    "market_regime": (0, 1),
    "breadth_50": (0, 1),
    "atr_pct": (0, float("inf")),
    **{f"vol_{n}": (0, float("inf")) for n in VOLATILITY_WINDOWS},
    **{f"ret_{n}": (-1, float("inf")) for n in RETURN_HORIZONS},
    "high_52w_dist": (-1, 0),
    "low_52w_dist": (0, float("inf")),
    **{name: (0, 1) for name in SECTOR_RANKS},
}

# Columns of the daily_features table besides the features: the close and the raw ATR are
# what the labels and the scanner's targets are priced from.
ID_COLUMNS = ("session", "symbol", "sector", "close", "atr_14")


def _safe_ratio(numerator: pl.Expr, denominator: pl.Expr, flat: float | None = None) -> pl.Expr:
    """numerator / denominator; `flat` where the denominator is 0 (a flat window)."""
    return pl.when(denominator != 0).then(numerator / denominator).otherwise(pl.when(denominator == 0).then(flat))


def _indicator_block(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
    grids = reference_block(high, low, close)
    return {**grids, "_ema_20": ema(close, 20), "_atr_10": wilder(grids["_tr"], 10, offset=1)}


INDICATOR_COLUMNS = (*REFERENCE_COLUMNS, "plus_di", "minus_di", "_prev_close", "_ema_20", "_atr_10")


def _indicator_grids(grid: Grid) -> dict[str, np.ndarray]:
    return in_symbol_blocks(_indicator_block, (grid["high"], grid["low"], grid["close"]), INDICATOR_COLUMNS)


def _price_features(frame: pl.LazyFrame) -> pl.LazyFrame:
    close, high, low = col("close"), col("high"), col("low")
    frame = frame.with_columns(
        _safe_ratio(close, col("_prev_close")).log().alias("_r1"),
        *(_safe_ratio(close, lag(close, n)).sub(1).alias(f"ret_{n}") for n in RETURN_HORIZONS),
        ((rolling_max(high, 9) + rolling_min(low, 9)) / 2).alias("_tenkan"),
        ((rolling_max(high, 26) + rolling_min(low, 26)) / 2).alias("_kijun"),
        ((rolling_max(high, 52) + rolling_min(low, 52)) / 2).shift(26).alias("_span_b"),
        rolling_max(high, 20).alias("_donchian_high"),
        rolling_min(low, 20).alias("_donchian_low"),
    )
    span_a = ((col("_tenkan") + col("_kijun")) / 2).shift(26)
    cloud_top = pl.max_horizontal(span_a, col("_span_b"))
    cloud_bottom = pl.min_horizontal(span_a, col("_span_b"))
    cloud_ready = col(POSITION) >= WARMUP["ichimoku_cloud_top_dist"]
    volume_std = rolling_std(col("volume"), 20)
    return frame.with_columns(
        *(rolling_std(col("_r1"), n, offset=1).alias(f"vol_{n}") for n in VOLATILITY_WINDOWS),
        (col("macd") / close).alias("macd_norm"),
        (col("macd_signal") / close).alias("macd_signal_norm"),
        (col("macd_hist") / close).alias("macd_hist_norm"),
        (col("atr_14") / close).alias("atr_pct"),
        _safe_ratio(close - col("bb_lower"), col("bb_upper") - col("bb_lower"), 0.5).alias("bb_pct_b"),
        _safe_ratio(col("bb_upper") - col("bb_lower"), col("bb_middle")).alias("bb_bandwidth"),
        _safe_ratio(close - (col("_ema_20") - 2 * col("_atr_10")), 4 * col("_atr_10"), 0.5).alias("keltner_pos"),
        _safe_ratio(close - col("_donchian_low"), col("_donchian_high") - col("_donchian_low"), 0.5).alias("donchian_pos"),
        pl.when(cloud_ready).then(close / cloud_top - 1).alias("ichimoku_cloud_top_dist"),
        pl.when(cloud_ready).then(close / cloud_bottom - 1).alias("ichimoku_cloud_bottom_dist"),
        ((col("_tenkan") - col("_kijun")) / close).alias("ichimoku_tk_spread"),
        (col("plus_di") - col("minus_di")).alias("di_spread"),
        _safe_ratio(col("volume") - rolling_mean(col("volume"), 20), volume_std, 0.0).alias("volume_z_20"),
        (col("open") / col("_prev_close") - 1).alias("gap"),
        (close / rolling_max(high, 252) - 1).alias("high_52w_dist"),
        (close / rolling_min(low, 252) - 1).alias("low_52w_dist"),
        (close > rolling_mean(close, 50)).alias("_above_50"),
    )


_FIXED_POINT = 2.0**40  # ~1e-12 resolution for returns and shares


def _exact_mean(expr: pl.Expr) -> pl.Expr:
    """Mean of non-null values, summed as integers so the result is exact and independent of
    row order and chunking: a floating-point sum is not, and a session's value must not
    change when later bars (elsewhere in the column) do."""
    total = (expr.cast(pl.Float64) * _FIXED_POINT).round().cast(pl.Int64).sum()
    return pl.when(expr.count() > 0).then(total / expr.count() / _FIXED_POINT)


def _cross_section_means(frame: pl.LazyFrame, keys: tuple[str, ...], columns: dict[str, str]) -> pl.LazyFrame:
    """Means over the symbols of each group of `keys`."""
    return frame.group_by(*keys).agg(_exact_mean(col(source)).alias(out) for out, source in columns.items())


def _market_features(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Features against the equal-weight market and the stock's sector."""
    per_session = _cross_section_means(frame, ("session",), {"_market_r1": "_r1", "breadth_50": "_above_50"})
    per_sector = _cross_section_means(frame, ("session", "sector"), {"_sector_5": "ret_5", "_sector_20": "ret_20"})
    frame = (
        frame.join(per_session, on="session", how="left", maintain_order="left")
        .join(per_sector, on=["session", "sector"], how="left", maintain_order="left")
        .with_columns(
            (col("ret_5") - col("_sector_5")).alias("rel_sector_5"),
            (col("ret_20") - col("_sector_20")).alias("rel_sector_20"),
        )
    )
    market, stock = col("_market_r1"), col("_r1")
    covariance = rolling_mean(stock * market, 60, offset=1) - rolling_mean(stock, 60, offset=1) * rolling_mean(market, 60, offset=1)
    variance = rolling_std(market, 60, offset=1, ddof=0) ** 2
    frame = frame.with_columns(_safe_ratio(covariance, variance).alias("beta_60"))
    frame = frame.with_columns(rolling_sum(stock - col("beta_60") * market, 20, offset=60).alias("resid_ret_20"))
    return frame.join(_market_regime(per_session), on="session", how="left", maintain_order="left")


def _market_regime(market: pl.LazyFrame) -> pl.LazyFrame:
    """1 when the equal-weight market index closes above its 200-session average, else 0."""
    level = col("_market_r1").fill_null(0).cum_sum().exp()
    return market.sort("session").with_columns(level.alias("_level")).select(
        "session",
        pl.when(pl.int_range(pl.len()) >= 199)
        .then((col("_level") > col("_level").rolling_mean(200)).cast(pl.Int8))
        .alias("market_regime"),
    )


def compute_features(bars: pl.DataFrame) -> pl.DataFrame:
    """Features for every (session, symbol) of `bars` (columns of daily_bars), sorted by session, symbol.

    A row's values depend only on the same symbol's bars up to that session and on the
    cross-section of that session and earlier ones.
    """
    grid = Grid(sorted_by_symbol(bars.select("session", "symbol", "sector", "open", "high", "low", "close", "volume")))
    frame = grid.with_columns(_indicator_grids(grid)).with_columns(pl.Series(POSITION, grid.positions()))
    frame = _market_features(_price_features(frame.lazy()))
    return frame.with_columns(sector_ranks(STOCK_FEATURES)).select(*ID_COLUMNS, *FEATURES).sort("session", "symbol").collect()


def sector_ranks(names: tuple[str, ...]) -> list[pl.Expr]:
    """Each feature's percentile rank within its (session, sector): (rank - 1) / (symbols - 1)
    over the symbols with a value, ties averaged, 0.5 for a lone symbol, null where the feature is.
    Ranks are exact, so a session's value depends only on that session's features."""
    out = []
    for name in names:
        rank = col(name).rank("average").over("session", "sector")
        count = col(name).count().over("session", "sector")
        percentile = pl.when(count > 1).then((rank - 1) / (count - 1)).otherwise(0.5)
        out.append(pl.when(col(name).is_not_null()).then(percentile).alias(f"{name}{RANK_SUFFIX}"))
    return out

