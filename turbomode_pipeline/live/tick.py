"""One live-trading tick: bars -> strategies -> risk -> orders -> reconciliation -> ledger.

Called by the `live_trading_tick` op with the run's resources; everything it decides is
written to the trading ledger. The warehouse is only ever read, with a short lock timeout:
when a nightly job holds it, the scanner's signals come from the ledger's last copy.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import polars as pl

from turbomode_pipeline.calendar import sessions_before, session_open, xnys
from turbomode_pipeline.core.risk import MarketState, RiskLimits, review
from turbomode_pipeline.core.strategies import Decision, decide, stored_strategy_problem
from turbomode_pipeline.resources.broker import (
    FINAL_STATUSES,
    BrokerError,
    Order,
    OrderRefused,
    PaperBroker,
    calendar_clock,
    client_order_id,
)
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.resources.market_data import MarketDataSource
from turbomode_pipeline.resources.warehouse import Warehouse, WarehouseError, WarehouseLockedError

col = pl.col
DECISION_SCHEMA = {
    "strategy_id": pl.String, "symbol": pl.String, "action": pl.String, "bar_time": pl.Datetime("us", "UTC"),
    "price": pl.Float64, "reason": pl.String, "allocation": pl.Float64, "held_qty": pl.Float64, "day_pnl": pl.Float64,
}


@dataclass(frozen=True)
class TickResult:
    decisions: pl.DataFrame
    reviewed: pl.DataFrame
    submitted: list[str]
    positions: pl.DataFrame
    equity: float
    failures: dict[str, str]  # strategy id -> why it or its order failed this tick (recorded as its status "error: ...")


def current_session(now: datetime) -> date:
    """The session trading at `now`, or the last one before it."""
    return xnys().minute_to_session(now.replace(second=0, microsecond=0), direction="previous").date()


def completed_bars(market_data: MarketDataSource, universe: pl.DataFrame, symbols: list[str], now: datetime) -> pl.DataFrame:
    """The minute bars of the previous and the current session that have closed by `now`."""
    session = current_session(now)
    sessions = [*sessions_before(session, 1), session]
    wanted = universe.filter(col("symbol").is_in(symbols))
    bars = market_data.minute_bars(sessions, wanted)
    return bars.filter(col("time") + timedelta(minutes=1) <= now)


def active_signals(warehouse: Warehouse, ledger: Ledger, now: datetime, log: logging.Logger) -> pl.DataFrame | None:
    """The scanner's active signals, or the ledger's last copy when the warehouse is locked or empty."""
    try:
        signals = warehouse.active_signals_at(now)
    except (WarehouseLockedError, WarehouseError) as error:
        cached, cached_at = ledger.cached_active_signals()
        age = f"{(now - cached_at).total_seconds() / 60:.0f} min old (cached {cached_at:%Y-%m-%d %H:%M} UTC)" if cached_at else "none cached"
        log.warning(f"active_signals unreadable ({str(error).splitlines()[0]}); using the ledger's copy: {age}")
        return cached
    ledger.cache_active_signals(signals, now)
    return signals


def day_pnl(ledger: Ledger, bars: pl.DataFrame, session_start: datetime, now: datetime) -> pl.DataFrame:
    """Per strategy and symbol: P&L since the session opened (realised and marked to the newest close)."""
    before = bars.filter(col("time") < session_start).group_by("symbol").agg(col("close").sort_by("time").last().alias("p0"))
    last = bars.group_by("symbol").agg(col("close").sort_by("time").last().alias("p1"))
    start = ledger.holdings(until=session_start).select("strategy_id", "symbol", col("held_qty").alias("q0"))
    today = ledger.holdings(since=session_start, until=now + timedelta(seconds=1))
    both = start.join(today, on=["strategy_id", "symbol"], how="full", coalesce=True).fill_null(0.0)
    priced = both.join(before, on="symbol", how="left").join(last, on="symbol", how="left").fill_null(0.0)
    return priced.select(
        "strategy_id", "symbol", (col("q0") + col("held_qty")).alias("held_qty"),
        ((col("q0") + col("held_qty")) * col("p1") - col("q0") * col("p0") + col("cash_flow")).alias("day_pnl"),
    )


def record_orders(ledger: Ledger, orders: list[tuple[str, Order]], submitted_at: dict[str, str], now: datetime) -> None:
    """Write the broker's view of (strategy_id, order) pairs to `orders`, and their fills to `fills`."""
    if not orders:
        return
    ledger.append("orders", pl.DataFrame([
        {"client_order_id": order.client_order_id, "strategy_id": strategy_id, "symbol": order.symbol, "side": order.side,
         "qty": order.qty, "submitted_at": submitted_at.get(order.client_order_id, now.isoformat()),
         "broker_order_id": order.broker_order_id, "status": order.status, "filled_qty": order.filled_qty,
         "filled_avg_price": order.filled_avg_price, "updated_at": now.isoformat()}
        for strategy_id, order in orders
    ], infer_schema_length=None))
    filled = [(strategy_id, order) for strategy_id, order in orders if order.status == "filled"]
    if filled:
        ledger.append("fills", pl.DataFrame([
            {"client_order_id": order.client_order_id, "strategy_id": strategy_id, "symbol": order.symbol,
             "side": order.side, "qty": order.filled_qty, "price": order.filled_avg_price,
             "filled_at": (order.filled_at or now).isoformat()}
            for strategy_id, order in filled
        ]))


