"""A deterministic simulated stock market with the statistical habits of a real one.

Returns are a market factor plus one factor per sector, loaded with per-stock betas, plus
an idiosyncratic part; every component has stochastic (clustering) volatility and
Student-t tails, and stocks occasionally gap overnight. OHLC bars are consistent
(low <= open, close <= high) and volume rises with the size of the day's move.

One generative model, minutes first: each shock is conditionally Gaussian given its volatility;
a fifth of its variance falls overnight (the gap) and the rest comes out minute by minute as a
fair random walk (core/minute_bars.py). A daily bar is the exact aggregate of its minutes (open,
high, low, close, volume), which simulate_minute_bars returns; only the minutes of the sessions
asked for are drawn. Given everything observed up to a minute, the expected rest of the day is the
daily model's predictable part spread over the day's minutes.

`predictability` plants a weak, realistic effect in the idiosyncratic returns: short-term
reversal (the last 5 sessions) and medium-term momentum (sessions 20 to 60 back). At 0 the
market is a pure random walk at every time scale, which later stages use to catch look-ahead
leaks and strategies to show they have no free edge.

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
from datetime import date, datetime

import numpy as np
import polars as pl

from turbomode_pipeline.core.minute_bars import (
    MINUTE_COLUMNS, MINUTES, NOISE_BLOCK, intraday_paths, minute_noise, minute_volumes, segment_volumes, volume_shape,
)

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
_OVERNIGHT_SHARE = 0.2  # of each shock's variance; the rest comes out minute by minute


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


def _sessions_state(universe, grid, wanted, seed, predictability, shape) -> dict:
    """The daily model at the wanted sessions' grid rows: each bar's open and close, and the
    volatility and loadings of the parts its minutes are drawn from (see core/minute_bars.py).

    The day's return is a drift known at the open (at predictability > 0 also the planted
    reversal and momentum), the market's, the sector's and the stock's own shock, and jumps.
    Each shock is conditionally Gaussian given its volatility (a Student-t is a normal over an
    independent chi-square scale); a share _OVERNIGHT_SHARE of its variance falls overnight and
    the rest between the open and the close, the two parts independent. Jumps are overnight news."""
    if grid[0] != SIM_EPOCH:
        raise ValueError(f"the session grid must start at SIM_EPOCH {SIM_EPOCH}, not {grid[0]}")
    position = {day: i for i, day in enumerate(grid)}
    missing = [day for day in wanted if day not in position]
    if missing:
        raise ValueError(f"sessions {missing[:5]} are not in the simulation grid {grid[0]}..{grid[-1]}")
    rows = np.array([position[day] for day in wanted])
    symbols = universe["symbol"].to_list()
    sectors = universe["sector"].to_list()
    sector_names = sorted(set(sectors))
    sector_index = np.array([sector_names.index(s) for s in sectors])
    n = max(len(grid), PRICE_ANCHOR_ROW + 1)  # through the anchor, whose close sets the price level

    factor_names = ["__market__", *sector_names]
    factor_shocks = _shocks(seed, factor_names, n)
    factor_base = np.array([shape.market_vol] + [shape.sector_vol] * len(sector_names))
    factor_vol = _clustered_vol(factor_shocks, factor_base, shape)
    factors = factor_vol * _student_t(factor_shocks)
    factor_sd = factor_vol * _t_scale(factor_shocks)  # each factor's sd given its chi-square scale
    factor_overnight = _overnight(factors, factor_sd, factor_shocks[..., 8])
    market, sector_factor = factors[:, 0:1], factors[:, 1:][:, sector_index]

    params = _stock_params(seed, symbols)
    shocks = _shocks(seed, symbols, n)
    idio_vol, idio = _idiosyncratic(shocks, params, predictability, shape)
    own = idio_vol * _student_t(shocks)  # the idiosyncratic shock; idio - own is the planted, predictable part
    own_sd = idio_vol * _t_scale(shocks)
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
    gap = (
        jumps
        + params["beta"] * factor_overnight[:, 0:1]
        + params["sector_loading"] * factor_overnight[:, 1:][:, sector_index]
        + _overnight(own, own_sd, shocks[..., 8])
    )
    log_open = prev_log_close + gap
    day_sd = np.sqrt(  # the day's sd given its volatility draws
        (params["beta"] * factor_sd[:, 0:1]) ** 2 + (params["sector_loading"] * factor_sd[:, 1:][:, sector_index]) ** 2 + own_sd**2
    )
    intraday = np.sqrt(1 - _OVERNIGHT_SHARE)  # sd of a shock's open-to-close part, per unit of its sd
    return {
        "rows": rows, "symbols": symbols, "sectors": sectors, "factor_names": factor_names, "sector_index": sector_index,
        "beta": params["beta"], "sector_loading": params["sector_loading"], "trade_size": params["trade_size"],
        "log_open": log_open[rows], "log_close": log_close[rows], "gap": gap[rows], "day_vol": day_vol[rows],
        "factor_sd": intraday * factor_sd[rows], "own_sd": intraday * own_sd[rows],
        "day_sd": day_sd[rows], "base_volume": params["base_volume"] * np.exp(0.25 * shocks[rows, :, 11] - 0.8),
    }


def _t_scale(shocks: np.ndarray) -> np.ndarray:
    """The factor that makes column 0's normal the unit-variance Student-t of _student_t."""
    chi2 = (shocks[..., 1:5] ** 2).sum(axis=-1)
    return np.sqrt((_T_DF - 2) / _T_DF) / np.sqrt(chi2 / _T_DF)


