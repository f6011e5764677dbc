"""daily_bars through a real Dagster instance and a real DuckDB file."""

import re

import polars as pl
import pytest
from dagster import AssetKey, asset

from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline_tests.support import CorruptedSource, materialize_bars, materialized_keys, range_tags, table

DAY = "2024-03-05"


@asset(deps=[daily_bars], partitions_def=daily_bars.partitions_def)
def downstream_of_bars() -> None:
    """Stands for every asset that reads bars: it must not run after a failed blocking check."""




def test_a_partition_lands_in_the_warehouse_with_metadata(resources, instance, warehouse):
    result = materialize_bars(resources, instance, partition_key=DAY)
    assert result.success
    rows = table(warehouse)
    assert rows.height == 44 and rows["session"].cast(pl.String).unique().to_list() == [DAY]
    assert rows.columns == [
        "session", "symbol", "sector", "open", "high", "low", "close", "volume", "vwap", "trade_count", "source",
        "ingested_at",
    ]
    assert rows["source"].unique().to_list() == ["simulated"]
    metadata = result.asset_materializations_for_node("daily_bars")[0].metadata
    assert metadata["dagster/row_count"].value == 44 and metadata["symbols"].value == 44
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "bars_match_schema": True, "ohlc_consistent": True, "prices_positive": True, "volume_non_negative": True,
        "unique_session_symbol": True, "universe_coverage": True, "listed_symbol_halted": True,
        "prices_not_frozen": True,
    }


def test_a_range_is_one_run_that_replaces_exactly_its_partitions(resources, instance, warehouse):
    result = materialize_bars(resources, instance, tags=range_tags("2024-03-01", "2024-03-28"))
    assert result.success
    before = table(warehouse)
    assert before["session"].n_unique() == 20  # March 2024 up to the 28th: 20 sessions, Good Friday is the 29th
    events = result.asset_materializations_for_node("daily_bars")
    assert [e.partition for e in events] == sorted(before["session"].cast(pl.String).unique().to_list())
    # each partition its own numbers (44 rows), not the run's 880
    assert all(e.metadata["dagster/row_count"].value == 44 and e.metadata["symbols"].value == 44 for e in events)
    assert ["preview" in e.metadata for e in events] == [False] * 19 + [True]
    assert len(instance.get_runs()) == 1
    assert materialized_keys(instance) == set(before["session"].cast(pl.String).unique().to_list())

    assert materialize_bars(resources, instance, tags=range_tags("2024-03-11", "2024-03-12")).success
    after = table(warehouse)
    assert after.equals(before)  # content identical, ingested_at included: unchanged rows keep their stamp


def test_rematerialising_with_changed_data_replaces_only_that_partition(resources, instance, warehouse):
    assert materialize_bars(resources, instance, tags=range_tags("2024-03-04", "2024-03-06")).success
    before = table(warehouse)
    changed = dict(resources, market_data=SimulatedMarketData(seed=99))
    assert materialize_bars(changed, instance, partition_key=DAY).success
    after = table(warehouse)
    untouched = pl.col("session").cast(pl.String) != DAY
    assert after.filter(untouched).equals(before.filter(untouched))
    assert not after.filter(~untouched).equals(before.filter(~untouched))
    assert after.filter(~untouched).height == 44


@pytest.mark.parametrize(
    ("damage", "check", "message"),
    [
        ("negative_price", "prices_positive", r"AAPL 2024-03-05: open=.* low=-1\.0"),
        ("high_below_low", "ohlc_consistent", r"AAPL 2024-03-05: open="),
        ("duplicate_row", "unique_session_symbol", r"AAPL 2024-03-05: 2 rows for one \(session, symbol\)"),
        ("missing_30_percent", "universe_coverage", r"2024-03-05: coverage 68\.2% of 44 symbols; missing 14: MSFT, .*, XOM$"),
        ("negative_volume", "volume_non_negative", r"AAPL 2024-03-05: volume=-5\.0"),
    ],
)
def test_bad_bars_fail_the_named_check_and_keep_the_last_good_data(
    resources, instance, warehouse, damage, check, message
):
    assert materialize_bars(resources, instance, partition_key=DAY).success
    good = table(warehouse)

    bad = dict(resources, market_data=CorruptedSource(seed=11, predictability=0.5, damage=damage))
    result = materialize_bars(bad, instance, partition_key=DAY, assets=(daily_bars, downstream_of_bars))

    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [e.check_name for e in failed] == [check]
    assert failed[0].description.startswith(f"{check} failed")
    assert re.search(message, failed[0].description), failed[0].description
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "daily_bars not written" in failure and check in failure
    assert not result.asset_materializations_for_node("downstream_of_bars")
    assert not instance.get_materialized_partitions(AssetKey("downstream_of_bars"))
    assert table(warehouse).equals(good)


def test_frozen_prices_warn_but_do_not_block(resources, instance, warehouse):
    class Frozen(SimulatedMarketData):
        def daily_bars(self, sessions, universe):
            bars = super().daily_bars(sessions, universe)
            return bars.with_columns(
                close=pl.when(pl.col("symbol") == "XOM").then(50.0).otherwise(pl.col("close")),
                open=pl.when(pl.col("symbol") == "XOM").then(50.0).otherwise(pl.col("open")),
                high=pl.when(pl.col("symbol") == "XOM").then(50.0).otherwise(pl.col("high")),
                low=pl.when(pl.col("symbol") == "XOM").then(50.0).otherwise(pl.col("low")),
            )

    frozen = dict(resources, market_data=Frozen(seed=11))
    result = materialize_bars(frozen, instance, tags=range_tags("2024-03-04", "2024-03-08"))
    assert result.success
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "prices_not_frozen")
    assert not evaluation.passed
    assert "XOM 2024-03-08: close 50.0 unchanged for 5 sessions" in evaluation.description
    assert table(warehouse).height == 5 * 44


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [("high", float("inf"), "inf"), ("close", float("-inf"), "-inf"), ("volume", float("inf"), "inf"),
     ("vwap", float("nan"), "NaN")],
)
def test_a_non_finite_number_fails_the_schema_check_naming_symbol_session_and_column(
    resources, instance, warehouse, column, value, shown
):
    """An infinite high passed every rule (inf >= open, close) and was stored: finiteness is now a schema rule."""
    assert materialize_bars(resources, instance, partition_key=DAY).success
    good = table(warehouse)

    class Infinite(SimulatedMarketData):
        def daily_bars(self, sessions, universe):
            bars = super().daily_bars(sessions, universe)
            return bars.with_columns(pl.when(pl.col("symbol") == "KO").then(value).otherwise(pl.col(column)).alias(column))

    result = materialize_bars(dict(resources, market_data=Infinite(seed=11)), instance, partition_key=DAY)

    assert not result.success
    schema = next(e for e in result.get_asset_check_evaluations() if e.check_name == "bars_match_schema")
    assert not schema.passed
    assert schema.description == (
        f"bars_match_schema failed, 1 violation(s): KO 2024-03-05: {column}={shown} fails finite (no NaN, no infinity)"
    )
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert f"daily_bars not written: bars_match_schema failed, 1 violation(s): KO 2024-03-05: {column}={shown}" in failure
    assert table(warehouse).equals(good)
