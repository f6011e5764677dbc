"""Point-in-time models: a scanned session is scored only by a model whose training labels ended before it,
so a backfill of models and scanner over history is a walk-forward. Real DuckDB, MLflow and Dagster."""

import shutil
from datetime import UTC, date, datetime

import polars as pl
import pytest
from dagster import instance_for_test, materialize
from mlflow import MlflowClient

from turbomode_pipeline.assets.models import sector_models
from turbomode_pipeline.assets.scanner import scanner_signals, signal_outcomes
from turbomode_pipeline.calendar import sessions_after, sessions_between
from turbomode_pipeline.core.features import compute_features
from turbomode_pipeline.core.labels import triple_barrier
from turbomode_pipeline.core.model_types import STACKED
from turbomode_pipeline.core.point_in_time import champions_as_of, serving_week, trains_in
from turbomode_pipeline.core.scanner import SIGNAL_RULES
from turbomode_pipeline.core.universe import load_universe
from turbomode_pipeline.partitions import week_cutoff
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.model_registry import ModelRegistry, registered_name
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.schemas import (
    DAILY_BARS, DAILY_FEATURES, SCANNER_SCORES, TRAINING_SAMPLES, DailyBars, DailyFeatures, ScannerScores,
    TrainingSamples, conform,
)
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline_tests.support import range_tags, small_universe


def test_champions_as_of_take_the_newest_promotion_whose_labels_end_before_the_session():
    history = pl.DataFrame({"sector": ["Energy", "Energy", "Utilities"], "version": ["1", "2", "1"],
                            "labels_through": [date(2026, 1, 2), date(2026, 1, 9), date(2026, 1, 9)]})
    sessions = [date(2026, 1, 2), date(2026, 1, 5), date(2026, 1, 9), date(2026, 1, 12)]
    found = champions_as_of(sessions, history)
    assert found.select("session", "sector", "version").rows() == [
        (date(2026, 1, 5), "Energy", "1"), (date(2026, 1, 9), "Energy", "1"),  # never a model with labels through 01-09
        (date(2026, 1, 12), "Energy", "2"), (date(2026, 1, 12), "Utilities", "1"),
    ]
    assert [w for w in (date(2026, 1, 4), date(2026, 1, 11), date(2026, 2, 1)) if trains_in(w, "monthly")] == [
        date(2026, 1, 4), date(2026, 2, 1)]
    assert serving_week(date(2026, 1, 9)) == date(2026, 1, 4) and week_cutoff(date(2026, 1, 11)) == date(2026, 1, 9)


def test_the_blocking_rule_names_a_signal_from_a_model_that_saw_its_session():
    rule = next(rule for rule in SIGNAL_RULES if rule.name == "model_before_session")
    rows = pl.DataFrame({"session": [date(2026, 3, 2)] * 3, "symbol": ["OK", "SAME", "LATER"],
                         "model_name": ["m"] * 3, "model_version": ["1", "2", "3"],
                         "model_labels_through": [date(2026, 2, 27), date(2026, 3, 2), date(2026, 3, 6)]})
    found = rule.find(rows)
    assert rule.blocking and found["symbol"].to_list() == ["LATER", "SAME"]
    assert found["detail"].to_list() == ["model m v3 learnt labels through 2026-03-06",
                                         "model m v2 learnt labels through 2026-03-02"]


def _scan(resources, instance, first: date, last: date):
    return materialize([scanner_signals], resources=resources, instance=instance, raise_on_error=False,
                       tags=range_tags(str(first), str(last)))


def test_a_scan_before_the_models_cutoff_is_refused_naming_the_weeks_to_train(trained_models, tmp_path):
    cutoff = week_cutoff(trained_models.week)
    old = [day for day in trained_models.sessions if day <= cutoff][-3:]
    resources = trained_models.resources(tmp_path)
    with instance_for_test() as instance:
        result = _scan(resources, instance, old[0], old[-1])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message
    assert "was trained before session(s)" in failure and "a session is scored only by a model whose" in failure
    assert f"Materialise sector_models for the week(s) {serving_week(old[0])}" in failure
    assert not resources["warehouse"].has_table("signal_history")  # nothing was written


