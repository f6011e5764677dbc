"""`strategy_backtest`: the live paper-trading strategies over a historical range, through their own code."""


import json
from datetime import date
from pathlib import Path

import polars as pl
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset

from turbomode_pipeline import clock
from turbomode_pipeline.calendar import session_open, sessions_before, sessions_between
from turbomode_pipeline.core.strategies import stored_strategy_problem
from turbomode_pipeline.core.strategy_backtest import DAILY, Costs, backtest_strategy, deflate_summaries
from turbomode_pipeline.core.strategy_backtest_html import equity_png, render_report
from turbomode_pipeline.live.trading import LiveTrading
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.resources.market_data import MarketDataSource
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.assets.table_schema import table_metadata
from turbomode_pipeline.schemas import (
    STRATEGY_BACKTEST,
    STRATEGY_BACKTEST_EQUITY,
    STRATEGY_BACKTEST_TRADES,
    StrategyBacktestEquity,
    StrategyBacktestSummary,
    StrategyBacktestTrades,
    conform,
)

col = pl.col
NO_SIGNALS = "the warehouse has no signal_history to follow (materialise scanner_signals first)"


class StrategyBacktestConfig(Config):
    start: str  # first session, ISO date
    end: str  # last session, ISO date
    strategy_ids: list[str] = []  # empty: every enabled row of live_strategies


def selected_strategies(ledger: Ledger, strategy_ids: list[str]) -> pl.DataFrame:
    """The ledger's strategies named in `strategy_ids`, or every enabled one; ValueError naming an unknown id."""
    known = ledger.strategies()
    unknown = sorted(set(strategy_ids) - set(known["id"]))
    if unknown:
        raise ValueError(f"no strategy with id {', '.join(unknown)} in live_strategies; known: {', '.join(known['id'])}")
    return known.filter(col("id").is_in(strategy_ids)) if strategy_ids else known.filter(col("enabled") == 1)


def history_bars(market_data: MarketDataSource, universe: pl.DataFrame, symbols: list[str], sessions: list[date],
                 daily: bool) -> pl.DataFrame:
    """Minute bars of `symbols` over `sessions`, or daily bars stamped with each session's open (UTC)."""
    wanted = universe.filter(col("symbol").is_in(symbols))
    if not daily:
        return market_data.minute_bars(sessions, wanted)
    opens = pl.DataFrame({"session": sessions, "time": [session_open(day) for day in sessions]},
                         schema={"session": pl.Date, "time": pl.Datetime("us", "UTC")})
    bars = market_data.daily_bars(sessions, wanted)
    return bars.join(opens, on="session").select("symbol", "time", "open", "high", "low", "close", "volume")


def scanner_signals_for(warehouse: Warehouse, symbols: list[str], sessions: list[date]) -> pl.DataFrame | None:
    """The scanner's signals of `symbols` for each of `sessions`, as a live tick in that session sees them: those of
    the scan of the session before (`trading_session` is the session they are the newest scan for); None when the
    warehouse has no signal_history."""
    if not warehouse.has_table("signal_history"):
        return None
    scans = [*sessions_before(sessions[0], 1), *sessions[:-1]]
    mapping = pl.DataFrame({"session": scans, "trading_session": sessions}, schema={"session": pl.Date, "trading_session": pl.Date})
    found = warehouse.signals_between(
        scans[0], scans[-1],
        ["id", "session", "symbol", "signal_type", "confidence", "target_price", "stop_loss", "created_at", "expires_at"],
        symbols=symbols,
    )
    return found.join(mapping, on="session").drop("session").with_columns(
        col("created_at", "expires_at").dt.convert_time_zone("UTC"))


def _range(config: StrategyBacktestConfig) -> list[date]:
    try:
        first, last = date.fromisoformat(config.start), date.fromisoformat(config.end)
    except ValueError as error:
        raise Failure(description=f"strategy_backtest: start and end must be ISO dates (YYYY-MM-DD): {error}") from None
    if first > last:
        raise Failure(description=f"strategy_backtest: start {first} is after end {last}")
    sessions = sessions_between(first, last)
    if not sessions:
        raise Failure(description=f"strategy_backtest: no NYSE session between {first} and {last}")
    return sessions


@asset(group_name="live_trading", pool="warehouse", kinds={"duckdb", "html"},
       metadata=table_metadata("strategy_backtest", StrategyBacktestSummary))
