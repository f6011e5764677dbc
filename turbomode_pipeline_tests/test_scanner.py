"""scanner_signals and signal_outcomes through a real Dagster instance, DuckDB file and MLflow registry."""

import re
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import polars as pl
import pytest
from dagster import AssetCheckSeverity, AssetKey, AssetSelection, Definitions, build_schedule_context, build_sensor_context, evaluate_automation_conditions, materialize

from turbomode_pipeline.assets.features import daily_features
from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.assets.models import sector_models
from turbomode_pipeline.core.point_in_time import serving_week
from turbomode_pipeline.assets.signal_backtest import signal_backtest
from turbomode_pipeline.assets.scanner import scanner_signals, signal_outcomes
from turbomode_pipeline.automation.scanner import (
    latest_due_scan,
    overnight_scanner,
    scan_due_at,
    scanner_freshness,
    scanner_freshness_sensor,
)
from turbomode_pipeline.calendar import session_close, sessions_after
from turbomode_pipeline.core.features import FEATURES
from turbomode_pipeline.core.model_zoo import STACKED
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.model_registry import ModelRegistry, registered_name
from turbomode_pipeline.schemas import DAILY_FEATURES, SignalHistory
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline_tests.support import range_tags, table
from turbomode_pipeline_tests.support import CorruptedSource

BARRIERS = LabelSettings.from_settings(get_settings()).barriers

ALL_STEPS = (daily_bars, daily_features, sector_models, scanner_signals, signal_outcomes)


def scan(resources, instance, first: date, last: date | None = None, assets=(scanner_signals,)):
    last = last or first
    return materialize(
        list(assets), resources=resources, instance=instance, tags=range_tags(first.isoformat(), last.isoformat()),
        raise_on_error=False, selection=[a.key for a in assets],
    )


def forget_session(warehouse, day: date) -> None:
    """The night before `day`'s data arrives: no bars, no features for it yet."""
    warehouse.execute(
        f"DELETE FROM daily_bars WHERE session = DATE '{day}'", f"DELETE FROM daily_features WHERE session = DATE '{day}'"
    )


@pytest.fixture
def pipeline(trained_models, tmp_path):
    return trained_models.resources(tmp_path)


