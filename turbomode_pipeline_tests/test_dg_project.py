"""The package is a `dg` project too ([tool.dg] in pyproject.toml): `dg check defs` loads the code location."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_dg_check_defs_loads_the_code_location(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "DAGSTER_HOME": str(home), "TURBOMODE_DATA_DIR": str(tmp_path / "data"),
           "VIRTUAL_ENV": str(venv)}
    check = subprocess.run([str(venv / "bin" / "dg"), "check", "defs"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-3000:]
    assert "All definitions loaded successfully" in check.stdout + check.stderr
