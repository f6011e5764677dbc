"""Drift measures: feature stability per sector, the scanner's signal balance and hit rate.

PSI bins are the 10 quantile bins of a feature's reference (training-window) distribution
in that sector; the current window's values are counted into the same bins. A sector's
status is the status of its median feature PSI (`sector_status`): a few slow features
(52-week distances, the market regime) always wander over a 20-session window, while a
real regime change in a sector moves most of its features at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

col = pl.col
BINS = 10
EMPTY_BIN_SHARE = 1e-4  # stands in for an empty bin so the log stays finite
STATUSES = ("ok", "warn", "drift")
MIN_SIGNALS_FOR_BALANCE = 10  # fewer signals than this say nothing about one-sidedness
HIT_RATE_ALPHA = 0.05


@dataclass(frozen=True)
class Thresholds:
    psi_warn: float = 0.1
    psi_drift: float = 0.25
    one_sided_share: float = 0.85


def _long(frame: pl.DataFrame, features: list[str]) -> pl.DataFrame:
    return (
        frame.select("sector", "session", *features)
        .unpivot(index=["sector", "session"], on=features, variable_name="feature", value_name="value")
        .drop_nulls("value")
        .with_columns(col("value").cast(pl.Float64))
    )


def _blocks(reference: pl.DataFrame, window: int) -> pl.DataFrame:
    """Consecutive, complete blocks of `window` sessions of the reference, numbered from 0."""
    sessions = reference["session"].unique().sort()
    full = (len(sessions) // window) * window
    return pl.DataFrame({"session": sessions[:full], "block": pl.int_range(0, full, eager=True) // window})


def _psi_by_block(long: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """PSI of each block's distribution against the block `reference`, per sector and feature."""
    keys = ["sector", "feature"]
    binned = long.join(edges, on=keys, how="inner").with_columns(
        pl.sum_horizontal(*(col("value") > col(f"q{i}") for i in range(1, BINS))).alias("bin")
    )
    counts = binned.group_by(*keys, "block", "bin").agg(pl.len().alias("count"))
    shares = counts.with_columns((col("count") / col("count").sum().over(*keys, "block")).alias("share"))
    grid = counts.select(*keys, "block").unique().join(pl.DataFrame({"bin": range(BINS)}, schema={"bin": pl.UInt32}), how="cross")
    expected = shares.filter(col("block") == "reference").select(*keys, "bin", col("share").alias("expected"))
    full = (
        grid.join(shares.select(*keys, "block", "bin", "share"), on=[*keys, "block", "bin"], how="left")
        .join(expected, on=[*keys, "bin"], how="left")
        .with_columns(col("share", "expected").fill_null(0).clip(lower_bound=EMPTY_BIN_SHARE))
    )
    psi = (col("share") - col("expected")) * (col("share") / col("expected")).log()
    return full.group_by(*keys, "block").agg(psi.sum().alias("psi"))


def feature_drift(reference: pl.DataFrame, current: pl.DataFrame, features: list[str], window: int) -> pl.DataFrame:
    """Per sector and feature: PSI and KS of `current` against `reference`, and the PSI's baseline.

    `baseline_psi` is the largest PSI any `window`-session block of the reference shows against
    the whole reference: how far a window drifts by chance and by the volatility regimes the
    model was trained through. `excess_psi` = psi - baseline_psi is what the status judges.
    Columns: sector, feature, psi, baseline_psi, excess_psi, ks, ks_pvalue, n_reference, n_current.
    """
    keys = ["sector", "feature"]
    ref = _long(reference, features)
    edges = ref.group_by(keys).agg(col("value").quantile(i / BINS, "linear").alias(f"q{i}") for i in range(1, BINS))
    blocks = ref.join(_blocks(reference, window).with_columns(col("block").cast(pl.String)), on="session", how="inner")
    labelled = pl.concat(
        [ref.with_columns(block=pl.lit("reference")), blocks, _long(current, features).with_columns(block=pl.lit("current"))]
    )
    psi = _psi_by_block(labelled, edges)
    by_block = psi.filter(~col("block").is_in(["reference", "current"])).group_by(keys).agg(col("psi").max().alias("baseline_psi"))
    drift = (
        psi.filter(col("block") == "current").drop("block")
        .join(by_block, on=keys, how="left")
        .with_columns(col("baseline_psi").fill_null(0.0))
        .with_columns((col("psi") - col("baseline_psi")).alias("excess_psi"))
    )
    return drift.join(_kolmogorov_smirnov(ref, _long(current, features), keys), on=keys, how="inner").sort(keys)


