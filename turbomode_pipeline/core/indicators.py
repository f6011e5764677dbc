"""Technical indicators over a frame sorted by (symbol, session), every symbol at once.

Definitions follow TA-Lib's (its default, non-Metastock compatibility), so the values equal
TA-Lib's own after its lookback:
- EMA(n): seeded with the simple mean of the first n values, then k = 2 / (n + 1).
- Wilder smoothing (RSI, ATR, ADX): seeded with the mean of the first n values, then
  alpha = 1 / n.
- MACD(12, 26, 9): both EMAs start together at the 26th bar (the fast one seeded with the
  mean of its last 12 values, as TA-Lib does); the signal is EMA(9) of the MACD line, and
  all three are reported from the signal's first value.
- Bollinger(20, 2): SMA(20) +/- 2 population standard deviations.
- Stochastic(14, 3, 3): %K = SMA(3) of the fast %K(14), %D = SMA(3) of %K.
- ADX(14): +DM, -DM and the true range from bar 1, smoothed TA-Lib's way (the sum of the
  first 13, then S - S/14 + x); ADX is the mean of the first 14 DX values, then Wilder.
Warm-up values are null, never zero or forward-filled.

Speed: rolling windows run over the whole column sorted by (symbol, session), several times
faster than a window per symbol, and are masked where they would reach into the previous
symbol (`_within`); polars computes them exactly, so no value depends on another symbol's
rows. The recursive EWMs run per symbol. Each stage is materialised as a column so that no
subexpression is computed twice.
"""

from __future__ import annotations

import polars as pl

POSITION = "_position"  # 0-based row number within the symbol
SYMBOL_ID = "_symbol_id"  # an integer per symbol: windows over it are several times faster than over strings
col = pl.col


