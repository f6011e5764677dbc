"""Partitions other than sessions: the 11 GICS sectors, keyed by slug."""

from dagster import StaticPartitionsDefinition

from turbomode_pipeline.core.universe import GICS_SECTORS, sector_slug

SECTOR_BY_KEY = {sector_slug(sector): sector for sector in GICS_SECTORS}
SECTOR_PARTITIONS = StaticPartitionsDefinition(list(SECTOR_BY_KEY))


def sector_of(key: str) -> str:
    return SECTOR_BY_KEY[key]
