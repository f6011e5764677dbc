"""drift_report end to end: simulated bars with a real regime change, the real assets, MLflow and DuckDB."""

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from dagster import build_sensor_context, instance_for_test, materialize

from turbomode_pipeline.assets.drift import drift_report
from turbomode_pipeline.assets.models import sector_models
from turbomode_pipeline.automation.drift import drift_retrain_sensor
from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline.core.features import compute_features
from turbomode_pipeline.core.labels import triple_barrier
from turbomode_pipeline.core.universe import load_universe
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.model_registry import ModelRegistry
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline.schemas import (
    DAILY_FEATURES,
    SCANNER_SCORES,
    SIGNAL_HISTORY,
    SIGNAL_OUTCOMES,
    TRAINING_SAMPLES,
    DailyFeatures,
    ScannerScores,
    SignalHistory,
    SignalOutcomes,
    TrainingSamples,
    conform,
)
from turbomode_pipeline_tests.support import small_universe

REGIME_SECTOR = "Materials"
# A stretch of the seed-11 market in which no untouched sector changes regime on its own
# (the simulated volatility clusters, and a calm or wild month elsewhere is real drift too).
SESSIONS = sessions_between(date(2022, 7, 1), date(2025, 5, 16))
REGIME = SESSIONS[-21:]  # a month of tripled volatility, ending on the report's Friday
WEEK = "2025-05-11"  # Sunday..Saturday 2025-05-17
WEEK_SESSIONS = SESSIONS[-5:]
SERVING_WEEK = "2025-05-18"  # the week after the report's: its models are trained as of 2025-05-16
FEW_FEATURES = ["ret_1", "ret_5", "vol_10", "vol_20", "rsi_14", "atr_pct", "macd_hist_norm", "bb_pct_b"]
# The champion gate off (4 stocks a sector rarely clear it): the report needs every sector's champion.
FAST = {
    "ops": {"sector_models": {"config": {
        "fast": True, "holdout_sessions": 120, "features": FEW_FEATURES, "champion_min_rank_ic_t": -1e9,
    }}}
}


class RegimeChangeMarketData(SimulatedMarketData):
    """The simulated market, with one sector's daily log moves tripled over `regime_start`..the end."""

    sector: str
    regime_start: str

    def daily_bars(self, sessions, universe):
        bars = super().daily_bars(sessions, universe)
        start = date.fromisoformat(self.regime_start)
        anchor = (
            super().daily_bars([max(d for d in sessions_between(start - timedelta(days=10), start) if d < start)], universe)
            .select("symbol", pl.col("close").alias("anchor"))
        )
        tripled = (pl.col("sector") == self.sector) & (pl.col("session") >= start)
        prices = ("open", "high", "low", "close")
        return (
            bars.join(anchor, on="symbol", how="left", maintain_order="left")
            .with_columns(
                pl.when(tripled).then(pl.col("anchor") * (pl.col(c) / pl.col("anchor")) ** 3).otherwise(pl.col(c)).alias(c)
                for c in prices
            )
            .with_columns(pl.when(tripled).then(None).otherwise(pl.col("vwap")).alias("vwap"))
            .drop("anchor")
        )