def test_signal_outcomes_refuses_scores_from_a_model_that_learnt_their_outcome(trained_models, tmp_path):
    """A hand-made score row as a hindsight scan would have written it: the model's labels reach its session."""
    day = trained_models.sessions[-20]
    resources = trained_models.resources(tmp_path)
    with instance_for_test() as instance:
        assert _scan(resources, instance, day, day).success
        warehouse = resources["warehouse"]
        scores = warehouse.query(f"SELECT * FROM scanner_scores WHERE session = DATE '{day}'")
        assert (scores["model_labels_through"] < day).all()
        forged = scores.head(1).with_columns(model_labels_through=pl.lit(sessions_after(day, 5)[-1]))
        warehouse.replace_partitions(SCANNER_SCORES, conform(pl.concat([forged, scores.slice(1)]), ScannerScores), [day])
        result = materialize([signal_outcomes], resources=resources, instance=instance, raise_on_error=False,
                             partition_key=str(day))
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.message
    assert "signal_outcomes refused: 1 scanner scores come from a model that learnt labels" in failure
    assert f"{forged['symbol'][0]} {day}" in failure


# -- a walk-forward: models and scanner backfilled over two years, monthly -----------------------------

WALK_FIRST, WALK_LAST = date(2023, 1, 1), date(2024, 12, 29)  # the first and last training week (Sundays)
SECTOR = "Energy"
MONTHLY = {"ops": {"sector_models": {"config": {
    "fast": True, "holdout_sessions": 80, "champion_min_rank_ic_t": -1e9, "sectors": [SECTOR], "cadence": "monthly",
}}}}


@pytest.fixture(scope="module")
def walk_forward_data(tmp_path_factory):
    """Energy's four symbols of the test universe, from 2021 (the warm-up and the first holdouts) to 2025-01."""
    folder = tmp_path_factory.mktemp("walk_forward")
    universe = load_universe(small_universe(folder)).filter(pl.col("sector") == SECTOR)
    sessions = sessions_between(date(2020, 1, 2), date(2025, 1, 31))
    bars = SimulatedMarketData(seed=7, predictability=0.5).daily_bars(sessions, universe)
    features = compute_features(bars)
    warehouse = Warehouse(path=str(folder / "warehouse.duckdb"))
    stamped = bars.with_columns(ingested_at=pl.lit(datetime(2025, 2, 1, tzinfo=UTC)))
    warehouse.replace_partitions(DAILY_BARS, conform(stamped, DailyBars), sessions)
    warehouse.replace_partitions(DAILY_FEATURES, conform(features, DailyFeatures), sessions)
    warehouse.replace_partitions(TRAINING_SAMPLES, conform(triple_barrier(bars, features), TrainingSamples), sessions)
    return folder


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 24 trainings, 144 registrations and a two-year scan: ~4 min idle, 6+ on a loaded machine
def test_models_and_scanner_backfilled_together_are_a_walk_forward(walk_forward_data, tmp_path):
    shutil.copy(walk_forward_data / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    registry = ModelRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "art"))
    resources = {"warehouse": warehouse, "model_registry": registry, "labels": LabelSettings.from_settings(get_settings()),
                 "reports": ReportStore(directory=str(tmp_path / "reports"))}
    name = registered_name(SECTOR, STACKED)
    with instance_for_test() as instance:
        # the newer year first, then the older one: a backfill of an older window must leave the newer history alone
        assert materialize([sector_models], resources=resources, instance=instance, run_config=MONTHLY,
                           tags=range_tags("2024-01-07", str(WALK_LAST))).success
        newer = warehouse.champion_history()
        alias_before = registry.aliases().filter((pl.col("registered_model") == name) & (pl.col("alias") == "champion"))
        assert materialize([sector_models], resources=resources, instance=instance, run_config=MONTHLY,
                           tags=range_tags(str(WALK_FIRST), "2023-12-31")).success
        history = warehouse.champion_history()
        versions = warehouse.model_versions()
        # one version per model and month: 24 months x 6 model types, each trained as of its week's cutoff
        assert versions.height == 24 * 6
        months = versions.filter(pl.col("registered_model") == name).sort("training_week")
        assert [w.day <= 7 for w in months["training_week"]] == [True] * 24
        assert (months["labels_through"] <= months["training_week"].map_elements(week_cutoff, return_dtype=pl.Date)).all()
        assert newer.join(history, on=newer.columns, how="anti").is_empty(), "a later backfill rewrote history"
        assert history.filter(pl.col("training_week") < date(2024, 1, 1)).height > 0
        alias_after = registry.aliases().filter((pl.col("registered_model") == name) & (pl.col("alias") == "champion"))
        assert alias_after.equals(alias_before)  # training the older year never took the alias
        assert alias_after["version"][0] == str(newer.filter(pl.col("registered_model") == name)
                                                .sort("labels_through")["version"][-1])

        # the scanner over the two years: every score from a model whose labels ended before its session
        first_scanned, last_scanned = date(2023, 1, 3), date(2024, 12, 31)
        assert _scan(resources, instance, first_scanned, last_scanned).success
        scores = warehouse.query("SELECT * FROM scanner_scores")
        assert scores["session"].min() == first_scanned and (scores["model_labels_through"] < scores["session"]).all()
        served = scores.group_by("model_version").agg(pl.col("session").min()).sort("session")
        assert served.height >= 12  # a new champion most months, carried forward in between

        # asked again with the same settings: reused, nothing trained or registered
        again = materialize([sector_models], resources=resources, instance=instance, run_config=MONTHLY,
                            partition_key="2024-03-03")
        assert again.success and warehouse.model_versions().height == 24 * 6
        assert again.asset_materializations_for_node("sector_models")[0].metadata["reused"].value == [
            f"{SECTOR} 2024-03-03"]
    client = MlflowClient(registry.tracking_uri, registry.tracking_uri)
    tags = client.get_model_version(name, months["version"][0]).tags
    assert tags["labels_through"] == str(months["labels_through"][0]) and tags["training_week"] == str(WALK_FIRST)


