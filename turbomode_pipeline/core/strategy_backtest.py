"""The live strategies on history: the same decision, risk and fill code paper trading runs.

For one strategy over one symbol's bars (minute bars, or daily bars for a `timeframe_minutes`
of 1440): `indicator_signals` marks every bar's entry/exit once, vectorised (the live tick
computes the same columns over its two-session window and reads the newest row). The loop then
jumps from one bar that can act to the next (an entry while flat, an exit while holding; for
turbomode_signals a bar inside the active BUY signal's band while flat, or at its target, stop,
expiry or without an active signal while holding): each goes through `decide_on_bar` (the
function the live tick's `decide` calls) or the tick's `follow_signals`, a buy or sell through the
risk manager's `review`, and an approved order fills by `next_open_fills`, the local paper
broker's model: the open of the first bar starting at or after the order's submission, with
slippage and commission. Only those bars are stepped through (held quantity and the day's P&L
are path dependent); the equity curve is then computed vectorised over every bar.

Differences from a live tick, by construction: each strategy trades alone in an account of
`starting_cash` (live, all strategies share one account, so their equity share and the
open-positions limit interact); an order is submitted when its decision bar closes (for a
resampled timeframe the live tick also decides on the unfinished bar each minute); on daily
bars an order decided at the close is for the next session's open (the live risk manager would
call the market closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from turbomode_pipeline.core.fills import next_open_fills
from turbomode_pipeline.core.risk import PROPOSAL_COLUMNS, MarketState, RiskLimits, review
from turbomode_pipeline.core.sharpe import deflate, sharpe_stats
from turbomode_pipeline.core.strategies import DEFAULT_PARAMS, decide_on_bar, follow_signals, indicator_signals, resample

col = pl.col
DAILY = 1440
EXCHANGE_TZ = "America/New_York"
SIGNAL_SCHEMA = {
    "id": pl.String, "symbol": pl.String, "signal_type": pl.String, "confidence": pl.Float64, "target_price": pl.Float64,
    "stop_loss": pl.Float64, "created_at": pl.Datetime("us", "UTC"), "expires_at": pl.Datetime("us", "UTC"),
    "trading_session": pl.Date,
}
TRADE_SCHEMA = {
    "strategy_id": pl.String, "symbol": pl.String, "bar_time": pl.Datetime("us", "UTC"), "side": pl.String,
    "price": pl.Float64, "decision": pl.String, "qty": pl.Float64, "approved": pl.Boolean, "risk_reason": pl.String,
    "fill_time": pl.Datetime("us", "UTC"), "filled_price": pl.Float64, "commission": pl.Float64,
}


@dataclass(frozen=True)
class Costs:
    starting_cash: float = 100_000.0
    slippage_bps: float = 5.0
    commission_per_share: float = 0.0


@dataclass(frozen=True)
class StrategyBacktest:
    trades: pl.DataFrame  # every buy/sell decision, its risk verdict and its fill (TRADE_SCHEMA)
    equity: pl.DataFrame  # strategy_id, session, equity, position, exposure (share of the session's bars held)
    summary: dict


def with_sessions(bars: pl.DataFrame) -> pl.DataFrame:
    """Bars (symbol, time UTC, OHLCV) with `session`, the New York date of the bar."""
    return bars.with_columns(col("time").dt.convert_time_zone(EXCHANGE_TZ).dt.date().alias("session"))


def _decision_bars(strategy_type: str, params: dict, bars: pl.DataFrame, minutes: int) -> pl.DataFrame:
    """The strategy's bars (indicator_signals, or the resampled bars for turbomode_signals), each with its
    submission time, session, market state and the previous session's last close (the day's P&L starts there)."""
    base = bars.select("time", "session").sort("time")
    last_bar = bars.group_by("session").agg(col("time").max().alias("_last_bar"), col("close").sort_by("time").last().alias("_close"))
    previous = last_bar.sort("session").select("session", "_last_bar", col("_close").shift(1).alias("prev_close"))
    if strategy_type == "turbomode_signals":
        frame = resample(bars.drop("session"), minutes)
    else:
        frame = indicator_signals(strategy_type, bars.drop("session"), params)
    frame = frame.with_columns((col("time") + timedelta(minutes=minutes)).alias("submit"))
    frame = frame.join_asof(base, on="time", strategy="forward", check_sortedness=False).join(previous, on="session", how="left")
    market_open = pl.lit(True) if minutes >= DAILY else col("submit") <= col("_last_bar")
    return frame.with_columns(market_open.alias("market_open")).drop("_last_bar")


def _active_buy(frame: pl.DataFrame, signals: pl.DataFrame) -> pl.DataFrame:
    """Each bar with the scan's BUY signal for its session that the tick would see active (expiring after the tick)."""
    buys = signals.filter(col("signal_type") == "BUY").select(
        "trading_session", "expires_at", "target_price", "stop_loss")
    joined = frame.join(buys, left_on="session", right_on="trading_session", how="left", maintain_order="left")
    live = col("expires_at").is_not_null() & (col("expires_at") > col("submit"))
    return joined.with_columns(
        (live & (col("stop_loss") < col("close")) & (col("close") < col("target_price"))).alias("_buy"),
        (~live | (col("close") >= col("target_price")) | (col("close") <= col("stop_loss"))).fill_null(True).alias("_sell"),
    )


