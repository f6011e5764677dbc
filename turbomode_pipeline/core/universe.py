"""The stock universe: symbol, name and GICS sector, validated on load."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

GICS_SECTORS = (
    "Communication Services",
    "Consumer Discretionary",
    "Consumer Staples",
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Information Technology",
    "Materials",
    "Real Estate",
    "Utilities",
)


def sector_slug(sector: str) -> str:
    """'Information Technology' -> 'information-technology': for partition keys and model names."""
    return re.sub(r"[^a-z0-9]+", "-", sector.lower()).strip("-")


class UniverseError(ValueError):
    """The universe file cannot be used."""


REQUIRED_COLUMNS = ("symbol", "name", "sector")


def _lines(frame: pl.DataFrame, detail: pl.Expr, limit: int = 5) -> str:
    """'line 3 AAPL ...; line 7 ...': the offending rows by their line in the file (the header is line 1)."""
    shown = frame.head(limit).select(pl.format("line {} {}", pl.col("line"), detail).alias("text"))["text"]
    more = f" and {frame.height - limit} more" if frame.height > limit else ""
    return "; ".join(shown.to_list()) + more


def load_universe(path: Path) -> pl.DataFrame:
    """Columns symbol, name, sector, sorted by symbol; fails naming the file, the offending lines and the rule."""
    if not Path(path).read_text().strip():
        raise UniverseError(f"{path}: empty file: expected the header symbol,name,sector and one row per stock")
    try:
        frame = pl.read_csv(path, schema_overrides={c: pl.String for c in REQUIRED_COLUMNS})
    except pl.exceptions.PolarsError as error:
        raise UniverseError(f"{path}: not a readable CSV: {error}") from None
    missing = set(REQUIRED_COLUMNS) - set(frame.columns)
    if missing:
        raise UniverseError(f"{path}: missing column(s) {sorted(missing)}")
    if frame.is_empty():
        raise UniverseError(f"{path}: header only: no stock rows after line 1")
    frame = frame.select(
        pl.col("symbol").str.strip_chars().str.to_uppercase(), "name", pl.col("sector").str.strip_chars()
    ).with_row_index("line", offset=2)
    empty = frame.filter((pl.col("symbol") == "") | pl.col("symbol").is_null())
    if empty.height:
        raise UniverseError(f"{path}: missing symbol: {_lines(empty, pl.lit('has no symbol'))}")
    repeats = frame.filter(pl.col("symbol").is_duplicated()).with_columns(
        first=pl.col("line").min().over("symbol")
    ).filter(pl.col("line") != pl.col("first"))
    if repeats.height:
        detail = pl.format("{} repeats line {}", pl.col("symbol"), pl.col("first"))
        raise UniverseError(f"{path}: duplicate symbol: {_lines(repeats, detail)}")
    unknown = frame.filter(~pl.col("sector").is_in(GICS_SECTORS) | pl.col("sector").is_null())
    if unknown.height:
        detail = pl.format("{} '{}'", pl.col("symbol"), pl.col("sector").fill_null(""))
        raise UniverseError(
            f"{path}: unknown sector: {_lines(unknown, detail)}; known sectors are {', '.join(GICS_SECTORS)}"
        )
    return frame.drop("line").sort("symbol")
