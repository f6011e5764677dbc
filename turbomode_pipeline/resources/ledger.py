"""The trading ledger: a SQLite file of its own, apart from the warehouse.

SQLite in WAL mode lets the sensor read while a tick writes, across processes, and no
nightly warehouse job can ever hold it. Everything live trading decides is appended here:
strategies, signals, risk decisions, orders, fills, positions, equity and the last copy of
the scanner's active signals.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import polars as pl
import yaml
from dagster import ConfigurableResource

from turbomode_pipeline.core.strategies import DEFAULT_PARAMS, strategy_problem

SCHEMA = """
CREATE TABLE IF NOT EXISTS live_strategies (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, symbol TEXT NOT NULL,
    allocation REAL NOT NULL, params TEXT NOT NULL, enabled INTEGER NOT NULL,
    check_interval_s INTEGER NOT NULL DEFAULT 60, last_check TEXT, total_signals INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'idle');
CREATE TABLE IF NOT EXISTS strategy_signals (
    tick_time TEXT, strategy_id TEXT, symbol TEXT, bar_time TEXT, action TEXT, price REAL, reason TEXT);
CREATE TABLE IF NOT EXISTS risk_decisions (
    tick_time TEXT, strategy_id TEXT, symbol TEXT, side TEXT, price REAL, qty REAL, approved INTEGER, reason TEXT);
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY, strategy_id TEXT, symbol TEXT, side TEXT, qty REAL, submitted_at TEXT,
    broker_order_id TEXT, status TEXT, filled_qty REAL, filled_avg_price REAL, updated_at TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS fills (
    client_order_id TEXT PRIMARY KEY, strategy_id TEXT, symbol TEXT, side TEXT, qty REAL, price REAL, filled_at TEXT);
CREATE TABLE IF NOT EXISTS positions (
    tick_time TEXT, symbol TEXT, broker_qty REAL, ledger_qty REAL, avg_entry_price REAL, reconciled INTEGER);
