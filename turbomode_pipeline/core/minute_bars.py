"""The simulated market's minutes: a fair random walk from the open to the close.

core/market_sim.py simulates each session's overnight gap and its open-to-close return, and
this module fills in the minutes between them. Every component of the day's return (the
market, the stock's sector, its own shock) is conditionally Gaussian given its volatility, and
its intraday part is laid out as a Brownian bridge from 0 to that part with the same per-minute
variance. A Brownian bridge whose end point is an independent Gaussian of the bridge's total
variance is exactly a Gaussian random walk, so the minutes are a martingale: given the path so
far, the expected rest of the day is the daily model's predictable part (its drift, and at
predictability > 0 the planted reversal and momentum), spread evenly over the session's minutes;
nothing in the path's shape tells where the day ends. (The old design bridged through the
day's high and low at random minutes, so the path drifted towards a known extreme: breakout
strategies had Sharpe 5-11 on a pure random walk.)

Daily bars are the exact aggregate of these minutes: the daily simulation draws the same minute
noise for the sessions it returns and takes the high, low and volume from it. The noise of
(symbol, session) comes from the stream (seed, symbol, block of NOISE_BLOCK sessions counted from
SIM_EPOCH), so a session's minutes never change once simulated and one session alone equals the
same session inside ten years.
"""

from __future__ import annotations

import zlib
from functools import cache

import numpy as np

MINUTE_COLUMNS = ("symbol", "time", "open", "high", "low", "close", "volume")
MINUTES = 390  # a full NYSE session; early closes use the first minutes of the row
SEGMENT, SEGMENTS = 30, 13  # volume is set half-hour by half-hour
NOISE_BLOCK = 64  # sessions per minute-noise stream: one session alone draws at most 64 x 390 normals per name


@cache
def _normal_quantiles() -> np.ndarray:
    """The standard normal's 65,536 mid-quantiles (float32), rescaled to unit variance.

    A minute's noise is one of these, picked by 16 random bits: ten times cheaper than
    numpy's Gaussian sampler, which dominated a ten-year daily simulation. The table is
    Gaussian to its 1/131072 quantiles (|z| < 4.3) and spaced 1e-4 apart near 0; the inverse
    CDF is Acklam's rational approximation (relative error < 1.2e-9)."""
    p = (np.arange(1 << 16) + 0.5) / (1 << 16)
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    q = np.minimum(p, 1 - p)
    tail = np.sqrt(-2 * np.log(q))
    tails = (((((c[0] * tail + c[1]) * tail + c[2]) * tail + c[3]) * tail + c[4]) * tail + c[5]) / (
        (((d[0] * tail + d[1]) * tail + d[2]) * tail + d[3]) * tail + 1
    )
    tails = np.where(p < 0.5, tails, -tails)
    r = (p - 0.5) ** 2
    central = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * (p - 0.5) / (
        ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1
    )
    z = np.where(q < 0.02425, tails, central)
    return (z / np.sqrt(np.mean(z**2))).astype(np.float32)


