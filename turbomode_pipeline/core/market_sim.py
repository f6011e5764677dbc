"""A deterministic simulated stock market with the statistical habits of a real one.

Returns are a market factor plus one factor per sector, loaded with per-stock betas, plus
an idiosyncratic part; every component has stochastic (clustering) volatility and
Student-t tails, and stocks occasionally gap overnight. OHLC bars are consistent
(low <= open, close <= high) and volume rises with the size of the day's move.

`predictability` plants a weak, realistic effect in the idiosyncratic returns: short-term
reversal (the last 5 sessions) and medium-term momentum (sessions 20 to 60 back). At 0 the
market is a pure random walk, which later stages use to catch look-ahead leaks.

Determinism and slice consistency: each stock, sector and the market draw their shocks from
their own random stream (keyed by the seed and the name), one row per session counted from
SIM_EPOCH, and every filter is causal from SIM_EPOCH. A session's bar therefore depends only on
the seed, the name and the sessions up to it (and, for its price level, up to PRICE_ANCHOR): one
day simulated alone equals the same day inside a ten-year range. (The AR filters run as an FFT;
its rounding, ~1e-15 relative, lies far below the cent and whole-share rounding of every output.)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

SIM_EPOCH = date(2005, 1, 3)
TRADING_DAYS = 252
# Prices are pinned at the anchor, not at SIM_EPOCH: twenty years of a random walk at equity volatility
# spread start prices over two orders of magnitude (closes of $12,000 by 2026). Each stock closes the
# anchor session at its own price scale, so recent bars look like today's market and older ones like
# split-adjusted history; returns are the same, only the level moves.
PRICE_ANCHOR = date(2025, 1, 2)
PRICE_ANCHOR_ROW = 5033  # PRICE_ANCHOR's row in the session grid from SIM_EPOCH (NYSE sessions, 0-based)

_SHOCK_COLUMNS = 12  # eps, 4 chi-square normals, vol innovation, jump flag, jump size, gap, high, low, volume
_T_DF = 4
_JUMP_THRESHOLD = 2.17  # P(z > 2.17) ~ 1.5% of sessions
_REVERSAL_LAGS = range(1, 6)
_MOMENTUM_LAGS = range(20, 61)


@dataclass(frozen=True)
class MarketShape:
    """The simulator's constants; the defaults give equity-like daily statistics."""

    market_vol: float = 0.009
    sector_vol: float = 0.006
    vol_persistence: float = 0.97
    vol_of_vol: float = 0.08  # stationary sd of log-volatility ~0.33
    annual_drift: float = 0.06  # arithmetic: each stock's log drift is this less half its variance
    reversal_per_lag: float = 0.24  # at predictability 1 (AR roots stay inside the unit circle)
    momentum_per_lag: float = 0.008  # at predictability 1


def _stream(seed: int, name: str, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), purpose])


def _shocks(seed: int, names: list[str], n_sessions: int) -> np.ndarray:
    """Standard normal shocks, shape (sessions, names, _SHOCK_COLUMNS), each name its own stream."""
    out = np.empty((n_sessions, len(names), _SHOCK_COLUMNS))
    for i, name in enumerate(names):  # one stream per name keeps each name's path independent of the others
        out[:, i, :] = _stream(seed, name, 1).standard_normal((n_sessions, _SHOCK_COLUMNS))
    return out


def _student_t(shocks: np.ndarray) -> np.ndarray:
    """Unit-variance Student-t draws built from the normals in columns 0..4."""
    chi2 = (shocks[..., 1:5] ** 2).sum(axis=-1)
    return shocks[..., 0] / np.sqrt(chi2 / _T_DF) * np.sqrt((_T_DF - 2) / _T_DF)


def lfilter(numerator, denominator, x: np.ndarray) -> np.ndarray:
    """scipy.signal.lfilter(numerator, denominator, x, axis=0) for a stable filter, as one FFT convolution.

    Importing scipy.signal costs ~1.3 s, which every simulated live tick (a new process each minute) paid.
    The FFT is long enough that the impulse response's tail beyond it is below 1e-18 of its start
    (from the largest pole), so the result equals scipy's to ~1e-15 (checked in test_market_sim).
    """
    sessions = x.shape[0]
    pole = np.abs(np.roots(denominator)).max(initial=0.0)
    tail = int(np.ceil(np.log(1e-18) / np.log(pole))) if pole > 0 else len(numerator)
    n = 1 << int(np.ceil(np.log2(sessions + tail)))
    response = (np.fft.rfft(numerator, n) / np.fft.rfft(denominator, n)).reshape((-1,) + (1,) * (x.ndim - 1))
    return np.fft.irfft(np.fft.rfft(x, n, axis=0) * response, n, axis=0)[:sessions]


