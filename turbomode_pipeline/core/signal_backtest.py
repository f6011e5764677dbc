"""The scanner on history, after costs: a sector-neutral long-short portfolio of its scores, and its
signals traded as signals. Vectorised polars over every symbol and session.

Long-short: at each session's close a tranche is formed: within each sector (at least 2 scored
names), long the k names with the highest score and short the k with the lowest, k = max(1, n //
quantiles); a name tied across the boundary is in neither leg, so a constant score takes no
position. Each traded sector's legs are equal-weighted and every traded sector gets the same
weight, so a tranche is +1 long and -1 short, dollar- and sector-neutral. A tranche is held for H
sessions with constant weights (overlapping daily tranches, Jegadeesh-Titman): the book at the
close of t is the mean of the tranches formed at t-H+1..t, each 1/H of capital. On day t it earns
sum_i W[i, t-1] * r[i, t] (close-to-close returns); rebalancing at the close of t trades
turnover[t] = sum_i |W[i, t] - W[i, t-1]| = sum_i |w[i, t] - w[i, t-H]| / H, each side paying
`cost_bps` of the traded notional. The first H sessions are the build-up (fewer tranches held).

Signals as trades: each BUY/SELL of signal_outcomes entered at its entry price and closed as
signal_outcomes grades it (target, stop or expiry), equal notional, paying `cost_bps` on entry and
on exit; its P&L is realised at its exit session. Capital is the peak number of trades open at
once, each trade sized 1/peak of it, so the book is never over-committed; equity is not compounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from turbomode_pipeline.core.scanner import forward_returns
from turbomode_pipeline.core.sharpe import sharpe_stats

TRADING_DAYS = 252
NETTED = 1e-12  # a weight this small is a long and a short of the same name cancelling in floating point
col = pl.col


@dataclass(frozen=True)
class Costs:
    bps_per_side: float

    @property
    def rate(self) -> float:
        return self.bps_per_side / 1e4


def session_index(bars: pl.DataFrame) -> pl.DataFrame:
    """session, i: the bars' sessions in order, numbered from 0."""
    return bars.select("session").unique().sort("session").with_row_index("i").with_columns(col("i").cast(pl.Int64))


def daily_returns(bars: pl.DataFrame) -> pl.DataFrame:
    """session, symbol, r: each symbol's close-to-close return (none on its first bar)."""
    return (
        bars.select("session", "symbol", "close").sort("symbol", "session")
        .with_columns(r=col("close") / col("close").shift(1).over("symbol") - 1)
        .drop_nulls("r").select("session", "symbol", "r")
    )


