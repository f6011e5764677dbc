"""drift_report end to end: simulated bars with a real regime change, the real assets, MLflow and DuckDB."""

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, instance_for_test, materialize

from turbomode_pipeline.assets.drift import drift_report
from turbomode_pipeline.assets.features import daily_features, training_samples
from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.automation.models import all_sectors_tags
from turbomode_pipeline.assets.models import sector_models
from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline.core.universe import GICS_SECTORS
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.model_registry import ModelRegistry
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline_tests.conftest import range_tags, small_universe

REGIME_SECTOR = "Materials"
# A stretch of the seed-11 market in which no untouched sector changes regime on its own
# (the simulated volatility clusters, and a calm or wild month elsewhere is real drift too).
SESSIONS = sessions_between(date(2023, 1, 3), date(2025, 4, 25))
REGIME = SESSIONS[-21:]  # a month of tripled volatility, ending on the report's Friday
WEEK = "2025-04-20"  # Sunday..Saturday 2025-04-26
FEW_FEATURES = ["ret_1", "ret_5", "vol_10", "vol_20", "rsi_14", "atr_pct", "macd_hist_norm", "bb_pct_b"]
FAST = {"ops": {"sector_models": {"config": {"fast": True, "holdout_sessions": 120, "features": FEW_FEATURES}}}}


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


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """Bars -> features -> samples -> 66 models -> drift report, through one real instance."""
    folder = tmp_path_factory.mktemp("drift")
    resources = {
        "market_data": RegimeChangeMarketData(seed=11, predictability=0.5, sector=REGIME_SECTOR,
                                              regime_start=REGIME[0].isoformat()),
        "warehouse": Warehouse(path=str(folder / "warehouse.duckdb")),
        "universe": Universe(path=str(small_universe(folder))),
        "model_registry": ModelRegistry(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
                                        artifact_root=str(folder / "mlartifacts")),
        "reports": ReportStore(directory=str(folder / "reports")),
    }
    with instance_for_test() as instance:
        first, last = SESSIONS[0].isoformat(), SESSIONS[-1].isoformat()
        assert materialize([daily_bars, daily_features], resources=resources, instance=instance,
                           tags=range_tags(first, last)).success
        assert materialize([training_samples], resources=resources, instance=instance,
                           tags=range_tags(first, SESSIONS[-11].isoformat())).success
        assert materialize([sector_models], resources=resources, instance=instance, run_config=FAST,
                           tags=all_sectors_tags()).success
        result = materialize([drift_report], resources=resources, instance=instance, partition_key=WEEK)
        yield result, resources, instance


def test_a_sector_with_tripled_volatility_drifts_and_the_others_stay_ok(drifted):
    result, resources, _ = drifted
    report = resources["warehouse"].query("SELECT * FROM drift_report ORDER BY sector")
    assert report["week_ending"].unique().to_list() == [date(2025, 4, 26)]
    statuses = dict(report.select("sector", "status").iter_rows())
    assert statuses == {sector: "drift" if sector == REGIME_SECTOR else "ok" for sector in GICS_SECTORS}
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
    assert path.parent.name == "reports" and path.name == "drift_report_2025-04-26.html"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(path.as_uri())
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
        text = page.inner_text("body")
        page.screenshot(path=str(path.with_suffix(".png")), full_page=True)
        browser.close()
    assert len(widths) == 3 and all(width > 0 for width in widths)
    assert "Drifted sectors: Materials" in text
