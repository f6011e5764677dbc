"""`paper_trading_report`: the day of paper trading at a glance, one partition per session."""

import base64
import io
from datetime import date

import numpy as np
import polars as pl
from dagster import (
    AssetExecutionContext,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    asset,
    define_asset_job,
    schedule,
)

from turbomode_pipeline.automation.run_health import max_runtime
from turbomode_pipeline.calendar import EXCHANGE_TZ, is_session, session_close, session_open
from turbomode_pipeline.core.minute_bars import MINUTES
from turbomode_pipeline.core.sharpe import TRADING_DAYS, deflate, sharpe_stats
from turbomode_pipeline.partitions import daily_sessions
from turbomode_pipeline.resources.ledger import Ledger

col = pl.col


SHARPE_NOTE = ("\n\nsharpe: of the strategy's tick-by-tick P&L on its allocation, annualised over 252 sessions; "
               "sharpe_se its standard error (one session is little data), sharpe_t its t, deflated_sharpe the "
               "probability that the true Sharpe is above 0 given the best of these strategies was picked; costs: "
               "commission and slippage the fills paid (pnl is after them).")


def _window(session: date) -> list[str]:
    return [session_open(session).isoformat(), session_close(session).isoformat()]


def strategy_pnl(ledger: Ledger, session: date) -> pl.DataFrame:
    """Per strategy: quantity held at the close, and P&L over the session marked to the last price it saw."""
    start, end = _window(session)
    frame = ledger.strategy_marks(start, end)
    before, during = ledger.net_quantity_before(start), ledger.fills_between(start, end)
    for part in (before, during):
        if not part.is_empty():
            frame = frame.join(part, on="strategy_id", how="left", maintain_order="left")
    for name in ("q0", "dq", "cash_flow", "fills", "p0", "p1"):
        frame = frame.with_columns(col(name).cast(pl.Float64).fill_null(0.0) if name in frame.columns else pl.lit(0.0).alias(name))
    return frame.select(
        "strategy_id", (col("q0") + col("dq")).alias("qty_at_close"), col("fills").cast(pl.Int64),
        ((col("q0") + col("dq")) * col("p1") - col("q0") * col("p0") + col("cash_flow")).round(2).alias("pnl"),
    ).sort("strategy_id")


def tick_values(ledger: Ledger, start: str, end: str) -> pl.DataFrame:
    """strategy_id, tick_time, value: each strategy's mark-to-market P&L since the session's start at every tick
    it priced (its fills' cash flows plus its position at the price it saw)."""
    marks = ledger.strategy_prices(start, end)
    if marks.is_empty():
        return pl.DataFrame(schema={"strategy_id": pl.String, "tick_time": pl.String, "value": pl.Float64})
    fills = ledger.fills_until(end)
    sign = pl.when(col("side") == "buy").then(1.0).otherwise(-1.0)
    flows = fills.select(
        "strategy_id", col("filled_at").str.to_datetime(time_zone="UTC").alias("t"),
        (sign * col("qty")).alias("dq"), (col("filled_at") >= start).alias("today"),
        pl.when(col("filled_at") >= start).then(-sign * col("qty") * col("fill_price")).otherwise(0.0).alias("cash"),
    ).sort("t").with_columns(col("dq").cum_sum().over("strategy_id").alias("pos"),
                             col("cash").cum_sum().over("strategy_id").alias("flow"))
    ticks = marks.with_columns(col("tick_time").str.to_datetime(time_zone="UTC").alias("t")).sort("t")
    held = ticks.join_asof(flows.select("strategy_id", "t", "pos", "flow"), on="t", by="strategy_id", strategy="backward",
                          check_sortedness=False)
    first = held.sort("t").group_by("strategy_id").agg(col("price").first().alias("p0"))
    before = flows.filter(~col("today")).group_by("strategy_id").agg(col("dq").sum().alias("q0"))
    return (
        held.join(first, on="strategy_id", how="left").join(before, on="strategy_id", how="left")
        .with_columns(col("pos", "flow", "q0").fill_null(0.0))
        .select("strategy_id", "tick_time", (col("flow") + col("pos") * col("price") - col("q0") * col("p0")).alias("value"))
        .sort("strategy_id", "tick_time")
    )