def with_position(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Sort by (symbol, session) and add each row's position within its symbol."""
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    starts = col(SYMBOL_ID) != col(SYMBOL_ID).shift(1, fill_value=-1)
    return (
        frame.lazy()
        .sort("symbol", "session")
        .with_columns(col("symbol").rle_id().alias(SYMBOL_ID))
        .with_columns((row - pl.when(starts).then(row).forward_fill()).alias(POSITION))
    )


def _within(expr: pl.Expr, lookback: int) -> pl.Expr:
    """`expr` where its window of `lookback` earlier rows stays inside the symbol, else null."""
    return pl.when(col(POSITION) >= lookback).then(expr)


def lag(expr: pl.Expr, n: int = 1) -> pl.Expr:
    return _within(expr.shift(n), n)


def rolling_mean(expr: pl.Expr, n: int, offset: int = 0) -> pl.Expr:
    """Mean of the last n values; `offset` is how many leading rows of the symbol `expr` is null for."""
    return _within(expr.rolling_mean(n), n - 1 + offset)


def rolling_sum(expr: pl.Expr, n: int, offset: int = 0) -> pl.Expr:
    return _within(expr.rolling_sum(n), n - 1 + offset)


def rolling_std(expr: pl.Expr, n: int, offset: int = 0, ddof: int = 1) -> pl.Expr:
    return _within(expr.rolling_std(n, ddof=ddof), n - 1 + offset)


def rolling_max(expr: pl.Expr, n: int, offset: int = 0) -> pl.Expr:
    return _within(expr.rolling_max(n), n - 1 + offset)


def rolling_min(expr: pl.Expr, n: int, offset: int = 0) -> pl.Expr:
    return _within(expr.rolling_min(n), n - 1 + offset)


def add_ewm(frame: pl.LazyFrame, out: str, source: str, alpha: float, seed_at: int, seed: pl.Expr) -> pl.LazyFrame:
    """Add column `out`: the EWM (adjust=False) of `source` whose value at position `seed_at` is `seed`.

    Positions before `seed_at` are null; after it y_t = (1 - alpha) y_{t-1} + alpha x_t.
    The recursion runs per symbol, so a value never depends on another symbol's rows.
    """
    position = col(POSITION)
    driven = pl.when(position < seed_at).then(None).when(position == seed_at).then(seed).otherwise(col(source))
    return (
        frame.with_columns(driven.alias(f"_{out}_driven"))
        .with_columns(col(f"_{out}_driven").ewm_mean(alpha=alpha, adjust=False, min_samples=1).over(SYMBOL_ID).alias(out))
        .drop(f"_{out}_driven")
    )


def add_ema(frame: pl.LazyFrame, out: str, source: str, n: int, offset: int = 0, start: int = 0) -> pl.LazyFrame:
    """TA-Lib EMA(n) of `source` (null for its first `offset` rows); `start` delays the seed."""
    return add_ewm(frame, out, source, 2 / (n + 1), max(offset + n - 1, start), col(source).rolling_mean(n))


def add_wilder(frame: pl.LazyFrame, out: str, source: str, n: int, offset: int = 0) -> pl.LazyFrame:
    """Wilder's smoothing of `source` (null for its first `offset` rows), seeded with the mean of n values."""
    return add_ewm(frame, out, source, 1 / n, offset + n - 1, col(source).rolling_mean(n))


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """100 * n / d, and 0 where d is 0 (TA-Lib's convention), null where either is null."""
    return pl.when(denominator > 0).then(100 * numerator / denominator).otherwise(pl.when(denominator == 0).then(0.0))


def add_basics(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Previous close, true range, close change and directional movement, from bar 1."""
    prev_close = col("close").shift(1)
    up, down = col("high").diff(), -col("low").diff()
    return frame.with_columns(
        _within(prev_close, 1).alias("_prev_close"),
        _within(pl.max_horizontal("high", prev_close) - pl.min_horizontal("low", prev_close), 1).alias("_tr"),
        _within(col("close").diff().clip(lower_bound=0), 1).alias("_gain"),
        _within((-col("close").diff()).clip(lower_bound=0), 1).alias("_loss"),
        _within(pl.when((up > down) & (up > 0)).then(up).otherwise(0.0), 1).alias("_plus_dm"),
        _within(pl.when((down > up) & (down > 0)).then(down).otherwise(0.0), 1).alias("_minus_dm"),
    )


def add_rsi_atr(frame: pl.LazyFrame, n: int = 14) -> pl.LazyFrame:
    frame = add_wilder(frame, "_avg_gain", "_gain", n, offset=1)
    frame = add_wilder(frame, "_avg_loss", "_loss", n, offset=1)
    frame = add_wilder(frame, "atr_14", "_tr", n, offset=1)
    return frame.with_columns(_ratio(col("_avg_gain"), col("_avg_gain") + col("_avg_loss")).alias("rsi_14"))


def add_macd(frame: pl.LazyFrame, fast: int = 12, slow: int = 26, signal: int = 9) -> pl.LazyFrame:
    frame = add_ema(frame, "_ema_fast", "close", fast, start=slow - 1)
    frame = add_ema(frame, "_ema_slow", "close", slow)
    frame = frame.with_columns((col("_ema_fast") - col("_ema_slow")).alias("_macd_line"))
    frame = add_ema(frame, "_macd_signal", "_macd_line", signal, offset=slow - 1)
    ready = col(POSITION) >= slow + signal - 2
    return frame.with_columns(
        pl.when(ready).then(col("_macd_line")).alias("macd"),
        pl.when(ready).then(col("_macd_signal")).alias("macd_signal"),
        pl.when(ready).then(col("_macd_line") - col("_macd_signal")).alias("macd_hist"),
    )


def add_bollinger(frame: pl.LazyFrame, n: int = 20, k: float = 2.0) -> pl.LazyFrame:
    frame = frame.with_columns(
        rolling_mean(col("close"), n).alias("bb_middle"), (k * rolling_std(col("close"), n, ddof=0)).alias("_bb_width")
    )
    return frame.with_columns(
        (col("bb_middle") + col("_bb_width")).alias("bb_upper"), (col("bb_middle") - col("_bb_width")).alias("bb_lower")
    )


def add_stochastic(frame: pl.LazyFrame, fastk: int = 14, slowk: int = 3, slowd: int = 3) -> pl.LazyFrame:
    lowest = rolling_min(col("low"), fastk)
    frame = frame.with_columns(_ratio(col("close") - lowest, rolling_max(col("high"), fastk) - lowest).alias("_fast_k"))
    frame = frame.with_columns(rolling_mean(col("_fast_k"), slowk, offset=fastk - 1).alias("_slow_k"))
    ready = col(POSITION) >= fastk + slowk + slowd - 3  # TA-Lib reports %K from %D's first value
    # Clipped: a rolling mean of values in [0, 100] can land a rounding error outside.
    return frame.with_columns(
        pl.when(ready).then(col("_slow_k")).clip(0, 100).alias("stoch_k"),
        rolling_mean(col("_slow_k"), slowd, offset=fastk + slowk - 2).clip(0, 100).alias("stoch_d"),
    )


def add_adx(frame: pl.LazyFrame, n: int = 14) -> pl.LazyFrame:
    for source in ("_tr", "_plus_dm", "_minus_dm"):  # TA-Lib: the sum of bars 1..n-1, then S - S/n + x
        frame = add_ewm(frame, f"{source}_s", source, 1 / n, n - 1, col(source).rolling_sum(n - 1) / n)
    ready = col(POSITION) >= n
    frame = frame.with_columns(
        pl.when(ready).then(_ratio(col("_plus_dm_s"), col("_tr_s"))).alias("plus_di"),
        pl.when(ready).then(_ratio(col("_minus_dm_s"), col("_tr_s"))).alias("minus_di"),
    )
    frame = frame.with_columns(_ratio((col("plus_di") - col("minus_di")).abs(), col("plus_di") + col("minus_di")).alias("_dx"))
    return add_wilder(frame, "adx_14", "_dx", n, offset=n)


REFERENCE_COLUMNS = (
    "rsi_14", "atr_14", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", "stoch_k", "stoch_d",
    "adx_14",
)


def add_reference_indicators(frame: pl.LazyFrame) -> pl.LazyFrame:
    """The TA-Lib-comparable indicators (raw values) on a frame from `with_position`."""
    frame = add_basics(frame)
    for add in (add_rsi_atr, add_macd, add_bollinger, add_stochastic, add_adx):
        frame = add(frame)
    return frame


def reference_indicators(bars: pl.DataFrame) -> pl.DataFrame:
    """symbol, session and the TA-Lib-comparable indicators: used by the tests and the benchmark."""
    return add_reference_indicators(with_position(bars)).select("symbol", "session", *REFERENCE_COLUMNS).collect()
