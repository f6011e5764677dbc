"""`paper_trading_report`: the day of paper trading at a glance, one partition per session."""

import base64
import io
from datetime import date

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
from turbomode_pipeline.partitions import daily_sessions
from turbomode_pipeline.resources.ledger import Ledger

col = pl.col


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
    metadata = {
        "pnl_total": MetadataValue.float(round(float(pnl["pnl"].sum()), 2)),  # dollars and cents
        "pnl_by_strategy": MetadataValue.md(_markdown(pnl)),
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
