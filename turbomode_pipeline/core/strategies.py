"""The live strategies' rules on intraday bars: pure polars, one symbol or many at once.

Every indicator strategy marks each bar with `entry` (open a long position) and `exit`
(close it); both are events on the bar where the condition starts, not states.

- keltner_channel: middle = EMA(20) of the close, bands = middle +/- 2 x ATR(10) (Wilder).
  Entry when the close crosses above the upper band; exit when it crosses below the middle.
- donchian_channel: entry when the close breaks above the highest high of the previous
  20 bars; exit when it breaks below the lowest low of the previous 10 bars.
- ichimoku_cloud (9/26/52): tenkan = midpoint of the last 9 bars' range, kijun of 26;
  the cloud at a bar is senkou A = (tenkan + kijun) / 2 and senkou B = midpoint of 52 bars,
  both as computed 26 bars earlier. Entry when tenkan crosses above kijun with the close
  above the cloud; exit when tenkan crosses below kijun with the close below the cloud.
- turbomode_signals: follows the scanner's active BUY signal for the symbol: entry while
  one is live and no position is held; exit at its target or stop, or when it expires.

A strategy's `timeframe_minutes` param resamples the minute bars first (default 1).

`strategy_problem` is the one home of what a strategy must be to run (its id, type, allocation, params and check
interval): the ledger applies it to every strategy it stores, and the live tick to every row it reads.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime

import polars as pl

STRATEGY_TYPES = ("keltner_channel", "donchian_channel", "ichimoku_cloud", "turbomode_signals")
DEFAULT_PARAMS = {
    "keltner_channel": {"ema": 20, "atr": 10, "multiplier": 2.0, "timeframe_minutes": 1},
    "donchian_channel": {"entry": 20, "exit": 10, "timeframe_minutes": 1},
    "ichimoku_cloud": {"tenkan": 9, "kijun": 26, "senkou_b": 52, "timeframe_minutes": 1},
    "turbomode_signals": {"timeframe_minutes": 1},
}
col = pl.col


@dataclass(frozen=True)
class ParamRule:
    """A param's kind ("whole" or "number") and its inclusive range."""

    kind: str
    low: float
    high: float

    def problem(self, name: str, value) -> str | None:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        fits = numeric and (isinstance(value, int) if self.kind == "whole" else math.isfinite(value))
        if fits and self.low <= value <= self.high:
            return None
        what = "a whole number" if self.kind == "whole" else "a number"
        return f"params.{name} must be {what} from {self.low:g} to {self.high:g}, got {json.dumps(value)}"


WINDOW = ParamRule("whole", 1, 1_000)  # bars in an indicator's window: more is a typo, and never fills in a tick
TIMEFRAME = ParamRule("whole", 1, 1440)  # minutes per resampled bar, up to a day (1440: the backtest's daily bars)
PARAM_RULES = {
    "keltner_channel": {"ema": WINDOW, "atr": WINDOW, "multiplier": ParamRule("number", 0.01, 100), "timeframe_minutes": TIMEFRAME},
    "donchian_channel": {"entry": WINDOW, "exit": WINDOW, "timeframe_minutes": TIMEFRAME},
    "ichimoku_cloud": {"tenkan": WINDOW, "kijun": WINDOW, "senkou_b": WINDOW, "timeframe_minutes": TIMEFRAME},
    "turbomode_signals": {"timeframe_minutes": TIMEFRAME},
}
CLIENT_ORDER_ID_MAX = 128  # Alpaca's limit on an order's client_order_id
# client_order_id (resources/broker.py) is "{id}-{bar:%Y%m%dT%H%M}-{side}": the id leaves room for the longest tail
MAX_ID_LENGTH = CLIENT_ORDER_ID_MAX - len("-20261120T1531-sell")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # no commas or spaces: the CLI joins ids with commas
MAX_ALLOCATION = 1_000_000_000.0  # dollars: more is a typo (the paper account holds $100,000)
MAX_INTERVAL_S = 86_400  # a strategy checked less than daily is not a live strategy


def params_problem(strategy_type: str, params: dict) -> str | None:
    """Why `params` do not fit the strategy type (unknown names, wrong types, out of range), or None."""
    known = DEFAULT_PARAMS[strategy_type]
    unknown = sorted(set(params) - set(known))
    if unknown:
        return f"unknown param(s) {', '.join(unknown)} for {strategy_type}; its params are {', '.join(known)}"
    rules = PARAM_RULES[strategy_type]
    return next((p for name, value in params.items() if (p := rules[name].problem(name, value))), None)