def write_scanner_history(warehouse: Warehouse) -> None:
    """What the scanner would have written: scores for 80 sessions, a week of 95% SELL signals,
    and resolved outcomes in which Energy never reached its target."""
    rng = np.random.default_rng(5)
    closes = warehouse.query(
        "SELECT session, symbol, sector, close FROM daily_features WHERE session >= ? ORDER BY session, symbol",
        [SESSIONS[-80]],
    )
    scores = closes.select("session", "symbol", "sector").with_columns(
        probability_up=pl.Series(rng.beta(4, 4, closes.height)), model_name=pl.lit("stacked_ensemble"),
        model_version=pl.lit("1"), model_labels_through=pl.lit(SESSIONS[-81]),
    )
    warehouse.replace_partitions(SCANNER_SCORES, conform(scores, ScannerScores), SESSIONS[-80:])
    week = closes.filter(pl.col("session").is_in(WEEK_SESSIONS)).sample(40, seed=5).sort("session", "symbol")
    sell = pl.int_range(pl.len()) >= 2  # 38 of 40
    signals = week.with_columns(
        id=pl.format("{}-{}", "session", "symbol"), signal_type=pl.when(sell).then(pl.lit("SELL")).otherwise(pl.lit("BUY")),
        confidence=pl.lit(0.7), entry_price=pl.col("close"),
        target_price=pl.when(sell).then(pl.col("close") * 0.95).otherwise(pl.col("close") * 1.05),
        stop_loss=pl.when(sell).then(pl.col("close") * 1.05).otherwise(pl.col("close") * 0.95),
        created_at=pl.col("session").cast(pl.Datetime("us", "UTC")) + pl.duration(hours=23),
        expires_at=pl.col("session").cast(pl.Datetime("us", "UTC")) + pl.duration(days=14, hours=21),
        is_active=pl.lit(True), model_name=pl.format("turbomode-{}-stacked_ensemble", "sector"),
        model_version=pl.lit("1"), mlflow_run_id=pl.lit("0" * 32), model_labels_through=pl.lit(SESSIONS[-81]),
    ).drop("close")
    warehouse.replace_partitions(SIGNAL_HISTORY, conform(signals, SignalHistory), WEEK_SESSIONS)
    resolved = closes.filter(pl.col("session").is_in(SESSIONS[-30:-25])).with_columns(
        id=pl.format("{}-{}", "session", "symbol"), signal_type=pl.lit("BUY"),
        outcome=pl.when(pl.col("sector") == "Energy").then(pl.lit("stop"))
        .otherwise(pl.when(pl.int_range(pl.len()).over("sector") % 2 == 0).then(pl.lit("target")).otherwise(pl.lit("expired"))),
        exit_session=pl.lit(SESSIONS[-15]), exit_price=pl.col("close"), ret=pl.lit(0.0), days_held=pl.lit(15),
        excess_ret=pl.lit(None, dtype=pl.Float64), beat_sector=pl.lit(None, dtype=pl.Boolean),
    ).drop("close")
    warehouse.replace_partitions(SIGNAL_OUTCOMES, conform(resolved, SignalOutcomes), SESSIONS[-30:-25])


def write_history(warehouse: Warehouse, universe: Path) -> None:
    """Features and labels of the regime-changed market, computed by the pipeline's own core functions."""
    source = RegimeChangeMarketData(seed=11, predictability=0.5, sector=REGIME_SECTOR, regime_start=REGIME[0].isoformat())
    bars = source.daily_bars(SESSIONS, load_universe(universe))
    features = compute_features(bars)
    samples = triple_barrier(bars, features).filter(pl.col("session") <= SESSIONS[-11])
    warehouse.replace_partitions(DAILY_FEATURES, conform(features, DailyFeatures), SESSIONS)
    warehouse.replace_partitions(TRAINING_SAMPLES, conform(samples, TrainingSamples), SESSIONS)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """History -> the real sector_models (66 models) -> the real drift_report, through one instance."""
    folder = tmp_path_factory.mktemp("drift")
    resources = {
        "warehouse": Warehouse(path=str(folder / "warehouse.duckdb")),
        "model_registry": ModelRegistry(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
                                        artifact_root=str(folder / "mlartifacts")),
        "reports": ReportStore(directory=str(folder / "reports")),
        "labels": LabelSettings.from_settings(get_settings()),
    }
    write_history(resources["warehouse"], small_universe(folder))
    write_scanner_history(resources["warehouse"])
    with instance_for_test() as instance:
        # the models of the week after the history: trained as of its last session, as the Sunday run would
        assert materialize([sector_models], resources=resources, instance=instance, run_config=FAST,
                           partition_key=SERVING_WEEK).success
        result = materialize([drift_report], resources=resources, instance=instance, partition_key=WEEK)
        yield result, resources, instance


def test_a_sector_with_tripled_volatility_drifts_and_no_other_does(drifted):
    result, resources, _ = drifted
    report = resources["warehouse"].query("SELECT * FROM drift_report ORDER BY sector")
    assert report["week_ending"].unique().to_list() == [date(2025, 5, 17)]
    statuses = dict(report.select("sector", "status").iter_rows())
    # With the embargo before the holdout the reference window (the validated model's training)
    # moved 10 sessions earlier; Health Care's own simulated volatility regime then reads 'warn'
    # (measured 2026-12-02), so the untouched sectors are held to "not drift", the tripled one to "drift";
    # Energy's planted hit rate makes it "warn" (test_a_sector_that_never_hits_its_target...).
    assert statuses[REGIME_SECTOR] == "drift"
    assert {sector: status for sector, status in statuses.items() if sector != REGIME_SECTOR and status == "drift"} == {}
    assert sum(status == "ok" for sector, status in statuses.items() if sector != "Energy") >= 8
    materials = report.filter(pl.col("sector") == REGIME_SECTOR).row(0, named=True)
    assert materials["window_end"] == REGIME[-1] and materials["train_end"] < REGIME[0]
    metadata = result.asset_materializations_for_node("drift_report")[0].metadata
    assert metadata["drifted_sectors"].value == [REGIME_SECTOR]
    assert "| Materials" in metadata["summary"].value and "drift" in metadata["summary"].value
    features = resources["warehouse"].query(
        "SELECT * FROM drift_features WHERE sector = 'Materials' AND feature IN ('vol_10', 'ret_1')"
    )
    assert (features["status"] == "drift").all() and (features["ks_pvalue"] < 0.01).all()


