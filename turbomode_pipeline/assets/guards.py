"""The two refusals an asset makes before it computes: an input lacks sessions, or the future it needs is not in yet."""

from collections.abc import Sequence
from datetime import date

import polars as pl
from dagster import Failure

from turbomode_pipeline.calendar import sessions_after
from turbomode_pipeline.resources.warehouse import Warehouse


def _shown(sessions: list[date]) -> str:
    return ", ".join(map(str, sessions[:10])) + (" ..." if len(sessions) > 10 else "")


def require_sessions(have: pl.Series, wanted: Sequence[date], message: str, metadata_key: str | None = None) -> None:
    """Fail when `have` lacks any of `wanted`. `message` is formatted with `count` and `shown` (the missing sessions)."""
    missing = sorted(set(wanted) - set(have.unique().to_list()))
    if missing:
        shown = _shown(missing)
        raise Failure(
            description=message.format(count=len(missing), shown=shown),
            metadata={metadata_key: shown} if metadata_key else None,
        )


def bars_through_horizon(
    warehouse: Warehouse, asset: str, first: date, last: date, horizon: int, columns: Sequence[str], needs: str,
    ordered: bool = True,
) -> pl.DataFrame:
    """`columns` of daily_bars first..the `horizon`-th session after `last`; fails when daily_bars does not reach
    that far yet (`needs`: what of the asset needs those bars, e.g. "its outcome")."""
    horizon_end = sessions_after(last, horizon)[-1]
    bars = warehouse.bars(first, horizon_end, columns, ordered)
    newest = bars["session"].max()
    if newest is None or newest < horizon_end:
        raise Failure(
            description=(
                f"{asset} {last} is not materialisable yet: {needs} needs bars through {horizon_end} "
                f"({horizon} sessions later), and daily_bars ends at {newest}"
            ),
            metadata={"needs_bars_through": str(horizon_end), "newest_bars": str(newest)},
        )
    return bars