def id_problem(strategy_id) -> str | None:
    """Why `strategy_id` cannot name a strategy (and head its orders' client ids), or None."""
    if not isinstance(strategy_id, str) or not strategy_id:
        return "strategy id is empty"
    if len(strategy_id) > MAX_ID_LENGTH:
        return (f"strategy id is {len(strategy_id)} characters; at most {MAX_ID_LENGTH} fit Alpaca's "
                f"{CLIENT_ORDER_ID_MAX}-character client_order_id (the id, the bar's minute and the side)")
    if not ID_PATTERN.fullmatch(strategy_id):
        return (f"strategy id {strategy_id!r} may hold only letters, digits, '.', '_' and '-', starting with a letter "
                "or digit")
    return None


def strategy_problem(strategy_id, strategy_type, symbol, allocation, params, check_interval_s) -> str | None:
    """Why a strategy with these fields cannot run, in one line naming the field, or None. Ids are checked first
    (the message then cannot name the strategy); every other problem is prefixed "strategy <id>: "."""
    problem = id_problem(strategy_id)
    if problem:
        return problem
    return (problem := _field_problem(strategy_type, symbol, allocation, params, check_interval_s)) and (
        f"strategy {strategy_id}: {problem}")


def stored_strategy_problem(row: dict) -> str | None:
    """`strategy_problem` of a live_strategies row (params as stored, JSON text): a ledger written before the rules,
    or edited by hand, may hold a strategy they refuse."""
    try:
        params = json.loads(row["params"])
    except (TypeError, ValueError) as error:
        return f"strategy {row['id']}: params are not JSON ({error})"
    return strategy_problem(row["id"], row["type"], row["symbol"], row["allocation"], params, row["check_interval_s"])


def _field_problem(strategy_type, symbol, allocation, params, check_interval_s) -> str | None:
    if strategy_type not in STRATEGY_TYPES:
        return f"unknown type {strategy_type!r}; expected one of {', '.join(STRATEGY_TYPES)}"
    if not isinstance(symbol, str) or not symbol.strip():
        return "symbol is empty"
    numeric = isinstance(allocation, int | float) and not isinstance(allocation, bool)
    if not (numeric and math.isfinite(allocation) and 0.01 <= allocation <= MAX_ALLOCATION):
        return (f"allocation must be a finite number of dollars from 0.01 to {MAX_ALLOCATION:,.0f}, "
                f"got {format(allocation, 'g') if numeric else json.dumps(allocation)}")
    if not isinstance(params, dict):
        return f"params must be a JSON object like {{\"timeframe_minutes\": 5}}, got {json.dumps(params)}"
    problem = params_problem(strategy_type, params)
    if problem:
        return problem
    if not (isinstance(check_interval_s, int) and not isinstance(check_interval_s, bool)
            and 1 <= check_interval_s <= MAX_INTERVAL_S):
        return f"check_interval_s must be a whole number of seconds from 1 to {MAX_INTERVAL_S}, got {json.dumps(check_interval_s)}"
    return None


@dataclass(frozen=True)
class Decision:
    """What a strategy wants on its newest bar: buy, sell or hold, and why."""

    action: str
    bar_time: datetime | None
    price: float | None
    reason: str


def resample(bars: pl.DataFrame, minutes: int) -> pl.DataFrame:
    """OHLCV bars of `minutes` minutes per symbol, stamped with their first minute."""
    if minutes == 1:
        return bars
    return (
        bars.sort("symbol", "time")
        .group_by_dynamic("time", every=f"{minutes}m", group_by="symbol")
        .agg(col("open").first(), col("high").max(), col("low").min(), col("close").last(), col("volume").sum())
        .sort("symbol", "time")
    )


