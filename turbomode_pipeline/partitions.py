"""Partitions other than sessions: the universe's GICS sectors, keyed by slug.

Built when the code location loads, from the universe file (TURBOMODE_UNIVERSE): a desk whose
universe holds 7 sectors has 7 sector partitions, so the weekly training, the status and the
drift report never ask for a sector it lacks. A changed universe takes effect on the next load
(a restart of the code location, or "Reload" in the UI).
"""

from collections.abc import Sequence

import polars as pl
from dagster import StaticPartitionsDefinition

from turbomode_pipeline.core.universe import GICS_SECTORS, load_universe, sector_slug
from turbomode_pipeline.settings import get_settings


def universe_sectors(universe: pl.DataFrame) -> tuple[str, ...]:
    """The sectors the universe holds, in GICS order."""
    present = set(universe["sector"].unique().to_list())
    return tuple(sector for sector in GICS_SECTORS if sector in present)


def sector_partitions(sectors: Sequence[str]) -> StaticPartitionsDefinition:
    return StaticPartitionsDefinition([sector_slug(sector) for sector in sectors])


SECTORS = universe_sectors(load_universe(get_settings().universe_path))
SECTOR_BY_KEY = {sector_slug(sector): sector for sector in SECTORS}
SECTOR_PARTITIONS = sector_partitions(SECTORS)


def sector_of(key: str) -> str:
    try:
        return SECTOR_BY_KEY[key]
    except KeyError:
        raise ValueError(
            f"sector partition {key!r} is not a sector of the universe {get_settings().universe_path}; "
            f"its sectors are {', '.join(SECTOR_BY_KEY)}"
        ) from None