def test_signals_match_their_schema_semantics_and_lineage(trained_models, pipeline, instance):
    sessions = trained_models.sessions[-5:]
    result = scan(pipeline, instance, sessions[0], sessions[-1])
    assert result.success
    warehouse = pipeline["warehouse"]
    signals = table(warehouse, "SELECT * FROM signal_history ORDER BY session, symbol")
    scores = table(warehouse, "SELECT * FROM scanner_scores ORDER BY session, symbol")
    SignalHistory.validate(signals)
    assert scores.height == 5 * 44 and signals.height > 0
    assert set(signals["signal_type"]) == {"BUY", "SELL"}
    events = result.asset_materializations_for_node("scanner_signals")
    assert [event.partition for event in events] == [str(day) for day in sessions]
    for event in events:  # each partition of the range run carries its own numbers, not the run's
        own = signals.filter(pl.col("session") == date.fromisoformat(event.partition))
        assert event.metadata["dagster/row_count"].value == own.height
        assert event.metadata["buy_signals"].value == (own["signal_type"] == "BUY").sum()
        assert event.metadata["sell_signals"].value == (own["signal_type"] == "SELL").sum()
        assert event.metadata["symbols_scored"].value == 44
        assert ("buy_sell_by_session" in event.metadata) == (event.partition == str(sessions[-1]))
    two_sided = next(e for e in result.get_asset_check_evaluations() if e.check_name == "signals_two_sided")
    assert two_sided.severity == AssetCheckSeverity.WARN  # a warning: a one-sided session is still written

    buy, sell = signals.filter(pl.col("signal_type") == "BUY"), signals.filter(pl.col("signal_type") == "SELL")
    assert (buy["target_price"] > buy["entry_price"]).all() and (buy["entry_price"] > buy["stop_loss"]).all()
    assert (sell["target_price"] < sell["entry_price"]).all() and (sell["entry_price"] < sell["stop_loss"]).all()

    features = table(warehouse, "SELECT session, symbol, close, atr_14 FROM daily_features")
    joined = signals.join(scores, on=["session", "symbol"]).join(features, on=["session", "symbol"])
    threshold = get_settings().signal_threshold
    direction = pl.when(pl.col("signal_type") == "BUY").then(pl.col("probability_up")).otherwise(1 - pl.col("probability_up"))
    assert (joined["confidence"] - joined.select(direction).to_series()).abs().max() < 1e-12
    assert (joined["confidence"] >= threshold).all()
    unsignalled = scores.join(signals, on=["session", "symbol"], how="anti")
    assert unsignalled["probability_up"].is_between(1 - threshold, threshold, closed="none").all()
    k_up_atr = joined["entry_price"] + BARRIERS.k_up * joined["atr_14"]
    assert ((joined["entry_price"] - joined["close"]).abs() < 1e-9).all()
    assert (joined.filter(pl.col("signal_type") == "BUY")["target_price"]
            - k_up_atr.filter(joined["signal_type"] == "BUY")).abs().max() < 1e-9

    for row in signals.head(3).iter_rows(named=True):
        assert row["id"] == f"{row['session']}-{row['symbol']}"
        assert row["expires_at"] == session_close(sessions_after(row["session"], BARRIERS.horizon)[-1])
    champion = warehouse_champion(warehouse, registered_name("Energy", STACKED))
    energy = signals.filter(pl.col("sector") == "Energy").select("model_name", "model_version", "mlflow_run_id",
                                                                  "model_labels_through").unique()
    assert energy.rows() in ([], [champion])
    assert (signals["model_labels_through"] < signals["session"]).all()

    active = table(warehouse, "SELECT * FROM active_signals ORDER BY symbol")
    assert active.columns == signals.columns
    newest = signals.filter(pl.col("session") == sessions[-1]).sort("symbol")
    assert active.drop("is_active").equals(newest.drop("is_active")) and active["is_active"].all()
    assert table(warehouse, "SELECT count(*) AS n FROM signal_history WHERE is_active AND session < ?".replace(
        "?", f"DATE '{sessions[-1]}'"))["n"].item() == 0
    metadata = result.asset_materializations_for_node("scanner_signals")[0].metadata
    assert metadata["symbols_scored"].value == 44 and "Energy" in metadata["models"].value


def test_rerunning_a_session_replaces_exactly_its_signals(trained_models, pipeline, instance):
    first, day, last = trained_models.sessions[-4], trained_models.sessions[-3], trained_models.sessions[-1]
    assert scan(pipeline, instance, first, last).success
    warehouse = pipeline["warehouse"]
    before = table(warehouse, "SELECT * FROM signal_history ORDER BY id")
    warehouse.execute(  # a stray row for the session: the re-run must remove it
        f"INSERT INTO signal_history SELECT * REPLACE ('{day}-ZZZZ' AS id, 'ZZZZ' AS symbol) "
        f"FROM signal_history WHERE session = DATE '{day}' LIMIT 1"
    )
    assert scan(pipeline, instance, day).success
    after = table(warehouse, "SELECT * FROM signal_history ORDER BY id")
    others = pl.col("session") != day
    assert after.filter(others).equals(before.filter(others))
    stable = ["id", "signal_type", "confidence", "entry_price", "target_price", "stop_loss", "model_version"]
    assert after.filter(~others).select(stable).equals(before.filter(~others).select(stable))
    assert (after.filter(~others)["created_at"] > before.filter(~others)["created_at"].max()).all()


def test_the_scanner_never_scans_a_session_whose_bars_failed_a_blocking_check(trained_models, pipeline, instance):
    day = trained_models.sessions[-1]
    warehouse = pipeline["warehouse"]
    forget_session(warehouse, day)
    broken = dict(pipeline, market_data=CorruptedSource(seed=trained_models.seed, predictability=0.5, damage="high_below_low"))

    chain = materialize(
        [daily_bars, daily_features, scanner_signals], resources=broken, instance=instance, partition_key=day.isoformat(),
        raise_on_error=False,
    )
    assert not chain.success
    assert [e.check_name for e in chain.get_asset_check_evaluations() if not e.passed] == ["ohlc_consistent"]
    assert not instance.get_materialized_partitions(AssetKey("scanner_signals"))
    assert not warehouse.has_table("signal_history")

    alone = scan(pipeline, instance, day)
    assert not alone.success
    message = alone.get_step_failure_events()[0].step_failure_data.error.message
    assert f"scanner not run: daily_features has no rows for session(s) {day}" in message
    assert "passed every blocking check" in message
    assert not instance.get_materialized_partitions(AssetKey("scanner_signals"))