def _crosses_above(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    return (a > b) & (a.shift(1) <= b.shift(1)).over("symbol")


def _midpoint(n: int) -> pl.Expr:
    return ((col("high").rolling_max(n) + col("low").rolling_min(n)) / 2).over("symbol")


def keltner_channel(bars: pl.DataFrame, ema: int = 20, atr: int = 10, multiplier: float = 2.0) -> pl.DataFrame:
    prev_close = col("close").shift(1).over("symbol")
    true_range = pl.max_horizontal(col("high"), prev_close) - pl.min_horizontal(col("low"), prev_close)
    frame = bars.sort("symbol", "time").with_columns(
        col("close").ewm_mean(span=ema, adjust=False, min_samples=ema).over("symbol").alias("middle"),
        true_range.alias("_tr"),
    )
    frame = frame.with_columns(col("_tr").ewm_mean(alpha=1 / atr, adjust=False, min_samples=atr).over("symbol").alias("atr"))
    frame = frame.with_columns(
        (col("middle") + multiplier * col("atr")).alias("upper"), (col("middle") - multiplier * col("atr")).alias("lower")
    )
    return frame.with_columns(
        _crosses_above(col("close"), col("upper")).fill_null(False).alias("entry"),
        _crosses_above(col("middle"), col("close")).fill_null(False).alias("exit"),
    ).drop("_tr")


def donchian_channel(bars: pl.DataFrame, entry: int = 20, exit: int = 10) -> pl.DataFrame:  # noqa: A002
    frame = bars.sort("symbol", "time").with_columns(
        col("high").rolling_max(entry).shift(1).over("symbol").alias("upper"),
        col("low").rolling_min(exit).shift(1).over("symbol").alias("lower"),
    )
    return frame.with_columns(
        _crosses_above(col("close"), col("upper")).fill_null(False).alias("entry"),
        _crosses_above(col("lower"), col("close")).fill_null(False).alias("exit"),
    )


def ichimoku_cloud(bars: pl.DataFrame, tenkan: int = 9, kijun: int = 26, senkou_b: int = 52) -> pl.DataFrame:
    frame = bars.sort("symbol", "time").with_columns(
        _midpoint(tenkan).alias("tenkan"), _midpoint(kijun).alias("kijun"), _midpoint(senkou_b).alias("_span_b")
    )
    frame = frame.with_columns(
        ((col("tenkan") + col("kijun")) / 2).shift(kijun).over("symbol").alias("senkou_a"),
        col("_span_b").shift(kijun).over("symbol").alias("senkou_b"),
    )
    top, bottom = pl.max_horizontal("senkou_a", "senkou_b"), pl.min_horizontal("senkou_a", "senkou_b")
    return frame.with_columns(
        (_crosses_above(col("tenkan"), col("kijun")) & (col("close") > top)).fill_null(False).alias("entry"),
        (_crosses_above(col("kijun"), col("tenkan")) & (col("close") < bottom)).fill_null(False).alias("exit"),
    ).drop("_span_b")


INDICATORS = {"keltner_channel": keltner_channel, "donchian_channel": donchian_channel, "ichimoku_cloud": ichimoku_cloud}


def indicator_signals(strategy_type: str, bars: pl.DataFrame, params: dict) -> pl.DataFrame:
    """`bars` with the strategy's indicator columns and its entry/exit events."""
    settings = {**DEFAULT_PARAMS[strategy_type], **params}
    minutes = int(settings.pop("timeframe_minutes"))
    return INDICATORS[strategy_type](resample(bars, minutes), **settings)


def decide(strategy_type: str, bars: pl.DataFrame, params: dict, held_qty: float, signals: pl.DataFrame | None = None) -> Decision:
    """The strategy's decision on the newest bar of `bars` (one symbol), given the quantity it holds."""
    if bars.is_empty():
        return Decision("hold", None, None, "no bars yet")
    if strategy_type == "turbomode_signals":
        return follow_signals(resample(bars, int(params.get("timeframe_minutes", 1))), held_qty, signals)
    return decide_on_bar(strategy_type, indicator_signals(strategy_type, bars, params).row(-1, named=True), held_qty)


def decide_on_bar(strategy_type: str, bar: dict, held_qty: float) -> Decision:
    """An indicator strategy's decision on one bar of `indicator_signals` (a row as a dict), given what it holds.
    The live tick calls it on the newest bar; the strategy backtest on every entry or exit bar of a history."""
    if bar["entry"] and held_qty <= 0:
        return Decision("buy", bar["time"], bar["close"], f"{strategy_type} entry at {bar['close']:.2f}")
    if bar["exit"] and held_qty > 0:
        return Decision("sell", bar["time"], bar["close"], f"{strategy_type} exit at {bar['close']:.2f}")
    return Decision("hold", bar["time"], bar["close"], "no entry or exit on the newest bar")


def follow_signals(bars: pl.DataFrame, held_qty: float, signals: pl.DataFrame | None) -> Decision:
    """Buy on a live BUY signal; sell at its target, its stop or its expiry."""
    last = bars.row(-1, named=True)
    now, price = last["time"], last["close"]
    live = signals.filter(col("signal_type") == "BUY") if signals is not None else pl.DataFrame()
    if live.is_empty():
        if held_qty > 0:
            return Decision("sell", now, price, "the scanner's signal is no longer active")
        return Decision("hold", now, price, "no active scanner signal")
    signal = live.sort("created_at").row(-1, named=True)
    expired = signal["expires_at"] <= now
    if held_qty > 0:
        if price >= signal["target_price"]:
            return Decision("sell", now, price, f"target {signal['target_price']:.2f} of signal {signal['id']} reached")
        if price <= signal["stop_loss"]:
            return Decision("sell", now, price, f"stop {signal['stop_loss']:.2f} of signal {signal['id']} hit")
        if expired:
            return Decision("sell", now, price, f"signal {signal['id']} expired at {signal['expires_at']}")
        return Decision("hold", now, price, f"holding on signal {signal['id']}")
    if not expired and signal["stop_loss"] < price < signal["target_price"]:
        return Decision("buy", now, price, f"scanner BUY signal {signal['id']} (confidence {signal['confidence']:.2f})")
    return Decision("hold", now, price, f"signal {signal['id']} is expired or outside its stop/target band")
