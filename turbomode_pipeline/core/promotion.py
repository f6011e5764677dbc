"""The champion gate: when a newly trained version may replace a sector model's champion.

Two rules, in order:
1. Skill: the version's holdout rank IC must be above zero by the null band (`min_t`
   overlap-adjusted standard errors); a version without skill never becomes champion.
2. Noise: a newer version is fitted on more recent data, so it replaces the champion unless its
   holdout AUC is worse than the champion's by more than the noise of the comparison
   (`NOISE_BAND` standard errors of the difference, each AUC's standard error measured by a
   session-block bootstrap of its own holdout). A fast-settings version never blocks a
   full-settings one, and never replaces one: fast settings are for demos and tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NOISE_BAND = 2.0  # standard errors of the AUC difference
FAST, FULL = "fast", "full"


@dataclass(frozen=True)
class Contender:
    version: str
    auc: float
    auc_se: float | None  # None: a version logged before the standard error was measured
    settings: str | None  # FAST, FULL, or None for a version logged before settings were tagged


def significance_refusal(metrics: dict[str, float], min_t: float) -> str | None:
    """Why a version may not become champion: its holdout rank IC is not above zero by
    `min_t` overlap-adjusted standard errors (the null band of a model without skill); else None."""
    if "rank_ic_t" not in metrics or metrics["rank_ic_t"] > min_t:
        return None
    return (
        f"refused as champion: holdout rank IC {metrics['rank_ic']:+.4f} is not above zero by the null band "
        f"(+/-{min_t * metrics['rank_ic_se']:.4f} = {min_t:g} overlap-adjusted standard errors; t {metrics['rank_ic_t']:+.2f})"
    )


def replaces_champion(new: Contender, champion: Contender) -> tuple[bool, str]:
    """Whether `new` takes the champion alias from `champion`, and the reason in words."""
    versus = f"champion v{champion.version} ({champion.settings or 'unknown'} settings, holdout AUC {champion.auc:.4f})"
    if new.settings == FULL and champion.settings == FAST:
        return True, f"full settings replace the fast-settings {versus}; holdout AUC {new.auc:.4f}"
    if new.settings == FAST and champion.settings == FULL:
        return False, f"fast settings never replace a full-settings {versus}; holdout AUC {new.auc:.4f}"
    noise = NOISE_BAND * _difference_se(new, champion)
    gap = new.auc - champion.auc
    measured = f"holdout AUC {new.auc:.4f} vs {versus}: difference {gap:+.4f}, noise band +/-{noise:.4f}"
    if gap >= -noise:
        return True, f"{measured}; not worse by more than the noise, and fitted on newer data"
    return False, f"{measured}; worse by more than the noise"


def _difference_se(new: Contender, champion: Contender) -> float:
    """Standard error of the two AUCs' difference, taken as independent (different holdouts); a
    champion logged without one is given the new version's."""
    new_se = new.auc_se or 0.0
    champion_se = champion.auc_se if champion.auc_se is not None else new_se
    return math.sqrt(new_se**2 + champion_se**2)