def minute_noise(seed: int, names: list[str], rows: np.ndarray) -> np.ndarray:
    """Standard normals (float32), shape (len(rows), len(names), MINUTES): grid row r of a name
    is row r % NOISE_BLOCK of the stream (seed, name, r // NOISE_BLOCK)."""
    out = np.empty((len(rows), len(names), MINUTES), dtype=np.float32)
    quantiles = _normal_quantiles()
    blocks = rows // NOISE_BLOCK
    words = -(-MINUTES // 4)  # 16 bits a minute, whole 64-bit words a session
    for block in np.unique(blocks):
        at = np.flatnonzero(blocks == block)
        offsets = rows[at] % NOISE_BLOCK
        depth = int(offsets.max()) + 1  # a prefix of the block's stream: the same draws whatever is asked
        in_order = len(at) == depth and (offsets == np.arange(depth)).all() and (np.diff(at) == 1).all()
        for j, name in enumerate(names):
            bits = np.random.PCG64([seed, zlib.crc32(name.encode()), 3, int(block)]).random_raw(depth * words)
            picks = bits.view(np.uint16).reshape(depth, 4 * words)[:, :MINUTES]
            if in_order:  # the common case (a run of sessions): gather straight into place
                np.take(quantiles, picks, out=out[at[0] : at[-1] + 1, j], mode="clip")
            else:
                out[at, j] = quantiles[picks[offsets]]
    return out


def intraday_paths(increments: np.ndarray, move: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Log price relative to the open at minute 0..MINUTES (float32, rows x names x MINUTES + 1).

    `increments` (overwritten) are the unconditioned random walk's minute steps, `move` (rows x
    names) the session's open-to-close log return and `lengths` (rows) its minutes. The walk is
    bridged to `move` at the row's last minute (each step less the walk's excess over `move`
    spread evenly); past an early close the path stays at its last inside minute, so a row's
    maximum over minutes 1..MINUTES-1 is its maximum inside the session."""
    rows, names, _ = increments.shape
    early = np.unique(lengths[lengths < MINUTES])  # a handful of sessions a year
    for length in early:
        increments[lengths == length, :, length:] = 0
    excess = (increments.sum(axis=2) - move) / lengths[:, None]
    increments -= excess.astype(np.float32)[..., None]
    path = np.zeros((rows, names, MINUTES + 1), dtype=np.float32)
    np.cumsum(increments, axis=2, out=path[..., 1:])
    for length in early:
        short = lengths == length
        path[short, :, length:] = path[short, :, length - 1 : length]
    return path


def volume_shape(lengths: np.ndarray) -> np.ndarray:
    """U-shaped share of a session's volume by minute (rows x MINUTES), zero past an early close."""
    minute = np.arange(MINUTES)[None, :]
    inside = minute < lengths[:, None]
    weights = np.where(inside, 1.5 + np.cos(2 * np.pi * minute / np.maximum(lengths[:, None] - 1, 1)), 0.0)
    return weights / weights.sum(axis=1, keepdims=True)


def segment_volumes(path: np.ndarray, gap: np.ndarray, day_vol: np.ndarray, day_sd: np.ndarray, base: np.ndarray,
                    shape: np.ndarray) -> np.ndarray:
    """Whole-share volume of each half-hour of the session (rows x names x SEGMENTS).

    A half-hour trades its U-shaped share of the day's base volume, more the further the price
    stands from the last close at the half-hour's start and the more volatile the day (volatility
    the minutes show anyway). Causal: nothing in a half-hour's volume depends on where the price
    goes after it starts, so volume tells the minutes nothing about the day's direction."""
    knots = path[..., 0 : SEGMENTS * SEGMENT : SEGMENT].astype(np.float64)
    moved = (np.abs(gap[..., None] + knots) + 0.3 * day_sd[..., None]) / day_vol[..., None]
    weights = shape.reshape(len(shape), SEGMENTS, SEGMENT).sum(axis=2)[:, None, :]
    return np.round(base[..., None] * weights * np.exp(0.9 * np.minimum(moved, 6.0)))


def minute_volumes(segments: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Whole-share volume of each minute (rows x names x MINUTES): each half-hour's volume by the
    U-shape, its rounding remainder in the half-hour's last minute, so minutes add up exactly."""
    rows = len(shape)
    weights = shape.reshape(rows, SEGMENTS, SEGMENT)
    share = weights / np.maximum(weights.sum(axis=2, keepdims=True), 1e-300)
    minutes = np.floor(segments[..., None] * share[:, None, :, :])  # rows x names x SEGMENTS x SEGMENT
    lengths = (shape > 0).sum(axis=1)[:, None]
    first = np.arange(SEGMENTS)[None, :] * SEGMENT
    last = np.where(first + SEGMENT - 1 < lengths, first + SEGMENT - 1, np.where(first < lengths, lengths - 1, first)) - first
    index = np.broadcast_to(last[:, None, :, None], (*segments.shape, 1))
    rest = (segments - minutes.sum(axis=3))[..., None]
    np.put_along_axis(minutes, index, np.take_along_axis(minutes, index, axis=3) + rest, axis=3)
    return minutes.reshape(*segments.shape[:2], MINUTES)
