"""Data rules: each finds its violations as rows (session, symbol, detail) so that a failure
names the symbol, the session and the rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    blocking: bool
    find: Callable[..., pl.DataFrame]  # (frame, **context) -> violations


def violations(frame: pl.DataFrame, detail: pl.Expr) -> pl.DataFrame:
    """The rows of `frame` as violations: session, symbol and a detail string."""
    return frame.select("session", "symbol", detail.alias("detail")).sort("session", "symbol")


def describe(rule: Rule, found: pl.DataFrame, limit: int = 10) -> str:
    """A human message: the rule and its first violations, each naming symbol and session."""
    if found.is_empty():
        return f"{rule.name}: passed ({rule.description})"
    lines = [
        f"{row['symbol'] + ' ' if row['symbol'] else ''}{row['session']}: {row['detail']}"
        for row in found.head(limit).iter_rows(named=True)
    ]
    more = f" (first {limit} shown)" if found.height > limit else ""
    return f"{rule.name} failed, {found.height} violation(s){more}: " + "; ".join(lines)


def describe_schema_failures(frame: pl.DataFrame, cases: pl.DataFrame, limit: int = 10) -> str:
    """pandera's failure cases as sentences that name the row's symbol and session, the column and the rule.

    `cases` has pandera's columns (failure_case, column, check, index); `index` is the row of `frame`
    (null for a finding about a whole column, such as a missing column or a wrong type).
    """
    names = [c for c in ("symbol", "session", "week_ending", "sector") if c in frame.columns][:2]
    rows = frame.select(names).with_row_index("index").with_columns(pl.col(names).cast(pl.String))
    cases = cases.with_columns(
        pl.col("index").cast(pl.UInt32), pl.col("failure_case").cast(pl.String).fill_null("null"),
        pl.col("column", "check").cast(pl.String).fill_null(""),
    ).join(rows, on="index", how="left")
    where = pl.concat_str([pl.col(n) for n in names], separator=" ", ignore_nulls=True) if names else pl.lit("")
    lines = cases.select(
        pl.when(pl.col("index").is_null())
        .then(pl.format("column {}: {} ({})", "column", "check", "failure_case"))
        .otherwise(pl.format("{}: {}={} fails {}", where, "column", "failure_case", "check"))
        .alias("line")
    )["line"]
    more = f" (first {limit} shown)" if lines.len() > limit else ""
    return f"{lines.len()} violation(s){more}: " + "; ".join(lines.head(limit).to_list())
