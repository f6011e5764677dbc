"""`turbomode status` as an operator runs it: a subprocess on a real instance, warehouse and registry."""

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from dagster import DagsterInstance, materialize

from turbomode_pipeline.assets.features import daily_features
from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.assets.scanner import scanner_signals
from turbomode_pipeline.assets.strategy_backtest import strategy_backtest
from turbomode_pipeline.live.trading import LiveTrading
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.automation.scanner import latest_due_scan
from turbomode_pipeline.status import collect, exit_code, render
from turbomode_pipeline.calendar import sessions_before
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline_tests.support import range_tags

CONSOLE_SCRIPT = Path(sys.executable).with_name("turbomode")


def run_status(command: list[str], home: Path, trained_models) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TURBOMODE_", "APCA_", "MLFLOW_"))},
        "DAGSTER_HOME": str(home),
        "TURBOMODE_DATA_DIR": str(home.parent),
        "TURBOMODE_UNIVERSE": str(trained_models.universe_path),
        "MLFLOW_TRACKING_URI": trained_models.registry.tracking_uri,
        "TURBOMODE_MLFLOW_ARTIFACTS": trained_models.registry.artifact_root,
    }
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


def materialize_range(assets, resources, instance, first, last):
    tags = range_tags(first.isoformat(), last.isoformat())
    assert materialize(assets, resources=resources, instance=instance, tags=tags).success


def test_status_names_a_missing_scan_and_exits_1_then_0_once_scanned(trained_models, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    resources = trained_models.resources(tmp_path)  # the warehouse lands in TURBOMODE_DATA_DIR
    instance = DagsterInstance.from_config(str(home))
    bars_due = trained_models.sessions[-10:]
    materialize_range([daily_bars, daily_features], resources, instance, bars_due[0], bars_due[-1])
    newest_scan = latest_due_scan(datetime.now(UTC))
    scans_due = [*sessions_before(newest_scan, 9), newest_scan]
    materialize_range([scanner_signals], resources, instance, scans_due[0], scans_due[-2])

    stale = run_status([str(CONSOLE_SCRIPT), "status"], home, trained_models)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert f"scanner_signals is missing session(s) {newest_scan}" in stale.stdout
    assert "STALE:" in stale.stdout and "daily_bars is missing" not in stale.stdout
    assert "champion model versions:" in stale.stdout and "stacked_ensemble" in stale.stdout
    assert "market_data_ingestion" in stale.stdout and "overnight_scanner" in stale.stdout

    materialize_range([scanner_signals], resources, instance, newest_scan, newest_scan)
    fresh = run_status([sys.executable, "-m", "turbomode_pipeline", "status"], home, trained_models)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "OK: every nightly asset holds its recent sessions" in fresh.stdout
    assert "active signals (newest scan):" in fresh.stdout and str(newest_scan) in fresh.stdout
    assert "STALE" not in fresh.stdout

    # an asset that failed its last run (here strategy_backtest, given a start that is no date) fails the status,
    # with the reason, whatever the nightly assets say
    failed = materialize(
        [strategy_backtest], instance=instance, raise_on_error=False,
        resources={**resources, "ledger": Ledger(path=str(tmp_path / "trading.sqlite")),
                   "reports": ReportStore(directory=str(tmp_path / "reports")),
                   "live_trading": LiveTrading.from_settings(get_settings())},
        run_config={"ops": {"strategy_backtest": {"config": {"start": "someday", "end": "2026-01-30"}}}},
    )
    assert not failed.success
    # in-process, as `turbomode status` collects it (a third process would cost ~10 s): every asset and job
    report = collect(instance, resources["warehouse"], trained_models.registry, ["weekly_maintenance"],
                     assets=["drift_report", "strategy_backtest"], jobs=["weekly_maintenance_job", "live_trading_job"])
    text = render(report)
    assert exit_code(report) == 1
    assert (f"asset strategy_backtest: last run {failed.run_id[:8]} failed: step strategy_backtest: "
            "strategy_backtest: start and end must be ISO dates") in text
    assert "drift_report" in text and "live_trading_job" in text and "weekly_maintenance_job" in text
    assert "STALE" not in text and "OK:" not in text
