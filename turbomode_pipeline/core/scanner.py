"""The scanner's arithmetic: signals from calibrated probabilities, their realised outcomes,
and the signal-quality measures (IC, rank IC, ICIR as qlib reports them).

A signal is the trade the labels describe (see `labels.py`): entry at the session's close,
barriers at entry +/- k x ATR(14), horizon H sessions. The confidence is the calibrated
probability of the learnt label (by default: the symbol beats its sector's median over the
horizon): BUY when it is at least the threshold, SELL when it is at most one minus it; the
target is the barrier in the signal's direction and the stop the other one. Everything is
vectorised over symbols and sessions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl
from threadpoolctl import threadpool_limits

from turbomode_pipeline.core.features import MODEL_FEATURES
from turbomode_pipeline.core.labels import Barriers
from turbomode_pipeline.core.point_in_time import leaked
from turbomode_pipeline.core.rules import Rule, violations

col = pl.col


def complete_rows(features: pl.DataFrame) -> pl.DataFrame:
    """The feature rows a model can score: every model feature and the ATR known."""
    return features.drop_nulls([*MODEL_FEATURES, "atr_14"])


def score(features: pl.DataFrame, assigned: pl.DataFrame, models: Mapping[tuple[str, str], Any]) -> pl.DataFrame:
    """The rows of `features` that `assigned` gives a model, scored by it: session, symbol, sector, close, atr_14,
    probability_up and the lineage (model_name, model_version, mlflow_run_id, model_labels_through), by session
    and symbol.

    `assigned`: session, sector, version, labels_through (core/point_in_time.champions_as_of): the model each
    sector's rows of each session are scored by. `models`: (sector, version) -> a loaded model with `model`
    (predict_proba, feature_names), `name`, `version`, `run_id`.
    """
    rows = features.join(assigned, on=["session", "sector"], how="inner")
    frames = []
    for (sector, version), group in rows.group_by("sector", "version", maintain_order=True):  # a model each
        champion = models[(sector, version)]
        # One OpenMP thread: a sector's few dozen rows take microseconds per tree, and waking a thread team
        # for each of hist_gradient_boosting's hundreds of trees cost more than the work itself.
        with threadpool_limits(limits=1, user_api="openmp"):
            probability = champion.model.predict_proba(group.select(champion.model.feature_names).to_pandas())[:, 1]
        frames.append(
            group.select("session", "symbol", "sector", "close", "atr_14").with_columns(
                probability_up=pl.Series(probability, dtype=pl.Float64),
                model_name=pl.lit(champion.name), model_version=pl.lit(champion.version),
                mlflow_run_id=pl.lit(champion.run_id), model_labels_through=group["labels_through"],
            )
        )
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames).sort("session", "symbol")


def signals(scored: pl.DataFrame, expiry: pl.DataFrame, threshold: float, barriers: Barriers, created_at: datetime) -> pl.DataFrame:
    """At most one signal per scored (session, symbol), in SignalHistory's columns.

    `scored`: session, symbol, sector, close, atr_14, probability_up and the lineage columns
    model_name, model_version, mlflow_run_id, model_labels_through. `expiry`: session, expires_at.
    """
    up, down = col("close") + barriers.k_up * col("atr_14"), col("close") - barriers.k_dn * col("atr_14")
    buy = col("signal_type") == "BUY"
    return (
        scored.with_columns(
            signal_type=pl.when(col("probability_up") >= threshold).then(pl.lit("BUY"))
            .when(1 - col("probability_up") >= threshold).then(pl.lit("SELL"))
        )
        .filter(col("signal_type").is_not_null() & (col("atr_14") > 0))
        .join(expiry, on="session", how="left", maintain_order="left")
        .select(
            pl.format("{}-{}", col("session"), col("symbol")).alias("id"),
            "session", "symbol", "signal_type",
            pl.when(buy).then(col("probability_up")).otherwise(1 - col("probability_up")).alias("confidence"),
            col("close").alias("entry_price"),
            pl.when(buy).then(up).otherwise(down).alias("target_price"),
            pl.when(buy).then(down).otherwise(up).alias("stop_loss"),
            "sector",
            pl.lit(created_at).alias("created_at"),
            "expires_at",
            (col("expires_at") > created_at).alias("is_active"),
            "model_name", "model_version", "mlflow_run_id", "model_labels_through",
        )
        .filter((col("target_price") > 0) & (col("stop_loss") > 0))  # a SELL's target below zero is no trade
        .sort("session", "symbol")
    )


def outcomes(signals: pl.DataFrame, bars: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """The realised result of every signal with `horizon` later bars, in SignalOutcomes' columns.

    Walking forward through the H sessions after entry, the first barrier touched ends the
    trade; a day that touches both counts the stop first (daily bars cannot tell which came
    first). A gap through a barrier fills at the open. Untouched: expired at the H-th close.
    `ret` is in the signal's direction (a SELL that fell earns a positive return).
    """
    buy = col("signal_type") == "BUY"
    ahead = lambda name, k: col(name).shift(-k).over("symbol")  # noqa: E731
    steps = range(1, horizon + 1)
    reached_target = lambda k: pl.when(buy).then(ahead("high", k) >= col("target_price")).otherwise(  # noqa: E731
        ahead("low", k) <= col("target_price")
    )
    reached_stop = lambda k: pl.when(buy).then(ahead("low", k) <= col("stop_loss")).otherwise(  # noqa: E731
        ahead("high", k) >= col("stop_loss")
    )
    frame = (
        bars.select("session", "symbol", "open", "high", "low", "close")
        .sort("symbol", "session")
        .join(
            signals.select("id", "session", "symbol", "sector", "signal_type", "entry_price", "target_price", "stop_loss"),
            on=["session", "symbol"], how="left", maintain_order="left",
        )
        .with_columns(
            _has_horizon=ahead("session", horizon).is_not_null(),
            _first_target=pl.min_horizontal(pl.when(reached_target(k)).then(k) for k in steps),
            _first_stop=pl.min_horizontal(pl.when(reached_stop(k)).then(k) for k in steps),
        )
    )
    stopped = col("_first_stop").is_not_null() & (
        col("_first_target").is_null() | (col("_first_stop") <= col("_first_target"))
    )
    hit = col("_first_target").is_not_null() & ~stopped
    frame = frame.with_columns(
        outcome=pl.when(stopped).then(pl.lit("stop")).when(hit).then(pl.lit("target")).otherwise(pl.lit("expired")),
        days_held=pl.when(stopped).then(col("_first_stop")).when(hit).then(col("_first_target")).otherwise(horizon).cast(pl.Int32),
    )
    at_exit = lambda name: pl.coalesce(*(pl.when(col("days_held") == k).then(ahead(name, k)) for k in steps))  # noqa: E731
    better, worse = (pl.max_horizontal, pl.min_horizontal)
    exit_price = (
        pl.when(col("outcome") == "target")
        .then(pl.when(buy).then(better(col("target_price"), at_exit("open"))).otherwise(worse(col("target_price"), at_exit("open"))))
        .when(col("outcome") == "stop")
        .then(pl.when(buy).then(worse(col("stop_loss"), at_exit("open"))).otherwise(better(col("stop_loss"), at_exit("open"))))
        .otherwise(at_exit("close"))
    )
    move = col("exit_price") / col("entry_price") - 1
    return (
        frame.with_columns(exit_session=at_exit("session"), exit_price=exit_price)
        .filter(col("id").is_not_null() & col("_has_horizon"))
        .select(
            "id", "session", "symbol", "sector", "signal_type", "outcome", "exit_session", "exit_price",
            pl.when(buy).then(move).otherwise(-move).alias("ret"), "days_held",
        )
        .sort("session", "symbol")
    )


ONE_SIDED_SHARE = 0.65  # a session whose BUY or SELL share of signals exceeds this is flagged
ONE_SIDED_MIN_SIGNALS = 10  # fewer signals than this say too little about balance to flag


def balance(signals: pl.DataFrame) -> pl.DataFrame:
    """Per session: BUY and SELL counts and the BUY share of the signals."""
    return (
        signals.group_by("session")
        .agg(buy=(col("signal_type") == "BUY").sum(), sell=(col("signal_type") == "SELL").sum())
        .with_columns(buy_share=col("buy") / (col("buy") + col("sell")))
        .sort("session")
    )


def one_sided_sessions(signals: pl.DataFrame) -> pl.DataFrame:
    """Sessions with at least ONE_SIDED_MIN_SIGNALS signals of which one side is more than ONE_SIDED_SHARE."""
    share = col("buy_share")
    return balance(signals).filter(
        (col("buy") + col("sell") >= ONE_SIDED_MIN_SIGNALS) & ((share > ONE_SIDED_SHARE) | (1 - share > ONE_SIDED_SHARE))
    )


def signal_direction(frame: pl.DataFrame, **_) -> pl.DataFrame:
    """Signals whose target and stop are on the wrong sides of the entry for their direction."""
    buy_ok = (col("target_price") > col("entry_price")) & (col("entry_price") > col("stop_loss"))
    sell_ok = (col("target_price") < col("entry_price")) & (col("entry_price") < col("stop_loss"))
    bad = frame.filter(pl.when(col("signal_type") == "BUY").then(~buy_ok).otherwise(~sell_ok))
    return violations(bad, pl.format("{} entry={} target={} stop={}", "signal_type", "entry_price", "target_price", "stop_loss"))


def one_sided(frame: pl.DataFrame, **_) -> pl.DataFrame:
    flagged = one_sided_sessions(frame).with_columns(symbol=pl.lit(""))
    return violations(flagged, pl.format("{} BUY / {} SELL", "buy", "sell"))


def model_before_session(frame: pl.DataFrame, **_) -> pl.DataFrame:
    """Signals from a model whose training labels reach the signal's own session or later (or an unknown cutoff)."""
    through = col("model_labels_through").cast(pl.String).fill_null("an unknown session")
    return violations(leaked(frame), pl.format("model {} v{} learnt labels through {}", "model_name", "model_version",
                                               through))


