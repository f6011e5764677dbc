from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from turbomode_pipeline.settings import DEFAULT_UNIVERSE, SettingsError, load_settings


def test_defaults_need_no_environment():
    settings = load_settings({})
    assert settings.market_data == "simulated"
    assert settings.timezone == "America/Chicago"
    assert settings.history_start == date(2015, 1, 2)
    assert settings.universe_path == DEFAULT_UNIVERSE
    assert settings.alpaca_data_feed == "iex"
    assert settings.warehouse_path == Path("./data").resolve() / "warehouse.duckdb"
    assert (settings.backtest_quantiles, settings.backtest_cost_bps) == (5, 5.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TURBOMODE_MARKET_DATA", "bloomberg"),
        ("TURBOMODE_TIMEZONE", "Mars/Olympus"),
        ("TURBOMODE_HISTORY_START", "last tuesday"),
        ("TURBOMODE_SIM_SEED", "seven"),
        ("TURBOMODE_SIM_PREDICTABILITY", "2"),
        ("TURBOMODE_UNIVERSE", "/no/such/universe.csv"),
        ("TURBOMODE_CATCHUP_SESSIONS", "0"),
        ("ALPACA_DATA_FEED", "otc"),
        ("APCA_API_DATA_URL", "127.0.0.1:8080"),
        ("TURBOMODE_BACKTEST_QUANTILES", "1"),
        ("TURBOMODE_BACKTEST_COST_BPS", "-1"),
    ],
)
def test_an_invalid_value_fails_at_load_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TURBOMODE_PAPER_CASH", "inf", "TURBOMODE_PAPER_CASH='inf' is invalid: expected dollars > 0 (not a finite number)"),
        ("TURBOMODE_PAPER_CASH", "NaN", "TURBOMODE_PAPER_CASH='NaN' is invalid: expected dollars > 0 (not a finite number)"),
        ("TURBOMODE_SLIPPAGE_BPS", "1e999", "TURBOMODE_SLIPPAGE_BPS='1e999' is invalid: expected basis points >= 0 "
         "(not a finite number)"),
        ("TURBOMODE_RISK_DAILY_LOSS_LIMIT", "-inf", "TURBOMODE_RISK_DAILY_LOSS_LIMIT='-inf' is invalid: expected "
         "dollars > 0 (not a finite number)"),
        ("TURBOMODE_ALERT_TIMEOUT_S", "inf", "TURBOMODE_ALERT_TIMEOUT_S='inf' is invalid: expected a number of "
         "seconds > 0 (not a finite number)"),
        ("TURBOMODE_SIGNAL_THRESHOLD", "nan", "TURBOMODE_SIGNAL_THRESHOLD='nan' is invalid: expected a probability in "
         "(0.5, 1] (not a finite number)"),
        ("TURBOMODE_HISTORY_START", "2030-01-02", "TURBOMODE_HISTORY_START='2030-01-02' is invalid: expected a date "
         "YYYY-MM-DD (outside [2000-01-03, {today}]: the exchange calendar starts on 2000-01-03 and a history cannot "
         "start in the future)"),
        ("TURBOMODE_HISTORY_START", "1900-01-02", "TURBOMODE_HISTORY_START='1900-01-02' is invalid: expected a date "
         "YYYY-MM-DD (outside [2000-01-03, {today}]: the exchange calendar starts on 2000-01-03 and a history cannot "
         "start in the future)"),
    ],
)
def test_infinities_and_out_of_range_numbers_are_refused_naming_the_variable(name, value, message):
    with pytest.raises(SettingsError) as refused:
        load_settings({name: value})
    assert str(refused.value) == message.format(today=datetime.now(UTC).date())


def test_alpaca_without_keys_is_refused():
    with pytest.raises(SettingsError, match="APCA_API_KEY_ID"):
        load_settings({"TURBOMODE_MARKET_DATA": "alpaca"})
    settings = load_settings({"TURBOMODE_MARKET_DATA": "alpaca", "APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s"})
    assert settings.market_data == "alpaca"


@pytest.mark.parametrize("uri", ["s3://bucket/turbomode", "mlflow-artifacts:/turbomode", "file:///srv/mlartifacts"])
def test_an_artifact_uri_for_a_shared_tracking_server_is_kept_as_given(uri):
    assert load_settings({"TURBOMODE_MLFLOW_ARTIFACTS": uri}).mlflow_artifact_root == uri