def _kolmogorov_smirnov(ref: pl.DataFrame, cur: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    from scipy.stats import ks_2samp  # scipy.stats: ~0.6 s at import, only when the report runs

    current = cur.partition_by(keys, as_dict=True)
    rows = []
    for key, reference in ref.partition_by(keys, as_dict=True).items():  # one per sector and feature
        if key not in current:
            continue
        result = ks_2samp(reference["value"].to_numpy(), current[key]["value"].to_numpy())
        rows.append((*key, float(result.statistic), float(result.pvalue), reference.height, current[key].height))
    return pl.DataFrame(
        rows, orient="row",
        schema=[*((k, pl.String) for k in keys), ("ks", pl.Float64), ("ks_pvalue", pl.Float64),
                ("n_reference", pl.Int64), ("n_current", pl.Int64)],
    )


def status_of(psi: pl.Expr, thresholds: Thresholds) -> pl.Expr:
    return (
        pl.when(psi >= thresholds.psi_drift).then(pl.lit("drift"))
        .when(psi >= thresholds.psi_warn).then(pl.lit("warn"))
        .otherwise(pl.lit("ok"))
    )


def with_hit_rate_status(report: pl.DataFrame) -> pl.DataFrame:
    """A sector whose realised hit rate is significantly below its holdout's (`hit_rate_low`) is at
    least `warn`, whatever its features say: its signals fail more often than the model promised.
    Not `drift`: that status asks for a retrain, and too few hits is no evidence the inputs moved."""
    raised = pl.when(col("hit_rate_low") & (col("status") == "ok")).then(pl.lit("warn")).otherwise(col("status"))
    return report.with_columns(raised.alias("status"))


def judged_features(features: list[str], memory: dict[str, int], window: int) -> list[str]:
    """Features whose memory (sessions of history in one value) is at most half the window.

    A 20-session window holds few independent values of a 60-session return or a 52-week
    distance, so those are reported but do not decide a sector's status.
    """
    return [name for name in features if memory[name] <= window // 2]


def sector_status(drift: pl.DataFrame, judged: list[str], thresholds: Thresholds) -> pl.DataFrame:
    """One row per sector; its status is that of the median excess PSI over the judged features."""
    judged_only = pl.col("feature").is_in(judged)
    return (
        drift.with_columns(status_of(col("excess_psi"), thresholds).alias("status"))
        .group_by("sector")
        .agg(
            col("excess_psi").filter(judged_only).median().alias("median_excess_psi"),
            col("psi").filter(judged_only).median().alias("median_psi"),
            col("psi").max().alias("max_psi"),
            col("feature").filter(judged_only).sort_by(col("excess_psi").filter(judged_only), descending=True)
            .first().alias("top_feature"),
            col("ks").filter(judged_only).max().alias("max_ks"),
            (col("status") == "drift").filter(judged_only).sum().cast(pl.Int32).alias("features_drift"),
            judged_only.sum().cast(pl.Int32).alias("features_judged"),
        )
        .with_columns(status_of(col("median_excess_psi"), thresholds).alias("status"))
        .sort("sector")
    )


def signal_balance(signals: pl.DataFrame, thresholds: Thresholds) -> pl.DataFrame:
    """BUY/SELL counts per sector plus an `All sectors` row; `one_sided` when > threshold point one way."""
    per_sector = signals.group_by("sector").agg(
        (col("signal_type") == "BUY").sum().cast(pl.Int64).alias("buy"),
        (col("signal_type") == "SELL").sum().cast(pl.Int64).alias("sell"),
    )
    total = per_sector.select(pl.lit("All sectors").alias("sector"), col("buy").sum(), col("sell").sum())
    both = pl.concat([per_sector.sort("sector"), total])
    signals_total = col("buy") + col("sell")
    buy_share = pl.when(signals_total > 0).then(col("buy") / signals_total)
    return both.with_columns(buy_share.alias("buy_share")).with_columns(
        (
            (signals_total >= MIN_SIGNALS_FOR_BALANCE)
            & (pl.max_horizontal(col("buy_share"), 1 - col("buy_share")) > thresholds.one_sided_share)
        ).fill_null(False).alias("one_sided")
    )


def hit_rates(outcomes: pl.DataFrame, expected: dict[str, float]) -> pl.DataFrame:
    """Realised hit rate (target reached first) per sector against `expected`, one-sided binomial test.

    `hit_rate_pvalue` is P(so few hits | the expected rate); `hit_rate_low` when below HIT_RATE_ALPHA.
    """
    from scipy.stats import binomtest

    counts = outcomes.group_by("sector").agg(
        pl.len().cast(pl.Int64).alias("outcomes"), (col("outcome") == "target").sum().cast(pl.Int64).alias("hits")
    )
    rows = []
    for sector, n, hits in counts.sort("sector").iter_rows():  # one row per sector, not per signal
        p = expected.get(sector)
        pvalue = binomtest(hits, n, p, alternative="less").pvalue if p is not None and 0 < p < 1 else None
        rows.append((sector, n, hits, hits / n, p, pvalue))
    frame = pl.DataFrame(
        rows, orient="row",
        schema=[("sector", pl.String), ("outcomes", pl.Int64), ("hits", pl.Int64), ("hit_rate", pl.Float64),
                ("expected_hit_rate", pl.Float64), ("hit_rate_pvalue", pl.Float64)],
    )
    return frame.with_columns((col("hit_rate_pvalue") < HIT_RATE_ALPHA).fill_null(False).alias("hit_rate_low"))


def confidence_psi(reference: pl.DataFrame, current: pl.DataFrame, window: int) -> pl.DataFrame:
    """sector, confidence_psi: how far the scanner's scores in the window moved from those before it."""
    if reference.is_empty() or current.is_empty():
        return pl.DataFrame(schema={"sector": pl.String, "confidence_psi": pl.Float64})
    drift = feature_drift(reference, current, ["probability_up"], window)
    return drift.select("sector", col("psi").alias("confidence_psi"))


def compose_report(
    status: pl.DataFrame, confidence: pl.DataFrame, balance: pl.DataFrame, outcomes: pl.DataFrame,
    champions: pl.DataFrame, **constants,
) -> pl.DataFrame:
    """One row per sector of `status` (sector_status): its confidence PSI, BUY/SELL balance, hit rate against
    its champion's expected one, and the champion's lineage; `constants` (week_ending, window_start, ...) as
    columns. A sector with no signals or outcomes has zero counts and is neither one-sided nor low."""
    expected = dict(champions.select("sector", "expected_hit_rate").iter_rows())
    left = {"on": "sector", "how": "left", "maintain_order": "left"}
    return (
        status
        .join(confidence, **left)
        .join(balance.filter(col("sector") != "All sectors"), **left)
        .join(hit_rates(outcomes, expected).drop("expected_hit_rate"), **left)
        .join(champions, **left)
        .with_columns(
            col("buy", "sell", "outcomes", "hits").fill_null(0),
            col("one_sided", "hit_rate_low").fill_null(False),
            **{name: pl.lit(value) for name, value in constants.items()},
        )
        .pipe(with_hit_rate_status)
    )


def psi_matrix(drift: pl.DataFrame, value: str = "excess_psi") -> tuple[list[str], list[str], np.ndarray]:
    """Sectors, features and a matrix (sectors x features) of `value` for a heat map."""
    wide = drift.pivot(on="feature", index="sector", values=value).sort("sector")
    features = [c for c in wide.columns if c != "sector"]
    return wide["sector"].to_list(), features, wide.select(features).to_numpy()
