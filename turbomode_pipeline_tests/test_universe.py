import os
import subprocess
import sys
from pathlib import Path

import pytest

from turbomode_pipeline.core.universe import GICS_SECTORS, UniverseError, load_universe
from turbomode_pipeline.settings import DEFAULT_UNIVERSE, SettingsError, load_settings


def test_packaged_universe_has_231_symbols_and_21_per_sector():
    universe = load_universe(DEFAULT_UNIVERSE)
    assert universe.height >= 231
    per_sector = dict(universe.group_by("sector").len().iter_rows())
    assert set(per_sector) == set(GICS_SECTORS)
    assert min(per_sector.values()) >= 21


def test_duplicate_symbols_and_unknown_sectors_are_named(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("symbol,name,sector\nAAPL,Apple,Information Technology\nAAPL,Apple again,Information Technology\n")
    with pytest.raises(UniverseError, match=r"duplicate symbol: line 3 AAPL repeats line 2$"):
        load_universe(path)
    path.write_text("symbol,name,sector\nAAPL,Apple,Tech\n")
    with pytest.raises(UniverseError, match="unknown sector: line 2 AAPL 'Tech'; known sectors are Communication"):
        load_universe(path)


UNIVERSE_FAULTS = [
    ("symbol,name,sector\nAAPL,Apple,Information Technology\nXOM,Exxon,Energy\naapl ,Apple again,Information Technology\n",
     "duplicate symbol: line 4 AAPL repeats line 2"),
    ("symbol,name,sector\nAAPL,Apple,Information Technology\nXOM,Exxon,Oil\n",
     "unknown sector: line 3 XOM 'Oil'; known sectors are Communication Services, Consumer Discretionary, "
     "Consumer Staples, Energy, Financials, Health Care, Industrials, Information Technology, Materials, Real Estate, "
     "Utilities"),
    ("", "empty file: expected the header symbol,name,sector and one row per stock"),
    ("symbol,name,sector\n", "header only: no stock rows after line 1"),
    ("symbol,name,sector\nAAPL,Apple,Information Technology\n,Nameless,Energy\n", "missing symbol: line 3 has no symbol"),
]


@pytest.mark.parametrize(("text", "rule"), UNIVERSE_FAULTS)
def test_a_bad_universe_fails_when_settings_load_naming_path_line_and_rule(tmp_path, text, rule):
    path = tmp_path / "universe.csv"
    path.write_text(text)
    with pytest.raises(SettingsError) as refused:
        load_settings({"TURBOMODE_UNIVERSE": str(path)})
    assert str(refused.value) == f"TURBOMODE_UNIVERSE is invalid: {path}: {rule}"


def test_a_duplicate_symbol_fails_the_code_location_load(tmp_path):
    """It used to pass `dagster definitions validate` and fail only when a run started."""
    path = tmp_path / "universe.csv"
    path.write_text(UNIVERSE_FAULTS[0][0])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "TURBOMODE_", "DAGSTER_"))} | {
        "TURBOMODE_DATA_DIR": str(tmp_path), "TURBOMODE_UNIVERSE": str(path),
    }
    command = [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-m", "turbomode_pipeline.definitions"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert (f"SettingsError: TURBOMODE_UNIVERSE is invalid: {path}: duplicate symbol: line 4 AAPL repeats line 2"
            in done.stdout + done.stderr)
