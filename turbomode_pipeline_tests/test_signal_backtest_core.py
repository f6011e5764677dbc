"""core/signal_backtest.py on hand-made scores and price paths whose answers are known."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from turbomode_pipeline.core import signal_backtest as backtest
from turbomode_pipeline.core.signal_backtest import Costs

H, Q = 3, 5


def panel(daily_returns: np.ndarray, sectors: list[str]) -> pl.DataFrame:
    """Bars (session, symbol, sector, close) whose close-to-close returns are `daily_returns` (sessions x symbols)."""
    sessions = [date(2024, 1, 1) + timedelta(days=d) for d in range(daily_returns.shape[0] + 1)]
    closes = 100 * np.vstack([np.ones(daily_returns.shape[1]), np.cumprod(1 + daily_returns, axis=0)])
    symbols = [f"S{j:02d}" for j in range(daily_returns.shape[1])]
    return pl.DataFrame({
        "session": np.repeat(np.array(sessions, dtype="datetime64[D]"), len(symbols)),
        "symbol": np.tile(symbols, len(sessions)), "sector": np.tile(sectors, len(sessions)),
        "close": closes.ravel(),
    }).with_columns(pl.col("session").cast(pl.Date))


def scores_from(bars: pl.DataFrame, values: pl.Expr, last: int) -> pl.DataFrame:
    sessions = bars["session"].unique().sort()[: last + 1]
    return bars.filter(pl.col("session").is_in(sessions.implode())).select(
        "session", "symbol", "sector", probability_up=values
    )


def test_perfect_foresight_earns_the_known_spread_path():
    # two sectors of five names; each name's daily return is constant: a perfect score ranks them by it
    growth = np.array([0.004, 0.002, 0.0, -0.001, -0.003, 0.01, 0.005, 0.0, -0.005, -0.01])
    sectors = ["A"] * 5 + ["B"] * 5
    days = 12
    bars = panel(np.tile(growth, (days, 1)), sectors)
    last = 8  # sessions 0..8 scored; the book runs from session 0 to 8
    scores = scores_from(bars, pl.col("symbol").replace_strict({f"S{j:02d}": g for j, g in enumerate(growth)}), last)
    daily = backtest.long_short(scores, bars, H, Q, Costs(0.0))
    spread = ((0.004 - -0.003) + (0.01 - -0.01)) / 2  # each sector half the tranche: +1/2 long, -1/2 short
    active = np.minimum(np.arange(last + 1), H)  # tranches held on day t: those formed at max(0, t-H)..t-1
    assert daily["session"].to_list() == bars["session"].unique().sort()[: last + 1].to_list()
    np.testing.assert_allclose(daily["gross_ret"].to_numpy(), spread * active / H, rtol=0, atol=1e-15)
    assert daily["longs"].to_list()[-1] == 2 and daily["shorts"].to_list()[-1] == 2
    np.testing.assert_allclose(daily["exposure"].to_numpy()[H - 1:], 2.0, rtol=1e-12)
    # build-up: each session adds a tranche of gross 2/H; afterwards the same names are re-bought: no trading
    np.testing.assert_allclose(daily["turnover"].to_numpy(), [2 / H] * H + [0.0] * (last + 1 - H), atol=1e-15)


def test_a_perfect_score_on_random_paths_matches_a_loop_over_tranches():
    rng = np.random.default_rng(3)
    sectors = ["A"] * 6 + ["B"] * 7 + ["C"] * 3
    returns = rng.normal(0, 0.02, (40, len(sectors)))
    bars = panel(returns, sectors)
    last = 30
    # the score at t is the realised return over t+1..t+H: perfect foresight of the tranche's holding
    closes = bars.pivot("symbol", index="session", values="close").drop("session").to_numpy()
    forward = closes[H:] / closes[:-H] - 1
    score = pl.DataFrame({"i": np.repeat(np.arange(forward.shape[0]), len(sectors)), "fwd": forward.ravel()})
    scores = scores_from(bars, pl.lit(0.0), last).with_row_index("row").join(
        score.with_row_index("row"), on="row").select("session", "symbol", "sector", probability_up=pl.col("fwd"))
    daily = backtest.long_short(scores, bars, H, 3, Costs(10.0))
    # the reference: a plain loop over tranches
    names = np.array(sectors)
    weights = np.zeros((last + 1, len(sectors)))
    for t in range(last + 1):
        for sector in ("A", "B", "C"):
            members = np.flatnonzero(names == sector)
            k = max(1, len(members) // 3)
            order = members[np.argsort(forward[t, members])]
            weights[t, order[-k:]] += 1 / k / 3
            weights[t, order[:k]] -= 1 / k / 3
    book = np.array([weights[max(0, t - H + 1): t + 1].sum(axis=0) / H for t in range(last + 1)])
    gross = np.concatenate([[0.0], (book[:-1] * returns[:last]).sum(axis=1)])  # day t's return is returns[t - 1]
    turnover = np.abs(np.diff(np.vstack([np.zeros(len(sectors)), book]), axis=0)).sum(axis=1)
    np.testing.assert_allclose(daily["gross_ret"].to_numpy(), gross, atol=1e-14)
    np.testing.assert_allclose(daily["turnover"].to_numpy(), turnover, atol=1e-14)
    np.testing.assert_allclose(daily["net_ret"].to_numpy(), gross - turnover * 10 / 1e4, atol=1e-14)
    assert daily["gross_ret"].to_numpy()[H:].min() > 0  # foresight of every tranche's holding never loses


def test_a_constant_score_takes_no_position_and_earns_nothing():
    rng = np.random.default_rng(5)
    sectors = ["A"] * 5 + ["B"] * 5
    bars = panel(rng.normal(0, 0.02, (20, 10)), sectors)
    daily = backtest.long_short(scores_from(bars, pl.lit(0.5), 15), bars, H, Q, Costs(5.0))
    assert daily.height == 16
    assert (daily["gross_ret"] == 0).all() and (daily["turnover"] == 0).all() and (daily["net_ret"] == 0).all()
    assert daily["benchmark_ret"].abs().sum() > 0  # the market moved; the book did not


def test_a_fixed_ranking_in_a_market_that_moves_as_one_pays_only_its_costs():
    # every name of a sector returns the same: a sector-neutral book's gross return is exactly zero
    rng = np.random.default_rng(7)
    sectors = ["A"] * 5 + ["B"] * 5
    sector_moves = rng.normal(0, 0.02, (20, 2))
    bars = panel(np.repeat(sector_moves, 5, axis=1), sectors)
    ranking = {f"S{j:02d}": float(j % 5) for j in range(10)}
    daily = backtest.long_short(scores_from(bars, pl.col("symbol").replace_strict(ranking), 15), bars, H, Q,
                                Costs(5.0))
    np.testing.assert_allclose(daily["gross_ret"].to_numpy(), 0.0, atol=1e-16)
    # the book is built over the first H sessions (2/H of notional each) and never traded again
    np.testing.assert_allclose(daily["cost"].to_numpy(), [2 / H * 5e-4] * H + [0.0] * (16 - H), atol=1e-18)
    np.testing.assert_allclose(daily["net_ret"].to_numpy(), -daily["cost"].to_numpy(), atol=1e-18)


@pytest.mark.parametrize("bps", [1.0, 5.0, 25.0])
def test_costs_are_turnover_times_the_rate_exactly(bps):
    rng = np.random.default_rng(11)
    sectors = ["A"] * 8 + ["B"] * 8
    bars = panel(rng.normal(0, 0.02, (60, 16)), sectors)
    scores = scores_from(bars, pl.lit(0.0), 50).with_columns(probability_up=pl.Series(rng.random(51 * 16)))
    free = backtest.long_short(scores, bars, H, 4, Costs(0.0))
    paid = backtest.long_short(scores, bars, H, 4, Costs(bps))
    assert free["turnover"].sum() > 10  # random scores: the book turns over
    np.testing.assert_array_equal(paid["turnover"].to_numpy(), free["turnover"].to_numpy())
    np.testing.assert_allclose(paid["cost"].to_numpy(), free["turnover"].to_numpy() * bps / 1e4, rtol=1e-15)
    np.testing.assert_allclose(free["net_ret"].to_numpy() - paid["net_ret"].to_numpy(),
                               free["turnover"].to_numpy() * bps / 1e4, atol=1e-15)


def test_signals_as_trades_earn_the_sum_of_graded_outcomes_less_costs():
    rng = np.random.default_rng(13)
    sessions = [date(2024, 3, 1) + timedelta(days=d) for d in range(40)]
    n = 60
    entry = rng.integers(0, 30, n)
    held = rng.integers(1, 11, n)
    outcomes = pl.DataFrame({
        "id": [f"t{j}" for j in range(n)], "session": [sessions[e] for e in entry],
        "exit_session": [sessions[e + h] for e, h in zip(entry, held, strict=True)],
        "ret": rng.normal(0.002, 0.03, n), "days_held": held.astype(np.int32), "confidence": rng.uniform(0.6, 0.9, n),
    })
    trades = backtest.signal_trades(outcomes, Costs(5.0))
    daily = backtest.trades_curve(trades, pl.DataFrame({"session": sessions}))
    assert daily["pnl"].sum() == pytest.approx(outcomes["ret"].sum() - n * 2 * 5e-4, abs=1e-12)
    assert daily["closed"].sum() == n
    # capital is the peak of open trades: count them by hand
    open_by_day = [int(((entry < i) & (entry + held >= i)).sum()) for i in range(len(sessions))]
    first = int(entry.min())
    assert daily["open"].to_list() == open_by_day[first: int((entry + held).max()) + 1]
    equity = backtest.curve(daily, "ret", compound=False)
    assert equity["equity"][-1] == pytest.approx(1 + daily["pnl"].sum() / max(open_by_day), abs=1e-12)
    summary = backtest.trades_summary(trades, daily)
    assert summary["hit_rate"] == pytest.approx(float((outcomes["ret"] > 1e-3).mean()))
    assert summary["avg_holding"] == pytest.approx(float(held.mean()))


def test_returns_by_score_quantile_rise_with_a_perfect_score():
    growth = np.linspace(-0.01, 0.01, 10)
    bars = panel(np.tile(growth, (20, 1)), ["A"] * 10)
    scores = scores_from(bars, pl.col("symbol").replace_strict({f"S{j:02d}": g for j, g in enumerate(growth)}), 15)
    table = backtest.returns_by_score_quantile(scores, bars, H, 5)
    assert table["quantile"].to_list() == [1, 2, 3, 4, 5] and table["observations"].to_list() == [32] * 5
    assert backtest.monotone(table) and not backtest.monotone(table.with_columns(mean_ret=-pl.col("mean_ret")))
    assert table["mean_excess"].sum() == pytest.approx(0.0, abs=1e-12)


def test_quantile_returns_and_turnover_agree_with_alphalens():
    import alphalens
    import pandas as pd

    rng = np.random.default_rng(17)
    sectors = ["A"] * 10 + ["B"] * 10 + ["C"] * 10  # equal sectors: every long (short) name weighs 1/6
    bars = panel(rng.normal(0, 0.02, (70, 30)), sectors)
    scores = scores_from(bars, pl.lit(0.0), 59).with_columns(probability_up=pl.Series(rng.random(60 * 30)))
    horizon = 5
    ours = backtest.returns_by_score_quantile(scores, bars, horizon, 5)
    daily = backtest.long_short(scores, bars, horizon, 5, Costs(0.0))

    prices = bars.pivot("symbol", index="session", values="close").to_pandas().set_index("session")
    prices.index = pd.DatetimeIndex(prices.index)
    factor = scores.to_pandas().assign(date=lambda f: pd.DatetimeIndex(f["session"])).set_index(["date", "symbol"])
    factor.index.names = ["date", "asset"]
    data = alphalens.utils.get_clean_factor_and_forward_returns(
        factor["probability_up"], prices, groupby=factor["sector"], binning_by_group=True, quantiles=5,
        periods=(horizon,), filter_zscore=None, max_loss=1.0,
    )
    column = data.columns[0]  # the 5-period forward return
    raw, _ = alphalens.performance.mean_return_by_quantile(data, demeaned=False)
    adjusted, _ = alphalens.performance.mean_return_by_quantile(data, demeaned=True, group_adjust=True)
    np.testing.assert_allclose(ours["mean_ret"].to_numpy(), raw[column].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(ours["mean_excess"].to_numpy(), adjusted[column].to_numpy(), atol=1e-12)
    assert ours["observations"].to_list() == data.groupby("factor_quantile").size().to_list()

    # turnover: a leg of K equal weights that replaces a share s of its names over H sessions trades 2s of it
    top = alphalens.performance.quantile_turnover(data["factor_quantile"], 5, period=horizon)
    bottom = alphalens.performance.quantile_turnover(data["factor_quantile"], 1, period=horizon)
    expected = (2 * (top + bottom) / horizon).dropna()
    ours_by_day = dict(zip(pd.DatetimeIndex(daily["session"].to_pandas()), daily["turnover"].to_numpy(), strict=True))
    assert len(expected) == 60 - horizon
    np.testing.assert_allclose([ours_by_day[day] for day in expected.index], expected.to_numpy(), rtol=1e-12)


def test_the_average_holding_of_a_book_that_never_nets_is_the_horizon():
    # ten names, one long and one short a session, five patterns in turn: any H + 1 = 4 tranches in a row are
    # disjoint, so after the build-up the book holds gross 2 and trades 4 / H a day: holding = 2 x 2 / (4 / H) = H
    rng = np.random.default_rng(19)
    bars = panel(rng.normal(0, 0.02, (40, 10)), ["A"] * 10)
    pattern = (pl.col("session").rank("dense").cast(pl.Int64) - 1) % 5
    symbol = pl.col("symbol").str.slice(1).cast(pl.Int64)
    score = pl.when(symbol == 2 * pattern).then(1.0).when(symbol == 2 * pattern + 1).then(0.0).otherwise(0.5)
    daily = backtest.long_short(scores_from(bars, score, 35), bars, H, 10, Costs(5.0))
    np.testing.assert_allclose(daily["exposure"].to_numpy()[H - 1:], 2.0, rtol=1e-12)
    np.testing.assert_allclose(daily["turnover"].to_numpy()[H:], 4 / H, rtol=1e-12)
    stats, _ = backtest.long_short_summary(daily, H)
    assert stats["avg_holding"] == pytest.approx(H, rel=1e-12)