def test_the_html_report_renders_its_plots_in_headless_chromium(drifted):
    result, _, _ = drifted
    path = Path(result.asset_materializations_for_node("drift_report")[0].metadata["report_path"].value)
    assert path.parent.name == "reports" and path.name == "drift_report_2025-05-17.html"
    from turbomode_pipeline_tests.servers import chromium_page

    with chromium_page(width=1400) as page:
        page.goto(path.as_uri())
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
        text = page.inner_text("body")
        page.screenshot(path=str(path.with_suffix(".png")), full_page=True)
    assert len(widths) == 3 and all(width > 0 for width in widths)
    assert "Drifted sectors: Materials" in text


def test_a_week_of_95_percent_sell_signals_is_flagged(drifted):
    result, resources, _ = drifted
    metadata = result.asset_materializations_for_node("drift_report")[0].metadata
    assert (metadata["buy_signals"].value, metadata["sell_signals"].value) == (2, 38)
    assert metadata["signals_one_sided"].value is True
    report = resources["warehouse"].query("SELECT sector, buy, sell, buy_share FROM drift_report")
    assert report["sell"].sum() == 38 and report["buy"].sum() == 2


def test_a_sector_that_never_hits_its_target_fails_the_binomial_test(drifted):
    _, resources, _ = drifted
    report = resources["warehouse"].query("SELECT * FROM drift_report ORDER BY sector")
    energy = report.filter(pl.col("sector") == "Energy").row(0, named=True)
    assert (energy["hits"], energy["outcomes"], energy["hit_rate"]) == (0, 20, 0.0)
    assert 0.15 < energy["expected_hit_rate"] < 1  # the champion's holdout top-decile hit rate
    assert energy["hit_rate_pvalue"] == pytest.approx((1 - energy["expected_hit_rate"]) ** 20) and energy["hit_rate_low"]
    others = report.filter(pl.col("sector") != "Energy")
    assert (others["outcomes"] == 20).all() and (others["hits"] == 10).all()
    assert energy["status"] == "warn" and not others["hit_rate_low"].any()


def test_the_html_table_marks_the_low_hit_rate_and_shows_its_p_value(drifted):
    _, resources, _ = drifted
    energy = resources["warehouse"].query("SELECT * FROM drift_report WHERE sector = 'Energy'").row(0, named=True)
    page = Path(energy["report_path"]).read_text()
    header = page.split("<table>")[1].split("</tr>")[0]
    assert "<th>hit_rate_pvalue</th><th>hit_rate_low</th>" in header
    row = next(r for r in page.split("<tr>") if r.startswith("<td>Energy</td>"))
    assert 'font-weight:bold">warn</td>' in row and f"<td>{energy['hit_rate_pvalue']:.4f}</td><td>True</td>" in row


def test_the_retrain_sensor_requests_exactly_the_drifted_sector_once_per_report(drifted):
    _, _, instance = drifted
    first = drift_retrain_sensor(build_sensor_context(instance=instance))
    assert [request.partition_key for request in first.run_requests] == [SERVING_WEEK]
    assert first.run_requests[0].run_config == {"ops": {"sector_models": {"config": {"sectors": ["materials"]}}}}
    assert first.run_requests[0].tags["turbomode/trigger"] == f"drift_report {WEEK}"
    again = drift_retrain_sensor(build_sensor_context(instance=instance, cursor=first.cursor))
    assert not again.run_requests and again.skip_reason is not None


def test_a_report_of_the_week_in_progress_asks_for_no_training_of_a_week_not_begun():
    """The demo reports the week it is in; the models that follow it cannot be trained before it ends."""
    from dagster import AssetMaterialization, DagsterInstance

    from turbomode_pipeline.partitions import drift_weeks

    current = drift_weeks().get_last_partition_key()
    with DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(AssetMaterialization(
            "drift_report", partition=current, metadata={"drifted_sectors": [REGIME_SECTOR]}))
        result = drift_retrain_sensor(build_sensor_context(instance=instance))
    assert not result.run_requests and result.cursor is not None
