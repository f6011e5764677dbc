"""A mistake on the `turbomode` command line is answered in one line on stderr with a non-zero exit.

Through the console script's own entry (`cli.main`) in-process, each mistake a new user makes, and
one real subprocess for the whole path (console script, stderr, exit status)."""

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from turbomode_pipeline.cli import main
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.settings import get_settings
from turbomode_pipeline_tests.support import small_universe

CONSOLE_SCRIPT = Path(sys.executable).with_name("turbomode")
ADD = ["strategies", "add", "x", "--type", "keltner_channel", "--allocation", "1000"]
MISTAKES = {
    "saturday-replay": (["replay", "--session", "2026-11-28"],
                        "turbomode replay: 2026-11-28 (Sat) is not an NYSE session; the nearest are 2026-11-27 (Fri) "
                        "and 2026-11-30 (Mon)"),
    "weekend-backtest": (["backtest", "all", "--from", "2026-11-28", "--to", "2026-11-29"],
                         "turbomode backtest: no NYSE session between 2026-11-28 and 2026-11-29: the nearest are "
                         "2026-11-27 (Fri) and 2026-11-30 (Mon)"),
    "symbol-outside-universe": ([*ADD, "--symbol", "ZZZZ"],
                                "turbomode strategies add: strategy x: symbol ZZZZ is not in the universe (44 symbols, "
                                "e.g. AAPL, ABBV, AMT, AMZN, APD)"),
    "unknown-param": ([*ADD, "--symbol", "AAPL", "--params", '{"emma": 20}'],
                      "turbomode strategies add: strategy x: unknown param(s) emma for keltner_channel; its params are "
                      "ema, atr, multiplier, timeframe_minutes"),
    "bad-json": ([*ADD, "--symbol", "AAPL", "--params", "{ema: 20}"],
                 "turbomode strategies add: --params is not valid JSON (Expecting property name enclosed in double "
                 "quotes: line 1 column 2 (char 1)): {ema: 20}"),
    "remove-unknown": (["strategies", "remove", "nope"], "turbomode strategies remove: no strategy with id 'nope'"),
    "no-action": (["strategies"],
                  "turbomode strategies: the following arguments are required: action (turbomode strategies --help)"),
    "misspelt-command": (["stauts"], "turbomode: argument command: invalid choice: 'stauts' (choose from 'demo', "
                         "'strategies', 'status', 'backtest', 'replay', 'walk-forward', 'signals') (turbomode --help)"),
    "no-sessions": (["demo", "--sessions", "0"], "turbomode demo: --sessions must be at least 1, got 0"),
}


@pytest.fixture
def desk(tmp_path, monkeypatch):
    """A fresh data folder and the 44-symbol universe, with settings read afresh."""
    monkeypatch.setenv("TURBOMODE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "ERROR")  # what the CLI sets for itself, undone after the test
    monkeypatch.setenv("TURBOMODE_UNIVERSE", str(small_universe(tmp_path)))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def answer(argv: list[str], capsys) -> tuple[int, list[str]]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own mistakes
        code = exit_.code
    return code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("argv, line", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_cli_mistake_gets_one_line_and_exit_2(argv, line, desk, capsys):
    assert answer(argv, capsys) == (2, [line])


def test_status_without_dagster_home_says_how_to_set_it(desk, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME")
    assert answer(["status"], capsys) == (2, [
        "turbomode status: DAGSTER_HOME is not set: export DAGSTER_HOME=$PWD/dagster_home (the instance's folder; "
        "make demo sets it)"])


def test_strategies_remove_refuses_while_the_strategy_holds_a_position_then_removes_it(desk, capsys):
    ledger = Ledger(path=str(desk / "trading.sqlite"))
    assert main(["strategies", "list"]) == 0
    bought = {"client_order_id": "o1", "strategy_id": "aapl-keltner", "symbol": "AAPL", "side": "buy", "qty": 3.0,
              "price": 190.0, "filled_at": "2026-11-27T15:00:00+00:00"}
    ledger.append("fills", pl.DataFrame([bought]))
    capsys.readouterr()
    assert answer(["strategies", "remove", "aapl-keltner"], capsys) == (2, [
        "turbomode strategies remove: strategy 'aapl-keltner' holds a position (3 AAPL); disable it and let it exit first"])
    ledger.append("fills", pl.DataFrame([{**bought, "client_order_id": "o2", "side": "sell"}]))
    assert main(["strategies", "remove", "aapl-keltner"]) == 0
    assert "aapl-keltner" not in ledger.strategies()["id"].to_list()
    assert not ledger.query("SELECT * FROM fills WHERE strategy_id = 'aapl-keltner'").is_empty()  # history kept


def test_the_console_script_answers_a_mistake_in_one_line(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TURBOMODE_")},
           "TURBOMODE_DATA_DIR": str(tmp_path), "TURBOMODE_UNIVERSE": str(small_universe(tmp_path))}
    argv, line = MISTAKES["symbol-outside-universe"]
    done = subprocess.run([str(CONSOLE_SCRIPT), *argv], capture_output=True, text=True, timeout=120, env=env)
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (2, [line], "")


def test_dagster_asset_materialize_on_a_saturday_names_the_nearest_sessions_in_one_line(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TURBOMODE_")},
           "DAGSTER_HOME": str(home), "TURBOMODE_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [str(CONSOLE_SCRIPT.with_name("dagster")), "asset", "materialize", "-m", "turbomode_pipeline.definitions",
         "--select", "daily_bars", "--partition", "2026-11-28"], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1] == ("dagster: --partition 2026-11-28 (Sat) is not an NYSE session; the nearest "
                                            "are 2026-11-27 (Fri) and 2026-11-30 (Mon)")
    assert "Traceback" not in done.stderr and "BetaWarning" not in done.stderr
