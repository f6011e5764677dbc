"""Where human-readable reports go: files under `$TURBOMODE_DATA_DIR/reports/`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dagster import ConfigurableResource


class ReportStore(ConfigurableResource):
    """A folder of reports; a report is replaced atomically, so a reader never sees half of one."""

    directory: str

    def write(self, name: str, text: str) -> Path:
        folder = Path(self.directory)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8") as handle:
            handle.write(text)
        os.replace(handle.name, folder / name)
        return (folder / name).resolve()