# the ledger's own statuses: before the broker's answer; never reached it; answered and refused by the broker
SUBMITTING, UNSENT, REFUSED = "submitting", "unsent", "refused"
SETTLED = (*FINAL_STATUSES, UNSENT, REFUSED)
TRADES = ("buy", "sell")  # a decision's actions that propose an order; the others are "hold" and "error"


def sync_orders(ledger: Ledger, broker: PaperBroker, now: datetime, log: logging.Logger | None = None) -> None:
    """Ask the broker about every unfinished order and record what changed.

    An order still `submitting` was written before its broker call and the tick died before the answer was
    recorded: the broker's order of that client_order_id is adopted, or, when the broker never got it, the
    order is marked `unsent` (its client id is never sent again, the decision's bar has passed).
    """
    open_orders = ledger.unsettled_orders(SETTLED)
    if open_orders.is_empty():
        return
    answers = [(row, broker.order_by_client_id(row["client_order_id"]))
               for row in open_orders.iter_rows(named=True)]  # open orders: a handful per tick
    submitted_at = dict(zip(open_orders["client_order_id"], open_orders["submitted_at"], strict=True))
    record_orders(ledger, [(row["strategy_id"], order) for row, order in answers if order is not None], submitted_at, now)
    for row, order in answers:
        if row["status"] != SUBMITTING or log is None:
            continue
        if order is None:
            log.warning(f"order {row['client_order_id']} was being submitted when a tick died; the broker never got it: unsent")
        else:
            log.warning(f"order {row['client_order_id']} was being submitted when a tick died; adopted the broker's "
                        f"{order.side} {order.qty:g} {order.symbol} ({order.status})")
    unsent = [row["client_order_id"] for row, order in answers if order is None and row["status"] == SUBMITTING]
    if unsent:
        ledger.set_order_status(unsent, UNSENT, now)


