from datetime import date

import numpy as np
import polars as pl
import pytest

from turbomode_pipeline.calendar import sessions_between
from turbomode_pipeline.core.market_sim import PRICE_ANCHOR, PRICE_ANCHOR_ROW, SIM_EPOCH, simulate_daily_bars
from turbomode_pipeline.core.universe import load_universe
from turbomode_pipeline.settings import DEFAULT_UNIVERSE

UNIVERSE = load_universe(DEFAULT_UNIVERSE)
GRID = sessions_between(SIM_EPOCH, date(2025, 12, 31))
TEN_YEARS = [d for d in GRID if d >= date(2016, 1, 4)]


def simulate(wanted, universe=UNIVERSE, seed=7, predictability=0.5):
    grid = GRID[: GRID.index(max(wanted)) + 1]
    return simulate_daily_bars(universe, grid, wanted, seed=seed, predictability=predictability)


@pytest.fixture(scope="module")
def decade() -> pl.DataFrame:
    return simulate(TEN_YEARS)


def test_same_seed_same_market_other_seed_other_market():
    day = [date(2020, 3, 16)]
    assert simulate(day).equals(simulate(day))
    assert not simulate(day).equals(simulate(day, seed=8))


def test_one_day_equals_the_same_day_inside_ten_years(decade):
    for day in (date(2016, 1, 4), date(2020, 3, 16), date(2025, 12, 31)):
        alone = simulate([day])
        assert alone.height == UNIVERSE.height
        assert alone.equals(decade.filter(pl.col("session") == day))


def test_a_symbol_is_the_same_in_a_smaller_universe(decade):
    small = UNIVERSE.filter(pl.col("symbol").is_in(["AAPL", "XOM", "JPM"]))
    day = [date(2023, 6, 1)]
    assert simulate(day, universe=small).equals(
        decade.filter((pl.col("session") == day[0]) & pl.col("symbol").is_in(["AAPL", "XOM", "JPM"]))
    )


def test_bars_are_consistent_and_realistic(decade):
    assert decade.height == len(TEN_YEARS) * UNIVERSE.height
    consistent = decade.select(
        (pl.col("low") <= pl.min_horizontal("open", "close")).all().alias("low"),
        (pl.col("high") >= pl.max_horizontal("open", "close")).all().alias("high"),
        ((pl.col("low") > 0) & (pl.col("volume") > 0)).all().alias("positive"),
    ).row(0, named=True)
    assert consistent == {"low": True, "high": True, "positive": True}
    returns = decade.sort("symbol", "session").with_columns(
        r=pl.col("close").log().diff().over("symbol"),
        gap=(pl.col("open") / pl.col("close").shift().over("symbol")).log(),
    ).drop_nulls("r")
    stats = returns.select(
        sd=pl.col("r").std(),
        kurt=pl.col("r").kurtosis(),
        abs_ac=pl.corr(pl.col("r").abs(), pl.col("r").abs().shift().over("symbol")),
        volume_vs_move=pl.corr(pl.col("r").abs(), pl.col("volume").log(), method="spearman"),
        big_gaps=(pl.col("gap").abs() > 0.05).mean(),
    ).row(0, named=True)
    assert 0.01 < stats["sd"] < 0.04  # daily volatility of single stocks
    assert stats["kurt"] > 3  # fat tails
    assert stats["abs_ac"] > 0.05  # volatility clusters
    assert stats["volume_vs_move"] > 0.2  # volume rises with the size of the move
    assert 0.0005 < stats["big_gaps"] < 0.05  # occasional overnight gaps


def test_stocks_move_with_their_sector_and_the_market(decade):
    wide = decade.pivot(on="symbol", index="session", values="close").drop("session").to_numpy()
    returns = np.diff(np.log(wide), axis=0)
    corr = np.corrcoef(returns.T)
    sectors = UNIVERSE["sector"].to_numpy()
    same = sectors[:, None] == sectors[None, :]
    off_diagonal = ~np.eye(len(sectors), dtype=bool)
    assert corr[same & off_diagonal].mean() > corr[~same].mean() + 0.05 > 0.1


def _reversal(bars: pl.DataFrame) -> float:
    """Correlation of a stock's 5-session return, net of its sector, with its next 5 sessions."""
    frame = bars.sort("symbol", "session").with_columns(r=pl.col("close").log().diff().over("symbol"))
    frame = frame.with_columns(excess=pl.col("r") - pl.col("r").mean().over("session", "sector"))
    frame = frame.with_columns(
        past=pl.col("excess").rolling_sum(5).over("symbol"),
        future=pl.col("excess").rolling_sum(5).shift(-5).over("symbol"),
    ).drop_nulls(["past", "future"])
    return frame.select(pl.corr("past", "future")).item()


