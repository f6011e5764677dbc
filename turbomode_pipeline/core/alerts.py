"""What an alert says: what failed, which partition, where to look. Plain dicts, one JSON line each."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def partition_of(tags: Mapping[str, str]) -> str | None:
    """The run's partition, or its partition range as 'first..last'."""
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    if RANGE_START_TAG in tags:
        return f"{tags[RANGE_START_TAG]}..{tags.get(RANGE_END_TAG, tags[RANGE_START_TAG])}"
    return None


MAX_CAUSES = 8  # a chain deeper than this is a loop or noise; the innermost causes are what a person needs


def error_with_causes(error, limit: int = 500) -> str:
    """A serialized error's message followed by every cause under it, innermost last: the error of a failed step
    is usually Dagster's wrapper ("Error occurred while executing op ..."), and the words that say why (a lock, a
    full disk, the broker's refusal) are in its `cause` (``raise ... from``) or `context` (raised while handling).
    Duck-typed over Dagster's SerializableErrorInfo (message, cause, context); a cause whose words the message
    above it already carries is not repeated."""
    parts: list[str] = []
    seen = 0
    while error is not None and seen < MAX_CAUSES:
        message = " ".join((getattr(error, "message", None) or "").split())
        if message and not any(message in part for part in parts):
            parts.append(message[:limit] + ("..." if len(message) > limit else ""))
        error = getattr(error, "cause", None) or getattr(error, "context", None)
        seen += 1
    return " | caused by: ".join(parts)


def run_failure_alert(
    job: str, run_id: str, tags: Mapping[str, str], error: str, ui_base_url: str, at: datetime
) -> dict:
    partition = partition_of(tags)
    where = f" for partition {partition}" if partition else ""
    return {
        "kind": "run_failure",
        "at": at.isoformat(),
        "summary": f"run of {job}{where} failed: {error}",
        "job": job,
        "run_id": run_id,
        "partition": partition,
        "error": error,
        "ui_link": f"{ui_base_url}/runs/{run_id}",
    }


def check_failure_alert(
    asset: list[str], check: str, partition: str | None, description: str | None, run_id: str | None,
    ui_base_url: str, at: datetime,
) -> dict:
    name = "/".join(asset)
    where = f" for partition {partition}" if partition else ""
    return {
        "kind": "check_failure",
        "at": at.isoformat(),
        "summary": f"check {check} on {name}{where} failed: {description or 'no description'}",
        "asset": name,
        "check": check,
        "partition": partition,
        "error": description,
        "run_id": run_id or None,
        "ui_link": f"{ui_base_url}/runs/{run_id}" if run_id else f"{ui_base_url}/assets/{name}?view=checks",
    }


def strategy_halt_alert(strategy_id: str, symbol: str, status: str, ui_base_url: str, at: datetime) -> dict:
    """A live strategy the tick halted (a position nothing explains, the loss limit, the kill switch), or one that
    failed (status "error: ...": its ledger row cannot run, or the broker refused its order)."""
    verb, _, reason = status.partition(": ")
    outcome = "failed" if verb == "error" else "halted"
    return {
        "kind": f"strategy_{outcome}",
        "at": at.isoformat(),
        "summary": f"live strategy {strategy_id} ({symbol}) {outcome}: {reason}",
        "strategy_id": strategy_id,
        "symbol": symbol,
        "error": reason,
        "ui_link": f"{ui_base_url}/runs?q[]=job:live_trading_job",
    }
