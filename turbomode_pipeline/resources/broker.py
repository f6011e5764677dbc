"""The paper broker: one interface, a local simulation and Alpaca's paper API.

Every order carries a deterministic client_order_id (strategy, bar time, side), so a
retried or repeated tick can never submit the same order twice: the local broker keeps
the first, and Alpaca refuses the second with HTTP 422, which is resolved by reading the
order back by its client id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import polars as pl
from dagster import ConfigurableResource

from turbomode_pipeline.calendar import xnys
from turbomode_pipeline.core.fills import next_open_fills
from turbomode_pipeline.core.trading_url import UnsafeTradingUrl, check_trading_url
from turbomode_pipeline.resources.alpaca_http import ResponseError, harden
from turbomode_pipeline.resources.ledger import Ledger

PAPER_URL = "https://paper-api.alpaca.markets"
FINAL_STATUSES = ("filled", "canceled", "rejected", "expired")
POSITION_SCHEMA = {"symbol": pl.String, "qty": pl.Float64, "avg_entry_price": pl.Float64}


class BrokerError(RuntimeError):
    """The broker refused or could not answer a request."""


class OrderRefused(BrokerError):
    """The broker answered and refused the order (e.g. HTTP 403 "insufficient buying power"): it holds no such order."""


class LiveTradingRefused(BrokerError):
    """The broker points at real money and TURBOMODE_ALLOW_LIVE_TRADING is not set."""


@dataclass(frozen=True)
class Clock:
    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime


@dataclass(frozen=True)
class Order:
    client_order_id: str
    broker_order_id: str
    symbol: str
    side: str
    qty: float
    status: str
    filled_qty: float
    filled_avg_price: float | None
    filled_at: datetime | None


def client_order_id(strategy_id: str, bar_time: datetime, side: str) -> str:
    """The order's identity: one per strategy, decision bar and side."""
    return f"{strategy_id}-{bar_time:%Y%m%dT%H%M}-{side}"


def calendar_clock(now: datetime) -> Clock:
    """NYSE's clock at `now` from the exchange calendar."""
    minute = pd.Timestamp(now).floor("min")
    calendar = xnys()
    is_open = calendar.is_open_on_minute(minute)
    next_open = calendar.next_open(minute).to_pydatetime()
    next_close = calendar.next_close(minute).to_pydatetime()
    return Clock(now, bool(is_open), next_open, next_close)


class PaperBroker(ConfigurableResource):
    """What the live job needs from a broker."""

    def clock(self, now: datetime) -> Clock:
        raise NotImplementedError

    def account_equity(self) -> tuple[float, float]:
        """(cash, equity)."""
        raise NotImplementedError

    def submit_market_order(self, client_id: str, symbol: str, side: str, qty: float, submitted_at: datetime) -> Order:
        raise NotImplementedError

    def order_by_client_id(self, client_id: str) -> Order | None:
        raise NotImplementedError

    def positions(self) -> pl.DataFrame:
        raise NotImplementedError

    def close_position(self, symbol: str, submitted_at: datetime) -> Order:
        raise NotImplementedError

    def observe(self, bars: pl.DataFrame) -> None:
        """Let the broker see the newest bars (the local broker fills and marks with them)."""


