"""The rules every batch of daily bars must pass before it reaches the warehouse.

Each rule returns its violations as rows (session, symbol, detail), so a failure can name
the symbol, the session and the rule. All rules are vectorised over the whole batch.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from turbomode_pipeline.core.rules import Rule, violations as _violations

FROZEN_SESSIONS = 5


def ohlc_inconsistent(bars: pl.DataFrame, **_) -> pl.DataFrame:
    bad = bars.filter(
        (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("low") > pl.col("high"))
    )
    detail = pl.format("open={} high={} low={} close={}", "open", "high", "low", "close")
    return _violations(bad, detail)


def non_positive_prices(bars: pl.DataFrame, **_) -> pl.DataFrame:
    prices = ("open", "high", "low", "close")
    bad = bars.filter(pl.any_horizontal(pl.col(c) <= 0 for c in prices))
    return _violations(bad, pl.format("open={} high={} low={} close={}", *prices))


def negative_volume(bars: pl.DataFrame, **_) -> pl.DataFrame:
    return _violations(bars.filter(pl.col("volume") < 0), pl.format("volume={}", "volume"))


def duplicate_rows(bars: pl.DataFrame, **_) -> pl.DataFrame:
    dupes = bars.group_by("session", "symbol").len().filter(pl.col("len") > 1)
    return _violations(dupes, pl.format("{} rows for one (session, symbol)", "len"))


def expected_bars(universe: pl.DataFrame, sessions: list[date]) -> pl.DataFrame:
    """(session, symbol) of every symbol listed in each session: listed_from <= session <= listed_until."""
    listing = universe.select(
        "symbol",
        *(
            (pl.col(c) if c in universe.columns else pl.lit(None, dtype=pl.Date)).alias(c)
            for c in ("listed_from", "listed_until")
        ),
    )
    return (
        pl.DataFrame({"session": sessions}, schema={"session": pl.Date})
        .join(listing, how="cross")
        .filter(
            (pl.col("listed_from").is_null() | (pl.col("session") >= pl.col("listed_from")))
            & (pl.col("listed_until").is_null() | (pl.col("session") <= pl.col("listed_until")))
        )
        .select("session", "symbol")
    )


def _missing(bars: pl.DataFrame, universe: pl.DataFrame, sessions: list[date]) -> pl.DataFrame:
    """Every listed (session, symbol) without a bar, with `halt`: true when the symbol has a bar in
    the batch's session before and after it (one session missing between two bars) and it is the
    session's only missing symbol (a vendor that loses three symbols one day has not seen three halts)."""
    expected = expected_bars(universe, sessions)
    present = bars.select("session", "symbol").unique().with_columns(has_bar=pl.lit(True))
    grid = (
        expected.join(present, on=["session", "symbol"], how="left")
        .with_columns(pl.col("has_bar").fill_null(False))
        .sort("symbol", "session")
        .with_columns(
            before=pl.col("has_bar").shift(1).over("symbol"),
            after=pl.col("has_bar").shift(-1).over("symbol"),
        )
    )
    return grid.filter(~pl.col("has_bar")).with_columns(
        halt=pl.col("before").fill_null(False) & pl.col("after").fill_null(False) & (pl.len().over("session") == 1)
    ).select("session", "symbol", "halt")


def coverage_gaps(
    bars: pl.DataFrame, *, universe: pl.DataFrame, sessions: list[date], min_coverage: float = 0.98, **_
) -> pl.DataFrame:
    """One row per session whose bars cover less than `min_coverage` of the symbols listed that
    session; a one-session halt (see `halts`) is not counted against it."""
    listed = expected_bars(universe, sessions).group_by("session").agg(listed=pl.len())
    missing = _missing(bars, universe, sessions).filter(~pl.col("halt"))
    per_session = (
        missing.sort("symbol")
        .group_by("session")
        .agg(pl.col("symbol").alias("missing"))
        .join(listed, on="session")
        .with_columns(coverage=1 - pl.col("missing").list.len() / pl.col("listed"))
        .filter(pl.col("coverage") < min_coverage)
    )
    return per_session.select(
        "session",
        pl.lit(None, dtype=pl.String).alias("symbol"),  # a whole session's finding, not one symbol's
        pl.format(  # "of 20 symbols": of the symbols listed that session
            "coverage {}% of {} symbols; missing {}: {}",
            (pl.col("coverage") * 100).round(1),
            pl.col("listed"),
            pl.col("missing").list.len(),
            pl.col("missing").list.join(", "),
        ).alias("detail"),
    ).sort("session")


def halts(bars: pl.DataFrame, *, universe: pl.DataFrame, sessions: list[date], **_) -> pl.DataFrame:
    """A listed symbol missing one session between two of its bars, the only one missing that
    session: a trading halt, most likely. A warning; coverage does not count it."""
    found = _missing(bars, universe, sessions).filter(pl.col("halt"))
    return _violations(found, pl.lit("no bar for one session while listed (a halt?); the sessions around it have bars; not counted against coverage"))


def frozen_closes(bars: pl.DataFrame, *, prior: pl.DataFrame | None = None, **_) -> pl.DataFrame:
    """Bars whose close has not changed for FROZEN_SESSIONS sessions in a row (prior bars included)."""
    history = bars.select("session", "symbol", "close")
    if prior is not None and prior.height:
        history = pl.concat([prior.select("session", "symbol", "close"), history]).unique(["session", "symbol"], keep="last")
    runs = history.sort("symbol", "session").with_columns(
        run=pl.col("close").rle_id().over("symbol"),
    ).with_columns(run_length=pl.int_range(1, pl.len() + 1).over("symbol", "run"))
    frozen = runs.filter(pl.col("run_length") >= FROZEN_SESSIONS).join(
        bars.select("session", "symbol"), on=["session", "symbol"], how="semi"
    )
    return _violations(frozen, pl.format("close {} unchanged for {} sessions", "close", "run_length"))


RULES = (
    Rule("ohlc_consistent", "low <= open, close <= high", True, ohlc_inconsistent),
    Rule("prices_positive", "open, high, low and close > 0", True, non_positive_prices),
    Rule("volume_non_negative", "volume >= 0", True, negative_volume),
    Rule("unique_session_symbol", "one bar per (session, symbol)", True, duplicate_rows),
    Rule(
        "universe_coverage",
        "each session covers at least TURBOMODE_MIN_COVERAGE (default 98%) of the symbols listed that session",
        True, coverage_gaps,
    ),
    Rule("listed_symbol_halted", "a listed symbol misses no single session between two bars", False, halts),
    Rule("prices_not_frozen", f"close changes within {FROZEN_SESSIONS} sessions", False, frozen_closes),
)

