"""daily_features and training_samples through a real Dagster instance and DuckDB file."""

import shutil
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from turbomode_pipeline.assets.features import daily_features, training_samples
from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.calendar import sessions_after, sessions_before
from turbomode_pipeline.core.features import FEATURES, WARMUP
from dagster import instance_for_test

from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline_tests.support import materialize_bars, range_tags, small_universe, table

DAY = date(2024, 6, 3)
FIRST = sessions_before(DAY, 300)[0]
AFTER = sessions_after(DAY, 20)


@pytest.fixture(scope="module")
def bars_template(tmp_path_factory) -> Path:
    """A warehouse holding 320 sessions of bars, materialised once through a real instance."""
    folder = tmp_path_factory.mktemp("bars")
    universe = small_universe(folder)
    resources = {
        "market_data": SimulatedMarketData(seed=11, predictability=0.5),
        "warehouse": Warehouse(path=str(folder / "warehouse.duckdb")),
        "universe": Universe(path=str(universe)),
        "labels": LabelSettings.from_settings(get_settings()),
    }
    with instance_for_test() as instance:
        assert materialize_bars(resources, instance, tags=range_tags(str(FIRST), str(AFTER[-1]))).success
    return folder / "warehouse.duckdb"


@pytest.fixture
def bars_in_warehouse(bars_template, warehouse):
    shutil.copy(bars_template, warehouse.path)


def features_of(warehouse, day: date) -> pl.DataFrame:
    return table(warehouse, f"SELECT * FROM daily_features WHERE session = DATE '{day}' ORDER BY symbol")


def run(assets, resources, instance, **kwargs):
    return materialize_bars(resources, instance, assets=assets, **kwargs)


def test_features_land_with_at_least_30_columns_and_no_late_nulls(bars_in_warehouse, resources, instance, warehouse):
    result = run([daily_features], resources, instance, tags=range_tags(str(sessions_before(DAY, 5)[0]), str(DAY)))
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    rows = features_of(warehouse, DAY)
    assert rows.height == 44 and len(FEATURES) >= 30
    assert rows.select(pl.col(FEATURES).null_count().sum()).row(0) == (0,) * len(FEATURES)
    assert rows["rsi_14"].is_between(0, 100).all()


def test_warmup_is_null_never_zero(resources, instance, warehouse):
    """At the very start of the history each feature is null for exactly its warm-up."""
    start = FIRST
    assert materialize_bars(resources, instance, tags=range_tags(str(start), str(sessions_after(start, 80)[-1]))).success
    assert run([daily_features], resources, instance, tags=range_tags(str(start), str(sessions_after(start, 80)[-1]))).success
    aapl = table(warehouse, "SELECT * FROM daily_features WHERE symbol = 'AAPL' ORDER BY session")
    for name in FEATURES:
        if WARMUP[name] <= 80:
            assert aapl[name].is_not_null().arg_max() == WARMUP[name], name


def test_a_feature_for_day_d_ignores_every_bar_after_d(bars_in_warehouse, resources, instance, warehouse):
    assert run([daily_features], resources, instance, partition_key=str(DAY)).success
    before = features_of(warehouse, DAY)

    altered = dict(resources, market_data=SimulatedMarketData(seed=999))  # another market after d
    assert materialize_bars(altered, instance, tags=range_tags(str(AFTER[0]), str(AFTER[-1]))).success
    with duckdb.connect(warehouse.path) as con:
        con.execute("DELETE FROM daily_bars WHERE session > ?", [AFTER[9]])  # and later bars removed
    assert table(warehouse, "SELECT max(session) AS s FROM daily_bars")["s"][0] == AFTER[9]

    assert run([daily_features], resources, instance, partition_key=str(DAY)).success
    assert features_of(warehouse, DAY).equals(before)


