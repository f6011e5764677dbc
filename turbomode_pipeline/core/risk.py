"""The risk manager: which proposed orders may go to the broker, at what size, and why not.

Pure polars over all of a tick's proposals at once. A buy is sized to the smaller of the
strategy's allocation share and the account equity share, less what the strategy already
holds; a sell closes what it holds (a short only when shorting is enabled). Rules, first
failing rule wins: kill switch, market closed, strategy halted by its daily loss limit,
minimum price, no shorting, size rounds to zero, maximum open positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

col = pl.col
PROPOSAL_COLUMNS = {
    "strategy_id": pl.String,
    "symbol": pl.String,
    "side": pl.String,  # buy | sell
    "price": pl.Float64,
    "allocation": pl.Float64,
    "held_qty": pl.Float64,  # what the strategy holds in the symbol now
    "day_pnl": pl.Float64,  # the strategy's P&L today, realised and unrealised
}


@dataclass(frozen=True)
class RiskLimits:
    max_allocation_share: float = 1.0  # of the strategy's allocation per position
    max_equity_share: float = 0.10  # of account equity per position
    max_open_positions: int = 10
    daily_loss_limit: float = 500.0  # dollars per strategy per day
    min_price: float = 5.0
    allow_short: bool = False


@dataclass(frozen=True)
class MarketState:
    equity: float
    open_positions: int  # positions the account holds before this tick
    market_open: bool
    kill_switch: bool


def review(proposals: pl.DataFrame, limits: RiskLimits, state: MarketState) -> pl.DataFrame:
    """Each proposal with `qty` (whole shares, 0 when rejected), `approved` and `reason`."""
    cap = pl.min_horizontal(col("allocation") * limits.max_allocation_share, pl.lit(state.equity * limits.max_equity_share))
    target = (cap / col("price")).floor()
    is_short = (col("side") == "sell") & (col("held_qty") <= 0)
    qty = (
        pl.when(col("side") == "buy").then((target - col("held_qty")).clip(lower_bound=0))
        .when(is_short).then(target)
        .otherwise(col("held_qty"))
    )
    opens_position = (col("held_qty") == 0) & (col("qty") > 0)
    reason = (
        pl.when(pl.lit(state.kill_switch)).then(pl.lit("kill switch is on: all trading halted"))
        .when(pl.lit(not state.market_open)).then(pl.lit("market is closed"))
        .when(col("day_pnl") <= -limits.daily_loss_limit)
        .then(pl.format(f"daily loss limit {limits.daily_loss_limit:.2f} reached (P&L today {{}}): halted for the day", col("day_pnl").round(2)))
        .when(col("price") < limits.min_price).then(pl.format(f"price {{}} below the minimum {limits.min_price:.2f}", col("price").round(2)))
        .when(is_short & pl.lit(not limits.allow_short)).then(pl.lit("shorting is disabled and nothing is held to sell"))
        .when(col("qty") <= 0).then(pl.lit("position already at its size limit"))
    )
    reviewed = proposals.with_columns(qty.alias("qty")).with_columns(reason.alias("reason"))
    slots = max(limits.max_open_positions - state.open_positions, 0)
    new_positions = (reviewed["reason"].is_null() & reviewed.select(opens_position).to_series()).cum_sum()
    too_many = reviewed.select(opens_position).to_series() & (new_positions > slots)
    return reviewed.with_columns(
        pl.when(col("reason").is_null() & too_many)
        .then(pl.lit(f"maximum of {limits.max_open_positions} open positions reached"))
        .otherwise(col("reason"))
        .alias("reason")
    ).with_columns(
        col("reason").is_null().alias("approved"),
        pl.when(col("reason").is_null()).then(col("qty")).otherwise(0.0).alias("qty"),
        col("reason").fill_null("approved"),
    )
