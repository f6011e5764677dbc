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


def load_universe(path: Path) -> pl.DataFrame:
    """Columns symbol, name, sector, sorted by symbol; fails naming the offending rows."""
    frame = pl.read_csv(path, schema_overrides={"symbol": pl.String, "name": pl.String, "sector": pl.String})
    missing = {"symbol", "name", "sector"} - set(frame.columns)
    if missing:
        raise UniverseError(f"{path}: missing column(s) {sorted(missing)}")
    frame = frame.select(pl.col("symbol").str.strip_chars().str.to_uppercase(), "name", pl.col("sector").str.strip_chars())
    duplicated = frame.filter(pl.col("symbol").is_duplicated())["symbol"].unique().sort().to_list()
    if duplicated:
        raise UniverseError(f"{path}: duplicate symbol(s) {duplicated}")
    unknown = frame.filter(~pl.col("sector").is_in(GICS_SECTORS))
    if unknown.height:
        pairs = [f"{r['symbol']}: {r['sector']!r}" for r in unknown.head(5).iter_rows(named=True)]
        raise UniverseError(f"{path}: unknown sector for {', '.join(pairs)}; known sectors are {', '.join(GICS_SECTORS)}")
    empty = frame.filter((pl.col("symbol") == "") | pl.col("symbol").is_null())
    if empty.height:
        raise UniverseError(f"{path}: {empty.height} row(s) without a symbol")
    return frame.sort("symbol")