def run_tick(
    now: datetime,
    strategy_ids: list[str],
    *,
    ledger: Ledger,
    broker: PaperBroker,
    market_data: MarketDataSource,
    universe: pl.DataFrame,
    warehouse: Warehouse,
    limits: RiskLimits,
    kill_switch: bool,
    log: logging.Logger,
) -> TickResult:
    strategies = ledger.strategies().filter(col("id").is_in(strategy_ids) & (col("enabled") == 1))
    symbols = strategies["symbol"].unique().sort().to_list()
    unknown = sorted(set(symbols) - set(universe["symbol"]))
    if unknown:
        log.warning(f"no bars for {', '.join(unknown)}: not in the universe file; their strategies hold")
    bars = completed_bars(market_data, universe, symbols, now)
    broker.observe(bars)
    sync_orders(ledger, broker, now, log)  # adopts the orders a dead tick left `submitting`
    halted = unexplained_positions(ledger, broker)
    for row in halted.iter_rows(named=True):  # a handful of symbols at most
        log.error(f"halted {row['symbol']}'s strategies: {row['reason']}")
    strategies = strategies.filter(~col("symbol").is_in(halted["symbol"].implode()))
    market_open = calendar_clock(now).is_open and broker.clock(now).is_open
    pnl = day_pnl(ledger, bars, session_open(current_session(now)), now)
    signals = active_signals(warehouse, ledger, now, log) if (strategies["type"] == "turbomode_signals").any() else None
    decisions = strategy_decisions(strategies, bars, pnl, signals)
    failures = dict(decisions.filter(col("action") == "error").select("strategy_id", "reason").rows())
    for strategy_id, reason in failures.items():  # every tick it fails; its status carries it, alerted once
        log.error(f"{strategy_id} skipped this tick: {reason}")
    ledger.append("strategy_signals", decisions.select(
        pl.lit(now.isoformat()).alias("tick_time"), "strategy_id", "symbol", col("bar_time").cast(pl.String), "action",
        "price", "reason"))

    proposals = decisions.filter(col("action").is_in(TRADES)).rename({"action": "side"})
    _, equity = broker.account_equity()
    open_positions = int((pnl["held_qty"] != 0).sum())
    state = MarketState(equity=equity, open_positions=open_positions, market_open=market_open, kill_switch=kill_switch)
    reviewed = review(proposals, limits, state)
    submitted, order_failures = submit_approved(reviewed, ledger, broker, now, log)
    failures |= order_failures
    ledger.append("risk_decisions", reviewed.select(
        pl.lit(now.isoformat()).alias("tick_time"), "strategy_id", "symbol", "side", "price", "qty",
        col("approved").cast(pl.Int64), "reason"))
    for row in reviewed.filter(~col("approved")).iter_rows(named=True):
        log.info(f"risk rejected {row['side']} {row['symbol']} for {row['strategy_id']}: {row['reason']}")

    sync_orders(ledger, broker, now)  # Alpaca often fills a market order at once
    positions = reconcile(ledger, broker, now, log)
    cash, equity = broker.account_equity()
    ledger.append("equity", pl.DataFrame({"tick_time": [now.isoformat()], "cash": [cash], "equity": [equity]}))
    failed = pl.DataFrame({"strategy_id": list(failures), "failure": list(failures.values())},
                          schema={"strategy_id": pl.String, "failure": pl.String})
    ledger.mark_checked(decisions.join(failed, on="strategy_id", how="left").select(
        "strategy_id", col("action").is_in(TRADES).cast(pl.Int64).alias("signals"),
        pl.when(col("failure").is_not_null()).then(pl.format("error: {}", "failure"))
        .when(pl.lit(kill_switch)).then(pl.lit("halted: kill switch"))
        .when(col("day_pnl") <= -limits.daily_loss_limit).then(pl.lit("halted: daily loss limit"))
        .otherwise(pl.lit("active")).alias("status"),
    ), now)
    ledger.mark_checked(halted_checks(ledger, halted, strategy_ids), now)
    return TickResult(decisions, reviewed, submitted, positions, equity, failures)


def unexplained_positions(ledger: Ledger, broker: PaperBroker) -> pl.DataFrame:
    """Symbols whose broker position the ledger's fills do not explain (after adopting what it can): symbol, reason."""
    ours = ledger.holdings().group_by("symbol").agg(col("held_qty").sum().alias("ledger_qty"))
    theirs = broker.positions().select("symbol", col("qty").alias("broker_qty"))
    both = theirs.join(ours, on="symbol", how="full", coalesce=True).with_columns(col("broker_qty", "ledger_qty").fill_null(0.0))
    return both.filter(col("broker_qty") != col("ledger_qty")).sort("symbol").select(
        "symbol",
        pl.format("the broker holds {} {}, the ledger's fills {}; no order in the ledger explains the difference. "
                  "Reconcile the position by hand; its strategies stay halted until the two agree",
                  col("broker_qty"), "symbol", col("ledger_qty")).alias("reason"),
    )


def halted_checks(ledger: Ledger, halted: pl.DataFrame, strategy_ids: list[str]) -> pl.DataFrame:
    """mark_checked rows for the due strategies of halted symbols: their status carries the reason."""
    strategies = ledger.strategies().filter(col("id").is_in(strategy_ids)).select(col("id").alias("strategy_id"), "symbol")
    return strategies.join(halted, on="symbol").select(
        "strategy_id", pl.lit(0, dtype=pl.Int64).alias("signals"), pl.format("halted: {}", "reason").alias("status")
    )


def strategy_decisions(strategies: pl.DataFrame, bars: pl.DataFrame, pnl: pl.DataFrame,
                       signals: pl.DataFrame | None) -> pl.DataFrame:
    """Each strategy's decision on its symbol's newest bar, with what it holds and its P&L today. A strategy that
    cannot run (a ledger row the door's rules refuse, or an error deciding) gets action "error" and the reason, and
    the others go on."""
    rows = []
    for strategy in strategies.iter_rows(named=True):  # one decision per strategy (ten by default)
        mine = pnl.filter((col("strategy_id") == strategy["id"]) & (col("symbol") == strategy["symbol"]))
        held, today = float(mine["held_qty"].sum()), float(mine["day_pnl"].sum())
        own_signals = signals.filter(col("symbol") == strategy["symbol"]) if signals is not None else None
        own_bars = bars.filter(col("symbol") == strategy["symbol"])
        try:
            decision = _decide(strategy, own_bars, held, own_signals)
        except (Exception, pl.exceptions.PanicException) as error:  # a polars panic is a BaseException
            decision = Decision("error", None, None, f"strategy {strategy['id']}: {type(error).__name__}: "
                                                     f"{(str(error).strip().splitlines() or [''])[0]}")
        rows.append({"strategy_id": strategy["id"], "symbol": strategy["symbol"], "action": decision.action,
                     "bar_time": decision.bar_time, "price": decision.price, "reason": decision.reason,
                     "allocation": strategy["allocation"], "held_qty": held, "day_pnl": today})
    return pl.DataFrame(rows, schema=DECISION_SCHEMA)