def test_predictability_plants_reversal_and_zero_is_a_random_walk():
    years = [d for d in GRID if d >= date(2019, 1, 2)]
    assert _reversal(simulate(years, predictability=0.5)) < -0.05
    assert abs(_reversal(simulate(years, predictability=0.0))) < 0.02


def best_possible_rank_ic(predictability: float) -> float:
    from turbomode_pipeline.core.market_sim import expected_idiosyncratic_return
    from turbomode_pipeline.core.scanner import forward_returns

    wanted = TEN_YEARS[-400:]
    bars = simulate(wanted, predictability=predictability)
    best = expected_idiosyncratic_return(
        UNIVERSE, GRID[: GRID.index(wanted[-1]) + 1], wanted, seed=7, predictability=predictability, horizon=10
    )
    joined = forward_returns(bars, 10).join(best, on=["session", "symbol"]).join(
        bars.select("session", "symbol", "sector"), on=["session", "symbol"]
    )
    daily = joined.group_by("session", "sector").agg(r=pl.corr("expected_idio", "fwd_ret", method="spearman"))
    return float(daily["r"].drop_nans().mean() or 0.0)


def test_the_best_possible_score_is_zero_on_a_random_walk_and_ranks_a_predictable_market():
    """The simulator's exact conditional expectation of the next 10 sessions' idiosyncratic return:
    nothing to expect at predictability 0; at 1 a within-sector rank IC near the 0.28 measured."""
    from turbomode_pipeline.core.market_sim import expected_idiosyncratic_return

    wanted = TEN_YEARS[-50:]
    walk = expected_idiosyncratic_return(UNIVERSE, GRID[: GRID.index(wanted[-1]) + 1], wanted, seed=7, predictability=0.0, horizon=10)
    assert walk.height == 50 * UNIVERSE.height and (walk["expected_idio"] == 0).all()
    assert 0.2 < best_possible_rank_ic(1.0) < 0.4


def test_the_simulated_source_trades_a_symbol_only_while_it_is_listed():
    """As a vendor's bars would: none before listed_from or after listed_until, and the listed
    sessions' bars are the ones the unlisted universe gets (the price path does not change)."""
    from turbomode_pipeline.resources.market_data import SimulatedMarketData

    universe = load_universe(DEFAULT_UNIVERSE).head(3).with_columns(
        listed_from=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(date(2024, 3, 1))),
        listed_until=pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(date(2024, 2, 15))),
    )
    sessions = sessions_between(date(2024, 2, 1), date(2024, 3, 29))
    source = SimulatedMarketData()
    listed = source.daily_bars(sessions, universe)
    always = source.daily_bars(sessions, universe.drop("listed_from", "listed_until"))
    first, second, third = universe["symbol"].to_list()
    span = listed.group_by("symbol").agg(pl.col("session").min().alias("first"), pl.col("session").max().alias("last"))
    spans = {row["symbol"]: (row["first"], row["last"]) for row in span.iter_rows(named=True)}
    assert spans[first] == (date(2024, 3, 1), date(2024, 3, 28))
    assert spans[second] == (date(2024, 2, 1), date(2024, 2, 15))
    assert spans[third] == (date(2024, 2, 1), date(2024, 3, 28))
    assert listed.sort("session", "symbol").equals(always.join(listed.select("session", "symbol"), on=["session", "symbol"], how="semi").sort("session", "symbol"))


def test_prices_trade_where_us_stocks_do(decade):
    """Each stock closes the anchor session at its own scale ($10-$500); nearby years stay in a real market's range."""
    assert GRID[PRICE_ANCHOR_ROW] == PRICE_ANCHOR
    at_anchor = decade.filter(pl.col("session") == PRICE_ANCHOR)["close"]
    assert at_anchor.min() >= 10 and at_anchor.max() <= 500 and at_anchor.n_unique() > 200
    last = decade.filter(pl.col("session") == TEN_YEARS[-1])["close"]
    assert 30 < last.median() < 300 and last.quantile(0.95) < 1_000 and last.min() > 1


@pytest.mark.parametrize("sessions", [1, 61, 5_500])
def test_the_fft_filter_equals_scipys_recursive_lfilter(sessions):
    """The simulator filters without scipy.signal (1.3 s to import in every live tick); scipy is the reference."""
    from scipy.signal import lfilter as recursive

    from turbomode_pipeline.core.market_sim import MarketShape, lfilter

    shocks = np.random.default_rng(sessions).standard_normal((sessions, 40))
    shape = MarketShape()
    ar = np.zeros(61)
    ar[0], ar[1:6], ar[20:61] = 1.0, shape.reversal_per_lag, -shape.momentum_per_lag  # predictability 1: poles nearest 1
    for numerator, denominator in (([1.0], ar), ([shape.vol_of_vol], [1.0, -shape.vol_persistence])):
        expected = recursive(numerator, denominator, shocks, axis=0)
        assert np.abs(lfilter(numerator, denominator, shocks) - expected).max() <= 1e-12 * np.abs(expected).max()
