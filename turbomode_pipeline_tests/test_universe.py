import pytest

from turbomode_pipeline.core.universe import GICS_SECTORS, UniverseError, load_universe
from turbomode_pipeline.settings import DEFAULT_UNIVERSE


def test_packaged_universe_has_231_symbols_and_21_per_sector():
    universe = load_universe(DEFAULT_UNIVERSE)
    assert universe.height >= 231
    per_sector = dict(universe.group_by("sector").len().iter_rows())
    assert set(per_sector) == set(GICS_SECTORS)
    assert min(per_sector.values()) >= 21


def test_duplicate_symbols_and_unknown_sectors_are_named(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("symbol,name,sector\nAAPL,Apple,Information Technology\nAAPL,Apple again,Information Technology\n")
    with pytest.raises(UniverseError, match=r"duplicate symbol\(s\) \['AAPL'\]"):
        load_universe(path)
    path.write_text("symbol,name,sector\nAAPL,Apple,Tech\n")
    with pytest.raises(UniverseError, match="unknown sector for AAPL: 'Tech'"):
        load_universe(path)
