"""A loopback emulator of the Alpaca REST API, faithful to the wire format in
shared/reference/alpaca-api.md, for driving the real alpaca-py SDK in tests.

Failures are scripted: `fail_next` is a list of HTTP statuses returned, one per request,
before normal service resumes; `always_fail` answers every request with one status;
`hang_s` delays every answer.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import polars as pl

NEW_YORK = ZoneInfo("America/New_York")
KEY_ID, SECRET = "test-key", "test-secret"


class AlpacaEmulator:
    def __init__(self, bars: pl.DataFrame | None = None, page_size: int = 10_000):
        self.bars = bars if bars is not None else pl.DataFrame()
        self.page_size = page_size
        self.fail_next: list[int] = []
        self.always_fail: int | None = None
        self.hang_s = 0.0
        self.requests: list[tuple[str, str, int]] = []  # (method, path with query, status)
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
        if self.bars.is_empty():
            return {"bars": {}, "next_page_token": None}
        stamped = self.bars.with_columns(
            t=pl.col("session").cast(pl.Datetime("us")).dt.replace_time_zone(str(NEW_YORK)).dt.convert_time_zone("UTC")
        )
        selected = stamped.filter(
            pl.col("symbol").is_in(symbols) & (pl.col("t") >= start) & (pl.col("t") < end)
        ).sort("symbol", "t")
        page = selected.slice(offset, limit)
        out: dict[str, list[dict]] = {}
        for row in page.iter_rows(named=True):
            out.setdefault(row["symbol"], []).append(
                {
                    "t": row["t"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "o": row["open"], "h": row["high"], "l": row["low"], "c": row["close"],
                    "v": row["volume"], "n": row["trade_count"], "vw": row["vwap"],
                }
            )
        more = offset + limit < selected.height
        token = base64.b64encode(str(offset + limit).encode()).decode() if more else None
        return {"bars": out, "next_page_token": token}

    def _handler(self):
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body) -> None:
                emulator.requests.append((self.command, self.path, status))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                if emulator.hang_s:
                    time.sleep(emulator.hang_s)
                if self.headers.get("APCA-API-KEY-ID") != KEY_ID or self.headers.get("APCA-API-SECRET-KEY") != SECRET:
                    return self._send(401, {"code": 40110000, "message": "request is not authorized"})
                status = emulator.fail_next.pop(0) if emulator.fail_next else emulator.always_fail
                if status:
                    message = "too many requests" if status == 429 else "internal server error"
                    return self._send(status, {"code": status * 100000, "message": message})
                url = urlparse(self.path)
                if url.path == "/v2/stocks/bars":
                    return self._send(200, emulator.stock_bars(parse_qs(url.query)))
                return self._send(404, {"code": 40400000, "message": f"no route {url.path}"})

        return Handler
