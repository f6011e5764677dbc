"""`drift_report`: each week, how far every sector has moved from what its champion was trained on."""

from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field, model_validator

from turbomode_pipeline import clock
from turbomode_pipeline.assets.features import daily_features
from turbomode_pipeline.assets.guards import require_sessions
from turbomode_pipeline.assets.models import sector_models
from turbomode_pipeline.assets.scanner import scanner_signals, signal_outcomes
from turbomode_pipeline.due import due_at, judged_at
from turbomode_pipeline.calendar import sessions_before, sessions_between
from turbomode_pipeline.core.drift import (
    Thresholds,
    compose_report,
    confidence_psi,
    feature_drift,
    judged_features,
    sector_status,
    signal_balance,
    status_of,
)
from turbomode_pipeline.core.drift_html import DriftReportData, render_report
from turbomode_pipeline.core.features import RAW_FEATURES, WARMUP
from turbomode_pipeline.core.model_types import STACKED
from turbomode_pipeline.partitions import SECTORS, drift_weeks
from turbomode_pipeline.resources.model_registry import ModelRegistry, registered_name
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.assets.table_schema import table_metadata
from turbomode_pipeline.schemas import DRIFT_FEATURES, DRIFT_REPORT, DriftFeatures, DriftReport, conform
from turbomode_pipeline.settings import get_settings

CONFIDENCE_REFERENCE_SESSIONS = 60  # the scanner's scores before the window that its confidence is compared with
EXPECTED_HIT_RATE_METRIC = "holdout_top_decile_hit_rate"

def week_ending(partition_key: str) -> date:
    return date.fromisoformat(partition_key) + timedelta(days=6)


def week_so_far(partition_key: str, now: datetime) -> list[date]:
    """The week's sessions whose bars are due at `now`: all of them once the week is over."""
    week = sessions_between(date.fromisoformat(partition_key), week_ending(partition_key))
    return [day for day in week if due_at(day) <= now]


class DriftConfig(Config):
    """The launchpad's drift limits; the defaults are TURBOMODE_DRIFT_* of the code location's settings."""

    psi_warn: float = Field(default=get_settings().drift_psi_warn, gt=0.0, description="excess PSI that warns")
    psi_drift: float = Field(default=get_settings().drift_psi_drift, gt=0.0, description="excess PSI that is drift")
    one_sided_share: float = Field(default=get_settings().drift_one_sided_share, ge=0.0, le=1.0,
                                   description="a sector's BUY (or SELL) share of its signals that is one-sided")
    window_sessions: int = Field(default=get_settings().drift_window_sessions, ge=1,
                                 description="the latest sessions compared with the champion's training window")

    @model_validator(mode="after")
    def _warn_below_drift(self):
        if self.psi_warn >= self.psi_drift:
            raise ValueError(f"psi_warn {self.psi_warn} must be below psi_drift {self.psi_drift}")
        return self

    def thresholds(self) -> Thresholds:
        return Thresholds(self.psi_warn, self.psi_drift, self.one_sided_share)


