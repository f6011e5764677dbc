"""The README's command recipes, run exactly as written, on a fresh instance and data folder."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """Every `.venv/bin/...` command in the README's bash blocks, joined across line continuations."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in text.splitlines() if line.startswith(".venv/bin/")]


def test_readme_lists_the_promised_recipes():
    commands = " ".join(readme_commands())
    for recipe in ("--partition ", "--partition-range ", "schedule list", "sensor list", "duckdb -readonly", "definitions validate",
                   "turbomode signals"):
        assert recipe in commands


@pytest.mark.slow
def test_readme_recipes_run_as_written(tmp_path, small_universe_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    data = tmp_path / "data"
    env = dict(os.environ, DAGSTER_HOME=str(home), TURBOMODE_DATA_DIR=str(data), TURBOMODE_UNIVERSE=str(small_universe_path))
    for command in readme_commands():
        command = command.replace("data/warehouse.duckdb", str(data / "warehouse.duckdb"))
        done = subprocess.run(command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        unscanned = "turbomode signals" in command  # the 20-session demo trains nothing, so nothing was scanned
        assert done.returncode == (2 if unscanned else 0), f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        if unscanned:
            assert done.stderr.startswith("turbomode signals: no session was scanned yet: "), done.stderr
        if "duckdb -readonly" in command:
            assert "│ 2026-03-31 │      44 │" in done.stdout, done.stdout
        if "sensor list" in command:
            assert "Sensor: missed_sessions_sensor" in done.stdout
        if "schedule list" in command:
            assert "Schedule: market_data_ingestion [RUNNING]" in done.stdout and "45 22 * * *" in done.stdout
        if "turbomode demo" in command:
            assert re.search(r"daily_bars:\s+880 rows, 44 symbols, 20 sessions", done.stdout), done.stdout
            assert re.search(r"daily_features:\s+66 features", done.stdout), done.stdout  # 34 and 32 sector ranks
            assert re.search(r"training_samples: [\d,]+ samples; label 'up' [\d.]+%", done.stdout), done.stdout
            assert "sector_models: skipped: 20 sessions are too few to train on" in done.stdout


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def mlflow_server_commands() -> list[tuple[str, str]]:
    """(where, command) of every `mlflow server` / `mlflow ui` the repository ships: the systemd units, every
    code block of the README (the distributed `sh` recipe too), the Makefile; line continuations joined."""
    sources = [(path.relative_to(REPO), path.read_text()) for path in sorted((REPO / "deploy").rglob("*.service"))]
    readme = "\n".join(re.findall(r"```[a-z]*\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S))
    sources += [("README.md", readme), ("Makefile", (REPO / "Makefile").read_text())]
    commands = []
    for where, text in sources:
        for line in text.replace("\\\n", " ").splitlines():
            if re.search(r"\bmlflow (server|ui)\b", line):
                commands.append((str(where), line.strip()))
    return commands


def test_no_shipped_mlflow_server_listens_beyond_loopback_without_authentication():
    """Anyone who can reach an unauthenticated MLflow can write its registry (issue 28): every shipped MLflow
    binds to loopback (MLflow's default) or puts MLflow's basic-auth app in front."""
    commands = mlflow_server_commands()
    assert any(where.startswith("deploy") for where, _ in commands) and any(w == "README.md" for w, _ in commands)
    exposed = []
    for where, command in commands:
        host = re.search(r"(?:--host|-h)[ =](\S+)", command)
        if host and host.group(1) not in LOOPBACK and "--app-name basic-auth" not in command:
            exposed.append(f"{where}: {command}")
    assert exposed == []


def test_the_readme_says_what_each_mlflow_deployment_trusts():
    text = " ".join((REPO / "README.md").read_text().split())
    assert "What each deployment trusts." in text