def strategy_backtest(context: AssetExecutionContext, config: StrategyBacktestConfig, ledger: Ledger,
                      market_data: MarketDataSource, universe: Universe, warehouse: Warehouse,
                      reports: ReportStore, live_trading: LiveTrading) -> MaterializeResult:
    """The live strategies (every enabled row of live_strategies, or `strategy_ids`) over start..end, through the live
    tick's decision function, the live risk limits and the local paper broker's fill model.

    Writes strategy_backtest (one row per strategy and range), strategy_backtest_trades, strategy_backtest_equity,
    and strategy_backtest_<first>_<last>.html under $TURBOMODE_DATA_DIR/reports/.
    """
    sessions = _range(config)
    ledger.seed_strategies(live_trading.strategies_file)
    try:
        chosen = selected_strategies(ledger, config.strategy_ids)
    except ValueError as error:
        raise Failure(description=f"strategy_backtest: {error}") from None
    known_symbols = set(universe.load()["symbol"])
    followers = chosen.filter(col("type") == "turbomode_signals")
    signals = scanner_signals_for(warehouse, followers["symbol"].unique().to_list(), sessions) if followers.height else None
    skipped = ["turbomode_signals"] if followers.height and signals is None else []
    notes = [f"{row['id']} not backtested: {NO_SIGNALS}"
             for row in chosen.filter(col("type").is_in(skipped)).iter_rows(named=True)]
    notes += [f"{row['id']} not backtested: {row['symbol']} is not in the universe file"
              for row in chosen.filter(~col("symbol").is_in(list(known_symbols))).iter_rows(named=True)]
    broken = {row["id"]: problem for row in chosen.iter_rows(named=True) if (problem := stored_strategy_problem(row))}
    notes += [f"{strategy_id} not backtested: {problem}" for strategy_id, problem in broken.items()]
    runnable = chosen.filter(~col("type").is_in(skipped) & col("symbol").is_in(list(known_symbols))
                             & ~col("id").is_in(list(broken)))
    if runnable.is_empty():
        raise Failure(description="strategy_backtest: nothing to backtest. " + "; ".join(notes))
    runnable = runnable.with_columns(col("params").map_elements(
        lambda p: int(json.loads(p).get("timeframe_minutes", 1)) >= DAILY, return_dtype=pl.Boolean).alias("daily"))
    bars = {daily: history_bars(market_data, universe.load(), group["symbol"].unique().to_list(), sessions, daily)
            for (daily,), group in runnable.group_by("daily")}  # at most two loads: minute and daily bars
    costs = Costs(live_trading.starting_cash, live_trading.slippage_bps, live_trading.commission_per_share)
    limits = live_trading.limits()
    name = f"strategy_backtest_{sessions[0]}_{sessions[-1]}.html"
    path = str((Path(reports.directory) / name).resolve())
    summaries, trades, equities = [], [], []
    for strategy in runnable.iter_rows(named=True):  # one per strategy (nine by default)
        spec = {**strategy, "params": json.loads(strategy["params"])}
        result = backtest_strategy(spec, bars[strategy["daily"]], limits, costs, signals)
        backtest_id = f"{strategy['id']}:{sessions[0]}..{sessions[-1]}"
        if not result.summary["bars"]:
            notes.append(f"{strategy['id']}: the market data source has no bars of {strategy['symbol']} in the range")
        summaries.append({"backtest_id": backtest_id, **result.summary, "slippage_bps": costs.slippage_bps,
                          "commission_per_share": costs.commission_per_share,
                          "first_session": result.summary["first_session"] or sessions[0],
                          "last_session": result.summary["last_session"] or sessions[-1],
                          "report_path": path, "created_at": clock.now()})
        trades.append(result.trades.with_columns(backtest_id=pl.lit(backtest_id)))
        equities.append(result.equity.with_columns(backtest_id=pl.lit(backtest_id)))
        context.log.info(f"{strategy['id']}: {result.summary['round_trips']} round trips, P&L {result.summary['pnl']:,.2f}")
    summaries = deflate_summaries(summaries)  # each Sharpe deflated for every strategy compared in this run
    summary = conform(pl.DataFrame(summaries, infer_schema_length=None), StrategyBacktestSummary)
    trade_rows = conform(pl.concat(trades), StrategyBacktestTrades)
    equity = conform(pl.concat(equities), StrategyBacktestEquity)
    image = equity_png(equity) if not equity.is_empty() else None
    written = reports.write(name, render_report(f"{sessions[0]} to {sessions[-1]}", summary, equity, trade_rows, notes, image))
    ids = summary["backtest_id"].to_list()
    warehouse.replace_partitions(STRATEGY_BACKTEST, summary, ids)
    warehouse.replace_partitions(STRATEGY_BACKTEST_TRADES, trade_rows, ids)
    warehouse.replace_partitions(STRATEGY_BACKTEST_EQUITY, equity, ids)
    table = summary.select("strategy_id", "round_trips", col("pnl_before_costs").round(2), col("costs").round(2),
                           col("pnl").round(2), col("sharpe").round(2), col("sharpe_se").round(2), col("sharpe_t").round(2),
                           col("deflated_sharpe").round(3), col("sharpe_before_costs").round(2),
                           col("max_drawdown").round(4), col("exposure").round(3))
    return MaterializeResult(metadata={
        "summary": MetadataValue.md(_markdown(table)),
        "report_path": MetadataValue.path(str(written)),
        "range": f"{sessions[0]}..{sessions[-1]}",
        "strategies": MetadataValue.json(summary["strategy_id"].to_list()),
        "not_backtested": MetadataValue.json(notes),
        "pnl_total": MetadataValue.float(round(float(summary["pnl"].sum()), 2)),
        "orders_filled": MetadataValue.int(int(summary["orders_filled"].sum())),
        **({"equity_curve": MetadataValue.md(f"![equity and drawdown](data:image/png;base64,{image})")} if image else {}),
    })


def _markdown(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns)
    return head + "".join("\n| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.rows())
