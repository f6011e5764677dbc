"""The warehouse's named reads and writes: every SQL statement the pipeline runs on `warehouse.duckdb`.

`Warehouse` (resources/warehouse.py) mixes these in, so a caller asks for `warehouse.bars(first, last)`
and never writes SQL. Each method is named for what it returns; the column lists are the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import polars as pl

BAR_COLUMNS = ("session", "symbol", "sector", "open", "high", "low", "close", "volume")

# The scan's newest signals that have not expired. The view is for people at a duckdb prompt (the wall
# clock); the product reads `active_signals_at` with clock.now(), so a test that sets the clock sees the
# signals active at that time.
_ACTIVE = "session = (SELECT max(session) FROM scanner_scores) AND expires_at > {now}"
_ACTIVE_SIGNALS_AT = f"SELECT * REPLACE (true AS is_active) FROM signal_history WHERE {_ACTIVE.format(now='?')}"
_ACTIVE_SIGNALS_VIEW = (
    "CREATE OR REPLACE VIEW active_signals AS SELECT * REPLACE (true AS is_active) FROM signal_history "
    f"WHERE {_ACTIVE.format(now='current_timestamp')}"
)


def _columns(columns: Sequence[str]) -> str:
    return ", ".join(columns)


class WarehouseReads:
    """Named queries over the warehouse's tables; needs `query`, `update`, `execute` and `has_table`."""

    # daily_bars

    def bars(self, first: date, last: date | None = None, columns: Sequence[str] = BAR_COLUMNS, ordered: bool = True
             ) -> pl.DataFrame:
        """`columns` of daily_bars for the sessions first..last (no `last`: through the newest), by symbol and
        session when `ordered` (sorting ten years costs ~0.4 s, so a reader that joins instead says ordered=False)."""
        through = "AND session <= ?" if last is not None else ""
        order = "ORDER BY symbol, session" if ordered else ""
        return self.query(
            f"SELECT {_columns(columns)} FROM daily_bars WHERE session >= ? {through} {order}",
            [first] if last is None else [first, last],
        )

    def closes_before(self, session: date, count: int) -> pl.DataFrame | None:
        """session, symbol, close of the `count` sessions daily_bars holds before `session`; None before any bars."""
        if not self.has_table("daily_bars"):
            return None
        return self.query(
            "SELECT session, symbol, close FROM daily_bars "
            "WHERE session IN (SELECT DISTINCT session FROM daily_bars WHERE session < ? ORDER BY session DESC LIMIT ?)",
            [session, count],
        )

    def bar_totals(self, first: date, last: date) -> dict:
        """rows, symbols and sessions of daily_bars first..last."""
        return self.query(
            "SELECT count(*) AS rows, count(DISTINCT symbol) AS symbols, count(DISTINCT session) AS sessions "
            "FROM daily_bars WHERE session BETWEEN ? AND ?",
            [first, last],
        ).row(0, named=True)

    def held_sessions(self, table: str, candidates: Sequence[date]) -> set[date]:
        """Which of `candidates` `table` holds rows of (none when the table does not exist)."""
        if not candidates or not self.has_table(table):
            return set()
        found = self.query(f"SELECT DISTINCT session FROM {table} WHERE session IN (SELECT unnest(?))", [list(candidates)])
        return set(found["session"].to_list())

    # daily_features and training_samples

    def features(self, sessions: Sequence[date], columns: Sequence[str]) -> pl.DataFrame:
        """session, symbol and `columns` of daily_features for `sessions`, by session and symbol."""
        return self.query(
            f"SELECT session, symbol, {_columns(columns)} FROM daily_features "
            "WHERE session IN (SELECT unnest(?)) ORDER BY session, symbol",
            [list(sessions)],
        )

    def sector_features(self, first: date, last: date, sectors: Sequence[str], columns: Sequence[str]) -> pl.DataFrame:
        """session, sector and `columns` of daily_features first..last for `sectors`."""
        return self.query(
            f"SELECT session, sector, {_columns(columns)} FROM daily_features "
            "WHERE session BETWEEN ? AND ? AND sector IN (SELECT unnest(?))",
            [first, last, list(sectors)],
        )

    def feature_rows(self) -> int:
        return self.query("SELECT count(*) AS rows FROM daily_features").item()

    def labelled_features(self, sector: str, label_column: str, features: Sequence[str], last_entry: date
                          ) -> pl.DataFrame:
        """One sector's training samples (`label_column` as `label`) joined to the features known at entry, for
        the entry sessions through `last_entry` (the newest whose whole label horizon a cutoff has seen)."""
        columns = ", ".join(f"f.{name}" for name in features)
        return self.query(
            f"""
            SELECT s.session, s.symbol, s.sector, s.{label_column} AS label, s.barrier, s.t1, s.fwd_ret, {columns}
            FROM training_samples s JOIN daily_features f USING (session, symbol)
            WHERE s.sector = ? AND s.session <= ?
            """,
            [sector, last_entry],
        )

    def barrier_balance(self) -> pl.DataFrame:
        """Per barrier of training_samples: samples, their share, average return and days held."""
        return self.query(
            "SELECT barrier, count(*) AS samples, round(100 * count(*) / sum(count(*)) OVER (), 1) AS pct, "
            "round(100 * avg(ret), 2) AS avg_return_pct, round(avg(days_held), 1) AS avg_days "
            "FROM training_samples GROUP BY barrier ORDER BY barrier"
        )

    def label_up_share(self) -> float:
        return self.query("SELECT avg(label) FROM training_samples").item()

    # the models' own records (model_versions, champion_history: append-only)

    def model_versions(self, model_type: str | None = None) -> pl.DataFrame:
        """Every registered model version with its cutoff and sha256 (of `model_type` only, when given)."""
        return self._model_records("model_versions", model_type)

    def champion_history(self, model_type: str | None = None) -> pl.DataFrame:
        """Every promotion: which version was each model's champion from which training week on."""
        return self._model_records("champion_history", model_type)

    def _model_records(self, table: str, model_type: str | None) -> pl.DataFrame:
        if not self.has_table(table):
            return pl.DataFrame()
        where = "WHERE model_type = ?" if model_type else ""
        return self.query(f"SELECT * FROM {table} {where} ORDER BY registered_model, labels_through",
                          [model_type] if model_type else None)

    # the scanner's tables

    def signals(self, sessions: Sequence[date]) -> pl.DataFrame:
        """Every column of signal_history for `sessions`."""
        return self.query("SELECT * FROM signal_history WHERE session IN (SELECT unnest(?))", [list(sessions)])

    def signals_between(self, first: date, last: date, columns: Sequence[str], symbols: Sequence[str] | None = None
                        ) -> pl.DataFrame:
        """`columns` of signal_history first..last, of `symbols` only when given."""
        of_symbols = "AND symbol IN (SELECT unnest(?))" if symbols is not None else ""
        return self.query(
            f"SELECT {_columns(columns)} FROM signal_history WHERE session BETWEEN ? AND ? {of_symbols}",
            [first, last] if symbols is None else [first, last, list(symbols)],
        )

    def top_signals(self, session: date, limit: int = 10) -> pl.DataFrame:
        """The session's `limit` most confident signals, prices rounded for a person."""
        return self.query(
            "SELECT symbol, sector, signal_type, round(confidence, 3) AS confidence, round(entry_price, 2) AS entry, "
            "round(target_price, 2) AS target, round(stop_loss, 2) AS stop, expires_at FROM signal_history "
            "WHERE session = ? ORDER BY confidence DESC, symbol LIMIT ?",
            [session, limit],
        )

    def scores(self, sessions: Sequence[date]) -> pl.DataFrame:
        """session, symbol, sector, probability_up, model_labels_through of scanner_scores for `sessions`."""
        return self.query(
            "SELECT session, symbol, sector, probability_up, model_labels_through FROM scanner_scores "
            "WHERE session IN (SELECT unnest(?))",
            [list(sessions)],
        )

    def scores_between(self, first: date | None, last: date, columns: Sequence[str] = ("*",)) -> pl.DataFrame:
        """`columns` of scanner_scores first..last (no `first`: from the oldest), by session and symbol."""
        since = "session >= ? AND" if first is not None else ""
        return self.query(
            f"SELECT {_columns(columns)} FROM scanner_scores WHERE {since} session <= ? ORDER BY session, symbol",
            [last] if first is None else [first, last],
        )

    def outcomes_between(self, first: date, last: date, columns: Sequence[str] = ("*",), by: str = "session"
                         ) -> pl.DataFrame:
        """`columns` of signal_outcomes whose `by` (session or exit_session) is first..last."""
        return self.query(
            f"SELECT {_columns(columns)} FROM signal_outcomes WHERE {by} BETWEEN ? AND ?", [first, last]
        )

    def graded_signals_through(self, last: date) -> pl.DataFrame:
        """Every graded signal of a session up to `last`, with its confidence; empty before any was graded."""
        if not self.has_table("signal_outcomes"):
            return pl.DataFrame()
        return self.query(
            "SELECT o.id, o.session, o.symbol, o.sector, o.signal_type, h.confidence, o.outcome, o.exit_session, "
            "o.days_held, o.ret, h.model_labels_through FROM signal_outcomes o JOIN signal_history h USING (id) WHERE o.session <= ? "
            "ORDER BY o.session, o.symbol",
            [last],
        )

    def newest_scan(self) -> date | None:
        """The newest session scanner_scores holds (every scan writes its scores); None before any scan."""
        if not self.has_table("scanner_scores"):
            return None
        return self.query("SELECT max(session) AS newest FROM scanner_scores").item()

    def scanned_signals(self, first: date, last: date) -> pl.DataFrame | None:
        """Every column of signal_history first..last, by session and symbol; None before any signal was written."""
        if not self.has_table("signal_history"):
            return None
        return self.query("SELECT * FROM signal_history WHERE session BETWEEN ? AND ? ORDER BY session, symbol",
                          [first, last])

    def graded_signal_results(self, first: date, last: date) -> pl.DataFrame:
        """session, sector, signal_type, confidence, outcome, excess_ret of the signals of first..last that
        signal_outcomes graded; empty (with those columns) before any was graded."""
        if not self.has_table("signal_outcomes"):
            return pl.DataFrame(schema={"session": pl.Date, "sector": pl.String, "signal_type": pl.String,
                                        "confidence": pl.Float64, "outcome": pl.String, "excess_ret": pl.Float64})
        return self.query(
            "SELECT o.session, o.sector, o.signal_type, h.confidence, o.outcome, o.excess_ret "
            "FROM signal_outcomes o JOIN signal_history h USING (id) WHERE o.session BETWEEN ? AND ?",
            [first, last],
        )

    def active_signals_at(self, now: datetime) -> pl.DataFrame:
        """The newest scan's signals that have not expired at `now`."""
        return self.query(_ACTIVE_SIGNALS_AT, [now])

    def active_signal_counts(self, now: datetime) -> pl.DataFrame:
        """session, signal_type, signals: the active signals at `now`, counted."""
        return self.query(
            f"SELECT session, signal_type, count(*) AS signals FROM ({_ACTIVE_SIGNALS_AT}) GROUP BY ALL ORDER BY ALL",
            [now],
        )

    def refresh_active_signals(self, now: datetime) -> None:
        """(Re)create the `active_signals` view and set signal_history.is_active as of `now`."""
        moment = f"TIMESTAMPTZ '{now.isoformat()}'"  # ours, formatted from a datetime: no outside text
        self.execute(_ACTIVE_SIGNALS_VIEW, f"UPDATE signal_history SET is_active = ({_ACTIVE.format(now=moment)})")

    def expire_signals(self, now: datetime) -> int:
        """Mark the signals that expired before `now` inactive; how many changed."""
        return self.update("UPDATE signal_history SET is_active = false WHERE is_active AND expires_at < ?", [now])

    def drop_signals_before(self, cutoff: date) -> int:
        """Delete the signals of sessions before `cutoff`; how many."""
        return self.update("DELETE FROM signal_history WHERE session < ?", [cutoff])

    # reports

    def latest_backtest_summary(self, strategy: str = "long_short") -> dict:
        """The signal backtest's summary row of `strategy` as of its newest as-of session."""
        return self.query(
            "SELECT * FROM signal_backtest_summary WHERE strategy = ? "
            "AND as_of = (SELECT max(as_of) FROM signal_backtest_summary)",
            [strategy],
        ).row(0, named=True)

    def latest_drift_report(self) -> pl.DataFrame:
        """Per sector, the newest week's drift status (rounded for a person) and the report's path."""
        return self.query(
            "SELECT sector, status, round(median_excess_psi, 3) AS median_excess_psi, top_feature, buy, sell, "
            "one_sided, report_path "
            "FROM drift_report WHERE week_ending = (SELECT max(week_ending) FROM drift_report) ORDER BY sector"
        )

    def strategy_backtests(self, backtest_ids: Sequence[str]) -> pl.DataFrame:
        """The strategy backtests `backtest_ids`, one row each, rounded for a person."""
        return self.query(
            "SELECT strategy_id, symbol, timeframe_minutes AS tf, round_trips AS trips, orders_rejected AS rejected, "
            "round(hit_rate, 3) AS hit_rate, round(pnl_before_costs, 2) AS pnl_gross, round(costs, 2) AS costs, "
            "round(pnl, 2) AS pnl, round(total_return, 4) AS return, round(sharpe_before_costs, 2) AS sharpe_gross, "
            "round(sharpe, 2) AS sharpe, round(sharpe_se, 2) AS se, round(sharpe_t, 2) AS t, "
            "round(deflated_sharpe, 3) AS deflated, round(max_drawdown, 4) AS max_drawdown, round(exposure, 3) AS exposure "
            "FROM strategy_backtest WHERE backtest_id IN (SELECT unnest(?)) ORDER BY strategy_id",
            [list(backtest_ids)],
        )
