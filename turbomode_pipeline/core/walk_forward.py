"""The walk-forward report's arithmetic: out-of-sample rank IC by model period and sector, with its t, beside
the simulator's best possible score on the same sessions where the market is simulated.

A period is the set of sessions one model cutoff served (`model_labels_through` of scanner_scores): every
score in it came from a model whose labels ended before the session, so every figure here is out of sample.
The daily rank IC is Spearman's correlation of the score with the H-session forward return across a
sector's symbols on one session; consecutive sessions' H-session returns overlap, so a mean over n
sessions holds about n / H independent outcomes, and its t is the overlap-adjusted one.
"""

from __future__ import annotations

import numpy as np
import polars as pl

col = pl.col


def daily_sector_rank_ic(scores: pl.DataFrame, returns: pl.DataFrame, score: str = "probability_up") -> pl.DataFrame:
    """session, sector, rank_ic: the within-sector Spearman correlation of `score` with fwd_ret on each session."""
    return (
        scores.join(returns, on=["session", "symbol"], how="inner")
        .group_by("session", "sector")
        .agg(rank_ic=pl.corr(score, "fwd_ret", method="spearman"), symbols=pl.len())
        .filter((col("symbols") >= 3) & col("rank_ic").is_not_nan())
        .drop_nulls("rank_ic")
        .sort("session", "sector")
    )


def _t(values: pl.Expr, horizon: int) -> pl.Expr:
    return values.mean() / (values.std() / (values.len() / horizon).sqrt())


def period_rank_ic(scores: pl.DataFrame, returns: pl.DataFrame, horizon: int, best: pl.DataFrame | None = None
                   ) -> pl.DataFrame:
    """By model cutoff (`model_labels_through`) and sector: sessions, mean rank IC and its overlap-adjusted t,
    and, with `best` (session, symbol, expected_idio), the best possible score's mean rank IC on the same
    sessions and symbols. The last rows, sector "all", pool every sector of the period."""
    daily = daily_sector_rank_ic(scores, returns)
    periods = scores.select("session", "sector", "model_labels_through").unique()
    daily = daily.join(periods, on=["session", "sector"])
    if best is not None:
        ceiling = daily_sector_rank_ic(scores.join(best, on=["session", "symbol"]), returns, "expected_idio")
        daily = daily.join(ceiling.select("session", "sector", best_rank_ic="rank_ic"), on=["session", "sector"], how="left")
    aggregates = [pl.len().alias("sector_sessions"), col("session").min().alias("first_session"),
                  col("session").max().alias("last_session"), col("rank_ic").mean().alias("rank_ic"),
                  _t(col("rank_ic"), horizon).alias("rank_ic_t")]
    if best is not None:
        aggregates.append(col("best_rank_ic").mean().alias("best_rank_ic"))
    by_sector = daily.group_by("model_labels_through", "sector").agg(aggregates)
    # pooled: the sectors' daily ICs averaged per session first, so each session counts once
    pooled = (daily.group_by("model_labels_through", "session")
              .agg(col("rank_ic").mean(), *([col("best_rank_ic").mean()] if best is not None else []), col("sector").len())
              .group_by("model_labels_through").agg(aggregates).with_columns(sector=pl.lit("all")))
    return pl.concat([by_sector, pooled.select(by_sector.columns)]).sort("model_labels_through", "sector")


def overall(scores: pl.DataFrame, returns: pl.DataFrame, horizon: int, best: pl.DataFrame | None = None) -> dict:
    """The whole window: mean daily rank IC (sectors averaged per session), its t, the best possible's and the ratio."""
    daily = daily_sector_rank_ic(scores, returns).group_by("session").agg(col("rank_ic").mean())["rank_ic"]
    n = daily.len()
    summary = {"sessions": n, "rank_ic": float(daily.mean()) if n else float("nan"),
               "rank_ic_t": float(daily.mean() / (daily.std() / np.sqrt(n / horizon))) if n > 1 and daily.std() else 0.0}
    if best is not None:
        ceiling = daily_sector_rank_ic(scores.join(best, on=["session", "symbol"]), returns, "expected_idio")
        best_ic = float(ceiling.group_by("session").agg(col("rank_ic").mean())["rank_ic"].mean())
        summary |= {"best_rank_ic": best_ic, "ratio": summary["rank_ic"] / best_ic if best_ic else float("nan")}
    return summary