class LocalPaperBroker(PaperBroker):
    """Offline paper broker: a market order fills at the open of the first bar starting at or
    after its submission, moved against the trader by `slippage_bps`, less commission.
    Orders, fills and marks live in the trading ledger's paper_* tables."""

    ledger_path: str
    starting_cash: float = 100_000.0
    slippage_bps: float = 5.0
    commission_per_share: float = 0.0

    def _ledger(self) -> Ledger:
        ledger = Ledger(path=self.ledger_path)
        with ledger.connection() as con:
            con.executescript(
                "CREATE TABLE IF NOT EXISTS paper_orders (client_order_id TEXT PRIMARY KEY, id TEXT, symbol TEXT, "
                "side TEXT, qty REAL, status TEXT, submitted_at TEXT, filled_price REAL, filled_at TEXT, commission REAL, "
                "slippage REAL);"
                "CREATE TABLE IF NOT EXISTS paper_marks (symbol TEXT PRIMARY KEY, price REAL, time TEXT);"
            )
            if "slippage" not in {row[1] for row in con.execute("PRAGMA table_info(paper_orders)")}:  # a ledger from before
                con.execute("ALTER TABLE paper_orders ADD COLUMN slippage REAL")
        return ledger

    def clock(self, now: datetime) -> Clock:
        return calendar_clock(now)

    def _orders(self, where: str = "1 = 1", params: tuple = ()) -> pl.DataFrame:
        return self._ledger().query(f"SELECT * FROM paper_orders WHERE {where}", params)

    def positions(self) -> pl.DataFrame:
        frame = self._ledger().query(
            "SELECT symbol, SUM(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS qty, "
            "SUM(CASE WHEN side = 'buy' THEN qty * filled_price ELSE 0 END) / "
            "NULLIF(SUM(CASE WHEN side = 'buy' THEN qty ELSE 0 END), 0) AS avg_entry_price "
            "FROM paper_orders WHERE status = 'filled' GROUP BY symbol "
            "HAVING SUM(CASE WHEN side = 'buy' THEN qty ELSE -qty END) != 0 ORDER BY symbol"
        )
        return frame.cast(POSITION_SCHEMA) if not frame.is_empty() else pl.DataFrame(schema=POSITION_SCHEMA)

    def account_equity(self) -> tuple[float, float]:
        ledger = self._ledger()
        flows = ledger.query(
            "SELECT COALESCE(SUM(CASE WHEN side = 'buy' THEN -qty * filled_price ELSE qty * filled_price END"
            " - commission), 0) AS flow FROM paper_orders WHERE status = 'filled'"
        ).item()
        cash = self.starting_cash + flows
        marks = ledger.query("SELECT symbol, price FROM paper_marks")
        positions = self.positions()
        if positions.is_empty():
            return cash, cash
        valued = positions.join(marks.cast({"price": pl.Float64}), on="symbol", how="left", maintain_order="left")
        value = valued.select((pl.col("qty") * pl.col("price").fill_null(pl.col("avg_entry_price"))).sum()).item()
        return cash, cash + value

    def submit_market_order(self, client_id: str, symbol: str, side: str, qty: float, submitted_at: datetime) -> Order:
        existing = self.order_by_client_id(client_id)
        if existing is not None:
            return existing
        ledger = self._ledger()
        with ledger.connection() as con:
            con.execute(
                "INSERT INTO paper_orders (client_order_id, id, symbol, side, qty, status, submitted_at) "
                "VALUES (?, ?, ?, ?, ?, 'new', ?)",
                [client_id, f"local-{client_id}", symbol, side, qty, submitted_at.isoformat()],
            )
        return self.order_by_client_id(client_id)

    def order_by_client_id(self, client_id: str) -> Order | None:
        rows = self._orders("client_order_id = ?", (client_id,))
        if rows.is_empty():
            return None
        row = rows.row(0, named=True)
        filled = row["status"] == "filled"
        return Order(
            client_order_id=row["client_order_id"], broker_order_id=row["id"], symbol=row["symbol"], side=row["side"],
            qty=row["qty"], status=row["status"], filled_qty=row["qty"] if filled else 0.0,
            filled_avg_price=row["filled_price"], filled_at=datetime.fromisoformat(row["filled_at"]) if filled else None,
        )

    def close_position(self, symbol: str, submitted_at: datetime) -> Order:
        held = self.positions().filter(pl.col("symbol") == symbol)
        if held.is_empty():
            raise BrokerError(f"no open position in {symbol} to close")
        qty = held["qty"].item()
        side = "sell" if qty > 0 else "buy"
        return self.submit_market_order(f"close-{symbol}-{submitted_at:%Y%m%dT%H%M%S}", symbol, side, abs(qty), submitted_at)

    def observe(self, bars: pl.DataFrame) -> None:
        """Fill every open order at the open of the first bar starting at or after its submission minute."""
        if bars.is_empty():
            return
        ledger = self._ledger()
        pending = self._orders("status = 'new'")
        newest = bars.sort("time").group_by("symbol", maintain_order=True).last()
        marks = newest.select("symbol", pl.col("close").alias("price"), pl.col("time").cast(pl.String))
        ledger.append("paper_marks", marks)
        if pending.is_empty():
            return
        minute = pl.col("submitted_at").str.to_datetime(time_zone="UTC").dt.truncate("1m")
        due = next_open_fills(pending.with_columns(minute.alias("time")), bars, self.slippage_bps, self.commission_per_share)
        if due.is_empty():
            return
        filled = due.select(
            "client_order_id", "id", "symbol", "side", "qty", pl.lit("filled").alias("status"), "submitted_at",
            "filled_price", pl.col("fill_time").dt.strftime("%Y-%m-%dT%H:%M:%S+00:00").alias("filled_at"), "commission",
            (pl.col("qty") * (pl.col("filled_price") - pl.col("open")).abs()).alias("slippage"),  # dollars paid to it
        )
        ledger.append("paper_orders", filled)


