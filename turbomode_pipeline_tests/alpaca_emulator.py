"""A loopback emulator of the Alpaca REST API, faithful to the wire format in
shared/reference/alpaca-api.md, for driving the real alpaca-py SDK in tests.

Failures are scripted: `fail_next` is a list of HTTP statuses returned, one per request,
before normal service resumes; `always_fail` answers every request with one status;
`hang_s` delays every answer.

The trading API (clock, account, orders, order by client id, positions, close position)
fills every market order at once at `prices[symbol]`; `market_open` and `now` drive the
clock. A used client_order_id is refused with HTTP 422, as the real API does; `refuse` maps a client_order_id
to the (status, message) the API refuses it with, e.g. (403, "insufficient buying power"), and no order is made.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import polars as pl

NEW_YORK = ZoneInfo("America/New_York")
KEY_ID, SECRET = "test-key", "test-secret"


class AlpacaEmulator:
    def __init__(self, bars: pl.DataFrame | None = None, page_size: int = 10_000, minute_bars: pl.DataFrame | None = None):
        self.bars = bars if bars is not None else pl.DataFrame()
        self.minute_bars = minute_bars if minute_bars is not None else pl.DataFrame()  # symbol, time (UTC), OHLCV
        self.page_size = page_size
        self.key_id, self.secret = KEY_ID, SECRET  # the credentials it accepts
        self.fail_next: list[int] = []
        self.always_fail: int | None = None
        self.hang_s = 0.0
        self.trickle_s = 0.0  # pause between the bytes of a body: a server that answers, one byte at a time
        self.raw_body: tuple[str, bytes] | None = None  # (Content-Type, body) served with HTTP 200 for any request
        self.order_reply_gate: threading.Event | None = None  # set: an accepted order's answer waits for it
        self.patch_bars: dict[tuple[str, str], dict] = {}  # (symbol, "YYYY-MM-DD") -> fields replaced in its bar
        self.requests: list[tuple[str, str, int]] = []  # (method, path with query, status)
        self.prices: dict[str, float] = {}
        self.cash = 100_000.0
        self.market_open = True
        self.now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
        self.orders: dict[str, dict] = {}  # by client_order_id
        self.refuse: dict[str, tuple[int, str]] = {}  # client_order_id -> (HTTP status, message) it is refused with
        self.positions: dict[str, dict] = {}  # by symbol
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> AlpacaEmulator:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def statuses(self, path_prefix: str) -> list[int]:
        return [status for _, path, status in self.requests if path.startswith(path_prefix)]

    # -- the API ---------------------------------------------------------------------------

    def stock_bars(self, query: dict[str, list[str]]) -> dict:
        symbols = query["symbols"][0].split(",")
        start = datetime.fromisoformat(query["start"][0].replace("Z", "+00:00"))
        end = datetime.fromisoformat(query["end"][0].replace("Z", "+00:00"))
        limit = min(int(query.get("limit", ["10000"])[0]), self.page_size)
        offset = int(base64.b64decode(query["page_token"][0])) if "page_token" in query else 0
        minutes = query.get("timeframe", ["1Day"])[0] == "1Min"
        served = self.minute_bars if minutes else self.bars
        if served.is_empty():
            return {"bars": {}, "next_page_token": None}
        stamped = (
            served.with_columns(t=pl.col("time"), trade_count=pl.lit(None), vwap=pl.lit(None))
            if minutes
            else served.with_columns(
                t=pl.col("session").cast(pl.Datetime("us")).dt.replace_time_zone(str(NEW_YORK)).dt.convert_time_zone("UTC")
            )
        )
        selected = stamped.filter(
            pl.col("symbol").is_in(symbols) & (pl.col("t") >= start) & (pl.col("t") < end)
        ).sort("symbol", "t")
        page = selected.slice(offset, limit)
        out: dict[str, list[dict]] = {}
        for row in page.iter_rows(named=True):
            bar = {
                "t": row["t"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                "o": row["open"], "h": row["high"], "l": row["low"], "c": row["close"],
                "v": row["volume"], "n": row["trade_count"], "vw": row["vwap"],
            }
            if not minutes:
                bar |= self.patch_bars.get((row["symbol"], str(row["session"])), {})
            out.setdefault(row["symbol"], []).append(bar)
        more = offset + limit < selected.height
        token = base64.b64encode(str(offset + limit).encode()).decode() if more else None
        return {"bars": out, "next_page_token": token}

    # -- the trading API ---------------------------------------------------------------

    def clock(self) -> dict:
        stamp = self.now.isoformat()
        return {"timestamp": stamp, "is_open": self.market_open,
                "next_open": (self.now + timedelta(hours=18)).isoformat(), "next_close": (self.now + timedelta(hours=1)).isoformat()}

    def account(self) -> dict:
        value = sum(p["qty"] * self.prices.get(s, p["avg"]) for s, p in self.positions.items())
        return {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "turbomode")), "account_number": "PA000TEST", "status": "ACTIVE",
                "cash": str(self.cash), "equity": str(self.cash + value), "currency": "USD"}

    def submit(self, body: dict) -> tuple[int, dict]:
        client_id = body.get("client_order_id") or str(uuid.uuid4())
        with self._lock:
            if client_id in self.orders:
                return 422, {"code": 40010001, "message": "client_order_id must be unique"}
            if client_id in self.refuse:  # Alpaca's body for a refusal: {"code": 40310000, "message": "..."}
                status, message = self.refuse[client_id]
                return status, {"code": {403: 40310000}.get(status, status * 100_000), "message": message}
            return 200, self._fill(client_id, body["symbol"], body["side"], float(body["qty"]))

    def _fill(self, client_id: str, symbol: str, side: str, qty: float) -> dict:
        price = self.prices.get(symbol, 100.0)
        signed = qty if side == "buy" else -qty
        held = self.positions.get(symbol, {"qty": 0.0, "avg": price})
        new_qty = held["qty"] + signed
        avg = (held["qty"] * held["avg"] + signed * price) / new_qty if side == "buy" and new_qty else held["avg"]
        if new_qty:
            self.positions[symbol] = {"qty": new_qty, "avg": avg}
        else:
            self.positions.pop(symbol, None)
        self.cash -= signed * price
        stamp = self.now.isoformat()
        order = {
            "id": str(uuid.uuid4()), "client_order_id": client_id, "created_at": stamp, "updated_at": stamp,
            "submitted_at": stamp, "filled_at": stamp, "symbol": symbol, "asset_class": "us_equity", "qty": str(qty),
            "filled_qty": str(qty), "filled_avg_price": str(price), "order_type": "market", "type": "market",
            "side": side, "time_in_force": "day", "status": "filled", "extended_hours": False,
        }
        self.orders[client_id] = order
        return order

    def position_rows(self) -> list[dict]:
        return [
            {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol, "exchange": "NASDAQ",
             "asset_class": "us_equity", "avg_entry_price": str(p["avg"]), "qty": str(abs(p["qty"])),
             "side": "long" if p["qty"] > 0 else "short", "cost_basis": str(abs(p["qty"]) * p["avg"])}
            for symbol, p in sorted(self.positions.items())
        ]

    def close(self, symbol: str) -> tuple[int, dict]:
        with self._lock:
            held = self.positions.get(symbol)
            if held is None:
                return 404, {"code": 40410000, "message": "position does not exist"}
            side = "sell" if held["qty"] > 0 else "buy"
            return 200, self._fill(str(uuid.uuid4()), symbol, side, abs(held["qty"]))

    def route(self, method: str, url, body: dict | None) -> tuple[int, dict | list]:
        query = parse_qs(url.query)
        if method == "GET" and url.path == "/v2/stocks/bars":
            return 200, self.stock_bars(query)
        if method == "GET" and url.path == "/v2/clock":
            return 200, self.clock()
        if method == "GET" and url.path == "/v2/account":
            return 200, self.account()
        if method == "POST" and url.path == "/v2/orders":
            return self.submit(body or {})
        if method == "GET" and url.path == "/v2/orders:by_client_order_id":
            order = self.orders.get(query.get("client_order_id", [""])[0])
            return (200, order) if order else (404, {"code": 40410000, "message": "order not found"})
        if method == "GET" and url.path == "/v2/positions":
            return 200, self.position_rows()
        if method == "DELETE" and url.path.startswith("/v2/positions/"):
            return self.close(url.path.rsplit("/", 1)[1])
        return 404, {"code": 40400000, "message": f"no route {method} {url.path}"}

    def _handler(self):
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body, content_type: str = "application/json") -> None:
                emulator.requests.append((self.command, self.path, status))
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if not emulator.trickle_s:
                    return self.wfile.write(payload)
                for i in range(len(payload)):
                    self.wfile.write(payload[i : i + 1])
                    self.wfile.flush()
                    time.sleep(emulator.trickle_s)

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                if emulator.hang_s:
                    time.sleep(emulator.hang_s)
                if (self.headers.get("APCA-API-KEY-ID"), self.headers.get("APCA-API-SECRET-KEY")) != (
                    emulator.key_id, emulator.secret
                ):
                    return self._send(401, {"code": 40110000, "message": "request is not authorized"})
                status = emulator.fail_next.pop(0) if emulator.fail_next else emulator.always_fail
                if status:
                    message = "too many requests" if status == 429 else "internal server error"
                    return self._send(status, {"code": status * 100000, "message": message})
                if emulator.raw_body is not None:
                    content_type, raw = emulator.raw_body
                    return self._send(200, raw, content_type)
                answer = emulator.route(self.command, urlparse(self.path), body)
                if emulator.order_reply_gate is not None and self.command == "POST" and self.path == "/v2/orders":
                    emulator.order_reply_gate.wait(60)  # accepted and filled: the client has not heard yet
                return self._send(*answer)

            do_GET = do_POST = do_DELETE = _serve

        return Handler