def test_late_features_trigger_the_scan_of_exactly_that_session(trained_models, pipeline, instance):
    day = trained_models.sessions[-1]
    forget_session(pipeline["warehouse"], day)
    only_scanner = AssetSelection.assets(scanner_signals)
    defs = Definitions(assets=list(ALL_STEPS), resources=pipeline)
    now = datetime.now(UTC)
    first = evaluate_automation_conditions(defs, instance, asset_selection=only_scanner, evaluation_time=now)
    assert first.total_requested == 0

    broken = dict(pipeline, market_data=CorruptedSource(seed=trained_models.seed, predictability=0.5, damage="negative_price"))
    assert not materialize([daily_bars, daily_features], resources=broken, instance=instance,
                           partition_key=day.isoformat(), raise_on_error=False).success
    failed = evaluate_automation_conditions(defs, instance, asset_selection=only_scanner, cursor=first.cursor,
                                            evaluation_time=now + timedelta(minutes=1))
    assert failed.total_requested == 0  # bars refused, features never written: nothing to scan

    late = materialize([daily_bars, daily_features], resources=pipeline, instance=instance, partition_key=day.isoformat())
    assert late.success
    landed = evaluate_automation_conditions(defs, instance, asset_selection=only_scanner, cursor=failed.cursor,
                                            evaluation_time=now + timedelta(minutes=2))
    assert landed.get_requested_partitions(scanner_signals.key) == {day.isoformat()}

    assert scan(pipeline, instance, day).success
    after = evaluate_automation_conditions(defs, instance, asset_selection=only_scanner, cursor=landed.cursor,
                                           evaluation_time=now + timedelta(minutes=3))
    assert after.total_requested == 0


def test_the_freshness_check_fails_on_a_stale_scan_and_passes_after_it(trained_models, pipeline, instance):
    day = trained_models.sessions[-1]
    just_late = scan_due_at(day) + timedelta(minutes=1)
    passed, message, checked = scanner_freshness(instance, pipeline["warehouse"], just_late)
    assert (passed, checked) == (False, day)
    assert f"no signals for session {day}" in message and "00:30" in message
    assert scanner_freshness(instance, pipeline["warehouse"], scan_due_at(day) - timedelta(minutes=1))[2] != day  # not due before 00:30

    sensed = scanner_freshness_sensor(build_sensor_context(instance=instance, resources={"warehouse": pipeline["warehouse"]}))
    [stale] = sensed.asset_events
    assert stale.check_name == "scanner_signals_fresh" and not stale.passed
    assert str(latest_due_scan(datetime.now(UTC))) in stale.description

    assert scan(pipeline, instance, trained_models.sessions[-2], day).success
    assert scanner_freshness(instance, pipeline["warehouse"], just_late)[0]
    again = scanner_freshness_sensor(
        build_sensor_context(instance=instance, cursor=sensed.cursor, resources={"warehouse": pipeline["warehouse"]})
    )
    [fresh] = again.asset_events
    assert fresh.passed and "holds the newest due session" in fresh.description


def test_overnight_scanner_scans_the_day_and_grades_the_session_whose_horizon_ended(instance):
    tz = get_settings().timezone
    tuesday = pd.Timestamp("2025-06-10 23:30", tz=tz).to_pydatetime()
    requests = overnight_scanner(build_schedule_context(instance=instance, scheduled_execution_time=tuesday))
    assert [(r.partition_key, r.asset_selection) for r in requests] == [
        ("2025-06-10", [scanner_signals.key]), ("2025-05-27", [signal_outcomes.key, signal_backtest.key]),
    ]
    saturday = pd.Timestamp("2025-06-14 23:30", tz=tz).to_pydatetime()
    skipped = overnight_scanner(build_schedule_context(instance=instance, scheduled_execution_time=saturday))
    assert "not an NYSE session" in skipped.skip_message


