"""Issue 28, findings 2 and 9: a strategy the desk cannot run never gets into the ledger, and the backtest,
replay and strategy arguments refuse what they cannot mean, each in one line naming the field.

Through the CLI's own entry (`cli.main`) in-process, against a real SQLite ledger in a fresh data folder, and the
`halted_strategy_alerts` sensor on a ledger no CLI command has seeded."""

import json
import math
from datetime import UTC, datetime

import polars as pl
import pytest
from dagster import DagsterInstance, build_sensor_context

from turbomode_pipeline import clock
from turbomode_pipeline.automation.alerts import halted_strategy_alerts
from turbomode_pipeline.calendar import last_closed_session, sessions_after
from turbomode_pipeline.core.strategies import MAX_ID_LENGTH
from turbomode_pipeline.resources.alerts import AlertSender
from turbomode_pipeline.resources.broker import client_order_id
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline_tests.test_cli_mistakes import answer, desk  # noqa: F401  (the fixture)

ADD = ["strategies", "add", "s5", "--type", "donchian_channel", "--symbol", "MSFT", "--allocation", "5000"]
REFUSED_ADD = "turbomode strategies add: strategy s5: "
BAD_PARAMS = {
    "zero-timeframe": ('{"timeframe_minutes": 0}', "params.timeframe_minutes must be a whole number from 1 to 1440, got 0"),
    "negative": ('{"timeframe_minutes": -7}', "params.timeframe_minutes must be a whole number from 1 to 1440, got -7"),
    "fraction": ('{"timeframe_minutes": 7.5}', "params.timeframe_minutes must be a whole number from 1 to 1440, got 7.5"),
    "text": ('{"timeframe_minutes": "five"}', 'params.timeframe_minutes must be a whole number from 1 to 1440, got "five"'),
    "boolean": ('{"timeframe_minutes": true}', "params.timeframe_minutes must be a whole number from 1 to 1440, got true"),
    "null": ('{"timeframe_minutes": null}', "params.timeframe_minutes must be a whole number from 1 to 1440, got null"),
    "zero-window": ('{"entry": 0}', "params.entry must be a whole number from 1 to 1000, got 0"),
    "huge-window": ('{"exit": 1000000}', "params.exit must be a whole number from 1 to 1000, got 1000000"),
    "unknown-name": ('{"entr": 20}', "unknown param(s) entr for donchian_channel; its params are entry, exit, "
                                     "timeframe_minutes"),
}


@pytest.mark.parametrize("params, problem", BAD_PARAMS.values(), ids=BAD_PARAMS.keys())
def test_a_param_the_strategy_cannot_run_is_refused_in_one_line_naming_it(params, problem, desk, capsys):  # noqa: F811
    assert answer([*ADD[:-1], "5000", "--params", params], capsys) == (2, [REFUSED_ADD + problem])
    assert "s5" not in Ledger(path=str(desk / "trading.sqlite")).strategies()["id"].to_list()


def test_a_keltner_multiplier_must_be_a_positive_number(desk, capsys):  # noqa: F811
    keltner = ["strategies", "add", "k", "--type", "keltner_channel", "--symbol", "MSFT", "--allocation", "5000"]
    assert answer([*keltner, "--params", '{"multiplier": 0}'], capsys) == (2, [
        "turbomode strategies add: strategy k: params.multiplier must be a number from 0.01 to 100, got 0"])
    assert answer([*keltner, "--params", '{"multiplier": 2.5, "ema": 30}'], capsys)[0] == 0


ALLOCATIONS = {
    "nan": ("nan", "allocation must be a finite number of dollars from 0.01 to 1,000,000,000, got nan"),
    "inf": ("inf", "allocation must be a finite number of dollars from 0.01 to 1,000,000,000, got inf"),
    "absurd": ("1e308", "allocation must be a finite number of dollars from 0.01 to 1,000,000,000, got 1e+308"),
    "negative": ("-5000", "allocation must be a finite number of dollars from 0.01 to 1,000,000,000, got -5000"),
    "zero": ("0", "allocation must be a finite number of dollars from 0.01 to 1,000,000,000, got 0"),
}


@pytest.mark.parametrize("allocation, problem", ALLOCATIONS.values(), ids=ALLOCATIONS.keys())
def test_a_non_finite_or_absurd_allocation_is_refused_in_one_line(allocation, problem, desk, capsys):  # noqa: F811
    assert answer([*ADD[:-1], allocation], capsys) == (2, [REFUSED_ADD + problem])


