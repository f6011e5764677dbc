"""A desk's own universe: sectors are the universe's (issue 19).

Sector partitions are built when the code location loads, from TURBOMODE_UNIVERSE, so these
tests run the pipeline as a deployment does: subprocesses with their own environment, a real
Dagster instance (DAGSTER_HOME), the DuckDB warehouse and an MLflow store.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl

from turbomode_pipeline.core.universe import load_universe

CONSOLE_SCRIPT = Path(sys.executable).with_name("turbomode")
# Fast models, a short holdout, the rank-IC gate off (4 stocks a sector rarely clear it; test_sector_models tests it).
FAST = {"ops": {"sector_models": {"config": {"fast": True, "holdout_sessions": 80, "champion_min_rank_ic_t": -1e9}}}}


def deployment_env(folder: Path, universe: Path) -> dict[str, str]:
    home = folder / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TURBOMODE_", "APCA_", "MLFLOW_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home),
        "TURBOMODE_DATA_DIR": str(folder),
        "TURBOMODE_UNIVERSE": str(universe),
    }


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=600)


# The weekly schedule's tick, then its run request executed on the deployment's instance and resources.
SUNDAY_TRAINING = """
    import json
    from datetime import datetime
    from dagster import DagsterInstance, build_schedule_context
    from turbomode_pipeline.definitions import defs
    from turbomode_pipeline.partitions import SECTOR_PARTITIONS

    print("partitions:", ",".join(SECTOR_PARTITIONS.get_partition_keys()))
    instance = DagsterInstance.get()
    schedule = defs.get_schedule_def("model_training")
    context = build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 11, 29))
    request = schedule.evaluate_tick(context).run_requests[0]
    print("sectors requested:", request.tags["dagster/asset_partition_range_start"], "..", request.tags["dagster/asset_partition_range_end"])
    result = defs.get_job_def("model_training_job").execute_in_process(
        run_config={run_config}, tags=request.tags, instance=instance, raise_on_error=False,
    )
    print("success:", result.success)
    for event in instance.all_logs(result.run_id):
        if event.user_message and "skipped" in event.user_message:
            print("log:", event.user_message)
    if result.success:
        metadata = result.asset_materializations_for_node("sector_models")[0].metadata
        print("skipped_sectors:", json.dumps(metadata["skipped_sectors"].value))
        print("sectors_trained:", json.dumps(metadata["sectors_trained"].value))
"""


def test_training_status_and_schedule_cover_only_the_universes_sectors_and_a_thin_sector_is_skipped(
    trained_models, tmp_path
):
    """A two-sector universe (Energy, Utilities): the partitions and the Sunday schedule hold
    exactly those two; Utilities' samples cover too few sessions (its stocks listed late), so it
    is skipped with a warning naming it while Energy trains; status counts 12 models, not 66."""
    universe = load_universe(trained_models.universe_path).filter(pl.col("sector").is_in(["Energy", "Utilities"]))
    universe_path = tmp_path / "universe.csv"
    universe.write_csv(universe_path)
    resources = trained_models.resources(tmp_path)  # the warehouse copy lands in TURBOMODE_DATA_DIR
    late = trained_models.sessions[-100]
    resources["warehouse"].update("DELETE FROM training_samples WHERE sector = 'Utilities' AND session < ?", [late])
    env = deployment_env(tmp_path, universe_path)

    run = run_python(SUNDAY_TRAINING.replace("{run_config}", repr(FAST)), env)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert "partitions: energy,utilities\n" in out
    assert "sectors requested: energy .. utilities\n" in out
    assert "success: True" in out, out + run.stderr
    assert (
        "log: skipped, no new version and no champion: Utilities: 90 sessions of samples are too few for a "
        "80-session holdout (at least 160 are needed); the other sectors train"
    ) in out, out
    assert 'skipped_sectors: {"Utilities": "Utilities: 90 sessions' in out
    assert 'sectors_trained: ["Energy"]' in out

    status = subprocess.run([str(CONSOLE_SCRIPT), "status"], env=env, capture_output=True, text=True, timeout=180)
    assert status.returncode == 1, status.stdout + status.stderr
    assert " of 2 sectors" in status.stdout  # the partitions of the universe, not "of 11"
    assert (
        "6 of 12 models of the universe's 2 sectors have no champion (e.g. Utilities/" in status.stdout
    ), status.stdout
    assert "sectors without a champion stacked model (not scanned): Utilities" in status.stdout
    champions = status.stdout.split("champion model versions:")[1].split("\n\n")[0]
    assert "Energy" in champions and "Utilities" in champions and "Financials" not in champions
