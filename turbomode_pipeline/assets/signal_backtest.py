"""`signal_backtest`: would the scanner have made money, after costs, over the graded history?"""

from datetime import date
from pathlib import Path

import polars as pl
from pydantic import Field
from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from turbomode_pipeline.assets.guards import bars_through_horizon, refuse_look_ahead, require_sessions
from turbomode_pipeline.assets.partition_metadata import attach, by_session, readable
from turbomode_pipeline.assets.scanner import scanner_signals, signal_outcomes
from turbomode_pipeline.partitions import daily_sessions
from turbomode_pipeline.core import report_html
from turbomode_pipeline.core import signal_backtest as backtest
from turbomode_pipeline.core.signal_backtest_html import SignalBacktestReport, equity_png, render_report
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.assets.table_schema import table_metadata
from turbomode_pipeline.schemas import (
    SIGNAL_BACKTEST_CURVES,
    SIGNAL_BACKTEST_DAILY,
    SIGNAL_BACKTEST_QUANTILES,
    SIGNAL_BACKTEST_SUMMARY,
    SIGNAL_BACKTEST_TRADES,
    SignalBacktestCurves,
    SignalBacktestDaily,
    SignalBacktestQuantiles,
    SignalBacktestSummary,
    SignalBacktestTrades,
    conform,
)
from turbomode_pipeline.settings import get_settings

col = pl.col


class SignalBacktestConfig(Config):
    """The launchpad's book; the defaults are TURBOMODE_BACKTEST_QUANTILES and TURBOMODE_BACKTEST_COST_BPS."""

    quantiles: int = Field(default=get_settings().backtest_quantiles, ge=2, description="score quantiles per sector")
    cost_bps: float = Field(default=get_settings().backtest_cost_bps, ge=0.0, description="costs per side, in bps")


