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

Speed: the indicators run on a `Grid`, each column laid out as a symbols x positions numpy
array, so every window and recursion runs along one symbol's own history for all symbols at
once and never reaches into another symbol. Windows are combined by doubling (a window of
n takes about log2(n) whole-array operations and depends only on its own n values); the
recursive EWMs are scipy's `lfilter`, because polars has no EWM that restarts per segment
(and its `over(symbol)` costs several times more). The grid is worked through in blocks of
symbols on every core (`in_symbol_blocks`). The polars helpers (`lag`, `rolling_*`)
serve the features that stay on the flat frame, masked where a window would reach into the
previous symbol.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

POSITION = "_position"  # 0-based row number within the symbol
col = pl.col


def sorted_by_symbol(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` sorted by (symbol, session); the warehouse already returns bars so, and checking is cheaper."""
    symbol_id = frame["symbol"].rle_id().to_numpy()
    session = frame["session"].to_physical().to_numpy()
    in_order = frame["symbol"].is_sorted() and bool(np.all((np.diff(symbol_id) > 0) | (np.diff(session) > 0)))
    return frame if in_order else frame.sort("symbol", "session")


def _within(expr: pl.Expr, lookback: int) -> pl.Expr:
    """`expr` where its window of `lookback` earlier rows stays inside the symbol, else null."""
    return pl.when(col(POSITION) >= lookback).then(expr)


def lag(expr: pl.Expr, n: int = 1) -> pl.Expr:
    return _within(expr.shift(n), n)


# Sliding sums, means and deviations add the entering value and subtract the leaving one, so
# they carry the rounding residue of every value they ever passed. Over the stacked column that
# would include other symbols' bars (whose number depends on how far the range reaches); per
# symbol, a value depends only on that symbol's bars from the range's first session to it.


def rolling_mean(expr: pl.Expr, n: int, offset: int = 0) -> pl.Expr:
    """Mean of the last n values; `offset` is how many leading rows of the symbol `expr` is null for."""
    return _within(expr.rolling_mean(n).over("symbol"), n - 1 + offset)


def rolling_sum(expr: pl.Expr, n: int, offset: int = 0) -> pl.Expr:
    return _within(expr.rolling_sum(n).over("symbol"), n - 1 + offset)


def rolling_std(expr: pl.Expr, n: int, offset: int = 0, ddof: int = 1) -> pl.Expr:
    return _within(expr.rolling_std(n, ddof=ddof).over("symbol"), n - 1 + offset)


def rolling_max(expr: pl.Expr, n: int, offset: int = 0) -> pl.Expr:
    return _within(expr.rolling_max(n), n - 1 + offset)


def rolling_min(expr: pl.Expr, n: int, offset: int = 0) -> pl.Expr:
    return _within(expr.rolling_min(n), n - 1 + offset)




class Grid:
    """A frame sorted by (symbol, session), its columns laid out as symbols x positions arrays.

    Row i holds the i-th symbol's history, column j its j-th bar; shorter histories are padded
    with NaN after their last bar. Everything below looks only backwards along a row, so the
    padding never reaches a real value and no value depends on another symbol.
    """

    def __init__(self, frame: pl.DataFrame):
        self.frame = frame
        self.lengths = frame["symbol"].rle().struct.field("len").to_numpy().astype(np.int64)
        self.shape = (len(self.lengths), int(self.lengths.max(initial=0)))
        ragged = frame.height != self.shape[0] * self.shape[1]
        self._cells = self._row_starts() + self.positions() if ragged else None

    def positions(self) -> np.ndarray:
        """Each row's position within its symbol."""
        starts = np.repeat(np.cumsum(self.lengths) - self.lengths, self.lengths)
        return np.arange(self.frame.height) - starts

    def _row_starts(self) -> np.ndarray:
        return np.repeat(np.arange(self.shape[0]) * self.shape[1], self.lengths)

    def __getitem__(self, column: str) -> np.ndarray:
        values = self.frame[column].to_numpy().astype(np.float64, copy=False)
        if self._cells is None:
            return values.reshape(self.shape)
        grid = np.full(self.shape[0] * self.shape[1], np.nan)
        grid[self._cells] = values
        return grid.reshape(self.shape)

    def with_columns(self, grids: dict[str, np.ndarray]) -> pl.DataFrame:
        """The frame with each grid added back as a column; NaN (warm-up) becomes null."""
        flat = {name: grid.reshape(-1) for name, grid in grids.items()}
        if self._cells is not None:
            flat = {name: values[self._cells] for name, values in flat.items()}
        return self.frame.with_columns(pl.Series(name, values, nan_to_null=True) for name, values in flat.items())


def _empty_until(shape: tuple[int, int], position: int) -> np.ndarray:
    """A new grid, NaN before `position` and to be filled from there."""
    out = np.empty(shape)
    out[:, :position] = np.nan
    return out


def _combine_shifted(combine: np.ufunc, a: np.ndarray, b: np.ndarray, lag: int) -> np.ndarray:
    """combine(a[t], b[t - lag]) along each row; NaN for the first `lag` positions."""
    out = _empty_until(a.shape, lag)
    combine(a[:, lag:], b[:, : max(a.shape[1] - lag, 0)], out=out[:, lag:])
    return out


def _window(values: np.ndarray, n: int, combine: np.ufunc) -> np.ndarray:
    """`combine` over each position's last n values (NaN until there are n), by doubling:
    about log2(n) whole-array operations, each result depending only on its own window."""
    result, covered = None, 0
    block, span = values, 1  # block[t] combines the `span` values ending at t
    while True:
        if n & span:
            result = block if result is None else _combine_shifted(combine, result, block, covered)
            covered += span
        if 2 * span > n:
            return result
        block, span = _combine_shifted(combine, block, block, span), 2 * span


def lagged(values: np.ndarray, n: int = 1) -> np.ndarray:
    out = _empty_until(values.shape, n)
    out[:, n:] = values[:, : max(values.shape[1] - n, 0)]
    return out


def _change(values: np.ndarray) -> np.ndarray:
    """values[t] - values[t - 1]."""
    out = _empty_until(values.shape, 1)
    np.subtract(values[:, 1:], values[:, :-1], out=out[:, 1:])
    return out


def window_sum(values: np.ndarray, n: int) -> np.ndarray:
    return _window(values, n, np.add)


def window_mean(values: np.ndarray, n: int) -> np.ndarray:
    return window_sum(values, n) / n


def window_max(values: np.ndarray, n: int) -> np.ndarray:
    return _window(values, n, np.maximum)


def window_min(values: np.ndarray, n: int) -> np.ndarray:
    return _window(values, n, np.minimum)


def ewm(values: np.ndarray, alpha: float, seed_at: int, seed_count: int, seed_divisor: int) -> np.ndarray:
    """EWM (adjust=False) of each row, seeded at position `seed_at` with the sum of the `seed_count`
    values ending there over `seed_divisor`: NaN before, then y_t = (1 - alpha) y_{t-1} + alpha x_t."""
    from scipy.signal import lfilter  # scipy.signal takes ~1 s to import: only when computing

    out = _empty_until(values.shape, seed_at)
    if seed_at < values.shape[1]:
        seed = values[:, seed_at - seed_count + 1 : seed_at + 1].sum(axis=1) / seed_divisor
        out[:, seed_at] = seed
        state = ((1 - alpha) * seed)[:, None]
        out[:, seed_at + 1 :], _ = lfilter([alpha], [1, alpha - 1], values[:, seed_at + 1 :], axis=1, zi=state)
    return out


def ema(values: np.ndarray, n: int, offset: int = 0, start: int = 0) -> np.ndarray:
    """TA-Lib EMA(n) of `values` (NaN for their first `offset` positions); `start` delays the seed."""
    return ewm(values, 2 / (n + 1), max(offset + n - 1, start), n, n)


def wilder(values: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """Wilder's smoothing of `values` (NaN for their first `offset` positions), seeded with the mean of n."""
    return ewm(values, 1 / n, offset + n - 1, n, n)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """100 * n / d, and 0 where d is 0 (TA-Lib's convention); NaN where either is NaN."""
    ratio = 100 * numerator
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(ratio, denominator, out=ratio)
    np.copyto(ratio, 0.0, where=denominator == 0)
    return ratio


def _from(values: np.ndarray, position: int) -> np.ndarray:
    """`values`, set to NaN before `position` in place."""
    values[:, :position] = np.nan
    return values


def basics(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
    """Previous close, true range, close change and directional movement, from bar 1."""
    prev_close = lagged(close)
    change = close - prev_close
    gain = np.maximum(change, 0.0)
    up, down = _change(high), _change(low)
    np.negative(down, out=down)
    # +DM where the up move beats both the down move and 0; -DM the other way round (a product with
    # the condition is several times faster than np.where).
    plus_dm = up * (up > np.maximum(down, 0.0))
    minus_dm = down * (down > np.maximum(up, 0.0))
    return {
        "_prev_close": prev_close,
        "_tr": np.maximum(high, prev_close) - np.minimum(low, prev_close),
        "_gain": gain,
        "_loss": gain - change,
        "_plus_dm": _from(plus_dm, 1),
        "_minus_dm": _from(minus_dm, 1),
    }


def rsi_atr(gain: np.ndarray, loss: np.ndarray, true_range: np.ndarray, n: int = 14) -> dict[str, np.ndarray]:
    average_gain = wilder(gain, n, offset=1)
    return {"rsi_14": _ratio(average_gain, average_gain + wilder(loss, n, offset=1)), "atr_14": wilder(true_range, n, offset=1)}


def macd(close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> dict[str, np.ndarray]:
    line = ema(close, fast, start=slow - 1) - ema(close, slow)
    smoothed = ema(line, signal, offset=slow - 1)
    line = _from(line, slow + signal - 2)  # all three are reported from the signal's first value
    return {"macd": line, "macd_signal": smoothed, "macd_hist": line - smoothed}


def bollinger(close: np.ndarray, n: int = 20, k: float = 2.0) -> dict[str, np.ndarray]:
    middle = window_mean(close, n)
    # The population variance as TA-Lib's STDDEV computes it: mean of squares minus squared mean.
    variance = window_mean(close * close, n) - middle * middle
    width = k * np.sqrt(np.maximum(variance, 0.0, out=variance), out=variance)
    return {"bb_upper": middle + width, "bb_middle": middle, "bb_lower": middle - width}


def stochastic(high, low, close, fastk: int = 14, slowk: int = 3, slowd: int = 3) -> dict[str, np.ndarray]:
    lowest = window_min(low, fastk)
    slow_k = window_mean(_ratio(close - lowest, window_max(high, fastk) - lowest), slowk)
    # Clipped: a mean of values in [0, 100] can land a rounding error outside.
    slow_d = np.clip(window_mean(slow_k, slowd), 0, 100)
    # TA-Lib reports %K from %D's first value.
    return {"stoch_k": np.clip(_from(slow_k, fastk + slowk + slowd - 3), 0, 100, out=slow_k), "stoch_d": slow_d}


def adx(true_range: np.ndarray, plus_dm: np.ndarray, minus_dm: np.ndarray, n: int = 14) -> dict[str, np.ndarray]:
    # TA-Lib smooths from the sum of bars 1..n-1, then S - S/n + x (here divided by n throughout).
    range_s, plus_s, minus_s = (ewm(source, 1 / n, n - 1, n - 1, n) for source in (true_range, plus_dm, minus_dm))
    plus_di, minus_di = _from(_ratio(plus_s, range_s), n), _from(_ratio(minus_s, range_s), n)
    dx = _ratio(np.abs(plus_di - minus_di), plus_di + minus_di)
    return {"plus_di": plus_di, "minus_di": minus_di, "adx_14": wilder(dx, n, offset=n)}


REFERENCE_COLUMNS = (
    "rsi_14", "atr_14", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", "stoch_k", "stoch_d",
    "adx_14",
)
BLOCK_SYMBOLS = 32  # a block's working arrays (32 x 2,520 sessions: 0.6 MB each) stay in the CPU cache


def in_symbol_blocks(compute, grids: tuple[np.ndarray, ...], keep: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The `keep` grids of `compute(*grids)`, computed BLOCK_SYMBOLS rows (symbols) at a time.

    Rows never depend on each other, so blocks are independent: each block's many intermediate
    arrays stay small enough for the CPU cache, and since numpy and scipy release the GIL, the
    blocks run on every core. Each block's results go straight into the full output grids.
    """
    rows = grids[0].shape[0]
    out = {name: np.empty(grids[0].shape) for name in keep}

    def run(start: int) -> None:
        block = slice(start, start + BLOCK_SYMBOLS)
        result = compute(*(grid[block] for grid in grids))
        for name in keep:
            out[name][block] = result[name]

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(run, range(0, rows, BLOCK_SYMBOLS)))
    return out


def reference_block(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
    """The TA-Lib-comparable indicators (raw values) and the inputs they share, for some symbols."""
    shared = basics(high, low, close)
    return {
        **shared,
        **rsi_atr(shared["_gain"], shared["_loss"], shared["_tr"]),
        **macd(close),
        **bollinger(close),
        **stochastic(high, low, close),
        **adx(shared["_tr"], shared["_plus_dm"], shared["_minus_dm"]),
    }


def reference_grids(grid: Grid) -> dict[str, np.ndarray]:
    """The TA-Lib-comparable indicators of every symbol, as grids."""
    return in_symbol_blocks(reference_block, (grid["high"], grid["low"], grid["close"]), REFERENCE_COLUMNS)


def reference_indicators(bars: pl.DataFrame) -> pl.DataFrame:
    """symbol, session and the TA-Lib-comparable indicators: used by the tests and the benchmark."""
    grid = Grid(sorted_by_symbol(bars))
    return grid.with_columns(reference_grids(grid)).select("symbol", "session", *REFERENCE_COLUMNS)