def test_ids_and_intervals_the_loop_cannot_use_are_refused(desk, capsys):  # noqa: F811
    long_id = "x" * (MAX_ID_LENGTH + 1)
    # the id is the head of every order's client_order_id: the longest allowed id still fits Alpaca's 128 characters
    bar = datetime(2026, 11, 20, 15, 31, tzinfo=UTC)
    assert len(client_order_id("x" * MAX_ID_LENGTH, bar, "sell")) == 128
    rest = ["--type", "donchian_channel", "--symbol", "MSFT", "--allocation", "5000"]
    assert answer(["strategies", "add", long_id, *rest], capsys) == (2, [
        f"turbomode strategies add: strategy id is {MAX_ID_LENGTH + 1} characters; at most {MAX_ID_LENGTH} fit "
        "Alpaca's 128-character client_order_id (the id, the bar's minute and the side)"])
    assert answer(["strategies", "add", "", *rest], capsys) == (2, [
        "turbomode strategies add: strategy id is empty"])
    assert answer(["strategies", "add", "a,b", *rest], capsys) == (2, [
        "turbomode strategies add: strategy id 'a,b' may hold only letters, digits, '.', '_' and '-', starting with a "
        "letter or digit"])
    for interval in ("0", "-60"):
        assert answer([*ADD, "--interval", interval], capsys) == (2, [
            REFUSED_ADD + f"check_interval_s must be a whole number of seconds from 1 to 86400, got {interval}"])


def test_the_ledger_itself_refuses_what_the_cli_refuses(tmp_path):
    """No path into live_strategies but the ledger's own, and it applies the same rules (the YAML seed included)."""
    ledger = Ledger(path=str(tmp_path / "trading.sqlite"))
    with pytest.raises(ValueError, match=r"^strategy s5: allocation must be a finite number .* got nan$"):
        ledger.add_strategy("s5", "donchian_channel", "MSFT", math.nan)
    with pytest.raises(ValueError, match=r"^strategy s5: params.timeframe_minutes must be a whole number"):
        ledger.add_strategy("s5", "donchian_channel", "MSFT", 5000, params={"timeframe_minutes": 0})
    (tmp_path / "bad.yaml").write_text(
        "strategies:\n  - {id: s6, type: keltner_channel, symbol: AAPL, allocation: .inf}\n")
    with pytest.raises(ValueError, match=r"^strategy s6: allocation must be a finite number .* got inf$"):
        ledger.seed_strategies(str(tmp_path / "bad.yaml"))
    assert ledger.strategies().is_empty()


# -- finding 9: the backtest and replay arguments ---------------------------------------------------------------

def _future_session():
    return sessions_after(clock.now().date(), 3)[-1]


def test_backtest_and_replay_refuse_the_future_and_days_outside_the_calendar_in_one_line(desk, capsys):  # noqa: F811
    future = _future_session()
    assert answer(["backtest", "aapl-donchian", "--from", "2026-11-16", "--to", "2099-12-31"], capsys) == (2, [
        "turbomode backtest: --to 2099-12-31 is outside the NYSE calendar this pipeline knows (2000-01-03 to "
        "2040-12-31)"])
    assert answer(["backtest", "aapl-donchian", "--from", "1990-01-02", "--to", "2026-11-20"], capsys) == (2, [
        "turbomode backtest: --from 1990-01-02 is outside the NYSE calendar this pipeline knows (2000-01-03 to "
        "2040-12-31)"])
    assert answer(["backtest", "aapl-donchian", "--from", "2026-11-16", "--to", str(future)], capsys) == (2, [
        f"turbomode backtest: --to {future} is in the future; the newest session a backtest can use is the last one "
        f"that has closed, {last_closed_session(clock.now())}"])
    for day in ("2099-01-05", "1990-01-02"):
        assert answer(["replay", "--session", day], capsys) == (2, [
            f"turbomode replay: --session {day} is outside the NYSE calendar this pipeline knows (2000-01-03 to "
            "2040-12-31)"])


@pytest.mark.parametrize("ids", ["", " ", ",", "aapl-donchian,"])
def test_an_empty_strategy_id_is_refused_not_read_as_all(ids, desk, capsys):  # noqa: F811
    assert answer(["backtest", ids, "--from", "2026-11-16", "--to", "2026-11-20"], capsys) == (2, [
        f"turbomode backtest: strategy ids {ids!r} hold an empty id; give ids joined by commas, or all"])
    assert answer(["replay", "--session", "2026-11-20", "--strategies", ids], capsys) == (2, [
        f"turbomode replay: --strategies {ids!r} hold an empty id; give ids joined by commas"])


def test_halted_strategy_alerts_runs_on_a_ledger_no_command_has_seeded(tmp_path):
    ledger = Ledger(path=str(tmp_path / "trading.sqlite"))  # the daemon's first minute on a fresh data dir
    sender = AlertSender(log_path=str(tmp_path / "alerts.log"))
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance, resources={"ledger": ledger, "alerts": sender})
        result = halted_strategy_alerts(context)
    assert result.skip_reason.skip_message == "no newly halted strategy"
    assert json.loads(result.cursor) == []
    assert ledger.strategies().schema["status"] == pl.String
    assert not (tmp_path / "alerts.log").exists() or (tmp_path / "alerts.log").read_text() == ""