# The checks scanner_signals' signals pass before they are written.
SIGNAL_RULES = (
    Rule("model_before_session", "each signal's model learnt only labels that ended before the signal's session",
         True, model_before_session),
    Rule("signal_barriers_ordered", "BUY: target > entry > stop; SELL: target < entry < stop", True, signal_direction),
    Rule(
        "signals_two_sided",
        f"neither BUY nor SELL is more than {ONE_SIDED_SHARE:.0%} of a session's signals "
        f"(sessions with at least {ONE_SIDED_MIN_SIGNALS})",
        False, one_sided,
    ),
)


def relative_outcomes(graded: pl.DataFrame, scores: pl.DataFrame, bars: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """`graded` with the relative result: the symbol's H-session return less its sector's median
    H-session return from the same session among the scored symbols (`excess_ret`, in the
    signal's direction) and whether the signal was right about it (`beat_sector`)."""
    returns = forward_returns(bars, horizon)
    sector_median = (
        scores.select("session", "symbol", "sector").join(returns, on=["session", "symbol"])
        .group_by("session", "sector").agg(sector_median=col("fwd_ret").median())
    )
    excess = (col("fwd_ret") - col("sector_median")) * pl.when(col("signal_type") == "BUY").then(1.0).otherwise(-1.0)
    return (
        graded.join(returns, on=["session", "symbol"], how="left")
        .join(sector_median, on=["session", "sector"], how="left")
        .with_columns(excess_ret=excess)
        .with_columns(beat_sector=col("excess_ret") > 0)
        .drop("fwd_ret", "sector_median")
    )


def realised_relative(scores: pl.DataFrame, bars: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """`scores` (session, symbol, sector, ...) of sessions whose horizon has passed, with `beat`:
    1 where the symbol's H-session return was above its sector's median among the scored symbols."""
    return (
        scores.join(forward_returns(bars, horizon), on=["session", "symbol"])
        .with_columns(beat=(col("fwd_ret") > col("fwd_ret").median().over("session", "sector")).cast(pl.Int8))
    )


def forward_returns(bars: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """session, symbol, fwd_ret: the close-to-close return over the next `horizon` sessions."""
    return (
        bars.select("session", "symbol", "close")
        .sort("symbol", "session")
        .with_columns(fwd_ret=col("close").shift(-horizon).over("symbol") / col("close") - 1)
        .drop_nulls("fwd_ret")
        .select("session", "symbol", "fwd_ret")
    )


def daily_ic(scores: pl.DataFrame, returns: pl.DataFrame) -> pl.DataFrame:
    """Per session: Pearson IC and Spearman rank IC of probability_up against the forward return
    across all scored symbols (qlib's `calc_ic`)."""
    return (
        scores.join(returns, on=["session", "symbol"], how="inner")
        .group_by("session")
        .agg(
            ic=pl.corr("probability_up", "fwd_ret"),
            rank_ic=pl.corr("probability_up", "fwd_ret", method="spearman"),
            symbols=pl.len(),
        )
        .sort("session")
    )


def ic_summary(ic: pl.DataFrame) -> dict[str, float | None]:
    """Means and ICIR (mean / sample std, as qlib) of the daily IC and rank IC."""
    summary: dict[str, float | None] = {"sessions": float(ic.height)}
    for name, icir in (("ic", "icir"), ("rank_ic", "rank_icir")):
        values = ic[name].drop_nulls().drop_nans()
        mean, std = values.mean(), values.std()
        summary[f"{name}_mean"] = mean
        summary[icir] = mean / std if mean is not None and std else None
    return summary


def hit_rates(outcomes: pl.DataFrame) -> pl.DataFrame:
    """Share of signals that reached their target, by sector and direction, with count and mean return."""
    return (
        outcomes.group_by("sector", "signal_type")
        .agg(
            signals=pl.len(),
            hit_rate=(col("outcome") == "target").mean(),
            stop_rate=(col("outcome") == "stop").mean(),
            mean_ret=col("ret").mean(),
        )
        .sort("sector", "signal_type")
    )


NO_CHAMPION, INCOMPLETE_FEATURES = "no champion", "incomplete features"


def unscored(features: pl.DataFrame, scored: pl.DataFrame, sectors_without_champion: Sequence[str]) -> pl.DataFrame:
    """session, sector, reason, symbols (a sorted list): the feature rows the scan did not score, because their
    sector has no champion or because a model feature or the ATR is missing (the 252-session warm-up)."""
    return (
        features.select("session", "symbol", "sector")
        .join(scored.select("session", "symbol"), on=["session", "symbol"], how="anti")
        .with_columns(reason=pl.when(col("sector").is_in(list(sectors_without_champion)))
                      .then(pl.lit(NO_CHAMPION)).otherwise(pl.lit(INCOMPLETE_FEATURES)))
        .group_by("session", "sector", "reason")
        .agg(symbols=col("symbol").sort())
        .sort("session", "sector", "reason")
    )
