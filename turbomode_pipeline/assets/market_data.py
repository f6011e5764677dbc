"""`daily_bars`: one partition per NYSE session, validated before it reaches the warehouse."""

from datetime import date

import polars as pl
from dagster import (
    AssetExecutionContext, AssetMaterialization, BackfillPolicy, Config, Failure, MaterializeResult, MetadataValue, asset,
)
from pydantic import Field

from turbomode_pipeline import clock
from turbomode_pipeline.assets.partition_metadata import attach, by_session, log_run
from turbomode_pipeline.partitions import daily_sessions
from turbomode_pipeline.core.bar_rules import RULES
from turbomode_pipeline.assets.checks import check_specs, evaluate, refuse
from turbomode_pipeline.resources.market_data import MarketDataSource
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.assets.table_schema import table_metadata
from turbomode_pipeline.schemas import DAILY_BARS, DailyBars
from turbomode_pipeline.settings import get_settings

SCHEMA_CHECK = "bars_match_schema"
FROZEN_LOOKBACK = 4



class BarsConfig(Config):
    """The launchpad's coverage floor; its default is TURBOMODE_MIN_COVERAGE of the code location's settings."""

    min_coverage: float = Field(default=get_settings().min_coverage, ge=0.0, le=1.0,
                                description="the share of the session's listed symbols its bars must cover")


@asset(
    partitions_def=daily_sessions(),
    backfill_policy=BackfillPolicy.single_run(),
    pool="warehouse",
    check_specs=check_specs("daily_bars", SCHEMA_CHECK, RULES),
    group_name="market_data",
    kinds={"duckdb", "polars"},
    metadata=table_metadata("daily_bars", DailyBars),
)
def daily_bars(
    context: AssetExecutionContext, config: BarsConfig, market_data: MarketDataSource, warehouse: Warehouse,
    universe: Universe,
):
    """Daily OHLCV bars for every symbol of the universe, one partition per NYSE session.

    The bars are checked before anything is written: a failed blocking check fails the
    run, stops every downstream asset and leaves the warehouse's previous data of the failing
    sessions untouched. In a range run the sessions that pass every blocking check are written
    (and recorded as materialised) before the run fails naming each failing session and its
    rules: one bad day does not throw away ten good years.
    """
    sessions = [date.fromisoformat(key) for key in context.partition_keys]
    symbols = universe.load()
    bars = market_data.daily_bars(sessions, symbols).with_columns(ingested_at=pl.lit(clock.now()))
    validated, failures = yield from evaluate(
        bars, DailyBars, SCHEMA_CHECK, RULES,
        universe=symbols, sessions=sessions, prior=warehouse.closes_before(sessions[0], FROZEN_LOOKBACK),
        min_coverage=config.min_coverage,
    )
    if failures and (failures.sessions is None or set(failures.sessions) >= set(sessions)):
        raise refuse("daily_bars", failures, sessions)
    if failures:
        raise _write_passing(context, warehouse, validated, sessions, failures)
    rows = warehouse.replace_partitions(DAILY_BARS, validated, sessions)
    # each partition its own rows and symbols; the run's totals in its log (see assets/partition_metadata.py)
    attach(context, by_session(bars, **{"dagster/row_count": pl.len(), "symbols": pl.col("symbol").n_unique()}),
           context.partition_keys, missing={"dagster/row_count": 0, "symbols": 0})
    context.add_asset_metadata(
        {"preview": MetadataValue.md(_preview(bars.filter(pl.col("session") == sessions[-1]).tail(5)))},
        partition_key=context.partition_keys[-1],
    )
    log_run(context, "daily_bars", rows=rows, sessions=len(sessions), symbols=bars["symbol"].n_unique())
    yield MaterializeResult(metadata={"source": bars["source"].first() if rows else "none"})


def _preview(bars: pl.DataFrame) -> str:
    """Bars as a trader reads them: prices in cents, volume a whole number (not 2.31634e+06)."""
    readable = bars.drop("ingested_at").with_columns(pl.col("open", "high", "low", "close", "vwap").round(2),
                                                    pl.col("volume").cast(pl.Int64))
    return readable.to_pandas().to_markdown(index=False, floatfmt=".2f")


def _write_passing(context: AssetExecutionContext, warehouse: Warehouse, bars: pl.DataFrame, sessions, failures) -> Failure:
    """Write the sessions of `bars` (validated) that passed, record each as materialised, and return the Failure naming the others."""
    failed = failures.sessions
    passing = [session for session in sessions if session not in failed]
    rows = warehouse.replace_partitions(DAILY_BARS, bars.filter(pl.col("session").is_in(passing)), passing)
    for session in passing:
        context.log_event(AssetMaterialization(asset_key=context.asset_key, partition=session.isoformat()))
    named = "; ".join(f"{session} ({', '.join(rules)})" for session, rules in sorted(failed.items())[:20])
    more = f" and {len(failed) - 20} more" if len(failed) > 20 else ""
    return Failure(
        description=(
            f"daily_bars wrote {len(passing)} of {len(sessions)} sessions ({rows:,} rows); {len(failed)} session(s) not "
            f"written, the warehouse keeps its previous data of them: {named}{more} | " + " | ".join(failures)
        ),
        metadata={
            "written_sessions": len(passing),
            "failed_sessions": MetadataValue.json({str(session): rules for session, rules in sorted(failed.items())}),
        },
    )
