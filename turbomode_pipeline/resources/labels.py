"""The label settings (TURBOMODE_LABEL_*) as a resource: the assets that label, train, scan and grade read them here."""

from __future__ import annotations

from dagster import ConfigurableResource

from turbomode_pipeline.core.labels import Barriers
from turbomode_pipeline.settings import Settings


class LabelSettings(ConfigurableResource):
    """The triple barrier (ATR multiples and horizon in sessions) and the target the models learn.

    The partition mappings of the assets that look `horizon` sessions ahead are drawn when the code
    location loads, from the same settings: a run that overrides `horizon` still checks that its bars
    reach that far, and fails saying so when they do not.
    """

    k_up: float
    k_dn: float
    horizon: int
    target: str  # "relative" (beats its sector's median) or "absolute" (the trade went up)

    @classmethod
    def from_settings(cls, settings: Settings) -> LabelSettings:
        return cls(k_up=settings.label_k_up, k_dn=settings.label_k_dn, horizon=settings.label_horizon,
                   target=settings.label_target)

    @property
    def barriers(self) -> Barriers:
        return Barriers(self.k_up, self.k_dn, self.horizon)
