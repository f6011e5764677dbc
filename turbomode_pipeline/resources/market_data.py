"""Where daily bars come from: one interface, a simulated and an Alpaca implementation.

Both return the same frame: session, symbol, sector, open, high, low, close, volume, vwap,
trade_count, source, one row per bar that exists. Symbols without bars are simply absent;
the `daily_bars` asset reports them through its coverage check, never silently.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import polars as pl
from dagster import ConfigurableResource, get_dagster_logger

from turbomode_pipeline.calendar import EXCHANGE_TZ, session_close, session_minutes, session_open, sessions_between
from turbomode_pipeline.core.bar_rules import expected_bars
from turbomode_pipeline.core.market_sim import SIM_EPOCH, simulate_daily_bars, simulate_minute_bars
from turbomode_pipeline.resources.alpaca_http import ResponseError, harden

BAR_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "trade_count")


class MarketDataError(RuntimeError):
    """The market data source could not deliver the bars asked for."""


class MarketDataSource(ConfigurableResource):
    """Daily OHLCV bars for a list of sessions and a universe (symbol, sector)."""

    def daily_bars(self, sessions: list[date], universe: pl.DataFrame) -> pl.DataFrame:
        raise NotImplementedError

    def minute_bars(self, sessions: list[date], universe: pl.DataFrame) -> pl.DataFrame:
        """One-minute bars (symbol, time UTC, open, high, low, close, volume) of the sessions' regular hours."""
        raise NotImplementedError


class SimulatedMarketData(MarketDataSource):
    """The offline default: a deterministic simulated market (see core/market_sim.py)."""

    seed: int = 7
    predictability: float = 0.5

    def daily_bars(self, sessions: list[date], universe: pl.DataFrame) -> pl.DataFrame:
        if not sessions:
            return _with_source(simulate_daily_bars(universe, [], [], seed=self.seed, predictability=0), "simulated")
        wanted = sorted(sessions)
        bars = simulate_daily_bars(
            universe.select("symbol", "sector"),
            sessions_between(SIM_EPOCH, wanted[-1]),
            wanted,
            seed=self.seed,
            predictability=self.predictability,
            session_minutes=session_minutes(wanted),
        )
        listed = expected_bars(universe, wanted)  # a symbol trades only while listed, as a vendor's would
        return _with_source(bars.join(listed, on=["session", "symbol"], how="semi"), "simulated")

    def minute_bars(self, sessions: list[date], universe: pl.DataFrame) -> pl.DataFrame:
        """The minutes the daily bars aggregate (core/market_sim.py: one generative model)."""
        wanted = sorted(sessions)
        if not wanted:
            return simulate_minute_bars(universe, [], [], [], [], seed=self.seed, predictability=0).drop("session")
        minutes = simulate_minute_bars(
            universe.select("symbol", "sector"),
            sessions_between(SIM_EPOCH, wanted[-1]),
            wanted,
            [session_open(day).replace(tzinfo=None) for day in wanted],  # xcals opens are UTC
            session_minutes(wanted),
            seed=self.seed,
            predictability=self.predictability,
        )
        listed = expected_bars(universe, wanted)
        return minutes.join(listed, on=["session", "symbol"], how="semi").drop("session")


