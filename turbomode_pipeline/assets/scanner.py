"""`scanner_signals` (nightly BUY/SELL signals) and `signal_outcomes` (how they turned out)."""

import time
from datetime import date, datetime, timedelta

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetSelection,
    AutomationCondition,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from turbomode_pipeline import clock
from turbomode_pipeline.assets.checks import check_specs, evaluate, refuse
from turbomode_pipeline.assets.guards import bars_through_horizon, refuse_look_ahead, require_sessions
from turbomode_pipeline.assets.features import daily_features
from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.assets.models import sector_models
from turbomode_pipeline.assets.partition_metadata import PER_PARTITION_LIMIT, attach, by_session, log_run, readable
from turbomode_pipeline.calendar import session_close, sessions_after, sessions_before
from turbomode_pipeline.partitions import daily_sessions
from turbomode_pipeline.core import point_in_time, scanner
from turbomode_pipeline.core.features import FEATURES
from turbomode_pipeline.core.model_types import STACKED
from turbomode_pipeline.core.signals_sheet import SignalsSheet, desk_view, render_sheet, sector_track_record
from turbomode_pipeline.due import INGESTION_TIME, desk_timezone, due_at
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.model_registry import ModelRegistry, UntrustedModel, registered_name
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.assets.table_schema import table_metadata
from turbomode_pipeline.schemas import (
    SCANNER_SCORES,
    SIGNAL_HISTORY,
    SIGNAL_OUTCOMES,
    ScannerScores,
    SignalHistory,
    SignalOutcomes,
    conform,
)
from turbomode_pipeline.settings import get_settings

SIGNALS_SCHEMA_CHECK = "signals_match_schema"
OUTCOMES_SCHEMA_CHECK = "outcomes_match_schema"
QUALITY_WINDOWS = (20, 60)


class ScannerConfig(Config):
    """The launchpad's threshold; its default is TURBOMODE_SIGNAL_THRESHOLD of the code location's settings."""

    threshold: float = Field(default=get_settings().signal_threshold, gt=0.5, le=1.0,
                             description="BUY at or above this calibrated probability, SELL at or below 1 minus it")


