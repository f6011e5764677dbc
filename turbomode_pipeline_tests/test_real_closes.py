"""Real closes: the 20 S&P 500 stocks of skfolio's packaged dataset (daily adjusted closes, read
from the installed package, no download), served by the loopback Alpaca emulator as bars, with a
later listing (AMD), a delisting (RRC) and a one-day halt (RRC, 2015-03-02) planted.

One year of bars only: the whole chain on real closes (features, samples, models, scanner,
outcomes) costs minutes, beyond the suite's budget (see the issue-19 report)."""

from datetime import date

import polars as pl
from dagster import AssetCheckSeverity, materialize

from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline.resources.market_data import AlpacaMarketData
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline_tests.alpaca_emulator import KEY_ID, SECRET, AlpacaEmulator
from turbomode_pipeline_tests.conftest import range_tags, table

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


def real_closes() -> pl.DataFrame:
    """(session, symbol, close) of the packaged dataset, FIRST..LAST."""
    from skfolio.datasets import load_sp500_dataset

    prices = pl.from_pandas(load_sp500_dataset().reset_index())
    return (
        prices.unpivot(index="Date", variable_name="symbol", value_name="close")
        .with_columns(session=pl.col("Date").cast(pl.Date))
        .filter(pl.col("session").is_between(FIRST, LAST))
        .select("session", "symbol", "close")
    )


def vendor_bars(closes: pl.DataFrame) -> pl.DataFrame:
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
        ~((pl.col("symbol") == "AMD") & (pl.col("session") < AMD_LISTED))
        & ~((pl.col("symbol") == "RRC") & (pl.col("session") > RRC_DELISTED))
        & ~((pl.col("symbol") == "RRC") & (pl.col("session") == RRC_HALT))
    )


def test_a_year_of_real_closes_with_a_listing_a_delisting_and_a_halt_is_written(tmp_path, instance):
    """Before issue 19 the listing and the delisting failed universe_coverage on 144 sessions and the year wrote nothing."""
    closes = real_closes()
    sessions = sessions_between(FIRST, LAST)
    assert sorted(closes["session"].unique().to_list()) == sessions  # the dataset's dates are XNYS sessions exactly
    universe = pl.DataFrame(
        [{"symbol": s, "name": s, "sector": sector} for sector, symbols in SECTORS.items() for s in symbols]
    ).with_columns(
        listed_from=pl.when(pl.col("symbol") == "AMD").then(pl.lit(str(AMD_LISTED))),
        listed_until=pl.when(pl.col("symbol") == "RRC").then(pl.lit(str(RRC_DELISTED))),
    )
    universe.write_csv(tmp_path / "universe.csv")
    served = vendor_bars(closes)
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=2.0)
    with AlpacaEmulator(served) as emulator:
        resources = {
            "warehouse": warehouse, "universe": Universe(path=str(tmp_path / "universe.csv")),
            "market_data": AlpacaMarketData(api_key=KEY_ID, secret_key=SECRET, data_url=emulator.url, backoff_s=0.01),
        }
        result = materialize(
            [daily_bars], resources=resources, instance=instance,
            tags=range_tags(str(FIRST), str(LAST)), raise_on_error=False,
        )
    assert result.success, [e.step_failure_data.error.message for e in result.get_step_failure_events()]
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["universe_coverage"].passed
    halt = checks["listed_symbol_halted"]
    assert not halt.passed and halt.severity == AssetCheckSeverity.WARN
    assert halt.description == (
        "listed_symbol_halted failed, 1 violation(s): RRC 2015-03-02: no bar for one session while listed "
        "(a halt?); the sessions around it have bars; not counted against coverage"
    )
    stored = table(warehouse)
    assert stored.height == served.height == 20 * len(sessions) - len(sessions_between(FIRST, date(2015, 5, 29))) - len(
        sessions_between(date(2015, 11, 2), LAST)
    ) - 1
    assert stored.filter(pl.col("symbol") == "AMD")["session"].min() == AMD_LISTED
    assert stored.filter(pl.col("symbol") == "RRC")["session"].max() == RRC_DELISTED
    assert stored["sector"].n_unique() == 7