class AlpacaPaperBroker(PaperBroker):
    """Alpaca's paper trading API through alpaca-py's TradingClient, with our timeouts and retries."""

    api_key: str
    secret_key: str
    base_url: str | None = None  # APCA_API_BASE_URL; None means Alpaca's paper API
    allow_live_trading: bool = False
    timeout_s: float = 10.0
    max_retries: int = 3
    backoff_s: float = 0.5

    def _client(self):
        from alpaca.trading.client import TradingClient

        url = (self.base_url or PAPER_URL).rstrip("/")
        try:  # settings refuse a live URL at load; this guards a resource built any other way
            paper = check_trading_url(url, self.allow_live_trading)
        except UnsafeTradingUrl as error:
            raise LiveTradingRefused(str(error)) from None
        client = TradingClient(self.api_key, self.secret_key, paper=paper, raw_data=True, url_override=url)
        return harden(client, self.timeout_s, self.max_retries, self.backoff_s)

    def _call(self, what: str, method, *args):
        from alpaca.common.exceptions import APIError

        try:
            return method(*args)
        except APIError as error:
            raise BrokerError(f"Alpaca {what} failed with HTTP {error.status_code}: {error}") from error
        except ResponseError as error:  # answered, but too slowly or not in JSON
            raise BrokerError(f"Alpaca {what}: {error}") from error
        except OSError as error:
            raise BrokerError(f"Alpaca {what}: {self.base_url or PAPER_URL} did not answer after {self.max_retries} retries: {error}") from error

    def clock(self, now: datetime) -> Clock:
        raw = self._call("clock", self._client().get_clock)
        return Clock(_timestamp(raw["timestamp"]), bool(raw["is_open"]), _timestamp(raw["next_open"]),
                     _timestamp(raw["next_close"]))

    def account_equity(self) -> tuple[float, float]:
        raw = self._call("account", self._client().get_account)
        return float(raw["cash"]), float(raw["equity"])

    def submit_market_order(self, client_id: str, symbol: str, side: str, qty: float, submitted_at: datetime) -> Order:
        from alpaca.common.exceptions import APIError
        from alpaca.trading.enums import OrderSide, TimeInForce
        from alpaca.trading.requests import MarketOrderRequest

        request = MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide(side), time_in_force=TimeInForce.DAY,
                                     client_order_id=client_id)
        client = self._client()
        try:
            return _order(client.submit_order(request))
        except APIError as error:
            if error.status_code == 422 and "unique" in str(error).lower():
                existing = self.order_by_client_id(client_id)  # submitted before: read back, never twice
                if existing is not None:
                    return existing
            refused = error.status_code is not None and 400 <= error.status_code < 500 and error.status_code != 429
            raise (OrderRefused if refused else BrokerError)(
                f"Alpaca refused order {client_id} ({side} {qty:g} {symbol}) with HTTP {error.status_code}: "
                f"{_broker_words(error)}"
            ) from error
        except OSError as error:
            raise BrokerError(f"Alpaca did not answer order {client_id} after {self.max_retries} retries: {error}") from error

    def order_by_client_id(self, client_id: str) -> Order | None:
        from alpaca.common.exceptions import APIError

        try:
            return _order(self._client().get_order_by_client_id(client_id))
        except APIError as error:
            if error.status_code == 404:
                return None
            raise BrokerError(f"Alpaca order lookup {client_id} failed with HTTP {error.status_code}: {error}") from error

    def positions(self) -> pl.DataFrame:
        raw = self._call("positions", self._client().get_all_positions)
        if not raw:
            return pl.DataFrame(schema=POSITION_SCHEMA)
        frame = pl.DataFrame([{k: p[k] for k in ("symbol", "qty", "avg_entry_price", "side")} for p in raw])
        signed = pl.when(pl.col("side") == "short").then(-pl.col("qty").cast(pl.Float64).abs()).otherwise(pl.col("qty").cast(pl.Float64))
        return frame.select("symbol", signed.alias("qty"), pl.col("avg_entry_price").cast(pl.Float64))

    def close_position(self, symbol: str, submitted_at: datetime) -> Order:
        return _order(self._call(f"close position {symbol}", self._client().close_position, symbol))


def _broker_words(error) -> str:
    """The message of Alpaca's JSON error body ({"code": ..., "message": ...}), else the body as it came."""
    try:
        return str(error.message)
    except (ValueError, TypeError, KeyError):
        return str(error)


def _timestamp(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))


def _order(raw: dict) -> Order:
    filled_qty = float(raw.get("filled_qty") or 0)
    price = raw.get("filled_avg_price")
    return Order(
        client_order_id=raw["client_order_id"], broker_order_id=str(raw["id"]), symbol=raw["symbol"],
        side=str(raw["side"]), qty=float(raw.get("qty") or 0), status=str(raw["status"]), filled_qty=filled_qty,
        filled_avg_price=float(price) if price is not None else None,
        filled_at=_timestamp(raw["filled_at"]) if raw.get("filled_at") else None,
    )
