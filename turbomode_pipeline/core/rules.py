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