def _overnight(shock: np.ndarray, sd: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """The overnight part of a Gaussian shock (given its sd): share w of its variance, independent
    of the remainder (shock - part), which the session's minutes then reveal."""
    w = _OVERNIGHT_SHARE
    return w * shock + np.sqrt(w * (1 - w)) * sd * normal


def _session_minutes(wanted: list[date], session_minutes) -> np.ndarray:
    if session_minutes is None:
        return np.full(len(wanted), MINUTES)
    lengths = np.asarray(session_minutes, dtype=np.int64)
    if lengths.shape != (len(wanted),) or (lengths < 2).any() or (lengths > MINUTES).any():
        raise ValueError(f"session_minutes must give 2..{MINUTES} minutes for each of the {len(wanted)} sessions")
    return lengths


def _session_paths(state: dict, at: np.ndarray, lengths: np.ndarray, seed: int) -> np.ndarray:
    """Log price relative to the open, minute by minute, of the state's rows `at` (float32; see intraday_paths):
    each stock's own noise plus its loadings on the market's and its sector's minute noise."""
    rows = state["rows"][at]
    steps = 1 / np.sqrt(lengths[at])[:, None]  # per-minute sd per unit of the open-to-close sd
    noise = minute_noise(seed, state["symbols"], rows)
    noise *= (state["own_sd"][at] * steps)[..., None].astype(np.float32)
    factor = minute_noise(seed, state["factor_names"], rows)
    sector = state["sector_index"]
    market_weight = state["beta"] * state["factor_sd"][at, 0:1] * steps
    sector_weight = state["sector_loading"] * state["factor_sd"][at, 1:][:, sector] * steps
    # elementwise, not a matrix product: BLAS threads spin on a shared machine and may sum in another order
    noise += market_weight[..., None].astype(np.float32) * factor[:, 0:1, :]
    noise += sector_weight[..., None].astype(np.float32) * factor[:, 1 + sector, :]
    move = state["log_close"][at] - state["log_open"][at]
    return intraday_paths(noise, move, lengths[at])


def _segment_volumes(state: dict, at, path: np.ndarray, shares: np.ndarray) -> np.ndarray:
    return segment_volumes(path, state["gap"][at], state["day_vol"][at], state["day_sd"][at], state["base_volume"][at], shares[at])


def _chunks(rows: np.ndarray):
    """Indices of `rows` by noise block (each block's minutes drawn at once), at most NOISE_BLOCK each."""
    blocks = rows // NOISE_BLOCK
    edges = np.flatnonzero(np.diff(blocks) != 0) + 1
    return (chunk for part in np.split(np.arange(len(rows)), edges) for chunk in np.array_split(part, -(-len(part) // NOISE_BLOCK)))


def simulate_daily_bars(
    universe: pl.DataFrame,
    grid: list[date],
    wanted: list[date],
    *,
    seed: int,
    predictability: float,
    session_minutes: list[int] | None = None,
    shape: MarketShape = MarketShape(),
) -> pl.DataFrame:
    """Daily OHLCV bars for every session in `wanted` and every symbol of `universe`.

    `grid` is every trading session from SIM_EPOCH up to the last wanted one, in order: the
    simulation runs forward through all of them. `universe` has columns symbol and sector.
    `session_minutes[i]` is wanted[i]'s length in minutes (early closes are shorter; None: all
    full sessions). Each bar is the exact aggregate of simulate_minute_bars' minutes.
    """
    if not wanted:
        return _empty_bars()
    lengths = _session_minutes(wanted, session_minutes)
    state = _sessions_state(universe, grid, wanted, seed, predictability, shape)
    high = np.empty_like(state["log_open"])
    low, volume = np.empty_like(high), np.empty_like(high)
    shares = volume_shape(lengths)
    for at in _chunks(state["rows"]):  # memory: a block of sessions' minutes at a time
        path = _session_paths(state, at, lengths, seed)
        inside = path[..., 1:MINUTES]
        high[at] = inside.max(axis=2)
        low[at] = inside.min(axis=2)
        volume[at] = _segment_volumes(state, at, path, shares).sum(axis=2)
    open_, close = np.exp(state["log_open"]), np.exp(state["log_close"])
    high, low = np.exp(state["log_open"] + high), np.exp(state["log_open"] + low)
    return _to_frame(list(wanted), state["symbols"], state["sectors"], open_, high, low, close, volume, state["trade_size"])


def simulate_minute_bars(
    universe: pl.DataFrame,
    grid: list[date],
    wanted: list[date],
    opens: list[datetime],
    session_minutes: list[int],
    *,
    seed: int,
    predictability: float,
    shape: MarketShape = MarketShape(),
) -> pl.DataFrame:
    """One-minute bars (symbol, time UTC bar start, OHLCV, session) of every symbol and wanted
    session; `opens[i]` is wanted[i]'s opening time (naive UTC). Their first open, highest high,
    lowest low, last close and total volume are simulate_daily_bars' bar for the session."""
    if not wanted:
        return pl.DataFrame(schema={"symbol": pl.String, "time": pl.Datetime("us", "UTC"),
                                    **{c: pl.Float64 for c in MINUTE_COLUMNS[2:]}, "session": pl.Date})
    lengths = _session_minutes(wanted, session_minutes)
    state = _sessions_state(universe, grid, wanted, seed, predictability, shape)
    path = _session_paths(state, np.arange(len(wanted)), lengths, seed)
    shares = volume_shape(lengths)
    volume = minute_volumes(_segment_volumes(state, slice(None), path, shares), shares)
    prices = np.round(np.exp(state["log_open"][..., None] + path.astype(np.float64)), 2)  # as _to_frame rounds
    prices[..., 0] = np.round(np.exp(state["log_open"]), 2)
    days, names = len(wanted), len(state["symbols"])
    prices[np.arange(days)[:, None], np.arange(names)[None, :], lengths[:, None]] = np.round(np.exp(state["log_close"]), 2)
    inside = np.broadcast_to((np.arange(MINUTES)[None, :] < lengths[:, None])[:, None, :], volume.shape)
    starts = np.array(opens, dtype="datetime64[us]")[:, None] + np.arange(MINUTES)[None, :].astype("timedelta64[m]")
    frame = pl.DataFrame({
        "symbol": np.broadcast_to(np.array(state["symbols"])[None, :, None], volume.shape).ravel(),
        "time": np.broadcast_to(starts[:, None, :], volume.shape).ravel(),
        "open": prices[..., :-1].ravel(),
        "high": np.maximum(prices[..., :-1], prices[..., 1:]).ravel(),
        "low": np.minimum(prices[..., :-1], prices[..., 1:]).ravel(),
        "close": prices[..., 1:].ravel(),
        "volume": volume.astype(np.float64).ravel(),
        "session": np.broadcast_to(np.array(wanted, dtype="datetime64[D]")[:, None, None], volume.shape).ravel(),
        "_inside": inside.ravel(),
    })
    return (
        frame.filter(pl.col("_inside")).drop("_inside")
        .with_columns(pl.col("time").dt.replace_time_zone("UTC"), pl.col("session").cast(pl.Date))
        .sort("symbol", "time")
    )


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