class AlpacaMarketData(MarketDataSource):
    """Daily bars from Alpaca's market data API through the alpaca-py SDK."""

    api_key: str
    secret_key: str
    data_url: str | None = None  # APCA_API_DATA_URL; None means Alpaca's production data API
    feed: str = "iex"
    adjustment: str = "all"
    symbols_per_request: int = 100
    timeout_s: float = 30.0  # per read
    request_deadline_s: float = 120.0  # per request, however the bytes trickle (TURBOMODE_ALPACA_REQUEST_DEADLINE_S)
    run_deadline_s: float = 1800.0  # all requests of one call of the source, from its client's creation (TURBOMODE_ALPACA_RUN_DEADLINE_S)
    max_retries: int = 5
    backoff_s: float = 1.0

    def _client(self):
        from alpaca.data.historical.stock import StockHistoricalDataClient

        client = StockHistoricalDataClient(
            self.api_key, self.secret_key, raw_data=True, url_override=self.data_url.rstrip("/") if self.data_url else None
        )
        return harden(client, self.timeout_s, self.max_retries, self.backoff_s, self.request_deadline_s, self.run_deadline_s)

    def _get_bars(self, client, batch: list[str], timeframe, start: datetime, end: datetime, span: str) -> dict:
        """Raw bars {symbol: [...]} for one batch of symbols; errors name the batch and the sessions."""
        from alpaca.common.exceptions import APIError
        from alpaca.data.enums import Adjustment, DataFeed
        from alpaca.data.requests import StockBarsRequest

        request = StockBarsRequest(
            symbol_or_symbols=batch,
            timeframe=timeframe,
            start=start,
            end=end,
            adjustment=Adjustment(self.adjustment),
            feed=DataFeed(self.feed),
        )
        try:
            return client.get_stock_bars(request) or {}
        except APIError as error:
            raise MarketDataError(
                f"Alpaca market data request for {len(batch)} symbols ({batch[0]}..{batch[-1]}), "
                f"sessions {span}, failed with HTTP {error.status_code}: {error}"
            ) from error
        except ResponseError as error:  # slow or not JSON: the server answered, so no "did not answer"
            raise MarketDataError(f"Alpaca market data for sessions {span}: {error}") from error
        except OSError as error:  # requests' ConnectionError and Timeout
            raise MarketDataError(
                f"Alpaca market data at {self.data_url or 'data.alpaca.markets'} did not answer for sessions "
                f"{span} after {self.max_retries} retries: {error}"
            ) from error

    def _batches(self, universe: pl.DataFrame) -> list[list[str]]:
        symbols = universe["symbol"].to_list()
        return [symbols[i : i + self.symbols_per_request] for i in range(0, len(symbols), self.symbols_per_request)]

    def daily_bars(self, sessions: list[date], universe: pl.DataFrame) -> pl.DataFrame:
        from alpaca.data.timeframe import TimeFrame

        if not sessions:
            return _with_source(_empty_frame(), "alpaca")
        start = datetime.combine(min(sessions), time(), tzinfo=EXCHANGE_TZ)
        end = datetime.combine(max(sessions) + timedelta(days=1), time(), tzinfo=EXCHANGE_TZ)
        client = self._client()
        symbols = universe["symbol"].to_list()
        span = f"{min(sessions)}..{max(sessions)}"
        frames = [
            _raw_bars_to_frame(self._get_bars(client, batch, TimeFrame.Day, start, end, span))
            for batch in self._batches(universe)
        ]
        bars = pl.concat(frames) if frames else _empty_frame()
        wanted = pl.Series(sessions, dtype=pl.Date)
        bars = bars.filter(pl.col("session").is_in(wanted.implode()))
        bars = bars.join(universe.select("symbol", "sector"), on="symbol", how="inner")
        _log_gaps(bars, sessions, symbols)
        return _with_source(bars, "alpaca").sort("session", "symbol")


    def minute_bars(self, sessions: list[date], universe: pl.DataFrame) -> pl.DataFrame:
        """Regular-hours minute bars, one request per session and batch (no pre- or after-market bars)."""
        from alpaca.data.timeframe import TimeFrame

        client = self._client()
        frames = [
            _raw_minutes_to_frame(
                self._get_bars(client, batch, TimeFrame.Minute, session_open(day), session_close(day), str(day))
            )
            for day in sessions
            for batch in self._batches(universe)
        ]
        return pl.concat(frames).sort("symbol", "time") if frames else _raw_minutes_to_frame({})


def _raw_minutes_to_frame(raw: dict) -> pl.DataFrame:
    """{symbol: [{t, o, h, l, c, v, ...}]} into symbol, time (UTC), open, high, low, close, volume."""
    frames = [pl.DataFrame(bars, infer_schema_length=None).with_columns(symbol=pl.lit(symbol)) for symbol, bars in raw.items() if bars]
    if not frames:
        return pl.DataFrame(schema={"symbol": pl.String, "time": pl.Datetime("us", "UTC"),
                                    **dict.fromkeys(("open", "high", "low", "close", "volume"), pl.Float64)})
    return pl.concat(frames, how="diagonal_relaxed").select(
        "symbol",
        pl.col("t").str.to_datetime(time_zone="UTC").dt.cast_time_unit("us").alias("time"),
        *(pl.col(key).cast(pl.Float64).alias(name) for key, name in zip("ohlcv", ("open", "high", "low", "close", "volume"), strict=True)),
    )