def test_a_local_artifact_folder_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings({"TURBOMODE_MLFLOW_ARTIFACTS": "models"}).mlflow_artifact_root == str(tmp_path / "models")


def test_the_alpaca_deadlines_are_settings_that_reach_the_source():
    from turbomode_pipeline.definitions import market_data_source

    env = {"TURBOMODE_MARKET_DATA": "alpaca", "APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s",
           "TURBOMODE_ALPACA_REQUEST_DEADLINE_S": "45", "TURBOMODE_ALPACA_RUN_DEADLINE_S": "600"}
    source = market_data_source(load_settings(env))
    assert (source.request_deadline_s, source.run_deadline_s) == (45.0, 600.0)
    with pytest.raises(SettingsError, match=r"^TURBOMODE_ALPACA_RUN_DEADLINE_S='inf' is invalid: expected seconds > 0"):
        load_settings(env | {"TURBOMODE_ALPACA_RUN_DEADLINE_S": "inf"})


def test_the_alert_settings_reach_the_alert_sender(monkeypatch):
    from turbomode_pipeline.definitions import resources

    monkeypatch.setenv("TURBOMODE_ALERT_WEBHOOK", "http://127.0.0.1:9/hook")
    settings = load_settings({"TURBOMODE_ALERT_TIMEOUT_S": "2.5", "TURBOMODE_ALERT_RETRIES": "4",
                              "TURBOMODE_ALERT_WEBHOOK": "http://127.0.0.1:9/hook"})
    alerts = resources(settings)["alerts"]
    assert (alerts.timeout_s, alerts.retries) == (2.5, 4)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("TURBOMODE_KILLSWITCH", "TURBOMODE_KILL_SWITCH"),
        ("TURBOMODE_PAPER_STARTING_CASH", "TURBOMODE_PAPER_CASH"),
        ("TURBOMODE_DATADIR", "TURBOMODE_DATA_DIR"),
    ],
)
def test_an_unknown_turbomode_variable_fails_at_load_naming_the_closest_known_one(typo, meant):
    """A kill switch spelled wrong must not stay off in silence."""
    with pytest.raises(SettingsError, match=f"{typo} is not a setting.*did you mean {meant}"):
        load_settings({typo: "1"})


def test_variables_read_outside_settings_are_allowed_and_nothing_else_is():
    from turbomode_pipeline.settings import known_variables

    known = known_variables()
    assert {"TURBOMODE_KILL_SWITCH", "TURBOMODE_PAPER_CASH", "TURBOMODE_DATA_DIR"} <= known
    assert {"TURBOMODE_DAGSTER_PG_URL", "TURBOMODE_BENCH_PER_SECTOR", "TURBOMODE_BENCH_SESSIONS"} <= known
    load_settings({"TURBOMODE_DAGSTER_PG_URL": "postgresql+psycopg2://x@127.0.0.1/d", "TURBOMODE_BENCH_SESSIONS": "9"})


REPO = Path(__file__).resolve().parents[1]


def test_every_turbomode_name_the_docs_and_deploy_files_mention_is_a_known_setting():
    """The README, the deploy files, the instance configs, the Makefile and CI: a name there that the code
    does not read is a setting someone will set and nothing will read. `TURBOMODE_RISK_*` names a family."""
    import re

    from turbomode_pipeline.settings import known_variables

    known = known_variables()
    files = [REPO / "README.md", REPO / "Makefile", REPO / ".ci" / "run", *sorted((REPO / "deploy").rglob("*")),
             *sorted(REPO.glob("dagster_home*/dagster.yaml")), *sorted((REPO / "scripts").rglob("*")),
             *sorted((REPO / "docs").rglob("*.md"))]
    unknown = []
    for path in files:
        if not path.is_file():
            continue
        for name in set(re.findall(r"TURBOMODE_[A-Z0-9_]*[A-Z0-9]\b(?!_?\*)", path.read_text())):
            if name not in known:
                unknown.append(f"{path.relative_to(REPO)}: {name}")
        for family in set(re.findall(r"(TURBOMODE_[A-Z0-9_]+?)_?\*", path.read_text())):
            if not any(k.startswith(family) for k in known):
                unknown.append(f"{path.relative_to(REPO)}: {family}*")
    assert unknown == []
