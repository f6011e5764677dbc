"""A desk's own universe: sectors are the universe's (issue 19).

Sector partitions are built when the code location loads, from TURBOMODE_UNIVERSE, so these
tests run the pipeline as a deployment does: subprocesses with their own environment, a real
Dagster instance (DAGSTER_HOME), the DuckDB warehouse and an MLflow store.
"""

import os
import re
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
    from turbomode_pipeline.partitions import SECTOR_BY_KEY

    print("sectors:", ",".join(SECTOR_BY_KEY))
    instance = DagsterInstance.get()
    schedule = defs.get_schedule_def("model_training")
    context = build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 11, 29),
                                     repository_def=defs.get_repository_def())  # a partition key is checked
    request = schedule.evaluate_tick(context).run_requests[0]
    print("week requested:", request.partition_key)
    result = defs.get_job_def("model_training_job").execute_in_process(
        run_config={run_config}, partition_key=request.partition_key, instance=instance, raise_on_error=False,
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
    # the deployment's own MLflow store: the copy's records of the shared store's versions do not apply to it
    resources["warehouse"].execute("DROP TABLE model_versions", "DROP TABLE champion_history")
    late = trained_models.sessions[-100]
    resources["warehouse"].update("DELETE FROM training_samples WHERE sector = 'Utilities' AND session < ?", [late])
    env = deployment_env(tmp_path, universe_path)

    run = run_python(SUNDAY_TRAINING.replace("{run_config}", repr(FAST)), env)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert "sectors: energy,utilities\n" in out
    assert "week requested: 2026-11-29\n" in out
    assert "success: True" in out, out + run.stderr
    # fewer than 90 sessions of samples: those through the week's cutoff (2026-11-27) less the label horizon
    assert re.search(r"log: skipped, no new version: Utilities: \d\d sessions of samples are too few for a "
                     r"80-session holdout \(at least 160 are needed\); the other sectors train", out), out
    assert 'skipped_sectors: {"Utilities 2026-11-29": "Utilities: ' in out
    assert 'sectors_trained: ["Energy"]' in out

    status = subprocess.run([str(CONSOLE_SCRIPT), "status"], env=env, capture_output=True, text=True, timeout=180)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "week 2026-11-29 (as of 2026-11-27)" in status.stdout
    assert (
        "6 of 12 models of the universe's 2 sectors have no version (e.g. Utilities/" in status.stdout
    ), status.stdout
    champions = status.stdout.split("champion model versions:")[1].split("\n\n")[0]
    assert "Energy" in champions and "Utilities" in champions and "Financials" not in champions


def test_a_listing_a_delisting_and_a_halt_pass_and_one_bad_session_fails_alone(tmp_path, instance, monkeypatch):
    """22 symbols over March 2024 from the loopback Alpaca server: MSFT lists on the 11th, CVX's
    last session is the 15th, AAPL misses the 13th (a halt), and the 20th lacks 3 symbols. Before,
    the listing failed coverage on 6 sessions and the range wrote nothing."""
    from datetime import date

    from dagster import AssetCheckSeverity, materialize

    from turbomode_pipeline.assets.market_data import daily_bars
    from turbomode_pipeline.calendar import sessions_between
    from turbomode_pipeline.resources.market_data import AlpacaMarketData, SimulatedMarketData
    from turbomode_pipeline.resources.universe import Universe
    from turbomode_pipeline.resources.warehouse import Warehouse
    from turbomode_pipeline_tests.alpaca_emulator import KEY_ID, SECRET, AlpacaEmulator
    from turbomode_pipeline_tests.support import materialized_keys, range_tags, small_universe, table

    universe = pl.read_csv(small_universe(tmp_path, per_sector=2)).with_columns(
        listed_from=pl.when(pl.col("symbol") == "MSFT").then(pl.lit("2024-03-11")),
        listed_until=pl.when(pl.col("symbol") == "CVX").then(pl.lit("2024-03-15")),
    )
    universe.write_csv(tmp_path / "universe.csv")
    assert universe.height == 22 and {"AAPL", "MSFT", "CVX", "XOM"} <= set(universe["symbol"])
    sessions = sessions_between(date(2024, 3, 1), date(2024, 3, 28))
    symbols = load_universe(tmp_path / "universe.csv")
    vendor = SimulatedMarketData(seed=3).daily_bars(sessions, symbols)
    bad_day, dropped = date(2024, 3, 20), ["JPM", "UNH", "XOM"]
    served = vendor.filter(
        ~((pl.col("symbol") == "MSFT") & (pl.col("session") < date(2024, 3, 11)))
        & ~((pl.col("symbol") == "CVX") & (pl.col("session") > date(2024, 3, 15)))
        & ~((pl.col("symbol") == "AAPL") & (pl.col("session") == date(2024, 3, 13)))
        & ~((pl.col("session") == bad_day) & pl.col("symbol").is_in(dropped))
    )
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=2.0)
    resources = {"warehouse": warehouse, "universe": Universe(path=str(tmp_path / "universe.csv"))}
    # the bad day was written once before, from good data: the failed check must keep it
    good = dict(resources, market_data=SimulatedMarketData(seed=3))
    assert materialize([daily_bars], resources=good, instance=instance, partition_key=str(bad_day)).success
    kept = table(warehouse)

    with AlpacaEmulator(served) as emulator:
        source = AlpacaMarketData(api_key=KEY_ID, secret_key=SECRET, data_url=emulator.url, backoff_s=0.01, timeout_s=5.0)
        result = materialize(
            [daily_bars], resources=dict(resources, market_data=source), instance=instance,
            tags=range_tags(str(sessions[0]), str(sessions[-1])), raise_on_error=False,
        )

    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert (
        # 19 sessions x 22 symbols, less MSFT before its listing (6), CVX after its delisting (8) and the halt (1)
        "daily_bars wrote 19 of 20 sessions (403 rows); 1 session(s) not written, the warehouse keeps its previous "
        "data of them: 2024-03-20 (universe_coverage)"
    ) in failure, failure
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["universe_coverage"].description == (
        "universe_coverage failed, 1 violation(s): 2024-03-20: coverage 85.7% of 21 symbols; missing 3: JPM, UNH, XOM"
    )
    halt = checks["listed_symbol_halted"]
    assert not halt.passed and halt.severity == AssetCheckSeverity.WARN
    assert halt.description == (
        "listed_symbol_halted failed, 1 violation(s): AAPL 2024-03-13: no bar for one session while listed "
        "(a halt?); the sessions around it have bars; not counted against coverage"
    )
    stored = table(warehouse)
    written = [s for s in sessions if s != bad_day]
    assert materialized_keys(instance) == {str(s) for s in sessions}  # the bad day's older, good materialisation
    assert sorted(stored["session"].unique().to_list()) == sessions
    assert stored.filter(pl.col("session") == bad_day).equals(kept)  # the last good data of the failing session
    new = stored.filter(pl.col("session") != bad_day).select("session", "symbol")
    assert new.sort("session", "symbol").equals(served.filter(pl.col("session").is_in(written)).select("session", "symbol").sort("session", "symbol"))
    run_partitions = {
        e.dagster_event.event_specific_data.materialization.partition
        for e in instance.all_logs(result.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
    }
    assert run_partitions == {str(s) for s in written}

    # The threshold is a setting: at TURBOMODE_MIN_COVERAGE=0.85 the bad day's 85.7% passes and is written.
    from turbomode_pipeline.settings import get_settings

    monkeypatch.setenv("TURBOMODE_MIN_COVERAGE", "0.85")
    get_settings.cache_clear()
    try:
        with AlpacaEmulator(served) as emulator:
            source = AlpacaMarketData(api_key=KEY_ID, secret_key=SECRET, data_url=emulator.url, backoff_s=0.01, timeout_s=5.0)
            again = materialize(  # the launchpad's default, as a code location loaded with the setting draws it
                [daily_bars], resources=dict(resources, market_data=source), instance=instance,
                partition_key=str(bad_day), raise_on_error=False,
                run_config={"ops": {"daily_bars": {"config": {"min_coverage": get_settings().min_coverage}}}},
            )
    finally:
        get_settings.cache_clear()
    assert again.success
    assert table(warehouse).filter(pl.col("session") == bad_day).height == 21 - 3


def test_research_mode_judges_freshness_and_status_at_the_history_end(trained_models, tmp_path, monkeypatch):
    """A history that ended 30 sessions ago, complete to its end: with TURBOMODE_HISTORY_END the
    freshness checks pass and `turbomode status` exits 0, each saying it judged at that end."""
    from dagster import DagsterInstance, materialize

    from turbomode_pipeline.assets.features import daily_features
    from turbomode_pipeline.assets.market_data import daily_bars
    from turbomode_pipeline.assets.scanner import scanner_signals
    from turbomode_pipeline.automation.market_data import freshness
    from turbomode_pipeline.automation.scanner import scanner_freshness
    from turbomode_pipeline.clock import now
    from turbomode_pipeline.settings import get_settings
    from turbomode_pipeline_tests.support import range_tags

    end = trained_models.sessions[-30]
    recent = trained_models.sessions[-39:-29]  # the last 10 sessions of the history
    assert recent[-1] == end
    env = deployment_env(tmp_path, trained_models.universe_path) | {
        "MLFLOW_TRACKING_URI": trained_models.registry.tracking_uri,
        "TURBOMODE_MLFLOW_ARTIFACTS": trained_models.registry.artifact_root,
    }
    resources = trained_models.resources(tmp_path)
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    tags = range_tags(str(recent[0]), str(end))
    assert materialize([daily_bars, daily_features], resources=resources, instance=instance, tags=tags).success
    assert materialize([scanner_signals], resources=resources, instance=instance, tags=tags).success

    monkeypatch.setenv("TURBOMODE_HISTORY_END", str(end))
    get_settings.cache_clear()
    try:
        bars_ok, bars_message, _ = freshness(instance, resources["warehouse"], now())
        scan_ok, scan_message, _ = scanner_freshness(instance, resources["warehouse"], now())
    finally:
        get_settings.cache_clear()
    note = f"research mode: the history ends on {end} (TURBOMODE_HISTORY_END), judged as of that end, not the wall clock"
    assert bars_ok and bars_message == f"{note}: daily_bars holds the last 10 due sessions, through {end}"
    assert scan_ok and scan_message == f"{note}: scanner_signals holds the newest due session {end}"

    research = subprocess.run(
        [str(CONSOLE_SCRIPT), "status"], env=env | {"TURBOMODE_HISTORY_END": str(end)},
        capture_output=True, text=True, timeout=180,
    )
    assert research.returncode == 0, research.stdout + research.stderr
    assert f"{note}: due sessions, partition ages and active signals are counted at its end" in research.stdout
    assert "OK: every nightly asset holds its recent sessions, every model is trained" in research.stdout