def _next_true(flags: pl.Series) -> np.ndarray:
    """For each index i, the first index j >= i where `flags` is true (len(flags) where none is)."""
    values = flags.to_numpy()
    n = len(values)
    marks = np.where(values, np.arange(n), n)
    return np.append(np.minimum.accumulate(marks[::-1])[::-1], n)


def backtest_strategy(strategy: dict, bars: pl.DataFrame, limits: RiskLimits, costs: Costs,
                      signals: pl.DataFrame | None = None) -> StrategyBacktest:
    """`strategy`: id, type, symbol, allocation, params (dict). `bars`: the symbol's bars (symbol, time UTC, OHLCV),
    minute bars, or daily bars stamped with the session's open for a timeframe of 1440 minutes. `signals`, for
    turbomode_signals: the scanner's signals of the symbol (signal_history's columns) with `trading_session`, the
    session they are the newest scan for (the one after the scan's session)."""
    kind, sid, symbol = strategy["type"], strategy["id"], strategy["symbol"]
    params = {**DEFAULT_PARAMS[kind], **strategy["params"]}
    minutes = int(params["timeframe_minutes"])
    bars = with_sessions(bars.filter(col("symbol") == symbol).sort("time"))
    frame = _decision_bars(kind, params, bars, minutes)
    if kind == "turbomode_signals":
        signals = (signals if signals is not None else pl.DataFrame(schema=SIGNAL_SCHEMA)).filter(col("symbol") == symbol)
        frame = _active_buy(frame, signals)
        buy_at, sell_at = _next_true(frame["_buy"]), _next_true(frame["_sell"])
    else:
        buy_at, sell_at = _next_true(frame["entry"]), _next_true(frame["exit"])
    orders = pl.concat([frame.with_row_index("_bar").filter(col(flag)).select(
        "_bar", "symbol", col("submit").alias("time"), pl.lit(side).alias("side"), pl.lit(1.0).alias("qty"))
        for side, flag in (("buy", "_buy" if kind == "turbomode_signals" else "entry"),
                           ("sell", "_sell" if kind == "turbomode_signals" else "exit"))])
    fills = {(row[0], row[1]): (row[2], row[3], row[4]) for row in next_open_fills(
        orders, bars, costs.slippage_bps, costs.commission_per_share).select(
        "_bar", "side", "fill_time", "filled_price", "commission").iter_rows()}
    held, cash, mark, realised, session, rows, i = 0.0, costs.starting_cash, 0.0, 0.0, None, [], 0
    while (j := int(buy_at[i] if held <= 0 else sell_at[i])) < frame.height:  # one step per bar that can act
        i = j + 1
        bar = frame.row(j, named=True)
        if bar["session"] != session:
            session, realised = bar["session"], 0.0
            mark = held * bar["prev_close"] if bar["prev_close"] is not None else mark
        if kind == "turbomode_signals":  # what the tick passes: the symbol's signals active at the tick
            active = signals.filter((col("trading_session") == bar["session"]) & (col("expires_at") > bar["submit"]))
            decision = follow_signals(frame.slice(j, 1), held, active)
        else:
            decision = decide_on_bar(kind, bar, held)
        if decision.action == "hold":
            continue
        proposal = pl.DataFrame([{"strategy_id": sid, "symbol": symbol, "side": decision.action, "price": decision.price,
                                  "allocation": float(strategy["allocation"]), "held_qty": held,
                                  "day_pnl": realised + held * bar["close"] - mark}], schema=PROPOSAL_COLUMNS)
        state = MarketState(equity=cash + held * bar["close"], open_positions=int(held != 0),
                            market_open=bar["market_open"], kill_switch=False)
        verdict = review(proposal, limits, state).row(0, named=True)
        fill_time, price, commission = fills.get((j, decision.action), (None, None, 0.0))
        filled = verdict["approved"] and fill_time is not None
        qty = verdict["qty"]
        rows.append({"strategy_id": sid, "symbol": symbol, "bar_time": decision.bar_time, "side": decision.action,
                     "price": decision.price, "decision": decision.reason, "qty": qty, "approved": verdict["approved"],
                     "risk_reason": verdict["reason"], "fill_time": fill_time if filled else None,
                     "filled_price": price if filled else None, "commission": commission * qty if filled else 0.0})
        if not filled:
            continue
        if decision.action == "buy":
            held, cash, mark = held + qty, cash - qty * price - commission * qty, mark + qty * price
        else:
            held, cash, realised, mark = held - qty, cash + qty * price - commission * qty, realised + qty * price - mark, 0.0
    trades = pl.DataFrame(rows, schema=TRADE_SCHEMA)
    equity = equity_curve(sid, bars, trades, costs.starting_cash)
    return StrategyBacktest(trades, equity, summarise(strategy, minutes, trades, equity, bars, costs.starting_cash,
                                                      costs.slippage_bps))