# Late data, a catch-up run or a backfill of a recent session's features: scan that session.
# Retraining the models does not re-scan history.
SCAN_WHEN_FEATURES_LAND = (
    AutomationCondition.in_latest_time_window(lookback_delta=timedelta(days=14))
    & AutomationCondition.any_deps_updated().ignore(AssetSelection.assets(sector_models)).since_last_handled()
    & ~AutomationCondition.any_deps_missing().ignore(AssetSelection.assets(sector_models))
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("scan a recent session when its features land")



def expiry(sessions: list[date], horizon: int) -> pl.DataFrame:
    """session, expires_at: the close of the session `horizon` sessions later."""
    closes = [session_close(sessions_after(day, horizon)[-1]) for day in sessions]
    return pl.DataFrame({"session": sessions, "expires_at": closes}).with_columns(
        pl.col("expires_at").dt.convert_time_zone("UTC")
    )


def _features(warehouse: Warehouse, sessions: list[date]) -> pl.DataFrame:
    features = warehouse.features(sessions, ["sector", "close", "atr_14", *FEATURES])
    missing = sorted(set(sessions) - set(features["session"].unique().to_list()))
    if missing:
        require_sessions(features["session"], sessions, missing_features(missing, clock.now()),
                         metadata_key="sessions_without_features")
    return features


def missing_features(missing: list[date], now: datetime) -> str:
    """Why the scan cannot run, and the upstream partition(s) to materialise first (a require_sessions message)."""
    upstream = f"{missing[0]}" if len(missing) == 1 else f"{missing[0]}...{missing[-1]}"
    pending = [day for day in missing if due_at(day) > now]
    not_due = (f" ({', '.join(map(str, pending))} not due yet: a session's bars are ingested at {INGESTION_TIME:%H:%M} "
               f"and due by {due_at(pending[-1]).astimezone(desk_timezone()):%H:%M %Z} on its own date)") if pending else ""
    return (f"scanner not run: daily_features has no rows for session(s) {{shown}}{not_due}. Materialise "
            f"daily_features {upstream} first (it writes a session only once that session's daily_bars passed every "
            "blocking check: if daily_bars failed, fix and re-materialise it first)")


def _unserved(complete: pl.DataFrame, served: pl.DataFrame) -> pl.DataFrame:
    """The (session, sector) pairs of `complete` feature rows that `served` (session, sector, ...) lacks."""
    return complete.select("session", "sector").unique().join(served, on=["session", "sector"], how="anti")


def champions_as_of(warehouse: Warehouse, complete: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """Each sector's stacked champion as of each session of `complete` (core/point_in_time.champions_as_of), and
    the sectors left unscored with why. Fails, naming the sector_models weeks to materialise first, for sessions
    that no trained model of any sector precedes: it never falls back to a later model. A sector without a model
    while others have one was skipped by its training (too few samples) and is left unscored, named."""
    sessions = complete["session"].unique().sort().to_list()
    versions = warehouse.model_versions(STACKED)
    trained = point_in_time.champions_as_of(sessions, versions) if versions.height else versions
    untrained = _unserved(complete, trained) if trained.height else complete.select("session", "sector").unique()
    unserved = sorted(set(untrained["session"]) - set(trained["session"] if trained.height else []))
    if unserved:
        weeks = sorted({str(point_in_time.serving_week(day)) for day in unserved})
        raise Failure(
            description=f"scanner not run: no model was trained before session(s) {_shown(pl.Series(unserved))}, and a "
            "session is scored only by a model whose labels ended before it. Materialise sector_models for the "
            f"week(s) {', '.join(weeks[:10])} first (each trained as of the session before its week)",
            metadata={"sector_models_weeks_to_materialise": MetadataValue.json(weeks)},
        )
    without = {sector: "no model trained before the session: its training skipped it (sector_models' skipped_sectors)"
               for sector in sorted(untrained["sector"].unique())}
    assigned = point_in_time.champions_as_of(sessions, warehouse.champion_history(STACKED))
    refused = _unserved(complete, assigned)
    without |= {sector: "the gate refused every version trained before the session (see each version's promotion_reason)"
                for sector in sorted(set(refused["sector"]) - set(without))}
    return assigned.join(versions.select("sector", "version", "sha256"), on=["sector", "version"], how="left"), without


def _shown(sessions: pl.Series, limit: int = 5) -> str:
    days = sorted({str(day) for day in sessions})
    return ", ".join(days[:limit]) + (f" and {len(days) - limit} more" if len(days) > limit else "")


def _load(model_registry: ModelRegistry, assigned: pl.DataFrame) -> tuple[dict, dict[str, float]]:
    """Each assigned (sector, version), loaded once and verified against the warehouse's sha256; load times."""
    models, loading = {}, {}
    for sector, version, sha256 in assigned.select("sector", "version", "sha256").unique().iter_rows():
        started = time.perf_counter()
        name = registered_name(sector, STACKED)
        try:
            models[(sector, version)] = model_registry.load(name, version, sha256)
        except UntrustedModel as error:
            raise Failure(description=f"scanner not run: {error}", metadata={"refused_model": f"{name}/{version}"}) from None
        loading[f"{name}/{version}"] = time.perf_counter() - started
    return models, loading


def score(features: pl.DataFrame, warehouse: Warehouse, model_registry: ModelRegistry
          ) -> tuple[pl.DataFrame, dict, dict[str, str]]:
    """Every symbol with complete features, scored by its sector's stacked champion as of its session
    (core/scanner.score); the load times, and the sectors left unscored with why."""
    complete = scanner.complete_rows(features)
    if complete.is_empty():
        raise Failure(description="scanner not run: no symbol has a complete feature row (still in the 252-session warm-up?)")
    assigned, without = champions_as_of(warehouse, complete)
    models, loading = _load(model_registry, assigned)
    scored = scanner.score(complete, assigned, models)
    if scored.is_empty():
        raise Failure(
            description=f"scanner not run: no sector has a champion stacked model as of the run's sessions "
            f"({'; '.join(f'{sector}: {why}' for sector, why in without.items())})"
        )
    return scored, loading, without


def unscored_metadata(missed: pl.DataFrame) -> pl.DataFrame:
    """Per partition: how many symbols went unscored for want of a champion, how many for incomplete features,
    and which, by sector and reason (core/scanner.unscored's rows)."""
    count = pl.col("symbols").list.len()
    return by_session(
        missed,
        symbols_without_champion=count.filter(pl.col("reason") == scanner.NO_CHAMPION).sum(),
        symbols_with_incomplete_features=count.filter(pl.col("reason") == scanner.INCOMPLETE_FEATURES).sum(),
        unscored_symbols=pl.format("{} ({}): {}", "sector", "reason", pl.col("symbols").list.join(" ")).str.join("; "),
    )


TRACK_RECORD_SESSIONS = 60  # a sheet's sector record: the signals of this many sessions graded by its session


def graded_window(session: date, horizon: int) -> tuple[date, date]:
    """The TRACK_RECORD_SESSIONS sessions whose signals were graded by `session`'s close (their horizon ended)."""
    last = sessions_before(session, horizon)[0]
    return sessions_before(last, TRACK_RECORD_SESSIONS - 1)[0], last


def write_sheets(context: AssetExecutionContext, reports: ReportStore, warehouse: Warehouse, found: pl.DataFrame,
                 sessions: list[date], horizon: int, missed: pl.DataFrame) -> None:
    """Each session's signals sheet (core/signals_sheet.py; of a long backfill, the newest PER_PARTITION_LIMIT),
    linked from its partition as signals_sheet."""
    written, timezone, scanned_at = sessions[-PER_PARTITION_LIMIT:], get_settings().timezone, clock.now()
    graded = warehouse.graded_signal_results(graded_window(written[0], horizon)[0], graded_window(written[-1], horizon)[1])
    view = desk_view(found, timezone)
    for session in written:
        first, last = graded_window(session, horizon)
        sheet = SignalsSheet(
            str(session), scanned_at, timezone, view.filter(pl.col("session") == session),
            sector_track_record(graded.filter(pl.col("session").is_between(first, last))), f"{first}..{last}",
            missed.filter(pl.col("session") == session),
        )
        path = reports.write(f"signals_{session}.html", render_sheet(sheet))
        context.add_asset_metadata({"signals_sheet": MetadataValue.path(str(path))}, partition_key=str(session))


@asset(
    partitions_def=daily_sessions(),
    backfill_policy=BackfillPolicy.single_run(),
    pool="warehouse",
    # session S is served by the models of the week holding it (trained as of the session before that week), so a
    # backfill of both trains each week before it scans the week's sessions
    deps=[AssetDep(daily_features), AssetDep(sector_models, partition_mapping=TimeWindowPartitionMapping())],
    check_specs=check_specs("scanner_signals", SIGNALS_SCHEMA_CHECK, scanner.SIGNAL_RULES),
    automation_condition=SCAN_WHEN_FEATURES_LAND,
    group_name="scanner",
    kinds={"duckdb", "mlflow", "polars"},
    metadata={**table_metadata("signal_history", SignalHistory), "also_writes": "scanner_scores, active_signals (view)"},
)
def scanner_signals(
    context: AssetExecutionContext, config: ScannerConfig, warehouse: Warehouse, model_registry: ModelRegistry,
    labels: LabelSettings, reports: ReportStore,
):
    """Score every symbol's features for the session with its sector's champion (stacked
    ensemble) and emit BUY/SELL signals where the calibrated confidence passes the threshold
    (TURBOMODE_SIGNAL_THRESHOLD). Target and stop are the label barriers; a signal expires
    at the close H sessions later. Writes signal_history and scanner_scores per session, and each
    session's signals sheet $TURBOMODE_DATA_DIR/reports/signals_<session>.html (metadata signals_sheet).
    """
    sessions = [date.fromisoformat(key) for key in context.partition_keys]
    features = _features(warehouse, sessions)
    started = time.perf_counter()
    scored, loading, without_champion = score(features, warehouse, model_registry)
    scan_seconds = time.perf_counter() - started
    threshold = config.threshold
    found = scanner.signals(scored, expiry(sessions, labels.horizon), threshold, labels.barriers, clock.now())
    validated, failures = yield from evaluate(found, SignalHistory, SIGNALS_SCHEMA_CHECK, scanner.SIGNAL_RULES)
    if failures:
        raise refuse("scanner_signals", failures, sessions)
    warehouse.replace_partitions(SIGNAL_HISTORY, validated, sessions)
    scores = scored.select(list(ScannerScores.to_schema().columns))
    warehouse.replace_partitions(SCANNER_SCORES, conform(scores, ScannerScores), sessions)
    warehouse.refresh_active_signals(clock.now())
    latest = found.filter(pl.col("session") == sessions[-1])
    per_session = scanner.balance(found).with_columns(pl.col("session").cast(pl.String), pl.col("buy_share").round(3))
    # each partition: its own signals, BUY/SELL and symbols scored (assets/partition_metadata.py)
    own = by_session(scored, symbols_scored=pl.len()).join(
        by_session(found, **{"dagster/row_count": pl.len(), "buy_signals": (pl.col("signal_type") == "BUY").sum(),
                             "sell_signals": (pl.col("signal_type") == "SELL").sum(),
                             "buy_share": (pl.col("signal_type") == "BUY").mean()}),
        on="partition", how="left",
    ).with_columns(pl.col("dagster/row_count", "buy_signals", "sell_signals").fill_null(0))
    missed = scanner.unscored(features, scored, without_champion)
    own = own.join(unscored_metadata(missed), on="partition", how="left").with_columns(
        pl.col("symbols_without_champion", "symbols_with_incomplete_features").fill_null(0),
        pl.col("unscored_symbols").fill_null("none"),
    )
    attach(context, own, context.partition_keys, missing={"dagster/row_count": 0, "symbols_scored": 0})
    context.add_asset_metadata({
        "buy_sell_by_session": MetadataValue.md(per_session.tail(30).to_pandas().to_markdown(index=False)),
        "top_signals": MetadataValue.md(
            latest.sort("confidence", descending=True).head(10)
            .select("symbol", "signal_type", pl.col("confidence", "entry_price", "target_price", "stop_loss").round(3))
            .to_pandas().to_markdown(index=False)
        ),
    }, partition_key=context.partition_keys[-1])
    write_sheets(context, reports, warehouse, found, sessions, labels.horizon, missed)
    log_run(context, "scanner_signals", signals=found.height, sessions=len(sessions),
            buy_share=float((found["signal_type"] == "BUY").mean()) if found.height else float("nan"))
    # the run's own facts, true of every partition it wrote: its models, threshold and timings
    yield MaterializeResult(
        metadata={
            "sectors_without_champion": MetadataValue.json(without_champion),
            "model_cutoffs": MetadataValue.json(sorted({str(day) for day in scored["model_labels_through"]})),
            "threshold": threshold,
            "scan_seconds": MetadataValue.float(round(scan_seconds, 3)),
            "model_load_seconds": MetadataValue.float(round(sum(loading.values()), 3)),
            "models": MetadataValue.md(
                scored.select("sector", "model_name", "model_version", "model_labels_through", "mlflow_run_id")
                .unique().sort("sector", "model_labels_through")
                .to_pandas().to_markdown(index=False)
            ),
        }
    )


@asset(
    partitions_def=daily_sessions(),
    backfill_policy=BackfillPolicy.single_run(),
    pool="warehouse",
    deps=[
        AssetDep(scanner_signals),
        AssetDep(
            daily_bars,
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=0, end_offset=get_settings().label_horizon, allow_nonexistent_upstream_partitions=True
            ),
        ),
    ],
    check_specs=check_specs("signal_outcomes", OUTCOMES_SCHEMA_CHECK, ()),
    group_name="scanner",
    kinds={"duckdb", "polars"},
    metadata={
        **table_metadata("signal_outcomes", SignalOutcomes),
        "materialisable": f"partition d once daily_bars holds the {get_settings().label_horizon} sessions after d",
    },
)
def signal_outcomes(context: AssetExecutionContext, warehouse: Warehouse, labels: LabelSettings):
    """The realised result (target, stop or expired), return and days held of the session's
    signals once their H-session horizon has passed; metadata: hit rates by sector and
    direction, and the scanner's IC, rank IC and ICIR over the last 20 and 60 sessions.
    """
    sessions = [date.fromisoformat(key) for key in context.partition_keys]
    horizon = labels.horizon
    bars = bars_through_horizon(
        warehouse, "signal_outcomes", sessions_before(sessions[0], max(QUALITY_WINDOWS))[0], sessions[-1],
        horizon, ["session", "symbol", "open", "high", "low", "close"], "its signals' horizon", ordered=False,
    )
    signals = warehouse.signals(sessions)
    scores = warehouse.scores(sessions)
    refuse_look_ahead(scores, "signal_outcomes", "scanner scores")
    graded = scanner.relative_outcomes(
        scanner.outcomes(signals, bars.filter(pl.col("session") >= sessions[0]), horizon),
        scores, bars, horizon,
    )
    validated, failures = yield from evaluate(graded, SignalOutcomes, OUTCOMES_SCHEMA_CHECK, ())
    if failures:
        raise refuse("signal_outcomes", failures, sessions)
    rows = warehouse.replace_partitions(SIGNAL_OUTCOMES, validated, sessions)
    # each partition: its own graded signals, hit rate and the session's IC; the 20- and 60-session
    # windows (as of the run's last session) on the last partition only
    ic = scanner.daily_ic(scores, scanner.forward_returns(bars, horizon))
    own = by_session(graded, **{
        "dagster/row_count": pl.len(), "buy_signals": (pl.col("signal_type") == "BUY").sum(),
        "sell_signals": (pl.col("signal_type") == "SELL").sum(),
        "hit_rate": (pl.col("outcome") == "target").mean(), "mean_ret": pl.col("ret").mean(),
    }).join(ic.select(pl.col("session").cast(pl.String).alias("partition"), "ic", "rank_ic"), on="partition",
            how="full", coalesce=True).with_columns(pl.col("dagster/row_count").fill_null(0))
    attach(context, own, context.partition_keys, missing={"dagster/row_count": 0})
    context.add_asset_metadata(quality(warehouse, bars, sessions[-1], horizon), partition_key=context.partition_keys[-1])
    log_run(context, "signal_outcomes", graded=rows, sessions=len(sessions))
    yield MaterializeResult(metadata={"horizon_sessions": horizon})


def quality(warehouse: Warehouse, bars: pl.DataFrame, last: date, horizon: int) -> dict:
    """Hit rates and IC measures over the last 20 and 60 sessions up to `last`."""
    metadata = {}
    returns = scanner.forward_returns(bars, horizon)
    for window in QUALITY_WINDOWS:
        first = sessions_before(last, window - 1)[0]
        graded = warehouse.outcomes_between(first, last)
        scores = warehouse.scores_between(first, last)
        rates = scanner.hit_rates(graded).with_columns(pl.col("hit_rate", "stop_rate", "mean_ret").round(3))
        summary = scanner.ic_summary(scanner.daily_ic(scores, returns))
        metadata[f"hit_rate_{window}d"] = MetadataValue.md(rates.to_pandas().to_markdown(index=False))
        metadata[f"hit_rate_overall_{window}d"] = MetadataValue.float(
            readable(float((graded["outcome"] == "target").mean())) if graded.height else float("nan")
        )
        right = graded["beat_sector"].drop_nulls() if graded.height else pl.Series([], dtype=pl.Boolean)
        metadata[f"beat_sector_rate_{window}d"] = MetadataValue.float(
            readable(float(right.mean())) if right.len() else float("nan"))
        for name, value in summary.items():
            metadata[f"{name}_{window}d"] = MetadataValue.float(float("nan") if value is None else readable(float(value)))
    return metadata