def strategy_statistics(ledger: Ledger, session: date) -> pl.DataFrame:
    """Per strategy, for the session: round trips (sells filled), costs paid, P&L before costs, and the Sharpe of
    its tick-by-tick P&L on its allocation (annualised: 252 sessions of 390 minutes at the ticks' spacing) with its standard
    error, t and deflated Sharpe for the strategies reported together (core/sharpe.py). One session of ticks
    is very little data: the standard error says how little."""
    start, end = _window(session)
    strategies = ledger.strategy_allocations()
    trips = ledger.sells_between(start, end)
    values = tick_values(ledger, start, end).join(strategies, on="strategy_id")
    rows, periods = [], TRADING_DAYS * MINUTES
    for (strategy_id,), frame in values.group_by("strategy_id"):  # a handful of strategies
        allocation = float(frame["allocation"][0] or 0.0)
        pnl = np.diff(np.concatenate([[0.0], frame["value"].to_numpy()]))
        returns = pnl / allocation if allocation > 0 else pnl * np.nan
        times = frame["tick_time"].str.to_datetime(time_zone="UTC").sort()
        spacing = max(float(times.diff().dt.total_seconds().median() or 60.0) / 60, 1.0)  # minutes between ticks
        periods = int(TRADING_DAYS * MINUTES / spacing)
        rows.append({"strategy_id": strategy_id, **sharpe_stats(returns, periods=periods)})
    stats = pl.DataFrame(rows, schema={"strategy_id": pl.String, "sharpe": pl.Float64, "sharpe_se": pl.Float64,
                                       "sharpe_t": pl.Float64, "deflated_sharpe": pl.Float64, "periods_n": pl.Int64})
    if stats.height:
        stats = stats.with_columns(deflated_sharpe=pl.Series(deflate(stats["sharpe"].to_list(), stats["periods_n"].to_list(),
                                                                     periods=periods), dtype=pl.Float64))
    costs = ledger.costs_between(start, end)
    return (
        strategies.select("strategy_id").join(trips, on="strategy_id", how="left").join(costs, on="strategy_id", how="left")
        .join(stats, on="strategy_id", how="left")
        .with_columns(col("round_trips").fill_null(0).cast(pl.Int64), col("commission", "slippage").fill_null(0.0))
        .with_columns((col("commission") + col("slippage")).alias("costs"))
        .select("strategy_id", "round_trips", "costs", "sharpe", "sharpe_se", "sharpe_t", "deflated_sharpe",
                col("periods_n").alias("ticks"))
        .sort("strategy_id")
    )


def equity_plot(equity: pl.DataFrame, session: date) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 3))
    times = equity["tick_time"].str.to_datetime(time_zone="UTC").dt.convert_time_zone("America/New_York")
    axis.plot(times.to_list(), equity["equity"].to_list())
    axis.set_title(f"paper equity {session}")
    axis.set_ylabel("USD")
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return f"![equity curve](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


@asset(partitions_def=daily_sessions(), group_name="live_trading",
       description="The session's paper trading: equity curve, P&L per strategy, open positions, orders and rejections.")
def paper_trading_report(context: AssetExecutionContext, ledger: Ledger) -> MaterializeResult:
    session = date.fromisoformat(context.partition_key)
    start, end = _window(session)
    equity, orders = ledger.equity_between(start, end), ledger.orders_between(start, end)
    rejections, positions = ledger.rejections_between(start, end), ledger.positions_at(end)
    pnl = strategy_pnl(ledger, session)
    stats = strategy_statistics(ledger, session)
    pnl = pnl.join(stats, on="strategy_id", how="left").with_columns(
        (col("pnl") + col("costs").fill_null(0.0)).round(2).alias("pnl_before_costs"))
    metadata = {
        "pnl_total": MetadataValue.float(round(float(pnl["pnl"].sum()), 2)),  # dollars and cents
        "pnl_by_strategy": MetadataValue.md(_markdown(pnl) + SHARPE_NOTE),
        "open_positions": MetadataValue.md(_markdown(positions)),
        "orders": MetadataValue.int(orders.height),
        "orders_of_the_day": MetadataValue.md(_markdown(orders)),
        "rejections": MetadataValue.int(rejections.height),
        "rejections_of_the_day": MetadataValue.md(_markdown(rejections)),
        "ticks": MetadataValue.int(equity.height),
    }
    if not equity.is_empty():
        metadata["equity_close"] = MetadataValue.float(round(float(equity["equity"][-1]), 2))
        metadata["equity_curve"] = MetadataValue.md(equity_plot(equity, session))
    return MaterializeResult(metadata=metadata)


def _markdown(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "_none_"
    frame = frame.with_columns(pl.selectors.float().round(2))  # dollars and cents, not 100473.67239999998
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * frame.width + "\n"
    return header + "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in frame.head(200).rows())


paper_trading_report_job = define_asset_job(
    "paper_trading_report_job", selection=[paper_trading_report], partitions_def=daily_sessions(),
    tags=max_runtime(minutes=15),
)


@schedule(name="paper_trading_report_schedule", cron_schedule="30 17 * * 1-5", execution_timezone="America/New_York",
          job=paper_trading_report_job, default_status=DefaultScheduleStatus.RUNNING,
          description="The day's paper trading report at 17:30 New York, once the session's partition exists (see partitions.PARTITION_TZ).")
def paper_trading_report_schedule(context: ScheduleEvaluationContext):
    day = context.scheduled_execution_time.astimezone(EXCHANGE_TZ).date()
    if not is_session(day):
        return SkipReason(f"{day} is not an NYSE session: no paper trading to report")
    return RunRequest(run_key=f"paper_trading_report:{day}", partition_key=day.isoformat())