CREATE TABLE IF NOT EXISTS equity (tick_time TEXT PRIMARY KEY, cash REAL, equity REAL);
CREATE TABLE IF NOT EXISTS active_signals_cache (cached_at TEXT, payload BLOB);
"""
STRATEGY_SCHEMA = {
    "id": pl.String, "name": pl.String, "type": pl.String, "symbol": pl.String, "allocation": pl.Float64,
    "params": pl.String, "enabled": pl.Int64, "check_interval_s": pl.Int64, "last_check": pl.String,
    "total_signals": pl.Int64, "status": pl.String,
}


ADDED_COLUMNS = {"orders": {"error": "TEXT"}}  # columns a ledger written by an older version lacks


def _add_missing_columns(con: sqlite3.Connection) -> None:
    for table, columns in ADDED_COLUMNS.items():
        present = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in present:
                try:
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as error:  # another process added it first
                    if "duplicate column" not in str(error):
                        raise


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class Ledger(ConfigurableResource):
    """The trading ledger at `path` (default $TURBOMODE_DATA_DIR/trading.sqlite)."""

    path: str
    busy_timeout_s: float = 10.0

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_s)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            _add_missing_columns(con)
            with con:  # one transaction: committed on success, rolled back on error
                yield con
        finally:
            con.close()

    def query(self, sql: str, params: Sequence = ()) -> pl.DataFrame:
        with self.connection() as con:
            cursor = con.execute(sql, list(params))
            names = [d[0] for d in cursor.description]
            return pl.DataFrame(cursor.fetchall(), schema=names, orient="row", infer_schema_length=None)

    def append(self, table: str, frame: pl.DataFrame) -> int:
        if frame.is_empty():
            return 0
        columns = ", ".join(frame.columns)
        marks = ", ".join("?" for _ in frame.columns)
        with self.connection() as con:
            con.executemany(f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({marks})", frame.rows())
        return frame.height

    # -- strategies ---------------------------------------------------------------------

    def seed_strategies(self, yaml_path: str) -> int:
        """Insert the YAML file's strategies whose id the ledger does not know yet."""
        entries = yaml.safe_load(Path(yaml_path).read_text())["strategies"]
        with self.connection() as con:
            known = {row[0] for row in con.execute("SELECT id FROM live_strategies")}
        fresh = [entry for entry in entries if entry["id"] not in known]
        for entry in fresh:
            self.add_strategy(**entry)
        return len(fresh)

    def add_strategy(self, id: str, type: str, symbol: str, allocation: float, name: str | None = None,  # noqa: A002
                     params: dict | None = None, enabled: bool = True, check_interval_s: int = 60,
                     universe: pl.Series | None = None) -> None:
        """`universe`: the symbols a new strategy may trade (unchecked when None, as for the seeded file).
        ValueError, in one line naming the field, for anything the strategy cannot run (core.strategies' rules)."""
        problem = strategy_problem(id, type, symbol, allocation, {} if params is None else params, check_interval_s)
        if problem:
            raise ValueError(problem)
        if universe is not None and symbol.upper() not in set(universe.to_list()):
            raise ValueError(f"strategy {id}: symbol {symbol.upper()} is not in the universe ({universe.len()} symbols, "
                             f"e.g. {', '.join(universe.head(5).to_list())})")
        params = {**DEFAULT_PARAMS[type], **(params or {})}
        with self.connection() as con:
            if con.execute("SELECT 1 FROM live_strategies WHERE id = ?", [id]).fetchone():
                raise ValueError(f"a strategy with id {id!r} already exists")
            con.execute(
                "INSERT INTO live_strategies (id, name, type, symbol, allocation, params, enabled, check_interval_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [id, name or f"{symbol} {type}", type, symbol.upper(), allocation, json.dumps(params), int(enabled), check_interval_s],
            )

    def set_enabled(self, strategy_id: str, enabled: bool) -> None:
        with self.connection() as con:
            changed = con.execute(
                "UPDATE live_strategies SET enabled = ?, status = ? WHERE id = ?",
                [int(enabled), "idle" if enabled else "disabled", strategy_id],
            ).rowcount
        if not changed:
            raise ValueError(f"no strategy with id {strategy_id!r}")

    def remove_strategy(self, strategy_id: str) -> None:
        """Delete a strategy that holds no position; its orders and fills stay in the ledger."""
        held = self.holdings().filter((pl.col("strategy_id") == strategy_id) & (pl.col("held_qty").abs() > 1e-9))
        if held.height:
            positions = ", ".join(f"{qty:g} {symbol}" for symbol, qty in held.select("symbol", "held_qty").rows())
            raise ValueError(f"strategy {strategy_id!r} holds a position ({positions}); disable it and let it exit first")
        with self.connection() as con:
            removed = con.execute("DELETE FROM live_strategies WHERE id = ?", [strategy_id]).rowcount
        if not removed:
            raise ValueError(f"no strategy with id {strategy_id!r}")

    def strategies(self) -> pl.DataFrame:
        """Every strategy, typed even when there is none (a fresh ledger's columns are not all null)."""
        return self.query("SELECT * FROM live_strategies ORDER BY id").cast(STRATEGY_SCHEMA)

    def due_strategies(self, now: datetime) -> list[str]:
        """Enabled strategies never checked or last checked at least their interval before `now`."""
        frame = self.query("SELECT id, check_interval_s, last_check FROM live_strategies WHERE enabled = 1 ORDER BY id")
        due = [
            row["id"] for row in frame.iter_rows(named=True)  # a handful of strategies, not market rows
            if row["last_check"] is None
            or (now - datetime.fromisoformat(row["last_check"])).total_seconds() >= row["check_interval_s"]
        ]
        return due

    def mark_checked(self, checks: pl.DataFrame, now: datetime) -> None:
        """`checks`: strategy_id, signals (how many buy/sell signals the tick found), status."""
        with self.connection() as con:
            con.executemany(
                "UPDATE live_strategies SET last_check = ?, total_signals = total_signals + ?, status = ? WHERE id = ?",
                [(_iso(now), signals, status, sid) for sid, signals, status in checks.select("strategy_id", "signals", "status").rows()],
            )

    # -- holdings -----------------------------------------------------------------------

    def holdings(self, since: datetime | None = None, until: datetime | None = None) -> pl.DataFrame:
        """Per strategy and symbol: the net quantity bought by fills in [since, until) and its cash flow."""
        frame = self.query(
            "SELECT strategy_id, symbol, "
            "SUM(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS held_qty, "
            "SUM(CASE WHEN side = 'buy' THEN -qty * price ELSE qty * price END) AS cash_flow "
            "FROM fills WHERE filled_at >= ? AND filled_at < ? GROUP BY strategy_id, symbol ORDER BY strategy_id",
            [_iso(since) if since else "", _iso(until) if until else "9999"],
        )
        if frame.is_empty():
            return pl.DataFrame(schema={"strategy_id": pl.String, "symbol": pl.String, "held_qty": pl.Float64, "cash_flow": pl.Float64})
        return frame.with_columns(pl.col("held_qty", "cash_flow").cast(pl.Float64))

    # -- orders --------------------------------------------------------------------------

    def client_order_ids(self) -> list[str]:
        """Every client order id the ledger holds: none is ever sent twice."""
        known = self.query("SELECT client_order_id FROM orders")
        return known["client_order_id"].to_list() if not known.is_empty() else []

    def unsettled_orders(self, settled: Sequence[str]) -> pl.DataFrame:
        """client_order_id, strategy_id, submitted_at, status of the orders whose status is not in `settled`."""
        return self.query(
            "SELECT client_order_id, strategy_id, submitted_at, status FROM orders "
            f"WHERE status NOT IN ({', '.join('?' * len(settled))})",
            settled,
        )

    def refuse_order(self, client_order_id: str, error: str, now: datetime) -> None:
        """The broker answered and refused the order: `refused`, with its words."""
        with self.connection() as con:
            con.execute("UPDATE orders SET status = 'refused', error = ?, updated_at = ? WHERE client_order_id = ?",
                        [error, _iso(now), client_order_id])

    def set_order_status(self, client_order_ids: Sequence[str], status: str, now: datetime) -> None:
        with self.connection() as con:
            con.executemany("UPDATE orders SET status = ?, updated_at = ? WHERE client_order_id = ?",
                            [(status, _iso(now), cid) for cid in client_order_ids])

    # -- a session's record (the paper-trading report); start and end are ISO timestamps --

    def strategy_marks(self, start: str, end: str) -> pl.DataFrame:
        """Per strategy: the last price it saw before `start` (p0) and by `end` (p1)."""
        return self.query(
            "SELECT strategy_id, "
            "(SELECT price FROM strategy_signals s WHERE s.strategy_id = l.id AND tick_time < ? AND price IS NOT NULL "
            " ORDER BY tick_time DESC LIMIT 1) AS p0, "
            "(SELECT price FROM strategy_signals s WHERE s.strategy_id = l.id AND tick_time <= ? AND price IS NOT NULL "
            " ORDER BY tick_time DESC LIMIT 1) AS p1 "
            "FROM (SELECT id, id AS strategy_id FROM live_strategies) l",
            [start, end],
        )

    def net_quantity_before(self, start: str) -> pl.DataFrame:
        """Per strategy: the net quantity its fills before `start` bought (q0)."""
        return self.query(
            "SELECT strategy_id, SUM(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS q0 FROM fills WHERE filled_at < ? "
            "GROUP BY strategy_id", [start])

    def fills_between(self, start: str, end: str) -> pl.DataFrame:
        """Per strategy: net quantity (dq), cash flow and count of its fills in [start, end]."""
        return self.query(
            "SELECT strategy_id, SUM(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS dq, "
            "SUM(CASE WHEN side = 'buy' THEN -qty * price ELSE qty * price END) AS cash_flow, COUNT(*) AS fills "
            "FROM fills WHERE filled_at >= ? AND filled_at <= ? GROUP BY strategy_id", [start, end])

    def strategy_allocations(self) -> pl.DataFrame:
        return self.query("SELECT id AS strategy_id, allocation FROM live_strategies").cast(
            {"strategy_id": pl.String, "allocation": pl.Float64})

    def sells_between(self, start: str, end: str) -> pl.DataFrame:
        """Per strategy: its sell fills in [start, end] (each closes a round trip: strategies are long only)."""
        return self.query("SELECT strategy_id, COUNT(*) AS round_trips FROM fills WHERE side = 'sell' AND filled_at >= ? "
                          "AND filled_at <= ? GROUP BY strategy_id", [start, end]).cast(
            {"strategy_id": pl.String, "round_trips": pl.Int64})

    def strategy_prices(self, start: str, end: str) -> pl.DataFrame:
        """strategy_id, tick_time, price: the price each strategy saw at each tick in [start, end]."""
        return self.query("SELECT strategy_id, tick_time, price FROM strategy_signals WHERE tick_time BETWEEN ? AND ? "
                          "AND price IS NOT NULL ORDER BY tick_time", [start, end]).cast(
            {"strategy_id": pl.String, "tick_time": pl.String, "price": pl.Float64})

    def fills_until(self, end: str) -> pl.DataFrame:
        """Every fill up to `end`: strategy_id, filled_at, side, qty, fill_price."""
        return self.query("SELECT strategy_id, filled_at, side, qty, price AS fill_price FROM fills WHERE filled_at <= ? "
                          "ORDER BY filled_at", [end]).cast(
            {"strategy_id": pl.String, "filled_at": pl.String, "side": pl.String, "qty": pl.Float64, "fill_price": pl.Float64})

    def costs_between(self, start: str, end: str) -> pl.DataFrame:
        """Per strategy: commission and slippage (dollars) its fills in [start, end] paid, as the local paper broker
        recorded them in paper_orders; none for a broker that does not say (Alpaca)."""
        empty = pl.DataFrame(schema={"strategy_id": pl.String, "commission": pl.Float64, "slippage": pl.Float64})
        if not self.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'paper_orders'").height:
            return empty
        columns = set(self.query("SELECT name FROM pragma_table_info('paper_orders')")["name"].to_list())
        slippage = "p.slippage" if "slippage" in columns else "0.0"
        frame = self.query(
            f"SELECT f.strategy_id, SUM(COALESCE(p.commission, 0.0)) AS commission, SUM(COALESCE({slippage}, 0.0)) AS slippage "
            "FROM fills f JOIN paper_orders p ON p.client_order_id = f.client_order_id "
            "WHERE f.filled_at >= ? AND f.filled_at <= ? GROUP BY f.strategy_id", [start, end])
        return frame.cast(empty.schema) if frame.height else empty

    def equity_between(self, start: str, end: str) -> pl.DataFrame:
        return self.query("SELECT tick_time, cash, equity FROM equity WHERE tick_time BETWEEN ? AND ? ORDER BY tick_time",
                          [start, end])

    def orders_between(self, start: str, end: str) -> pl.DataFrame:
        return self.query("SELECT * FROM orders WHERE submitted_at BETWEEN ? AND ? ORDER BY submitted_at", [start, end])

    def rejections_between(self, start: str, end: str) -> pl.DataFrame:
        return self.query(
            "SELECT tick_time, strategy_id, symbol, side, reason FROM risk_decisions "
            "WHERE approved = 0 AND tick_time BETWEEN ? AND ? ORDER BY tick_time", [start, end])

    def positions_at(self, end: str) -> pl.DataFrame:
        """The newest reconciled positions recorded by `end`."""
        return self.query(
            "SELECT symbol, broker_qty, ledger_qty, avg_entry_price, reconciled FROM positions "
            "WHERE tick_time = (SELECT MAX(tick_time) FROM positions WHERE tick_time <= ?)", [end])

    # -- the scanner's signals, cached ---------------------------------------------------

    def cache_active_signals(self, signals: pl.DataFrame, now: datetime) -> None:
        with self.connection() as con:
            con.execute("DELETE FROM active_signals_cache")
            parquet = io.BytesIO()
            signals.write_parquet(parquet)
            con.execute("INSERT INTO active_signals_cache VALUES (?, ?)", [_iso(now), parquet.getvalue()])

    def cached_active_signals(self) -> tuple[pl.DataFrame | None, datetime | None]:
        rows = self.query("SELECT cached_at, payload FROM active_signals_cache")
        if rows.is_empty():
            return None, None
        cached_at, payload = rows.row(0)
        return pl.read_parquet(io.BytesIO(payload)), datetime.fromisoformat(cached_at)
