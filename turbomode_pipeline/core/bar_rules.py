"""The rules every batch of daily bars must pass before it reaches the warehouse.

Each rule returns its violations as rows (session, symbol, detail), so a failure can name
the symbol, the session and the rule. All rules are vectorised over the whole batch.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from turbomode_pipeline.core.rules import Rule, violations as _violations

MIN_COVERAGE = 0.98
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


def coverage_gaps(bars: pl.DataFrame, *, universe: list[str], sessions: list[date], **_) -> pl.DataFrame:
    """One row per session whose bars cover less than MIN_COVERAGE of the universe."""
    expected = pl.DataFrame({"session": sessions}, schema={"session": pl.Date}).join(
        pl.DataFrame({"symbol": universe}, schema={"symbol": pl.String}), how="cross"
    )
    missing = expected.join(bars.select("session", "symbol").unique(), on=["session", "symbol"], how="anti")
    per_session = (
        missing.sort("symbol")
        .group_by("session")
        .agg(pl.col("symbol").alias("missing"))
        .with_columns(coverage=1 - pl.col("missing").list.len() / len(universe))
        .filter(pl.col("coverage") < MIN_COVERAGE)
    )
    return per_session.select(
        "session",
        pl.lit(None, dtype=pl.String).alias("symbol"),  # a whole session's finding, not one symbol's
        pl.format(
            "coverage {}% of {} symbols; missing {}: {}",
            (pl.col("coverage") * 100).round(1),
            pl.lit(len(universe)),
            pl.col("missing").list.len(),
            pl.col("missing").list.join(", "),
        ).alias("detail"),
    ).sort("session")


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
    Rule("universe_coverage", f"each session covers at least {MIN_COVERAGE:.0%} of the universe", True, coverage_gaps),
    Rule("prices_not_frozen", f"close changes within {FROZEN_SESSIONS} sessions", False, frozen_closes),
)