def test_an_injected_infinity_fails_the_check_and_writes_nothing(bars_in_warehouse, resources, instance, warehouse):
    assert run([daily_features], resources, instance, partition_key=str(DAY)).success
    good = features_of(warehouse, DAY)
    with duckdb.connect(warehouse.path) as con:
        con.execute("UPDATE daily_bars SET volume = 'inf'::DOUBLE WHERE symbol = 'XOM' AND session = ?", [DAY])
    result = run([daily_features], resources, instance, partition_key=str(DAY))
    assert not result.success
    failed = {e.check_name: e.description for e in result.get_asset_check_evaluations() if not e.passed}
    assert list(failed) == ["features_finite"]
    assert failed["features_finite"].startswith("features_finite failed, 1 violation(s): XOM 2024-06-03: volume_z_20=")
    assert features_of(warehouse, DAY).equals(good)


def test_training_samples_label_every_symbol_once_the_horizon_exists(bars_in_warehouse, resources, instance, warehouse):
    first, last = sessions_before(DAY, 20)[0], DAY
    result = run([daily_features, training_samples], resources, instance, tags=range_tags(str(first), str(last)))
    assert result.success
    samples = table(warehouse, "SELECT * FROM training_samples ORDER BY session, symbol")
    assert samples.height == 21 * 44
    for asset in ("daily_features", "training_samples"):  # each partition its own 44 rows, not the run's 924
        events = result.asset_materializations_for_node(asset)
        assert len(events) == 21 and all(e.metadata["dagster/row_count"].value == 44 for e in events)
    for event in result.asset_materializations_for_node("training_samples"):
        own = samples.filter(pl.col("session").cast(pl.String) == event.partition)
        assert event.metadata["label_up_share"].value == pytest.approx(own["label"].mean(), rel=1e-3)
        assert sum(event.metadata[f"barrier_{b}"].value for b in ("lower", "time", "upper")) == 44
    assert set(samples["barrier"]) <= {"upper", "lower", "time"}
    assert samples.filter(pl.col("barrier") == "upper")["ret"].min() > 0
    assert samples.filter(pl.col("barrier") == "lower")["ret"].max() < 0
    assert (samples["t1"] > samples["session"]).all() and samples["days_held"].max() <= 10


def test_a_session_without_its_horizon_is_not_materialisable_yet(bars_in_warehouse, resources, instance, warehouse):
    late = AFTER[-3]
    assert run([daily_features], resources, instance, partition_key=str(late)).success
    result = run([training_samples], resources, instance, partition_key=str(late))
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    needs = sessions_after(late, 10)[-1]
    assert f"training_samples {late} is not materialisable yet: its outcome needs bars through {needs}" in message
    assert f"daily_bars ends at {AFTER[-1]}" in message
    assert not warehouse.has_table("training_samples")


def test_features_refuse_sessions_without_bars(resources, instance, warehouse):
    result = run([daily_bars.to_source_asset(), daily_features], resources, instance, partition_key=str(DAY))
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert "Table with name daily_bars does not exist!; materialise the asset that writes it first" in error.cause.message

    assert materialize_bars(resources, instance, partition_key=str(sessions_before(DAY, 1)[0])).success
    result = run([daily_bars.to_source_asset(), daily_features], resources, instance, partition_key=str(DAY))
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "daily_bars has no rows for 1 session(s): 2024-06-03; materialise daily_bars for them first" in message


def test_every_feature_of_a_session_is_bit_identical_whatever_later_bars_the_range_holds():
    """compute_features over a range ending at D and one ending 20 sessions later: every feature of
    D, sector ranks included, equal bit for bit (sliding windows run per symbol, never over the
    stacked column, whose earlier symbols' rounding residue depends on how far the range reaches)."""
    from turbomode_pipeline.core.features import compute_features
    from turbomode_pipeline.core.universe import load_universe
    from turbomode_pipeline.settings import DEFAULT_UNIVERSE

    first = sessions_before(DAY, 320)[0]
    bars = SimulatedMarketData(seed=11, predictability=0.5).daily_bars(
        [first, *sessions_after(first, 340)], load_universe(DEFAULT_UNIVERSE).head(60)
    )
    short = compute_features(bars.filter(pl.col("session") <= DAY)).filter(pl.col("session") == DAY)
    long = compute_features(bars.filter(pl.col("session") <= AFTER[-1])).filter(pl.col("session") == DAY)
    assert short.height == 60
    differing = [name for name in FEATURES if not short[name].equals(long[name])]
    assert differing == []
