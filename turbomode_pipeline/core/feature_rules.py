"""Rules every batch of features must pass before it is written."""

from __future__ import annotations

import polars as pl

from turbomode_pipeline.core.features import FEATURES, RANGES, WARMUP
from turbomode_pipeline.core.rules import Rule, violations

col = pl.col


def _offending(frame: pl.DataFrame, flags: dict[str, pl.Expr], describe_one) -> pl.DataFrame:
    """Rows where any feature's flag is set, with a detail naming each offending feature and its value."""
    parts = [pl.when(flag).then(describe_one(name)) for name, flag in flags.items()]
    found = frame.select("session", "symbol", pl.concat_list(parts).list.drop_nulls().alias("_found"))
    found = found.filter(col("_found").list.len() > 0)
    return violations(found, col("_found").list.join(", "))


def infinities(features: pl.DataFrame, **_) -> pl.DataFrame:
    return _offending(
        features,
        {name: col(name).is_infinite() | col(name).is_nan() for name in FEATURES},
        lambda name: pl.format(f"{name}={{}}", col(name)),
    )


def late_nulls(features: pl.DataFrame, **_) -> pl.DataFrame:
    """Nulls after a symbol's warm-up (`bars_seen` counts the symbol's bars up to the row)."""
    return _offending(
        features,
        {name: col(name).is_null() & (col("bars_seen") > WARMUP[name]) for name in FEATURES},
        lambda name: pl.lit(f"{name} is null after {WARMUP[name]} bars of warm-up"),
    )


def out_of_range(features: pl.DataFrame, **_) -> pl.DataFrame:
    return _offending(
        features,
        {name: (col(name) < low) | (col(name) > high) for name, (low, high) in RANGES.items()},
        lambda name: pl.format(f"{name}={{}} outside [{RANGES[name][0]}, {RANGES[name][1]}]", col(name)),
    )


FEATURE_RULES = (
    Rule("features_finite", "no infinite or NaN feature values", True, infinities),
    Rule("features_null_only_in_warmup", "nulls only within each symbol's warm-up", True, late_nulls),
    Rule("features_in_range", "bounded features inside their possible range, e.g. RSI in [0, 100]", True, out_of_range),
)