def equity_curve(strategy_id: str, bars: pl.DataFrame, trades: pl.DataFrame, starting_cash: float) -> pl.DataFrame:
    """Per session: equity at the last bar's close, the position then, and the share of the session's bars held."""
    filled = trades.filter(col("fill_time").is_not_null())
    sign = pl.when(col("side") == "buy").then(1.0).otherwise(-1.0)
    flows = filled.group_by(col("fill_time").alias("time")).agg(
        (sign * col("qty")).sum().alias("_dq"), (-sign * col("qty") * col("filled_price") - col("commission")).sum().alias("_dcash"))
    marked = bars.select("time", "session", "close").join(flows, on="time", how="left").sort("time").with_columns(
        col("_dq", "_dcash").fill_null(0.0)).with_columns(
        col("_dq").cum_sum().alias("position"), (starting_cash + col("_dcash").cum_sum()).alias("_cash"))
    marked = marked.with_columns((col("_cash") + col("position") * col("close")).alias("equity"))
    return marked.group_by("session").agg(
        col("equity").last(), col("position").last(), (col("position") != 0).mean().alias("exposure"),
    ).sort("session").select(pl.lit(strategy_id).alias("strategy_id"), "session", "equity", "position", "exposure")


def costs_paid(trades: pl.DataFrame, slippage_bps: float) -> pl.DataFrame:
    """Per filled order: its fill time, commission and slippage (dollars: the fill's distance from the
    bar's open, which next_open_fills moved by `slippage_bps` against the trader), and session."""
    filled = trades.filter(col("fill_time").is_not_null())
    rate = slippage_bps / 1e4
    unslipped = pl.when(col("side") == "buy").then(col("filled_price") / (1 + rate)).otherwise(col("filled_price") / (1 - rate))
    return filled.select(
        "fill_time", "commission", (col("qty") * (col("filled_price") - unslipped).abs()).alias("slippage"),
        col("fill_time").dt.convert_time_zone(EXCHANGE_TZ).dt.date().alias("session"))


