"""Triple-barrier outcomes: the labelled history the models learn from ("backtest data").

For each (symbol, session d): entry at d's close; upper barrier entry + k_up x ATR(14),
lower barrier entry - k_dn x ATR(14); horizon H sessions. Walking forward through sessions
d+1 .. d+H with each day's high and low, the first barrier touched ends the trade:
- upper first: barrier 'upper', label 1, exit at the barrier (or the open, if the day
  gapped above it);
- lower first: barrier 'lower', label 0, exit at the barrier (or the open, if it gapped
  below). When one day touches both, the stop (lower) counts first: the conservative
  reading, since daily bars cannot tell which came first;
- neither within H sessions: barrier 'time', exit at the close of d+H, and the label is the
  sign of that return (1 if it is positive, else 0), so every sample has a binary label
  "the trade went up".
`t1` is the exit session, `days_held` the sessions from entry to exit. Vectorised over
symbols and sessions with one shifted column per step of the horizon.

The sector-relative label the models learn by default (`beats_sector`): 1 when the symbol's
close-to-close return over the H sessions after entry (`fwd_ret`) is above the median of its
sector's symbols' returns from the same entry session, else 0. It says which stocks the desk
should prefer inside a sector, whatever the market and the sector did; the triple-barrier
outcome still defines the trade (its target, stop and grading).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from turbomode_pipeline.core.rules import Rule, violations

col = pl.col


@dataclass(frozen=True)
class Barriers:
    k_up: float = 2.0
    k_dn: float = 2.0
    horizon: int = 10


def triple_barrier(bars: pl.DataFrame, atr: pl.DataFrame, barriers: Barriers = Barriers()) -> pl.DataFrame:
    """Outcomes for every (session, symbol) of `atr` (session, symbol, atr_14) that has `horizon` later bars.

    `bars` (session, symbol, open, high, low, close) must hold each symbol's bars from the
    entry session through `horizon` sessions after the last one to label.
    """
    h = barriers.horizon
    frame = (
        bars.select("session", "symbol", "sector", "open", "high", "low", "close")
        .sort("symbol", "session")
        .join(atr.select("session", "symbol", "atr_14"), on=["session", "symbol"], how="left")
        .with_columns(
            entry=col("close"),
            upper=col("close") + barriers.k_up * col("atr_14"),
            lower=col("close") - barriers.k_dn * col("atr_14"),
        )
    )
    ahead = lambda name, k: col(name).shift(-k).over("symbol")  # noqa: E731
    steps = range(1, h + 1)
    first_up = pl.min_horizontal(pl.when(ahead("high", k) >= col("upper")).then(k) for k in steps)
    first_dn = pl.min_horizontal(pl.when(ahead("low", k) <= col("lower")).then(k) for k in steps)
    frame = frame.with_columns(
        _has_horizon=ahead("session", h).is_not_null() & col("atr_14").is_not_null(),
        _first_up=first_up,
        _first_dn=first_dn,
    )
    stopped = col("_first_dn").is_not_null() & (col("_first_up").is_null() | (col("_first_dn") <= col("_first_up")))
    hit_upper = col("_first_up").is_not_null() & ~stopped
    days_held = pl.when(stopped).then(col("_first_dn")).when(hit_upper).then(col("_first_up")).otherwise(h)
    frame = frame.with_columns(
        barrier=pl.when(stopped).then(pl.lit("lower")).when(hit_upper).then(pl.lit("upper")).otherwise(pl.lit("time")),
        days_held=days_held.cast(pl.Int32),
    )
    at_exit = lambda name: pl.coalesce(  # noqa: E731
        *(pl.when(col("days_held") == k).then(ahead(name, k)) for k in steps)
    )
    exit_price = (
        pl.when(col("barrier") == "upper").then(pl.max_horizontal(col("upper"), at_exit("open")))
        .when(col("barrier") == "lower").then(pl.min_horizontal(col("lower"), at_exit("open")))
        .otherwise(at_exit("close"))
    )
    frame = frame.with_columns(
        t1=at_exit("session"), exit_price=exit_price, fwd_ret=ahead("close", h) / col("close") - 1
    )
    frame = frame.with_columns(ret=col("exit_price") / col("entry") - 1).filter(col("_has_horizon"))
    return frame.with_columns(beats_sector=beats_sector_median(col("fwd_ret"))).select(
        "session", "symbol", "sector", "entry", "atr_14", "upper", "lower", "barrier",
        pl.when(col("barrier") == "upper").then(1).when(col("barrier") == "lower").then(0)
        .otherwise((col("ret") > 0).cast(pl.Int32)).cast(pl.Int8).alias("label"),
        "t1", "exit_price", "ret", "days_held", "fwd_ret", "beats_sector",
    ).sort("session", "symbol")


def without_sector_median(samples: pl.DataFrame) -> pl.DataFrame:
    """The samples without each (session, sector)'s median stock, for learning `beats_sector`.

    With an odd number of stocks the middle one is its sector's median: it neither beats nor
    trails it, and labelled 0 it pulls the base rate to (n - 1) / 2n (2 of 5 stocks = 0.4; 0 for a
    one-stock sector), so a model calibrated to it calls SELL on the whole sector. Without it
    the base rate is one half whatever n is."""
    middle = pl.col("fwd_ret") == pl.col("fwd_ret").median().over("session", "sector")
    return samples.filter(~middle)


def beats_sector_median(forward_return: pl.Expr) -> pl.Expr:
    """1 where the return is above the median of its (session, sector), else 0 (Int8)."""
    return (forward_return > forward_return.median().over("session", "sector")).cast(pl.Int8)


def label_consistency(samples: pl.DataFrame, horizon: int, **_) -> pl.DataFrame:
    """Samples whose barrier, label, exit price and exit session disagree, or held past the `horizon`."""
    bad = samples.filter(
        ((col("barrier") == "upper") & ((col("label") != 1) | (col("exit_price") < col("upper"))))
        | ((col("barrier") == "lower") & ((col("label") != 0) | (col("exit_price") > col("lower"))))
        | (col("t1") <= col("session"))
        | (col("days_held") > horizon)
    )
    return violations(bad, pl.format("barrier={} label={} exit={} t1={}", "barrier", "label", "exit_price", "t1"))


# The checks training_samples passes before it is written; evaluated with the label horizon (`horizon=`).
SAMPLE_RULES = (
    Rule("labels_consistent", "barrier, label, exit price and exit session agree", True, label_consistency),
)
