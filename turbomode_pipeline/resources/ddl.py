"""DuckDB `CREATE TABLE` statements generated from the pandera (polars) models, so a table is declared once.

Columns come in the model's order with its dtypes; a column the model does not mark nullable is NOT NULL.
The generated statements match the hand-written DDL they replace column for column, so warehouse files
written before keep working (`CREATE TABLE IF NOT EXISTS` leaves an existing table as it is).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

# Every timestamp the warehouse stores is an instant (UTC or the exchange's zone): TIMESTAMPTZ.
_DUCKDB_TYPES = {
    pl.Date: "DATE",
    pl.String: "VARCHAR",
    pl.Float64: "DOUBLE",
    pl.Int8: "TINYINT",
    pl.Int32: "INTEGER",
    pl.Int64: "BIGINT",
    pl.Boolean: "BOOLEAN",
    pl.Datetime: "TIMESTAMP WITH TIME ZONE",
}


def duckdb_type(dtype: pl.DataType) -> str:
    for kind, name in _DUCKDB_TYPES.items():
        if dtype == kind or dtype.base_type() == kind:
            return name
    raise TypeError(f"no DuckDB type for the polars dtype {dtype}: add it to resources/ddl.py")


def _schema(model):
    """A pandera schema from a model class or a schema itself."""
    return model.to_schema() if hasattr(model, "to_schema") else model


def column_definitions(model) -> list[tuple[str, str, bool]]:
    """(name, DuckDB type, nullable) of each of the model's columns, in its order."""
    return [
        (name, duckdb_type(column.dtype.type), bool(column.nullable))
        for name, column in _schema(model).columns.items()
    ]


def create_table(name: str, model, primary_key: Sequence[str]) -> str:
    """`CREATE TABLE IF NOT EXISTS name (...)` for the model's columns, with `primary_key`."""
    columns = [
        f"{column} {kind}" + ("" if nullable else " NOT NULL") for column, kind, nullable in column_definitions(model)
    ]
    body = ",\n    ".join([*columns, f"PRIMARY KEY ({', '.join(primary_key)})"])
    return f"CREATE TABLE IF NOT EXISTS {name} (\n    {body}\n)"