def summarise(strategy: dict, minutes: int, trades: pl.DataFrame, equity: pl.DataFrame, bars: pl.DataFrame,
              starting_cash: float, slippage_bps: float = 0.0, trials: int = 1) -> dict:
    """P&L, Sharpe (daily, annualised over 252 sessions) with its standard error, t and deflated Sharpe (for
    `trials` strategies compared), before and after costs, max drawdown, exposure, round trips and their hit rate."""
    values = equity["equity"]
    returns = pl.concat([pl.Series([starting_cash]), values]).pct_change().drop_nulls()
    paid = costs_paid(trades, slippage_bps)
    per_session = paid.group_by("session").agg((col("commission") + col("slippage")).sum().alias("paid"))
    gross_values = equity.join(per_session, on="session", how="left").sort("session").select(
        col("equity") + col("paid").fill_null(0.0).cum_sum())["equity"]
    gross_returns = pl.concat([pl.Series([starting_cash]), gross_values]).pct_change().drop_nulls()
    stats = sharpe_stats(returns.to_numpy(), trials)
    drawdown = (values / pl.concat([pl.Series([starting_cash]), values]).cum_max().slice(1) - 1).min() if values.len() else 0.0
    filled = trades.filter(col("fill_time").is_not_null()).sort("fill_time")
    sign = pl.when(col("side") == "buy").then(1.0).otherwise(-1.0)
    trips = filled.with_columns((col("side") == "buy").cum_sum().alias("trip")).group_by("trip").agg(
        (-sign * col("qty") * col("filled_price") - col("commission")).sum().alias("pnl"), (col("side") == "sell").any().alias("closed"),
    ).filter(col("closed"))
    final = float(values[-1]) if values.len() else starting_cash
    commission, slippage = float(paid["commission"].sum()), float(paid["slippage"].sum())
    return {
        "strategy_id": strategy["id"], "type": strategy["type"], "symbol": strategy["symbol"],
        "timeframe_minutes": minutes, "first_session": bars["session"].min(), "last_session": bars["session"].max(),
        "sessions": equity.height, "bars": bars.height, "orders_filled": filled.height,
        "orders_rejected": int((~trades["approved"]).sum()), "round_trips": trips.height,
        "hit_rate": float((trips["pnl"] > 0).mean()) if trips.height else None,
        "commission": commission, "slippage": slippage, "costs": commission + slippage,
        "starting_equity": starting_cash, "final_equity": final,
        "pnl": final - starting_cash, "pnl_before_costs": final - starting_cash + commission + slippage,
        "total_return": final / starting_cash - 1, "sharpe": stats["sharpe"], "sharpe_se": stats["sharpe_se"],
        "sharpe_t": stats["sharpe_t"], "deflated_sharpe": stats["deflated_sharpe"],
        "sharpe_before_costs": sharpe_stats(gross_returns.to_numpy())["sharpe"],
        "max_drawdown": float(drawdown) if drawdown is not None else 0.0,
        "exposure": float((equity["exposure"] * 1.0).mean()) if equity.height else 0.0,
    }


def deflate_summaries(summaries: list[dict]) -> list[dict]:
    """The summaries of strategies compared together, each deflated Sharpe for all of them (core/sharpe.deflate)."""
    deflated = deflate([s["sharpe"] for s in summaries], [s["sessions"] for s in summaries])
    return [{**s, "deflated_sharpe": d} for s, d in zip(summaries, deflated, strict=True)]