def _decide(strategy: dict, bars: pl.DataFrame, held: float, signals: pl.DataFrame | None) -> Decision:
    """The strategy's decision, or action "error" when its ledger row breaks the rules strategies are added under
    (a ledger written before they were checked, or edited by hand)."""
    problem = stored_strategy_problem(strategy)
    if problem:
        return Decision("error", None, None, problem)
    return decide(strategy["type"], bars, json.loads(strategy["params"]), held, signals)


def submit_approved(reviewed: pl.DataFrame, ledger: Ledger, broker: PaperBroker, now: datetime,
                    log: logging.Logger) -> tuple[list[str], dict[str, str]]:
    """Submit each approved order once: a client id already in the ledger is never sent again. One order's failure
    stops no other: a refusal is recorded as `refused` with the broker's words; an order the broker did not answer
    stays `submitting` for sync_orders to adopt or mark unsent. Returns the ids sent and, per strategy, its failure."""
    approved = reviewed.filter(col("approved")).with_columns(
        pl.struct("strategy_id", "bar_time", "side").map_elements(
            lambda r: client_order_id(r["strategy_id"], r["bar_time"], r["side"]), return_dtype=pl.String
        ).alias("client_order_id")
    )
    known_ids = ledger.client_order_ids()
    sent, failures = [], {}
    for row in approved.filter(~col("client_order_id").is_in(known_ids)).iter_rows(named=True):  # a few per tick
        ledger.append("orders", pl.DataFrame([{  # first: a crash during the call leaves a row the next tick adopts
            "client_order_id": row["client_order_id"], "strategy_id": row["strategy_id"], "symbol": row["symbol"],
            "side": row["side"], "qty": row["qty"], "submitted_at": now.isoformat(), "broker_order_id": None,
            "status": SUBMITTING, "filled_qty": 0.0, "filled_avg_price": None, "updated_at": now.isoformat(),
        }], schema_overrides={"broker_order_id": pl.String, "filled_avg_price": pl.Float64}))
        try:
            order = broker.submit_market_order(row["client_order_id"], row["symbol"], row["side"], row["qty"], now)
        except OrderRefused as error:
            ledger.refuse_order(row["client_order_id"], str(error), now)
            log.error(f"order {row['client_order_id']} refused: {error}")
            failures[row["strategy_id"]] = str(error)
            continue
        except BrokerError as error:
            log.error(f"order {row['client_order_id']}: {error}; the next look-up adopts it or marks it unsent")
            failures[row["strategy_id"]] = str(error)
            continue
        log.info(f"order {order.client_order_id}: {row['side']} {row['qty']:g} {row['symbol']} -> {order.status}")
        record_orders(ledger, [(row["strategy_id"], order)], {order.client_order_id: now.isoformat()}, now)
        sent.append((row["strategy_id"], order))
    return [order.client_order_id for _, order in sent], failures


def reconcile(ledger: Ledger, broker: PaperBroker, now: datetime, log: logging.Logger) -> pl.DataFrame:
    """The broker's positions beside the ledger's fills per symbol; a mismatch is logged and recorded."""
    ours = ledger.holdings().group_by("symbol").agg(col("held_qty").sum().alias("ledger_qty"))
    theirs = broker.positions().rename({"qty": "broker_qty"})
    both = theirs.join(ours, on="symbol", how="full", coalesce=True).with_columns(
        col("broker_qty", "ledger_qty").fill_null(0.0)
    ).filter((col("broker_qty") != 0) | (col("ledger_qty") != 0)).sort("symbol")
    both = both.with_columns((col("broker_qty") == col("ledger_qty")).alias("reconciled"))
    for row in both.filter(~col("reconciled")).iter_rows(named=True):
        log.warning(f"position mismatch in {row['symbol']}: broker holds {row['broker_qty']:g}, ledger fills say {row['ledger_qty']:g}")
    ledger.append("positions", both.select(
        pl.lit(now.isoformat()).alias("tick_time"), "symbol", "broker_qty", "ledger_qty", "avg_entry_price",
        col("reconciled").cast(pl.Int64)))
    return both