def _clustered_vol(shocks: np.ndarray, base_vol: np.ndarray, shape: MarketShape) -> np.ndarray:
    """base_vol scaled by exp of an AR(1) log-volatility, normalised to mean 1."""
    phi = shape.vol_persistence
    log_vol = lfilter([shape.vol_of_vol], [1.0, -phi], shocks[..., 5])
    stationary_var = shape.vol_of_vol**2 / (1 - phi**2)
    return base_vol * np.exp(log_vol - stationary_var)


def _predictable(idio: np.ndarray, predictability: float, shape: MarketShape) -> np.ndarray:
    """Idiosyncratic returns with reversal and momentum planted by an AR filter over sessions."""
    if predictability == 0:
        return idio
    denominator = np.zeros(max(_MOMENTUM_LAGS) + 1)
    denominator[0] = 1.0
    denominator[list(_REVERSAL_LAGS)] = shape.reversal_per_lag * predictability
    denominator[list(_MOMENTUM_LAGS)] = -shape.momentum_per_lag * predictability
    return lfilter([1.0], denominator, idio)


def _idiosyncratic(shocks: np.ndarray, params: dict, predictability: float, shape: MarketShape):
    """Each stock's idiosyncratic volatility and return (sessions x symbols), the effect planted."""
    idio_vol = _clustered_vol(shocks, params["idio_vol"], shape)
    return idio_vol, _predictable(idio_vol * _student_t(shocks), predictability, shape)


def _ar_coefficients(predictability: float, shape: MarketShape) -> np.ndarray:
    """phi[j - 1]: the weight of the return j sessions back in the planted AR process."""
    phi = np.zeros(max(_MOMENTUM_LAGS))
    phi[[lag - 1 for lag in _REVERSAL_LAGS]] = -shape.reversal_per_lag * predictability
    phi[[lag - 1 for lag in _MOMENTUM_LAGS]] = shape.momentum_per_lag * predictability
    return phi


def expected_idiosyncratic_return(
    universe: pl.DataFrame, grid: list[date], wanted: list[date], *, seed: int, predictability: float, horizon: int,
    shape: MarketShape = MarketShape(),
) -> pl.DataFrame:
    """session, symbol, expected_idio: the exact conditional expectation, given every bar up to
    the session's close, of the symbol's idiosyncratic return over the next `horizon` sessions.

    The planted effect is an AR process whose shocks have mean zero given the past, so the
    forecast runs the AR recursion forward with future shocks at zero: the best score any
    model of this market can reach (the ceiling of its rank IC)."""
    symbols = universe["symbol"].to_list()
    n = grid.index(wanted[-1]) + 1
    _, idio = _idiosyncratic(_shocks(seed, symbols, n), _stock_params(seed, symbols), predictability, shape)
    phi = _ar_coefficients(predictability, shape)
    lags = len(phi)
    padded = np.vstack([np.zeros((lags, idio.shape[1])), idio])  # padded[lags + t] = idio[t]
    forecasts: list[np.ndarray] = []  # forecasts[k - 1][t] = E[idio[t + k] | up to t]
    for k in range(1, horizon + 1):
        step = np.zeros_like(idio)
        for j in range(1, lags + 1):
            known = j >= k  # idio[t + k - j] is at or before t: observed
            step += phi[j - 1] * (padded[lags + k - j : lags + k - j + n] if known else forecasts[k - j - 1])
        forecasts.append(step)
    expected = np.sum(forecasts, axis=0)
    rows = np.array([grid.index(day) for day in wanted])
    return pl.DataFrame({
        "session": np.repeat(np.array(wanted, dtype="datetime64[D]"), len(symbols)),
        "symbol": np.tile(symbols, len(wanted)),
        "expected_idio": expected[rows].ravel(),
    }).with_columns(pl.col("session").cast(pl.Date))


def _stock_params(seed: int, symbols: list[str]) -> dict[str, np.ndarray]:
    draws = np.array([_stream(seed, s, 0).random(6) for s in symbols])
    return {
        "beta": 0.6 + 0.9 * draws[:, 0],
        "sector_loading": 0.5 + 0.7 * draws[:, 1],
        "idio_vol": 0.010 + 0.015 * draws[:, 2],
        "anchor_price": np.exp(np.log(25) + draws[:, 3] * np.log(500 / 25)),
        "base_volume": np.exp(np.log(8e5) + draws[:, 4] * np.log(4e7 / 8e5)),
        "trade_size": 80 + 220 * draws[:, 5],
    }


