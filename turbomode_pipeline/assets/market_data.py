"""`daily_bars`: one partition per NYSE session, validated before it reaches the warehouse."""

import warnings
from datetime import UTC, date, datetime

import polars as pl
from dagster import (
    AssetCheckResult,
    BetaWarning,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pandera.errors import SchemaErrors

from turbomode_pipeline.calendar import daily_sessions
from turbomode_pipeline.core.bar_rules import RULES, describe
from turbomode_pipeline.resources.market_data import MarketDataSource
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.schemas import DAILY_BARS, DailyBars, conform

warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)

SCHEMA_CHECK = "bars_match_schema"
FROZEN_LOOKBACK = 4

BAR_CHECKS = [
    AssetCheckSpec(SCHEMA_CHECK, asset="daily_bars", blocking=True, description="columns, types and nulls of daily_bars"),
    *(
        AssetCheckSpec(rule.name, asset="daily_bars", blocking=rule.blocking, description=rule.description)
        for rule in RULES
    ),
]


@asset(
    partitions_def=daily_sessions(),
    backfill_policy=BackfillPolicy.single_run(),
    pool="warehouse",
    check_specs=BAR_CHECKS,
    group_name="market_data",
    kinds={"duckdb", "polars"},
    metadata={"dagster/table_name": "warehouse.daily_bars"},
)
def daily_bars(
    context: AssetExecutionContext, market_data: MarketDataSource, warehouse: Warehouse, universe: Universe
):
    """Daily OHLCV bars for every symbol of the universe, one partition per NYSE session.

    The bars are checked before anything is written: a failed blocking check fails the
    run, stops every downstream asset and leaves the warehouse's previous data untouched.
    """
    sessions = [date.fromisoformat(key) for key in context.partition_keys]
    symbols = universe.load()
    bars = market_data.daily_bars(sessions, symbols).with_columns(ingested_at=pl.lit(datetime.now(UTC)))
    failures = yield from _check(bars, sessions, symbols["symbol"].to_list(), warehouse)
    if failures:
        raise Failure(
            description="daily_bars not written: " + " | ".join(failures),
            metadata={"sessions": f"{sessions[0]}..{sessions[-1]}", "failed_checks": len(failures)},
        )
    rows = warehouse.replace_partitions(DAILY_BARS, conform(bars, DailyBars), sessions)
    yield MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "sessions": len(sessions),
            "first_session": str(sessions[0]),
            "last_session": str(sessions[-1]),
            "symbols": bars["symbol"].n_unique(),
            "source": bars["source"].first() if rows else "none",
            "preview": MetadataValue.md(bars.tail(5).drop("ingested_at").to_pandas().to_markdown(index=False)),
        }
    )


def _check(bars: pl.DataFrame, sessions: list[date], universe: list[str], warehouse: Warehouse):
    """Yield one AssetCheckResult per check; return the messages of failed blocking ones."""
    try:
        DailyBars.validate(bars, lazy=True)
    except SchemaErrors as errors:
        message = f"{SCHEMA_CHECK} failed: {errors.failure_cases.head(10).to_dicts()}"
        yield AssetCheckResult(check_name=SCHEMA_CHECK, passed=False, description=message)
        for rule in RULES:
            yield AssetCheckResult(check_name=rule.name, passed=False, description="not evaluated: schema check failed")
        return [message]
    yield AssetCheckResult(check_name=SCHEMA_CHECK, passed=True)
    prior = _prior_closes(warehouse, sessions[0])
    failures = []
    for rule in RULES:
        violations = rule.find(bars, universe=universe, sessions=sessions, prior=prior)
        message = describe(rule, violations)
        yield AssetCheckResult(
            check_name=rule.name,
            passed=violations.is_empty(),
            severity=AssetCheckSeverity.ERROR if rule.blocking else AssetCheckSeverity.WARN,
            description=message,
            metadata={
                "violations": violations.height,
                "first_violations": MetadataValue.json(violations.head(20).with_columns(pl.col("session").cast(pl.String)).to_dicts()),
            },
        )
        if rule.blocking and not violations.is_empty():
            failures.append(message)
    return failures


def _prior_closes(warehouse: Warehouse, first_session: date) -> pl.DataFrame | None:
    if not warehouse.has_table(DAILY_BARS.name):
        return None
    return warehouse.query(
        """
        SELECT session, symbol, close FROM daily_bars
        WHERE session IN (SELECT DISTINCT session FROM daily_bars WHERE session < ? ORDER BY session DESC LIMIT ?)
        """,
        [first_session, FROZEN_LOOKBACK],
    )