FIELDS = {"o": ("open", pl.Float64), "h": ("high", pl.Float64), "l": ("low", pl.Float64), "c": ("close", pl.Float64),
          "v": ("volume", pl.Float64), "vw": ("vwap", pl.Float64), "n": ("trade_count", pl.Int64)}


class WrongTypedField(MarketDataError):
    """A bar's field holds a value of the wrong type (a string price, a timestamp that is not one)."""


def _raw_bars_to_frame(raw: dict) -> pl.DataFrame:
    """{symbol: [{t, o, h, l, c, v, n, vw}]} into one frame, session = New York date of `t`.

    A value that is not of its field's type fails naming the symbol, the session and the field.
    """
    rows = [pl.DataFrame(bars, infer_schema_length=None).with_columns(symbol=pl.lit(symbol)) for symbol, bars in raw.items() if bars]
    if not rows:
        return _empty_frame()
    frame = pl.concat(rows, how="diagonal_relaxed")
    for key in ("n", "vw"):
        if key not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(key))
    time_ = pl.col("t").cast(pl.String).str.to_datetime(time_zone="UTC", strict=False)
    typed = frame.select(
        time_.dt.convert_time_zone(str(EXCHANGE_TZ)).dt.date().alias("session"),
        "symbol",
        *(pl.col(key).cast(dtype, strict=False).alias(name) for key, (name, dtype) in FIELDS.items()),
    )
    _refuse_wrong_types(frame, typed)
    return typed


def _refuse_wrong_types(raw: pl.DataFrame, typed: pl.DataFrame) -> None:
    """Raise WrongTypedField for values present in `raw` that became null when cast in `typed`."""
    both = pl.concat([raw.select("symbol", "t", *FIELDS), typed.drop("symbol").rename(lambda c: f"_{c}")], how="horizontal")
    checks = {"t": ("_session", "a timestamp")} | {key: (f"_{name}", "a number") for key, (name, _) in FIELDS.items()}
    bad = pl.concat(
        [
            both.filter(pl.col(key).is_not_null() & pl.col(cast).is_null()).select(
                "symbol",
                pl.coalesce(pl.col("_session").cast(pl.String), pl.col("t").cast(pl.String)).alias("session"),
                pl.format(f"field '{key}'{f' ({FIELDS[key][0]})' if key in FIELDS else ''} is '{{}}', expected {expected}",
                          pl.col(key).cast(pl.String)).alias("detail"),
            )
            for key, (cast, expected) in checks.items()
        ]
    )
    if bad.height:
        lines = bad.head(5).select(pl.format("{} {}: {}", "symbol", "session", "detail").alias("line"))["line"].to_list()
        raise WrongTypedField(f"Alpaca sent {bad.height} wrong-typed field(s): " + "; ".join(lines))


def _log_gaps(bars: pl.DataFrame, sessions: list[date], symbols: list[str]) -> None:
    log = get_dagster_logger()
    if bars.is_empty():
        log.warning(f"Alpaca returned no bars at all for {len(symbols)} symbols, sessions {min(sessions)}..{max(sessions)}")
        return
    without = sorted(set(symbols) - set(bars["symbol"].unique().to_list()))
    if without:
        log.warning(f"Alpaca returned no bars for {len(without)} symbol(s): {', '.join(without[:20])}")


def _empty_frame() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "session": pl.Date,
            "symbol": pl.String,
            "open": pl.Float64,
            "high": pl.Float64,
            "low": pl.Float64,
            "close": pl.Float64,
            "volume": pl.Float64,
            "vwap": pl.Float64,
            "trade_count": pl.Int64,
        }
    )


def _with_source(bars: pl.DataFrame, source: str) -> pl.DataFrame:
    if "sector" not in bars.columns:
        bars = bars.with_columns(pl.lit(None, dtype=pl.String).alias("sector"))
    return bars.select("session", "symbol", "sector", *BAR_COLUMNS).with_columns(source=pl.lit(source))
