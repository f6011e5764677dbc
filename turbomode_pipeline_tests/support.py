"""What tests share besides fixtures (those stay in conftest.py): a small universe, range-run tags, a
bars run, table reads, the fast training config, damaged vendor feeds, real closes, minute series."""

import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize

from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.model_registry import ModelRegistry
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import DEFAULT_UNIVERSE, get_settings


def evaluate_sensor(instance, live: dict, now: datetime):
    """live_trading_sensor's evaluation at `now` over the `live` fixture's resources."""
    from turbomode_pipeline.live.trading import TradingClock, live_trading_sensor

    resources = {**live, "trading_clock": TradingClock(fixed_now=now.isoformat())}
    return live_trading_sensor(build_sensor_context(instance=instance, resources=resources))


SECTORS = {  # GICS sectors of the dataset's 20 stocks: 7 sectors, 1 to 5 stocks each
    "Information Technology": ["AAPL", "AMD", "MSFT"],
    "Financials": ["BAC", "JPM"],
    "Consumer Discretionary": ["BBY", "HD"],
    "Energy": ["CVX", "RRC", "XOM"],
    "Industrials": ["GE"],
    "Health Care": ["JNJ", "LLY", "MRK", "PFE", "UNH"],
    "Consumer Staples": ["KO", "PEP", "PG", "WMT"],
}


FIRST, LAST = date(2015, 1, 2), date(2015, 12, 31)  # the partitions start at TURBOMODE_HISTORY_START, 2015-01-02


AMD_LISTED, RRC_DELISTED, RRC_HALT = date(2015, 6, 1), date(2015, 10, 30), date(2015, 3, 2)


def real_closes(first: date = FIRST, last: date = LAST) -> pl.DataFrame:
    """(session, symbol, close) of the packaged dataset, first..last."""
    from skfolio.datasets import load_sp500_dataset

    prices = pl.from_pandas(load_sp500_dataset().reset_index())
    return (
        prices.unpivot(index="Date", variable_name="symbol", value_name="close")
        .with_columns(session=pl.col("Date").cast(pl.Date))
        .filter(pl.col("session").is_between(first, last))
        .select("session", "symbol", "close")
    )


def vendor_bars(closes: pl.DataFrame, listed: date = AMD_LISTED, delisted: date = RRC_DELISTED, halt: date = RRC_HALT):
    """Daily bars from closes: open = previous close, high/low = the larger/smaller of open and close;
    the dataset has no volume, so a volume that grows with the size of the move stands in."""
    sector = pl.DataFrame(
        [{"symbol": s, "sector": sector} for sector, symbols in SECTORS.items() for s in symbols]
    )
    bars = (
        closes.sort("symbol", "session")
        .with_columns(open=pl.col("close").shift(1).over("symbol").fill_null(pl.col("close")))
        .with_columns(
            high=pl.max_horizontal("open", "close"), low=pl.min_horizontal("open", "close"),
            volume=1e6 * (1 + 50 * (pl.col("close") / pl.col("open")).log().abs()),
        )
        .with_columns(vwap=(pl.col("high") + pl.col("low") + pl.col("close")) / 3, trade_count=pl.lit(None, pl.Int64))
        .join(sector, on="symbol")
    )
    return bars.filter(
        ~((pl.col("symbol") == "AMD") & (pl.col("session") < listed))
        & ~((pl.col("symbol") == "RRC") & (pl.col("session") > delisted))
        & ~((pl.col("symbol") == "RRC") & (pl.col("session") == halt))
    )


START = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


def minute_series(closes: list[float], spread: float = 0.5, symbol: str = "AAPL") -> pl.DataFrame:
    """Bars opening at the previous close, high/low `spread` around the body."""
    opens = [closes[0], *closes[:-1]]
    return pl.DataFrame(
        {
            "symbol": symbol,
            "time": [START + timedelta(minutes=i) for i in range(len(closes))],
            "open": opens,
            "high": [max(o, c) + spread for o, c in zip(opens, closes, strict=True)],
            "low": [min(o, c) - spread for o, c in zip(opens, closes, strict=True)],
            "close": closes,
            "volume": 1000.0,
        }
    )