def _inputs(warehouse: Warehouse, sessions: list[date], horizon: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Every score and graded signal up to the last session, and the closes through its horizon."""
    last = sessions[-1]
    scores = warehouse.scores_between(None, last, ["session", "symbol", "sector", "probability_up", "model_labels_through"])
    refuse_look_ahead(scores, "signal_backtest", "scanner scores")
    scores = scores.drop("model_labels_through")
    require_sessions(scores["session"], sessions, "signal_backtest not run: scanner_scores has no rows for session(s) "
                     "{shown}; materialise scanner_signals (then signal_outcomes) for them first")
    bars = bars_through_horizon(warehouse, "signal_backtest", scores["session"].min(), last, horizon,
                                ["session", "symbol", "close"], "its signals' horizon", ordered=False)
    graded = warehouse.graded_signals_through(last)
    if graded.height:
        refuse_look_ahead(graded, "signal_backtest", "graded signals")
        graded = graded.drop("model_labels_through")
    return scores, bars, graded


def _summary_rows(as_of: date, stats: dict[str, dict], curves: dict[str, pl.DataFrame], quantiles: int,
                  cost_bps: float, report_path: str) -> pl.DataFrame:
    rows = []
    for strategy, values in stats.items():
        frame = curves[strategy]
        rows.append({
            "as_of": as_of, "strategy": strategy,
            "first_session": frame["session"].min() if frame.height else as_of,
            "last_session": frame["session"].max() if frame.height else as_of,
            "days": frame.height, **{k: v for k, v in values.items() if k != "days"},
            "observations": int(values["observations"]), "quantiles": quantiles, "cost_bps": cost_bps,
            "report_path": report_path,
        })
    return pl.DataFrame(rows)


@asset(
    partitions_def=daily_sessions(),
    backfill_policy=BackfillPolicy.single_run(),
    pool="warehouse",
    deps=[
        AssetDep(signal_outcomes),
        AssetDep(scanner_signals, partition_mapping=TimeWindowPartitionMapping(
            start_offset=-get_settings().label_horizon, end_offset=0, allow_nonexistent_upstream_partitions=True)),
    ],
    group_name="scanner",
    kinds={"duckdb", "html", "polars"},
    metadata={
        **table_metadata("signal_backtest_summary", SignalBacktestSummary),
        "also_writes": "signal_backtest_daily, signal_backtest_trades, signal_backtest_curves, signal_backtest_quantiles",
        "materialisable": f"partition d once signal_outcomes d is (daily_bars through the "
                          f"{get_settings().label_horizon} sessions after d)",
    },
)
def signal_backtest(
    context: AssetExecutionContext, config: SignalBacktestConfig, warehouse: Warehouse, reports: ReportStore,
    labels: LabelSettings,
):
    """The scanner's scores and signals over every graded session up to the run's last partition:
    a sector-neutral long-short book (top vs bottom score quantile per sector, H-session overlapping
    tranches, TURBOMODE_BACKTEST_QUANTILES, TURBOMODE_BACKTEST_COST_BPS per side) against an
    equal-weight benchmark, and the BUY/SELL signals as trades (core/signal_backtest.py).

    Partition d holds the long-short book's day d and the signals entered at d as trades; the run's
    last partition also holds the curves, summary and returns by quantile as of it, and the report
    $TURBOMODE_DATA_DIR/reports/signal_backtest_<session>.html.
    """
    costs, quantiles, horizon = backtest.Costs(config.cost_bps), config.quantiles, labels.horizon
    sessions = [date.fromisoformat(key) for key in context.partition_keys]
    as_of = sessions[-1]
    scores, bars, graded = _inputs(warehouse, sessions, horizon)

    daily = backtest.long_short(scores, bars, horizon, quantiles, costs)
    trades = backtest.signal_trades(graded, costs) if graded.height else None  # None: no signal graded yet
    trades_daily = backtest.trades_curve(trades, bars) if trades is not None else pl.DataFrame(
        schema={"session": pl.Date, "ret": pl.Float64})
    curves = {
        "long_short": backtest.curve(daily, "net_ret"),
        "benchmark": backtest.curve(daily, "benchmark_ret"),
        "signals": backtest.curve(trades_daily, "ret", compound=False),
    }
    long_short_stats, benchmark_stats = backtest.long_short_summary(daily, horizon)
    stats = {"long_short": long_short_stats, "benchmark": benchmark_stats,
             "signals": backtest.trades_summary(trades, trades_daily) if trades is not None else None}
    stats = {name: values for name, values in stats.items() if values is not None}
    by_quantile = pl.concat([
        backtest.returns_by_score_quantile(scores, bars, horizon, quantiles).with_columns(strategy=pl.lit("long_short")),
        *([backtest.trades_by_confidence_quantile(trades, quantiles).with_columns(strategy=pl.lit("signals"))]
          if trades is not None else []),
    ]).with_columns(as_of=pl.lit(as_of))

    name = f"signal_backtest_{as_of}.html"
    path = str((Path(reports.directory) / name).resolve())
    summary = conform(_summary_rows(as_of, stats, curves, quantiles, costs.bps_per_side, path), SignalBacktestSummary)
    curve_rows = conform(pl.concat([
        frame.select("session", "ret", "equity", "drawdown").with_columns(as_of=pl.lit(as_of), strategy=pl.lit(strategy))
        for strategy, frame in curves.items()
    ]), SignalBacktestCurves)
    by_quantile = conform(by_quantile, SignalBacktestQuantiles)
    written = reports.write(name, render_report(SignalBacktestReport(
        str(as_of), summary, curve_rows, by_quantile, horizon, costs.bps_per_side, quantiles)))

    partition_days = conform(
        daily.filter(col("session").is_in(pl.Series(sessions).implode()))
        .with_columns(quantiles=pl.lit(quantiles), cost_bps=pl.lit(costs.bps_per_side)),
        SignalBacktestDaily,
    )
    partition_trades = None if trades is None else trades.filter(col("session").is_in(pl.Series(sessions).implode()))
    warehouse.replace_partitions(SIGNAL_BACKTEST_DAILY, partition_days, sessions)
    if partition_trades is not None:
        warehouse.replace_partitions(SIGNAL_BACKTEST_TRADES, conform(partition_trades, SignalBacktestTrades), sessions)
    warehouse.replace_partitions(SIGNAL_BACKTEST_CURVES, curve_rows, [as_of])
    warehouse.replace_partitions(SIGNAL_BACKTEST_SUMMARY, summary, [as_of])
    warehouse.replace_partitions(SIGNAL_BACKTEST_QUANTILES, by_quantile, [as_of])

    # each partition: its own day of the book and its own signals; the as-of numbers on the last partition only
    own = by_session(partition_days, **{
        "long_short_net_ret": col("net_ret").first(), "long_short_gross_ret": col("gross_ret").first(),
        "turnover": col("turnover").first(), "longs": col("longs").first(), "shorts": col("shorts").first(),
        "benchmark_ret": col("benchmark_ret").first(),
    })
    if partition_trades is not None and partition_trades.height:
        entered = by_session(partition_trades, signals_entered=pl.len(), signals_mean_net_ret=col("net_ret").mean())
        own = own.join(entered, on="partition", how="left").with_columns(col("signals_entered").fill_null(0))
    attach(context, own, context.partition_keys, missing={"long_short_net_ret": 0.0})
    ls = summary.filter(col("strategy") == "long_short").row(0, named=True)
    context.add_asset_metadata({
        "as_of": str(as_of),
        "sharpe": readable(ls["sharpe"]), "t_stat": readable(ls["t_stat"]), "ann_return": readable(ls["ann_return"]),
        "ann_vol": readable(ls["ann_vol"]), "max_drawdown": readable(ls["max_drawdown"]),
        "summary": MetadataValue.md(
            summary.select("strategy", "days", *[pl.col(c).round(4) for c in (
                "ann_return", "ann_vol", "sharpe", "t_stat", "max_drawdown", "turnover", "hit_rate", "avg_holding")],
                "observations").to_pandas().to_markdown(index=False)),
        "equity_curve": MetadataValue.md(report_html.markdown_image(equity_png(curve_rows, dpi=60), "equity curve")),
        "report_path": MetadataValue.path(str(written)),
    }, partition_key=str(as_of))
    return MaterializeResult(metadata={"quantiles": quantiles, "cost_bps_per_side": costs.bps_per_side})
