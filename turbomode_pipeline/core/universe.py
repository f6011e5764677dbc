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
# Optional, per symbol: the first and the last session it trades (ISO dates; empty = always). A
# symbol is expected in a session only while it is listed, so a listing or a delisting is no gap.
LISTING_COLUMNS = ("listed_from", "listed_until")


def _lines(frame: pl.DataFrame, detail: pl.Expr, limit: int = 5) -> str:
    """'line 3 AAPL ...; line 7 ...': the offending rows by their line in the file (the header is line 1)."""
    shown = frame.head(limit).select(pl.format("line {} {}", pl.col("line"), detail).alias("text"))["text"]
    more = f" and {frame.height - limit} more" if frame.height > limit else ""
    return "; ".join(shown.to_list()) + more


def load_universe(path: Path) -> pl.DataFrame:
    """Columns symbol, name, sector, listed_from, listed_until (dates, null = always listed),
    sorted by symbol; fails naming the file, the offending lines and the rule."""
    if not Path(path).read_text().strip():
        raise UniverseError(f"{path}: empty file: expected the header symbol,name,sector and one row per stock")
    try:
        frame = pl.read_csv(path, schema_overrides={c: pl.String for c in (*REQUIRED_COLUMNS, *LISTING_COLUMNS)})
    except pl.exceptions.PolarsError as error:
        raise UniverseError(f"{path}: not a readable CSV: {error}") from None
    missing = set(REQUIRED_COLUMNS) - set(frame.columns)
    if missing:
        raise UniverseError(f"{path}: missing column(s) {sorted(missing)}")
    if frame.is_empty():
        raise UniverseError(f"{path}: header only: no stock rows after line 1")
    listing = [
        (pl.col(c).str.strip_chars() if c in frame.columns else pl.lit(None, dtype=pl.String)).alias(c)
        for c in LISTING_COLUMNS
    ]
    frame = frame.select(
        pl.col("symbol").str.strip_chars().str.to_uppercase(), "name", pl.col("sector").str.strip_chars(), *listing
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
    return _listing_dates(path, frame).drop("line").sort("symbol")


def _listing_dates(path: Path, frame: pl.DataFrame) -> pl.DataFrame:
    """listed_from / listed_until parsed as dates; fails naming the line and the value."""
    parsed = frame.with_columns(
        pl.col(c).replace("", None).str.to_date("%Y-%m-%d", strict=False).alias(f"_{c}") for c in LISTING_COLUMNS
    )
    for column in LISTING_COLUMNS:
        bad = parsed.filter(pl.col(column).replace("", None).is_not_null() & pl.col(f"_{column}").is_null())
        if bad.height:
            detail = pl.format("{} {}='{}'", pl.col("symbol"), pl.lit(column), pl.col(column))
            raise UniverseError(f"{path}: {column} is not a date YYYY-MM-DD: {_lines(bad, detail)}")
    reversed_ = parsed.filter(pl.col("_listed_from") > pl.col("_listed_until"))
    if reversed_.height:
        detail = pl.format("{} listed_from {} is after listed_until {}", "symbol", "listed_from", "listed_until")
        raise UniverseError(f"{path}: listing ends before it starts: {_lines(reversed_, detail)}")
    return parsed.drop(LISTING_COLUMNS).rename({f"_{c}": c for c in LISTING_COLUMNS})
