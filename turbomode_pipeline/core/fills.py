"""The local paper broker's fill model, shared by paper trading and the strategy backtest.

A market order fills at the open of the first bar of its symbol that starts at or after the
order's submission minute, moved against the trader by `slippage_bps`, and pays
`commission_per_share` per share.
"""

from __future__ import annotations

import polars as pl

col = pl.col


def next_open_fills(orders: pl.DataFrame, bars: pl.DataFrame, slippage_bps: float, commission_per_share: float) -> pl.DataFrame:
    """`orders` (symbol, side, qty, time = submission minute, any other columns kept) joined to their fill:
    `fill_time` (the filling bar's start), `filled_price`, `commission`, and `open`, the bar's open before slippage.
    Orders no bar fills yet are left out."""
    due = (
        orders.sort("time")
        .join_asof(bars.select("symbol", col("time").alias("fill_time"), "open").sort("fill_time"),
                   left_on="time", right_on="fill_time", by="symbol", strategy="forward", check_sortedness=False)
        .filter(col("open").is_not_null())
    )
    slip = pl.when(col("side") == "buy").then(1 + slippage_bps / 1e4).otherwise(1 - slippage_bps / 1e4)
    return due.with_columns(
        (col("open") * slip).round(4).alias("filled_price"), (col("qty") * commission_per_share).alias("commission"),
    )