def test_signal_outcomes_grade_a_month_of_signals_and_report_ic(trained_models, pipeline, instance):
    graded_last = trained_models.sessions[-1 - BARRIERS.horizon]
    first = trained_models.sessions[-25 - BARRIERS.horizon]
    assert scan(pipeline, instance, first, graded_last).success
    result = scan(pipeline, instance, first, graded_last, assets=(signal_outcomes,))
    assert result.success
    warehouse = pipeline["warehouse"]
    signals = table(warehouse, "SELECT * FROM signal_history ORDER BY id")
    outcomes = table(warehouse, "SELECT * FROM signal_outcomes ORDER BY id")
    assert outcomes["id"].to_list() == signals["id"].to_list()
    assert set(outcomes["outcome"]) <= {"target", "stop", "expired"} and outcomes["days_held"].max() <= BARRIERS.horizon
    expired = outcomes.filter(pl.col("outcome") == "expired")
    assert (expired["days_held"] == BARRIERS.horizon).all()

    events = result.asset_materializations_for_node("signal_outcomes")
    assert [event.partition for event in events][-1] == str(graded_last) and "hit_rate_20d" not in events[0].metadata
    for event in events:  # each partition: its own graded signals
        assert event.metadata["dagster/row_count"].value == (outcomes["session"].cast(pl.String) == event.partition).sum()
    metadata = events[-1].metadata  # the 20- and 60-session windows, as of the run's last session
    assert "| sector" in metadata["hit_rate_20d"].value and "BUY" in metadata["hit_rate_60d"].value
    scores = table(warehouse, f"SELECT * FROM scanner_scores WHERE session >= DATE '{trained_models.sessions[-20 - BARRIERS.horizon]}'")
    bars = table(warehouse, "SELECT session, symbol, close FROM daily_bars ORDER BY symbol, session").to_pandas()
    bars["fwd"] = bars.groupby("symbol")["close"].shift(-BARRIERS.horizon) / bars["close"] - 1
    joined = scores.to_pandas().merge(bars, on=["session", "symbol"])
    ic = joined.groupby("session").apply(lambda df: df["probability_up"].corr(df["fwd"]))  # qlib's calc_ic
    rank_ic = joined.groupby("session").apply(lambda df: df["probability_up"].corr(df["fwd"], method="spearman"))
    assert len(ic) == 20
    assert metadata["ic_mean_20d"].value == pytest.approx(ic.mean(), rel=1e-3)  # rounded to 4 significant digits
    assert events[-1].metadata["ic"].value == pytest.approx(ic.iloc[-1], rel=1e-3)  # the session's own, rounded
    assert metadata["icir_20d"].value == pytest.approx(ic.mean() / ic.std(), rel=1e-3)
    assert metadata["rank_icir_20d"].value == pytest.approx(rank_ic.mean() / rank_ic.std(), rel=1e-3)
    assert metadata["sessions_60d"].value == 25  # only 25 sessions were scanned


def test_outcomes_refuse_a_session_whose_horizon_has_not_passed(trained_models, pipeline, instance):
    day = trained_models.sessions[-3]
    assert scan(pipeline, instance, day).success
    result = scan(pipeline, instance, day, assets=(signal_outcomes,))
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert re.search(rf"signal_outcomes {day} is not materialisable yet: .* needs bars through \d{{4}}-", message)


def warehouse_champion(warehouse, name: str) -> tuple:
    """name, version, run id and cutoff of `name`'s one champion, from the warehouse's own records."""
    record = table(warehouse, f"SELECT * FROM model_versions WHERE registered_model = '{name}'").row(0, named=True)
    return name, record["version"], record["mlflow_run_id"], record["labels_through"]


def test_without_models_the_scan_fails_naming_the_weeks_to_train(resources, instance, tmp_path):
    day = "2024-03-05"
    assert materialize([daily_bars], resources=resources, instance=instance, partition_key=day).success
    features = table(resources["warehouse"], "SELECT * FROM daily_bars").select(
        "session", "symbol", "sector", "close", pl.lit(1.0).alias("atr_14"),
        *(pl.lit(0.1).alias(name) for name in FEATURES),
    )
    resources["warehouse"].replace_partitions(DAILY_FEATURES, features, [date.fromisoformat(day)])
    empty_registry = ModelRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "art"))
    result = materialize([scanner_signals], resources={**resources, "model_registry": empty_registry}, instance=instance,
                         partition_key=day, raise_on_error=False)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "scanner not run: no model was trained before session(s) 2024-03-05" in message
    assert f"Materialise sector_models for the week(s) {serving_week(date.fromisoformat(day))} first" in message
