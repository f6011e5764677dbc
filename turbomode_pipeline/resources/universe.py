"""The stock universe file as a resource, so tests and deployments can point at their own."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from dagster import ConfigurableResource

from turbomode_pipeline.core.universe import load_universe


class Universe(ConfigurableResource):
    path: str

    def load(self) -> pl.DataFrame:
        return load_universe(Path(self.path))