def tranche_weights(scores: pl.DataFrame, quantiles: int) -> pl.DataFrame:
    """session, symbol, sector, w: the tranche formed at each session's close (see the module's docstring)."""
    group = ["session", "sector"]
    n = pl.len().over(group)
    k = pl.max_horizontal(pl.lit(1, pl.UInt32), n // quantiles)
    side = (
        pl.when((n >= 2) & (col("score").rank("min").over(group) > n - k)).then(1)
        .when((n >= 2) & (col("score").rank("max").over(group) <= k)).then(-1)
        .otherwise(0)
    )
    legs = (
        scores.select("session", "symbol", "sector", col("probability_up").alias("score"))
        .with_columns(side=side).filter(col("side") != 0)
        .filter((col("side") == 1).any().over(group) & (col("side") == -1).any().over(group))
    )
    return legs.select(
        "session", "symbol", "sector",
        w=col("side") / pl.len().over("session", "sector", "side") / col("sector").n_unique().over("session"),
    )


def _dense(frame: pl.DataFrame, value: str, rows: pl.DataFrame, columns: pl.DataFrame) -> np.ndarray:
    """frame's `value` as a (sessions x symbols) matrix, NaN where absent."""
    located = frame.join(rows, on="session").join(columns, on="symbol")
    matrix = np.full((rows.height, columns.height), np.nan)
    matrix[located["i"].to_numpy(), located["j"].to_numpy()] = located[value].to_numpy()
    return matrix


def long_short(scores: pl.DataFrame, bars: pl.DataFrame, horizon: int, quantiles: int, costs: Costs) -> pl.DataFrame:
    """One row per session from the first scored session through the last: the long-short book's
    gross return, turnover, cost and net return, its gross exposure, long and short names, and the
    equal-weight benchmark (every name scored the session before, rebalanced daily, no costs).

    `scores`: session, symbol, sector, probability_up. `bars`: session, symbol, close, through the
    last scored session at least. The book is a (sessions x symbols) matrix: vectorised numpy."""
    index = session_index(bars)
    names = pl.concat([bars.select("symbol"), scores.select("symbol")]).unique().sort("symbol").with_row_index("j")
    names = names.with_columns(col("j").cast(pl.Int64))
    scored_sessions = scores.join(index, on="session")["i"]
    first, last = int(scored_sessions.min()), int(scored_sessions.max())
    tranche = np.nan_to_num(_dense(tranche_weights(scores, quantiles), "w", index, names))  # w[f, j]
    returns = _dense(daily_returns(bars), "r", index, names)  # r[t, j]: close t-1 to close t
    padded = np.vstack([np.zeros((horizon - 1, names.height)), tranche])
    book = np.lib.stride_tricks.sliding_window_view(padded, horizon, axis=0).sum(axis=-1) / horizon  # W[t, j]
    held = np.vstack([np.zeros((1, names.height)), book[:-1]])  # the book earning on day t: W[t - 1]
    gross = (held * np.nan_to_num(returns)).sum(axis=1)
    turnover = np.abs(np.diff(np.vstack([np.zeros((1, names.height)), book]), axis=0)).sum(axis=1)
    was_scored = np.vstack([np.zeros((1, names.height), bool), ~np.isnan(_dense(scores, "probability_up", index, names))[:-1]])
    in_benchmark = was_scored & ~np.isnan(returns)
    counted = in_benchmark.sum(axis=1)
    benchmark = np.where(in_benchmark, returns, 0.0).sum(axis=1) / np.maximum(counted, 1)
    days = slice(first, last + 1)
    return (
        index.slice(first, last - first + 1)
        .with_columns(
            gross_ret=pl.Series(gross[days]), turnover=pl.Series(turnover[days]),
            exposure=pl.Series(np.abs(book[days]).sum(axis=1)),
            longs=pl.Series((book[days] > NETTED).sum(axis=1).astype(np.int64)),
            shorts=pl.Series((book[days] < -NETTED).sum(axis=1).astype(np.int64)),
            benchmark_ret=pl.Series(benchmark[days]),
        )
        .with_columns(cost=col("turnover") * costs.rate)
        .with_columns(net_ret=col("gross_ret") - col("cost"))
        .select("session", "gross_ret", "turnover", "cost", "net_ret", "exposure", "longs", "shorts", "benchmark_ret")
    )


def signal_trades(outcomes: pl.DataFrame, costs: Costs) -> pl.DataFrame:
    """signal_outcomes' rows as trades: `cost` (entry and exit) and `net_ret` = ret - cost, per unit of notional."""
    return outcomes.with_columns(cost=pl.lit(2 * costs.rate)).with_columns(net_ret=col("ret") - col("cost"))


def trades_curve(trades: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """Per session from the first entry to the last exit: trades closed, their P&L (sum of net_ret,
    in trade notionals), trades open, and the return on capital (peak open trades)."""
    index = session_index(sessions)
    located = (
        trades.join(index, on="session").rename({"i": "entry"})
        .join(index.rename({"session": "exit_session", "i": "exit"}), on="exit_session")
    )
    if located.is_empty():
        return pl.DataFrame(schema={"session": pl.Date, "closed": pl.Int64, "pnl": pl.Float64, "open": pl.Int64,
                                    "ret": pl.Float64})
    days = index.filter(col("i").is_between(located["entry"].min(), located["exit"].max()))
    exits = located.group_by("exit").agg(closed=pl.len().cast(pl.Int64), pnl=col("net_ret").sum())
    moves = pl.concat([
        located.select(i=col("entry") + 1, d=pl.lit(1, pl.Int64)), located.select(i=col("exit") + 1, d=pl.lit(-1, pl.Int64)),
    ]).group_by("i").agg(col("d").sum())
    frame = (
        days.join(exits.rename({"exit": "i"}), on="i", how="left").join(moves, on="i", how="left").sort("i")
        .with_columns(pl.col("closed", "d").fill_null(0), col("pnl").fill_null(0.0))
        .with_columns(open=col("d").cum_sum())
    )
    capital = max(int(frame["open"].max()), 1)
    return frame.select("session", "closed", "pnl", "open", ret=col("pnl") / capital)


def curve(returns: pl.DataFrame, column: str, compound: bool = True) -> pl.DataFrame:
    """session, ret, equity, drawdown: equity from 1 (compounded, or summed for fixed-size trades)."""
    equity = (1 + col("ret")).cum_prod() if compound else 1 + col("ret").cum_sum()
    return (
        returns.select("session", ret=col(column)).with_columns(equity=equity)
        .with_columns(drawdown=col("equity") / col("equity").cum_max() - 1)
    )


def performance(curve_frame: pl.DataFrame, trials: int = 2) -> dict[str, float]:
    """Annualised return (mean x 252) and volatility, Sharpe, its t-statistic and standard error, the
    deflated Sharpe for `trials` strategies compared (the long-short book and the signals; core/sharpe.py),
    max drawdown."""
    r = curve_frame["ret"]
    n = r.len()
    mean = float(r.mean()) if n else 0.0
    std = float(r.std()) if n > 1 else 0.0
    std = std if std and math.isfinite(std) else 0.0
    sharpe = mean / std * math.sqrt(TRADING_DAYS) if std > 0 else 0.0
    stats = sharpe_stats(r.to_numpy(), trials) if std > 0 else {}
    return {
        "days": float(n),
        "ann_return": mean * TRADING_DAYS,
        "ann_vol": std * math.sqrt(TRADING_DAYS),
        "sharpe": sharpe,
        "t_stat": mean / std * math.sqrt(n) if std > 0 else 0.0,
        "sharpe_se": stats.get("sharpe_se"),
        "deflated_sharpe": stats.get("deflated_sharpe"),
        "max_drawdown": float(curve_frame["drawdown"].min()) if n else 0.0,
    }


def quantile_of(column: str, quantiles: int, over: list[str] | None = None) -> pl.Expr:
    """1..quantiles by rank (ties share their average rank), within `over`."""
    rank = col(column).rank("average")
    count = pl.len()
    if over:
        rank, count = rank.over(over), count.over(over)
    return (rank * quantiles / count).ceil().clip(1, quantiles).cast(pl.Int32)


def returns_by_score_quantile(scores: pl.DataFrame, bars: pl.DataFrame, horizon: int, quantiles: int) -> pl.DataFrame:
    """quantile, observations, mean_ret (H-session forward return), mean_excess (less the session's
    sector mean): scores bucketed within each session and sector, as alphalens' by-group quantiles."""
    graded = scores.join(forward_returns(bars, horizon), on=["session", "symbol"])
    return (
        graded.with_columns(
            quantile=quantile_of("probability_up", quantiles, ["session", "sector"]),
            excess=col("fwd_ret") - col("fwd_ret").mean().over("session", "sector"),
        )
        .group_by("quantile").agg(observations=pl.len().cast(pl.Int64), mean_ret=col("fwd_ret").mean(),
                                  mean_excess=col("excess").mean())
        .sort("quantile")
    )


def trades_by_confidence_quantile(trades: pl.DataFrame, quantiles: int) -> pl.DataFrame:
    """quantile, observations, mean_ret (net), mean_excess (net less the mean trade): trades bucketed by confidence."""
    return (
        trades.with_columns(quantile=quantile_of("confidence", quantiles))
        .group_by("quantile").agg(observations=pl.len().cast(pl.Int64), mean_ret=col("net_ret").mean())
        .with_columns(mean_excess=col("mean_ret") - trades["net_ret"].mean())
        .sort("quantile")
    )


def monotone(by_quantile: pl.DataFrame) -> bool:
    """Whether mean_ret rises (weakly) from the lowest quantile to the highest."""
    values = by_quantile.sort("quantile")["mean_ret"].to_numpy()
    return bool(values.size > 1 and np.all(np.diff(values) >= 0))


def long_short_summary(daily: pl.DataFrame, horizon: int) -> tuple[dict, dict]:
    """(long-short, benchmark) performance with turnover (mean daily), hit rate (share of positive
    days among days with a book) and average holding (2 x mean exposure / mean turnover, in sessions,
    after the H-session build-up, when the book both buys and sells)."""
    book = daily.filter(col("exposure") > 0)
    turnover = float(daily["turnover"].mean() or 0.0)
    built = daily.slice(horizon) if daily.height > horizon else daily
    built_turnover = float(built["turnover"].mean() or 0.0)
    long_short_stats = {
        **performance(curve(daily, "net_ret")),
        "sharpe_before_costs": performance(curve(daily, "gross_ret"))["sharpe"],
        "ann_costs": float(daily["cost"].mean() or 0.0) * TRADING_DAYS,
        "turnover": turnover,
        "hit_rate": float((book["net_ret"] > 0).mean()) if book.height else 0.0,
        "avg_holding": 2 * float(built["exposure"].mean() or 0.0) / built_turnover if built_turnover > 0 else 0.0,
        "observations": float(daily.height),
    }
    benchmark_stats = {
        **performance(curve(daily, "benchmark_ret"), trials=1),
        "sharpe_before_costs": None,
        "ann_costs": 0.0,
        "turnover": 0.0,
        "hit_rate": float((daily["benchmark_ret"] > 0).mean()) if daily.height else 0.0,
        "avg_holding": 1.0,
        "observations": float(daily.height),
    }
    return long_short_stats, benchmark_stats


def trades_summary(trades: pl.DataFrame, daily: pl.DataFrame) -> dict:
    """The signals as trades: performance of the capital's daily return, turnover (notional traded
    per day over capital), hit rate (share of trades with net_ret > 0), average days held."""
    capital = max(int(daily["open"].max() or 0), 1) if daily.height else 1
    gross = trades_curve(trades.with_columns(net_ret=col("ret")), daily.select("session")) if trades.height else daily
    return {
        **performance(curve(daily, "ret", compound=False)),
        "sharpe_before_costs": performance(curve(gross, "ret", compound=False))["sharpe"],
        "ann_costs": float(trades["cost"].sum()) / capital / daily.height * TRADING_DAYS if daily.height else 0.0,
        "turnover": 2 * trades.height / capital / daily.height if daily.height else 0.0,
        "hit_rate": float((trades["net_ret"] > 0).mean()) if trades.height else 0.0,
        "avg_holding": float(trades["days_held"].mean()) if trades.height else 0.0,
        "observations": float(trades.height),
    }
