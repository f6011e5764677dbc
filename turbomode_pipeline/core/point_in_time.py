"""Point in time for models: which weeks a walk-forward trains, and which model each session is scored by.

A training week W is the week a model set serves. It is trained as of the last session before W
(its cutoff): only samples whose whole label horizon had closed by the cutoff's close, so its
`labels_through` is at most the cutoff and every session it serves lies after it. Session S is
scored by the champion *as of S*: the newest promoted version whose labels end before S. A
version carries forward until a newer one is promoted, so a monthly walk-forward is the weekly
one with the weeks in between served by the month's model.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta

import polars as pl

CADENCES = ("weekly", "monthly", "quarterly")


def trains_in(week: date, cadence: str) -> bool:
    """Whether a walk-forward at `cadence` trains the week starting on Sunday `week`: every week, or the
    first week (Sunday in days 1-7) of each month, or of January, April, July and October. Anchored to
    the calendar, so two runs over overlapping ranges train the same weeks."""
    if cadence not in CADENCES:
        raise ValueError(f"unknown cadence {cadence!r}; one of {', '.join(CADENCES)}")
    first_of_month = week.day <= 7
    return cadence == "weekly" or (first_of_month and (cadence == "monthly" or week.month in (1, 4, 7, 10)))


def settings_key(settings: dict) -> str:
    """A short, stable digest of what a training depends on besides its cutoff: a version trained with
    the same key and cutoff is the same model, and is reused instead of trained again."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def champions_as_of(sessions: list[date], history: pl.DataFrame) -> pl.DataFrame:
    """session, sector, version, labels_through: each sector's champion for each of `sessions`, the newest
    entry of `history` (sector, labels_through, version, and promoted_at where several versions share a cutoff)
    whose labels end strictly before the session. A sector without such an entry has no row for that session."""
    if history.is_empty():
        return pl.DataFrame(schema={"session": pl.Date, "sector": pl.String, "version": pl.String,
                                    "labels_through": pl.Date})
    days = pl.DataFrame({"session": sessions}, schema={"session": pl.Date}).sort("session")
    entries = _newest_per_cutoff(history).select("sector", "version", "labels_through").sort("labels_through")
    return (
        days.join(entries.select("sector").unique(), how="cross")
        .sort("session")
        .join_asof(entries.with_columns(_at=pl.col("labels_through")), left_on="session", right_on="_at",
                   by="sector", strategy="backward", allow_exact_matches=False, check_sortedness=False)
        .drop_nulls("version")
        .select("session", "sector", "version", "labels_through")
        .sort("session", "sector")
    )


def _newest_per_cutoff(history: pl.DataFrame) -> pl.DataFrame:
    """One entry per sector and cutoff: the last promoted (a week trained again with other settings)."""
    if "promoted_at" not in history.columns:
        return history.unique(["sector", "labels_through"], keep="last", maintain_order=True)
    return history.sort("promoted_at").unique(["sector", "labels_through"], keep="last", maintain_order=True)


def leaked(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows scored by a model whose labels reach the row's own session or later, or whose cutoff is unknown."""
    through = pl.col("model_labels_through")
    return frame.filter(through.is_null() | (through >= pl.col("session")))


def standing(versions: pl.DataFrame, history: pl.DataFrame, name: str, labels_through: date) -> tuple[str | None, bool]:
    """Where a new version of model `name` with `labels_through` stands: the champion it must beat (the newest
    promotion whose labels end no later than its own; None when there is none) and whether it is the newest
    of its model (only the newest may take the registry's `champion` alias)."""
    mine = history.filter(pl.col("registered_model") == name) if history.height else history
    before = mine.filter(pl.col("labels_through") <= labels_through) if mine.height else mine
    incumbent = str(before.sort("labels_through", "promoted_at")["version"][-1]) if before.height else None
    others = versions.filter(pl.col("registered_model") == name) if versions.height else versions
    newest = others.is_empty() or labels_through >= others["labels_through"].max()
    return incumbent, bool(newest)


def serving_week(day: date) -> date:
    """The Sunday that starts the week of `day`: the key of the sector_models partition whose models serve it."""
    return day - timedelta(days=(day.weekday() + 1) % 7)
