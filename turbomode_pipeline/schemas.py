"""The warehouse's tables: a pandera (polars) model and the DuckDB DDL for each.

The pandera models are the structural contract (columns, types, nulls); the semantic rules
with messages that name symbol, session and rule live in `core/bar_rules.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pandera.polars as pa
import polars as pl


class DailyBars(pa.DataFrameModel):
    session: date
    symbol: str = pa.Field(str_length={"min_value": 1})
    sector: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float = pa.Field(nullable=True)
    trade_count: int = pa.Field(nullable=True)
    source: str
    ingested_at: datetime

    class Config:
        strict = True
        coerce = True


@dataclass(frozen=True)
class Table:
    name: str
    ddl: str
    partition_column: str
    key_columns: tuple[str, ...]
    stamp_column: str | None = None  # kept when a re-written row's values are unchanged


DAILY_BARS = Table(
    name="daily_bars",
    ddl="""
    CREATE TABLE IF NOT EXISTS daily_bars (
        session DATE NOT NULL,
        symbol VARCHAR NOT NULL,
        sector VARCHAR NOT NULL,
        open DOUBLE NOT NULL,
        high DOUBLE NOT NULL,
        low DOUBLE NOT NULL,
        close DOUBLE NOT NULL,
        volume DOUBLE NOT NULL,
        vwap DOUBLE,
        trade_count BIGINT,
        source VARCHAR NOT NULL,
        ingested_at TIMESTAMP WITH TIME ZONE NOT NULL,
        PRIMARY KEY (session, symbol)
    )""",
    partition_column="session",
    key_columns=("session", "symbol"),
    stamp_column="ingested_at",
)


def conform(frame: pl.DataFrame, model: type[pa.DataFrameModel]) -> pl.DataFrame:
    """`frame` validated by `model` (lazily: every failure at once) with columns in model order."""
    validated = model.validate(frame, lazy=True)
    return validated.select(list(model.to_schema().columns))