def simulate_daily_bars(
    universe: pl.DataFrame,
    grid: list[date],
    wanted: list[date],
    *,
    seed: int,
    predictability: float,
    shape: MarketShape = MarketShape(),
) -> pl.DataFrame:
    """Daily OHLCV bars for every session in `wanted` and every symbol of `universe`.

    `grid` is every trading session from SIM_EPOCH up to the last wanted one, in order: the
    simulation runs forward through all of them. `universe` has columns symbol and sector.
    """
    if not wanted:
        return _empty_bars()
    if grid[0] != SIM_EPOCH:
        raise ValueError(f"the session grid must start at SIM_EPOCH {SIM_EPOCH}, not {grid[0]}")
    position = {day: i for i, day in enumerate(grid)}
    missing = [day for day in wanted if day not in position]
    if missing:
        raise ValueError(f"sessions {missing[:5]} are not in the simulation grid {grid[0]}..{grid[-1]}")
    rows = np.array([position[day] for day in wanted])
    sessions = grid
    symbols = universe["symbol"].to_list()
    sectors = universe["sector"].to_list()
    sector_names = sorted(set(sectors))
    sector_index = np.array([sector_names.index(s) for s in sectors])
    n = max(len(sessions), PRICE_ANCHOR_ROW + 1)  # through the anchor, whose close sets the price level

    factor_shocks = _shocks(seed, ["__market__", *sector_names], n)
    factor_base = np.array([shape.market_vol] + [shape.sector_vol] * len(sector_names))
    factors = _clustered_vol(factor_shocks, factor_base, shape) * _student_t(factor_shocks)
    market, sector_factor = factors[:, 0:1], factors[:, 1:][:, sector_index]

    params = _stock_params(seed, symbols)
    shocks = _shocks(seed, symbols, n)
    idio_vol, idio = _idiosyncratic(shocks, params, predictability, shape)
    jumps = np.where(shocks[..., 6] > _JUMP_THRESHOLD, shocks[..., 7] * 4 * params["idio_vol"], 0.0)
    day_vol = np.sqrt((params["beta"] * shape.market_vol) ** 2 + idio_vol**2)
    returns = (
        shape.annual_drift / TRADING_DAYS
        - day_vol**2 / 2
        + params["beta"] * market
        + params["sector_loading"] * sector_factor
        + idio
        + jumps
    )

    growth = np.cumsum(returns, axis=0)
    log_start = np.log(params["anchor_price"]) - growth[PRICE_ANCHOR_ROW]
    log_close = log_start + growth
    prev_log_close = np.vstack([log_start[None, :], log_close[:-1]])
    gap = 0.25 * (returns - jumps) + jumps + 0.1 * day_vol * shocks[..., 8]
    open_ = np.exp(prev_log_close + gap)
    close = np.exp(log_close)
    high = np.maximum(open_, close) * np.exp(0.5 * day_vol * np.abs(shocks[..., 9]))
    low = np.minimum(open_, close) * np.exp(-0.5 * day_vol * np.abs(shocks[..., 10]))
    move = np.minimum(np.abs(returns) / day_vol, 6.0)
    volume = np.round(params["base_volume"] * np.exp(0.45 * move + 0.25 * shocks[..., 11] - 0.35))

    picked = (a[rows] for a in (open_, high, low, close, volume))
    return _to_frame(list(wanted), symbols, sectors, *picked, params["trade_size"])


def _to_frame(sessions, symbols, sectors, open_, high, low, close, volume, trade_size) -> pl.DataFrame:
    n, m = close.shape
    open_, high, low, close = (np.round(a, 2) for a in (open_, high, low, close))
    high = np.maximum.reduce([high, open_, close])
    low = np.minimum.reduce([low, open_, close])
    vwap = np.clip(np.round((high + low + close) / 3, 4), low, high)
    column = np.tile(np.arange(m, dtype=np.uint32), n)
    frame = pl.DataFrame(
        {
            "session": pl.Series(np.repeat(np.array(sessions, dtype="datetime64[D]"), m)).cast(pl.Date),
            "symbol": pl.Series(symbols, dtype=pl.String).gather(column),
            "sector": pl.Series(sectors, dtype=pl.String).gather(column),
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": volume.ravel(),
            "vwap": vwap.ravel(),
            "trade_count": np.maximum(1, np.round(volume / trade_size)).ravel().astype(np.int64),
        }
    )
    return frame.with_columns(pl.col("volume").cast(pl.Float64))


def _empty_bars() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "session": pl.Date,
            "symbol": pl.String,
            "sector": pl.String,
            "open": pl.Float64,
            "high": pl.Float64,
            "low": pl.Float64,
            "close": pl.Float64,
            "volume": pl.Float64,
            "vwap": pl.Float64,
            "trade_count": pl.Int64,
        }
    )
