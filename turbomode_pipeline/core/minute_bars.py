"""Simulated one-minute bars that add up exactly to the simulated daily bars.

Each (symbol, session) gets its own seeded stream, so a session's minutes never change
once simulated. The price path is a piecewise Brownian bridge through four knots: the
open at the first minute, the day's high and low at two random minutes, and the close
at the last. Clipped to [low, high], the path touches both extremes exactly, so the
minutes' first open, highest high, lowest low and last close are the daily bar's.
"""

from __future__ import annotations

import zlib
from datetime import datetime

import numpy as np
import polars as pl

MINUTE_COLUMNS = ("symbol", "time", "open", "high", "low", "close", "volume")


def _knot_draws(seed: int, symbols: list[str], sessions: list, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per (symbol, session) stream: two knot fractions and `steps` normal increments."""
    fractions = np.empty((len(symbols), 2))
    noise = np.empty((len(symbols), steps))
    for i, (symbol, session) in enumerate(zip(symbols, sessions, strict=True)):  # one stream per bar keeps it stable
        rng = np.random.default_rng([seed, zlib.crc32(symbol.encode()), session.toordinal(), 2])
        fractions[i] = rng.uniform(0.02, 0.98, 2)
        noise[i] = rng.standard_normal(steps)
    return fractions, noise


def _bridge(knot_t: np.ndarray, knot_v: np.ndarray, noise: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Path at 0..N through the sorted knots (rows x 4), Brownian between them."""
    steps = noise.shape[1]
    walk = np.hstack([np.zeros((noise.shape[0], 1)), np.cumsum(noise, axis=1)]) * sigma[:, None]
    t = np.arange(steps + 1)[None, :]
    segment = (t >= knot_t[:, 1:2]).astype(int) + (t >= knot_t[:, 2:3]) + (t >= knot_t[:, 3:4])
    segment = np.minimum(segment, 2)
    a_t, b_t = np.take_along_axis(knot_t, segment, 1), np.take_along_axis(knot_t, segment + 1, 1)
    a_v, b_v = np.take_along_axis(knot_v, segment, 1), np.take_along_axis(knot_v, segment + 1, 1)
    w_a = np.take_along_axis(walk, a_t.astype(int), 1)
    w_b = np.take_along_axis(walk, b_t.astype(int), 1)
    share = (t - a_t) / np.maximum(b_t - a_t, 1)
    return a_v + share * (b_v - a_v) + (walk - w_a) - share * (w_b - w_a)


def simulate_minute_bars(daily: pl.DataFrame, opens: list[datetime], minutes: list[int], *, seed: int) -> pl.DataFrame:
    """Minute bars for every row of `daily` (symbol, session, open, high, low, close, volume).

    `opens[i]` / `minutes[i]` are the opening time (UTC) and length in minutes of row i's
    session (early closes are shorter). Returns symbol, time (bar start, UTC), OHLCV.
    """
    if daily.is_empty():
        return pl.DataFrame(schema={"symbol": pl.String, "time": pl.Datetime("us", "UTC"), **{c: pl.Float64 for c in MINUTE_COLUMNS[2:]}})
    steps = max(minutes)
    lengths = np.array(minutes)
    o, h, lo, c, v = (daily[name].to_numpy() for name in ("open", "high", "low", "close", "volume"))
    fractions, noise = _knot_draws(seed, daily["symbol"].to_list(), daily["session"].to_list(), steps)
    knot_times = np.round(fractions * (lengths[:, None] - 4)).astype(int) + 1  # in [1, length - 3]
    high_first = knot_times[:, 0] <= knot_times[:, 1]
    t_high = np.where(high_first, knot_times[:, 0], knot_times[:, 1] + 1)
    t_low = np.where(high_first, knot_times[:, 1] + 1, knot_times[:, 0])
    knot_t = np.column_stack([np.zeros_like(lengths), np.minimum(t_high, t_low), np.maximum(t_high, t_low), lengths])
    first_v, second_v = np.where(high_first, h, lo), np.where(high_first, lo, h)
    knot_v = np.column_stack([o, first_v, second_v, c])
    sigma = (h - lo) / np.sqrt(lengths) / 3
    path = np.clip(np.round(_bridge(knot_t.astype(float), knot_v, noise, sigma), 2), lo[:, None], h[:, None])
    inside = np.arange(steps)[None, :] < lengths[:, None]
    weights = np.where(inside, 1.5 + np.cos(np.linspace(0, 2 * np.pi, steps))[None, :], 0.0)  # U-shaped volume
    volume = np.floor(v[:, None] * weights / weights.sum(axis=1, keepdims=True))
    volume[np.arange(len(v)), lengths - 1] += v - volume.sum(axis=1)
    starts = np.array(opens, dtype="datetime64[us]")[:, None] + np.arange(steps)[None, :].astype("timedelta64[m]")
    frame = pl.DataFrame(
        {
            "symbol": np.repeat(daily["symbol"].to_numpy(), steps),
            "time": starts.ravel(),
            "open": path[:, :-1].ravel(),
            "high": np.maximum(path[:, :-1], path[:, 1:]).ravel(),
            "low": np.minimum(path[:, :-1], path[:, 1:]).ravel(),
            "close": path[:, 1:].ravel(),
            "volume": volume.ravel(),
            "_inside": inside.ravel(),
        }
    )
    return (
        frame.filter(pl.col("_inside"))
        .drop("_inside")
        .with_columns(pl.col("time").dt.replace_time_zone("UTC"))
        .sort("symbol", "time")
    )
