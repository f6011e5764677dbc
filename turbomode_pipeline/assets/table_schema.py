"""A warehouse table as the Dagster UI shows it: its name and its columns, read off the pandera
model that validates every write (`schemas.py`), so the UI can never list a column the table lacks."""

from __future__ import annotations

from dagster import TableColumn, TableColumnConstraints, TableConstraints, TableSchema

from turbomode_pipeline.schemas import FINITE


def _rule(check) -> str:
    if check.error == FINITE:
        return "finite"
    shown = ", ".join(f"{name}={value!r}" for name, value in (check.statistics or {}).items() if value is not None)
    return f"{check.name}({shown})" if shown else check.name


def _rules(column) -> list[str]:
    floats = str(column.dtype).startswith("Float")  # FiniteModel's frame-wide check binds floats only
    return [_rule(check) for check in column.checks if check.error != FINITE or floats]


def column_schema(model) -> TableSchema:
    """The `dagster/column_schema` of a pandera model (or schema): type, nullability and checks of each column."""
    schema = model.to_schema() if hasattr(model, "to_schema") else model
    columns = [
        TableColumn(
            name=name, type=str(column.dtype), description=column.description,
            constraints=TableColumnConstraints(nullable=column.nullable, unique=column.unique, other=_rules(column)),
        )
        for name, column in schema.columns.items()
    ]
    unique = schema.unique
    return TableSchema(columns=columns, constraints=TableConstraints(other=[f"unique ({', '.join(unique)})"]) if unique else None)


def table_metadata(table: str, model) -> dict:
    """The asset metadata that names its warehouse table and that table's columns."""
    return {"dagster/table_name": f"warehouse.{table}", "dagster/column_schema": column_schema(model)}