def _champions(registry: ModelRegistry) -> pl.DataFrame:
    rows = []
    for sector in SECTORS:  # one registry look-up per sector of the universe
        champion = registry.champion_run(registered_name(sector, STACKED))
        if champion is not None:
            params = champion["params"]
            # The reference is the validated model's training window: the registered version is
            # refit through the newest labelled sample, which would put the current window in it.
            prefix = "validation_train" if "validation_train_start" in params else "train"
            rows.append({
                "sector": sector, "champion_version": champion["version"],
                "train_start": date.fromisoformat(params[f"{prefix}_start"]),
                "train_end": date.fromisoformat(params[f"{prefix}_end"]),
                "expected_hit_rate": champion["metrics"].get(EXPECTED_HIT_RATE_METRIC),
            })
    schema = {"sector": pl.String, "champion_version": pl.String, "train_start": pl.Date, "train_end": pl.Date,
              "expected_hit_rate": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _features(warehouse: Warehouse, champions: pl.DataFrame, window: list[date]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Feature rows of each sector's training window, and of the current window."""
    rows = warehouse.sector_features(champions["train_start"].min(), window[-1], champions["sector"].to_list(), RAW_FEATURES)
    reference = rows.join(champions.select("sector", "train_start", "train_end"), on="sector").filter(
        pl.col("session").is_between(pl.col("train_start"), pl.col("train_end"))
    ).drop("train_start", "train_end")
    current = rows.filter(pl.col("session").is_in(pl.Series(window).implode()))
    require_sessions(current["session"], window, "daily_features has no rows for session(s) {shown} of the drift "
                     f"window {window[0]}..{window[-1]}; materialise daily_features for them first")
    return reference, current


def _scanner_tables(warehouse: Warehouse, window: list[date], week: tuple[date, date]):
    """Scores before and in the window, the week's signals and the window's outcomes (empty before the scanner ran)."""
    before = sessions_before(window[0], CONFIDENCE_REFERENCE_SESSIONS)
    scores = ["session", "sector", "probability_up"]
    tables = {
        "reference": (lambda: warehouse.scores_between(before[0], before[-1], scores), "scanner_scores"),
        "current": (lambda: warehouse.scores_between(window[0], window[-1], scores), "scanner_scores"),
        "signals": (lambda: warehouse.signals_between(*week, ["sector", "signal_type"]), "signal_history"),
        "outcomes": (lambda: warehouse.outcomes_between(window[0], window[-1], ["sector", "outcome"], by="exit_session"),
                     "signal_outcomes"),
    }
    empty = {
        "reference": {"session": pl.Date, "sector": pl.String, "probability_up": pl.Float64},
        "current": {"session": pl.Date, "sector": pl.String, "probability_up": pl.Float64},
        "signals": {"sector": pl.String, "signal_type": pl.String},
        "outcomes": {"sector": pl.String, "outcome": pl.String},
    }
    return {
        name: read() if warehouse.has_table(table) else pl.DataFrame(schema=empty[name])
        for name, (read, table) in tables.items()
    }


def _summary(report: pl.DataFrame) -> str:
    table = report.select(
        "sector", "status", pl.col("median_excess_psi").round(3), "top_feature", "buy", "sell",
        pl.col("hit_rate").round(3), pl.col("expected_hit_rate").round(3), pl.col("hit_rate_pvalue").round(4),
    )
    return table.to_pandas().to_markdown(index=False)


@asset(
    partitions_def=drift_weeks(),
    pool="warehouse",
    deps=[
        daily_features, scanner_signals, signal_outcomes,
        AssetDep(sector_models, partition_mapping=AllPartitionMapping()),
    ],
    group_name="monitoring",
    kinds={"duckdb", "html", "mlflow"},
    metadata=table_metadata("drift_report", DriftReport),
)
def drift_report(
    context: AssetExecutionContext, config: DriftConfig, warehouse: Warehouse, model_registry: ModelRegistry,
    reports: ReportStore,
):
    """Per sector: PSI and KS of every feature (champion's training window vs the last sessions),
    the scanner's confidence drift, BUY/SELL balance and hit rate against the holdout, and a status.

    Writes drift_report and drift_features, and an HTML report under $TURBOMODE_DATA_DIR/reports/.
    """
    limits, window_sessions = config.thresholds(), config.window_sessions
    end = week_ending(context.partition_key)
    so_far = week_so_far(context.partition_key, judged_at(clock.now()))  # research mode: the history's end
    if not so_far:
        raise Failure(description=f"the week {context.partition_key}..{end} has no session due yet: nothing to report")
    partial = so_far[-1] < sessions_between(date.fromisoformat(context.partition_key), end)[-1]
    window = sessions_before(so_far[-1] + timedelta(days=1), window_sessions)
    champions = _champions(model_registry)
    if champions.is_empty():
        raise Failure(description="no sector has a champion stacked_ensemble model; materialise sector_models first")
    reference, current = _features(warehouse, champions, window)
    drift = feature_drift(reference, current, list(RAW_FEATURES), window_sessions)
    judged = judged_features(list(RAW_FEATURES), WARMUP, window_sessions)
    scanner = _scanner_tables(warehouse, window, (end - timedelta(days=6), end))
    balance = signal_balance(scanner["signals"], limits)
    name = f"drift_report_{end}.html"
    title = f"{end} (partial: sessions {', '.join(map(str, so_far))} so far)" if partial else str(end)
    path = str((Path(reports.directory) / name).resolve())
    report = compose_report(
        sector_status(drift, judged, limits),
        confidence_psi(scanner["reference"], scanner["current"], window_sessions),
        balance, scanner["outcomes"], champions,
        week_ending=end, window_start=window[0], window_end=window[-1], report_path=path, created_at=clock.now(),
    )
    features = drift.with_columns(
        week_ending=pl.lit(end), judged=pl.col("feature").is_in(judged),
        status=status_of(pl.col("excess_psi"), limits),
    )
    report, features = conform(report, DriftReport), conform(features, DriftFeatures)
    written = reports.write(
        name,
        render_report(DriftReportData(title, report, features, reference, current, scanner["reference"],
                                      scanner["current"])),
    )
    warehouse.replace_partitions(DRIFT_REPORT, report, [end])
    warehouse.replace_partitions(DRIFT_FEATURES, features, [end])
    overall = balance.filter(pl.col("sector") == "All sectors").row(0, named=True)
    drifted = report.filter(pl.col("status") == "drift")["sector"].to_list()
    if partial:
        context.log.info(f"week ending {end} is in progress: the report covers its sessions so far, {so_far}")
    if overall["one_sided"]:
        context.log.warning(f"week ending {end}: {overall['buy']} BUY vs {overall['sell']} SELL signals is one-sided")
    return MaterializeResult(
        metadata={
            "summary": MetadataValue.md(_summary(report)),
            "report_path": MetadataValue.path(str(written)),
            "drifted_sectors": MetadataValue.json(drifted),
            "statuses": MetadataValue.json(dict(report.group_by("status").len().sort("status").iter_rows())),
            "signals_one_sided": overall["one_sided"],
            "buy_signals": int(overall["buy"]),
            "sell_signals": int(overall["sell"]),
            "sectors_without_champion": MetadataValue.json(sorted(set(SECTORS) - set(champions["sector"]))),
            "window": f"{window[0]}..{window[-1]}",
            "partial_week": partial,
            "week_sessions": MetadataValue.json([str(day) for day in so_far]),
        }
    )