OLD_SYSTEMS_SIX = {  # name -> cron, in TURBOMODE_TIMEZONE (default America/Chicago)
    "market_data_ingestion": "45 22 * * *",
    "overnight_scanner": "30 23 * * *",
    "model_training": "0 0 * * 0",
    "backtest_data": "5 23 * * 6",
    "drift_monitoring": "10 23 * * 6",
    "weekly_maintenance": "0 23 * * 6",
}


class CorruptedSource(SimulatedMarketData):
    """A vendor feed gone wrong: the simulated bars with one kind of damage."""

    damage: str

    def daily_bars(self, sessions, universe):
        bars = super().daily_bars(sessions, universe)
        first = pl.col("symbol") == universe["symbol"][0]
        match self.damage:
            case "negative_price":
                return bars.with_columns(low=pl.when(first).then(-1.0).otherwise(pl.col("low")))
            case "high_below_low":
                return bars.with_columns(high=pl.when(first).then(pl.col("low") - 1).otherwise(pl.col("high")))
            case "duplicate_row":
                return pl.concat([bars, bars.filter(first)])
            case "missing_30_percent":
                keep = universe["symbol"].head(int(universe.height * 0.7))
                return bars.filter(pl.col("symbol").is_in(keep.implode()))
            case "negative_volume":
                return bars.with_columns(volume=pl.when(first).then(-5.0).otherwise(pl.col("volume")))
        raise ValueError(self.damage)


def small_universe(folder: Path, per_sector: int = 4) -> Path:
    """The largest names of each of the 11 sectors (the file lists them first), as a universe file."""
    universe = pl.read_csv(DEFAULT_UNIVERSE)
    path = folder / "universe.csv"
    universe.group_by("sector", maintain_order=True).head(per_sector).sort("symbol").write_csv(path)
    return path


def range_tags(first: str, last: str) -> dict[str, str]:
    return {PARTITION_RANGE_START: first, PARTITION_RANGE_END: last}


def materialize_bars(resources: dict, instance, *, partition_key=None, tags=None, assets=(daily_bars,)):
    return materialize(
        list(assets), resources=resources, instance=instance, partition_key=partition_key, tags=tags,
        raise_on_error=False,
    )


def materialized_keys(instance, asset: str = "daily_bars") -> set[str]:
    return set(instance.get_materialized_partitions(AssetKey(asset)))


def table(warehouse: Warehouse, sql: str = "SELECT * FROM daily_bars ORDER BY session, symbol") -> pl.DataFrame:
    return warehouse.query(sql)


TRAINING_SESSIONS = 700  # the 252-session feature warm-up, then enough labelled sessions for 3 folds and a holdout
SCANNABLE_SESSIONS = 45  # the shared models serve the week of the 45th newest session: it and every later one


# 4 stocks a sector and an 80-session holdout hold too few outcomes for any model's rank IC to
# clear the champion gate's null band (measured t -0.9..2.0 at predictability 0.5): the shared
# models are promoted without the gate, which test_sector_models tests on its own.
FAST_TRAINING = {
    "ops": {"sector_models": {"config": {"fast": True, "holdout_sessions": 80, "champion_min_rank_ic_t": -1e9}}}
}


@dataclass(frozen=True)
class TrainedModels:
    """66 champion models trained once per test session (fast settings) and the data they learnt from."""

    folder: Path
    universe_path: Path
    warehouse_path: Path  # daily_bars, daily_features and training_samples of `sessions`
    sessions: list[date]  # the latest due sessions, oldest first
    registry: ModelRegistry
    instance: DagsterInstance  # holds the sector_models materialisation of all 11 sectors
    seed: int
    week: date  # the sector_models partition: trained as of the session before it, serving it and every later week

    def resources(self, folder: Path) -> dict:
        """Every resource the assets need, over a private copy of the warehouse in `folder`."""
        shutil.copy(self.warehouse_path, folder / "warehouse.duckdb")
        return {
            "market_data": SimulatedMarketData(seed=self.seed, predictability=0.5),
            "warehouse": Warehouse(path=str(folder / "warehouse.duckdb"), lock_timeout_s=2.0),
            "universe": Universe(path=str(self.universe_path)),
            "model_registry": self.registry,
            "labels": LabelSettings.from_settings(get_settings()),
            "reports": ReportStore(directory=str(folder / "reports")),
        }
