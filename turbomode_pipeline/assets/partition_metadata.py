"""Metadata that is true for each partition of a range run.

A single-run backfill materialises many partitions in one step; whatever the step returns in its
MaterializeResult is copied onto every one of them (partition 2026-11-30 of daily_bars said
181,500 rows: the whole range's). Numbers that belong to one partition are attached to it alone
with `context.add_asset_metadata(..., partition_key=...)`; the run's own totals go to the run's log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import polars as pl
from dagster import AssetExecutionContext

SIGNIFICANT_DIGITS = 4
# Dagster checks each add_asset_metadata partition key against the whole range (quadratic: a
# ten-year range run of a no-op asset took 49.7 s instead of 20.8 s), so beyond a year of
# partitions each gets no per-partition numbers at all (never the run's, which would be false);
# the run's log holds its totals, and the warehouse each session's.
PER_PARTITION_LIMIT = 260


def readable(value):
    """Floats rounded to 4 significant digits (NaN and infinities kept); everything else as is."""
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return value


def attach(context: AssetExecutionContext, per_partition: pl.DataFrame, partitions: Iterable[str] | None = None,
           missing: dict | None = None) -> None:
    """Each row of `per_partition` (a `partition` key column, then one column per metadata entry)
    onto its own partition; partitions of `partitions` with no row get `missing` (e.g. zero rows)."""
    if len(context.partition_keys) > PER_PARTITION_LIMIT:
        context.log.info(f"{len(context.partition_keys)} partitions: no per-partition metadata beyond "
                         f"{PER_PARTITION_LIMIT} (Dagster's cost grows with the square of the range)")
        return
    rows = {row.pop("partition"): row for row in per_partition.iter_rows(named=True)}
    for key in partitions if partitions is not None else list(rows):
        values = rows.get(key, missing)
        if values is not None:  # one metadata event per partition, not a loop over data rows
            context.add_asset_metadata({name: readable(value) for name, value in values.items()}, partition_key=key)


def by_session(frame: pl.DataFrame, **metrics: pl.Expr) -> pl.DataFrame:
    """`partition` (the session as its key) and the metrics, aggregated per session of `frame`."""
    return frame.group_by("session").agg(**metrics).select(pl.col("session").cast(pl.String).alias("partition"),
                                                          *metrics)


def log_run(context: AssetExecutionContext, what: str, **totals) -> None:
    """The run's own numbers, for the run's log only (they are no partition's)."""
    if len(context.partition_keys) > 1:
        shown = ", ".join(f"{name} {readable(value)}" for name, value in totals.items())
        context.log.info(f"{what}, whole run over {context.partition_keys[0]}..{context.partition_keys[-1]}: {shown}")