def test_the_walk_forward_report_measures_rank_ic_by_period_beside_the_best_possible():
    """A planted score: the forward return itself for the first period (rank IC 1), its reverse for the second
    (-1); the best possible is the return (1 everywhere). Ten sessions, horizon 5: t = mean / (sd / sqrt(2))."""
    import numpy as np

    from turbomode_pipeline.core.walk_forward import overall, period_rank_ic

    days = sessions_between(date(2026, 3, 2), date(2026, 3, 13))
    rng = np.random.default_rng(0)
    returns = pl.DataFrame({"session": [day for day in days for _ in range(4)], "symbol": ["A", "B", "C", "D"] * len(days),
                            "fwd_ret": rng.normal(size=4 * len(days))})
    first = pl.col("session") < date(2026, 3, 9)
    scores = returns.with_columns(
        sector=pl.lit("Energy"),
        probability_up=pl.when(first).then(pl.col("fwd_ret")).otherwise(-pl.col("fwd_ret")),
        model_labels_through=pl.when(first).then(pl.lit(date(2026, 2, 27))).otherwise(pl.lit(date(2026, 3, 6))),
    ).drop("fwd_ret")
    best = returns.rename({"fwd_ret": "expected_idio"})
    periods = period_rank_ic(scores, returns, 5, best)
    energy = periods.filter(pl.col("sector") == "Energy")
    assert energy["rank_ic"].to_list() == pytest.approx([1.0, -1.0]) and energy["best_rank_ic"].to_list() == [1.0, 1.0]
    assert energy["sector_sessions"].to_list() == [5, 5]
    summary = overall(scores, returns, 5, best)
    assert summary["rank_ic"] == pytest.approx(0.0) and summary["ratio"] == pytest.approx(0.0)
    assert summary["best_rank_ic"] == pytest.approx(1.0)
