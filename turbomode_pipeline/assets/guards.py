"""The refusals an asset makes before it computes: an input lacks sessions, the future it needs is not in yet,
or a score came from a model that had seen its session's outcome."""

from collections.abc import Sequence
from datetime import date

import polars as pl
from dagster import Failure

from turbomode_pipeline.calendar import sessions_after
from turbomode_pipeline.core.point_in_time import leaked
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


def refuse_look_ahead(frame: pl.DataFrame, asset: str, what: str) -> None:
    """Fail when a row of `frame` (`what`: scanner scores or signals) was scored by a model whose training labels
    reach its own session or later, or whose cutoff is unknown (scanned before models carried one)."""
    bad = leaked(frame)
    if bad.height:
        first = bad.sort("session").row(0, named=True)
        raise Failure(
            description=(
                f"{asset} refused: {bad.height} {what} come from a model that learnt labels through or after their own "
                f"session (e.g. {first['symbol']} {first['session']}: model labels through "
                f"{first['model_labels_through'] or 'an unknown session'}); re-materialise scanner_signals for "
                f"{_shown(sorted(set(bad['session'])))} with point-in-time models"
            ),
            metadata={"look_ahead_rows": bad.height},
        )
