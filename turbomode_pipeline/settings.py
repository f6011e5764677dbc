"""Every knob of the pipeline, read once from the environment.

An invalid value fails at load with a message that names the variable, so a typo in a
unit file or a shell never turns into a silent default.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from turbomode_pipeline import clock
from turbomode_pipeline.core.trading_url import UnsafeTradingUrl, check_trading_url
from turbomode_pipeline.core.universe import UniverseError, load_universe

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_UNIVERSE = PACKAGE_DIR / "universe.csv"
DEFAULT_STRATEGIES = PACKAGE_DIR / "live" / "strategies.yaml"


class SettingsError(ValueError):
    """A environment variable holds a value the pipeline cannot use."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    market_data: str
    timezone: str
    history_start: date
    sim_seed: int
    sim_predictability: float
    universe_path: Path
    catchup_sessions: int
    apca_api_key_id: str | None
    apca_api_secret_key: str | None
    apca_api_data_url: str | None
    apca_api_base_url: str | None
    alpaca_data_feed: str
    label_k_up: float
    label_k_dn: float
    label_horizon: int
    label_target: str  # what the models learn: "relative" (beats its sector's median) or "absolute" (the trade went up)
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    # live paper trading (issue 7)
    broker: str
    allow_live_trading: bool
    kill_switch: bool
    strategies_file: Path
    paper_starting_cash: float
    slippage_bps: float
    commission_per_share: float
    risk_max_allocation_share: float
    risk_max_equity_share: float
    risk_max_open_positions: int
    risk_daily_loss_limit: float
    risk_min_price: float
    allow_short: bool
    live_signals_timeout_s: float
    # scanner (issue 5)
    signal_threshold: float
    champion_min_rank_ic_t: float = 2.0  # a champion's holdout rank IC must exceed this many standard errors
    # drift, maintenance, alerts (issue 6)
    drift_psi_warn: float = 0.1
    drift_psi_drift: float = 0.25
    drift_window_sessions: int = 20
    drift_one_sided_share: float = 0.85
    signal_retention_days: int = 730
    # bars (issue 19): the share of the symbols listed in a session its bars must cover
    min_coverage: float = 0.98
    # research mode (issue 19): the last session of a history that ends in the past; freshness
    # and status judge against it, not the wall clock. None: the history runs to today.
    history_end: date | None = None
    live_run_retention_days: int = 7
    model_archive_weeks: int = 8
    alert_webhook: str | None = None
    alert_timeout_s: float = 5.0
    alert_retries: int = 3
    ui_base_url: str = "http://127.0.0.1:3000"
    asset_owner: str = "team:quant-desk"  # every asset's owner in the Dagster UI: an email or team:<name>
    # total deadlines of the Alpaca market data source (issue 13): per request, and per run of the source
    alpaca_request_deadline_s: float = 120.0
    alpaca_run_deadline_s: float = 1800.0
    # the scanner's signal backtest (issue 14): score quantiles of the long-short book, costs per side
    backtest_quantiles: int = 5
    backtest_cost_bps: float = 5.0
    # training (issue 16): sector steps at a time on one machine (0: one per core), or the address of
    # a dask scheduler (tcp://host:8786) whose workers run them instead
    training_processes: int = 0
    dask_scheduler: str | None = None

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "trading.sqlite"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def alerts_log(self) -> Path:
        return self.data_dir / "alerts.log"


def _text(name: str, env: Mapping[str, str], default: str | None) -> str | None:
    value = env.get(name, "").strip()
    return value or default


def _parsed(name: str, env: Mapping[str, str], default, parse: Callable, expected: str):
    raw = _text(name, env, None)
    if raw is None:
        return default
    try:
        return parse(raw)
    except (ValueError, TypeError) as error:
        raise SettingsError(f"{name}={raw!r} is invalid: expected {expected} ({error})") from None


def _choice(name: str, env: Mapping[str, str], default: str, choices: tuple[str, ...]) -> str:
    value = _text(name, env, default).lower()
    if value not in choices:
        raise SettingsError(f"{name}={value!r} is invalid: expected one of {', '.join(choices)}")
    return value


def _timezone(name: str, env: Mapping[str, str], default: str) -> str:
    value = _text(name, env, default)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{name}={value!r} is invalid: expected an IANA timezone such as America/Chicago") from None
    return value


EARLIEST_HISTORY = date(2000, 1, 3)  # the first session of the exchange calendar (calendar.xnys)


def _number(raw: str) -> float:
    """A finite float: "inf", "nan" and "1e999" are refused however the range check below would read them."""
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _history_start(raw: str) -> date:
    value = date.fromisoformat(raw)
    today = clock.now().date()
    if not EARLIEST_HISTORY <= value <= today:
        raise ValueError(f"outside [{EARLIEST_HISTORY}, {today}]: the exchange calendar starts on {EARLIEST_HISTORY} "
                         "and a history cannot start in the future")
    return value


def _history_end(raw: str) -> date:
    value = date.fromisoformat(raw)
    if value > clock.now().date():
        raise ValueError(f"after today ({clock.now().date()}): research mode is for a history that ended")
    return value


def _fraction(raw: str) -> float:
    value = _number(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("outside [0, 1]")
    return value


def _positive_float(raw: str) -> float:
    value = _number(raw)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be at least 0")
    return value


def _quantiles(raw: str) -> int:
    value = int(raw)
    if value < 2:
        raise ValueError("must be at least 2: a long and a short quantile")
    return value


def _owner(raw: str) -> str:
    if not (raw.startswith("team:") and len(raw) > 5 or "@" in raw.strip("@")):
        raise ValueError("Dagster takes an email address or team:<name>")
    return raw


def _flag(raw: str) -> bool:
    value = raw.lower()
    if value not in ("0", "1", "true", "false", "yes", "no"):
        raise ValueError("not a flag")
    return value in ("1", "true", "yes")


def _non_negative_float(raw: str) -> float:
    value = _number(raw)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _threshold(raw: str) -> float:
    value = _number(raw)
    if not 0.5 < value <= 1.0:
        raise ValueError("outside (0.5, 1]: at 0.5 or below a symbol would be both a BUY and a SELL")
    return value


def _existing_file(raw: str) -> Path:
    path = Path(raw).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"no file at {path}")
    return path


def is_uri(location: str) -> bool:
    """`s3://bucket/x`, `mlflow-artifacts:/x`, `file:///x`: not a local path."""
    return re.match(r"^[a-z][a-z0-9+.-]+:/", location) is not None


def _artifact_location(raw: str) -> str:
    """A URI (s3://..., mlflow-artifacts:/... for a shared tracking server) as given; a local path made absolute."""
    if is_uri(raw):
        return raw
    return str(Path(raw).expanduser().resolve())


PREFIX = "TURBOMODE_"
# TURBOMODE_* variables something other than load_settings reads: they are not refused.
READ_ELSEWHERE = {
    "TURBOMODE_DAGSTER_PG_URL": "the PostgreSQL instance's dagster.yaml (dagster_home_postgres, dagster_home_distributed)",
    "TURBOMODE_BENCH_PER_SECTOR": "make bench (turbomode_pipeline_tests/bench.py)",
    "TURBOMODE_BENCH_SESSIONS": "make bench (turbomode_pipeline_tests/bench.py)",
}


class _Reads(Mapping):
    """The environment, remembering every name load_settings looks up: the known names are the ones it reads."""

    def __init__(self, env: Mapping[str, str]):
        self.env, self.names = env, set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        return self.env[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


@cache
def known_variables() -> frozenset[str]:
    """Every TURBOMODE_* name the pipeline reads: those load_settings reads, and READ_ELSEWHERE."""
    reads = _Reads({})
    _load(reads)
    return frozenset(name for name in reads.names if name.startswith(PREFIX)) | frozenset(READ_ELSEWHERE)


def _refuse_unknown(env: Mapping[str, str]) -> None:
    known = known_variables()
    for name in sorted(name for name in env if name.startswith(PREFIX) and name not in known):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; the settings are listed in the README's Configuration"
        raise SettingsError(f"{name} is not a setting: nothing reads it, so its value would be ignored{hint}")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `env` (default: the process environment). A TURBOMODE_* name the pipeline does not read
    (a typo such as TURBOMODE_KILLSWITCH) is refused, naming the closest known one."""
    env = os.environ if env is None else env
    _refuse_unknown(env)
    return _load(env)


def _load(env: Mapping[str, str]) -> Settings:
    data_dir = Path(_text("TURBOMODE_DATA_DIR", env, "./data")).expanduser().resolve()
    settings = Settings(
        data_dir=data_dir,
        market_data=_choice("TURBOMODE_MARKET_DATA", env, "simulated", ("simulated", "alpaca")),
        timezone=_timezone("TURBOMODE_TIMEZONE", env, "America/Chicago"),
        history_start=_parsed("TURBOMODE_HISTORY_START", env, date(2015, 1, 2), _history_start, "a date YYYY-MM-DD"),
        sim_seed=_parsed("TURBOMODE_SIM_SEED", env, 7, int, "an integer"),
        sim_predictability=_parsed("TURBOMODE_SIM_PREDICTABILITY", env, 0.5, _fraction, "a number in [0, 1]"),
        universe_path=_parsed("TURBOMODE_UNIVERSE", env, DEFAULT_UNIVERSE, _existing_file, "a path to a universe CSV"),
        catchup_sessions=_parsed("TURBOMODE_CATCHUP_SESSIONS", env, 10, _positive_int, "a whole number >= 1"),
        apca_api_key_id=_text("APCA_API_KEY_ID", env, None),
        apca_api_secret_key=_text("APCA_API_SECRET_KEY", env, None),
        apca_api_data_url=_text("APCA_API_DATA_URL", env, None),
        apca_api_base_url=_text("APCA_API_BASE_URL", env, None),
        alpaca_data_feed=_choice("ALPACA_DATA_FEED", env, "iex", ("iex", "sip")),
        label_k_up=_parsed("TURBOMODE_LABEL_K_UP", env, 2.0, _positive_float, "a number > 0 (ATR multiples)"),
        label_k_dn=_parsed("TURBOMODE_LABEL_K_DN", env, 2.0, _positive_float, "a number > 0 (ATR multiples)"),
        label_horizon=_parsed("TURBOMODE_LABEL_HORIZON", env, 10, _positive_int, "a whole number of sessions >= 1"),
        label_target=_choice("TURBOMODE_LABEL_TARGET", env, "relative", ("relative", "absolute")),
        mlflow_tracking_uri=_text("MLFLOW_TRACKING_URI", env, f"sqlite:///{data_dir / 'mlflow.db'}"),
        mlflow_artifact_root=_artifact_location(_text("TURBOMODE_MLFLOW_ARTIFACTS", env, str(data_dir / "mlartifacts"))),
        broker=_choice("TURBOMODE_BROKER", env, "local", ("local", "alpaca")),
        allow_live_trading=_parsed("TURBOMODE_ALLOW_LIVE_TRADING", env, False, _flag, "1 or 0"),
        kill_switch=_parsed("TURBOMODE_KILL_SWITCH", env, False, _flag, "1 or 0"),
        strategies_file=_parsed("TURBOMODE_STRATEGIES_FILE", env, DEFAULT_STRATEGIES, _existing_file, "a path to a strategies YAML"),
        paper_starting_cash=_parsed("TURBOMODE_PAPER_CASH", env, 100_000.0, _positive_float, "dollars > 0"),
        slippage_bps=_parsed("TURBOMODE_SLIPPAGE_BPS", env, 5.0, _non_negative_float, "basis points >= 0"),
        commission_per_share=_parsed("TURBOMODE_COMMISSION_PER_SHARE", env, 0.0, _non_negative_float, "dollars >= 0"),
        risk_max_allocation_share=_parsed("TURBOMODE_RISK_MAX_ALLOCATION_SHARE", env, 1.0, _fraction, "a number in [0, 1]"),
        risk_max_equity_share=_parsed("TURBOMODE_RISK_MAX_EQUITY_SHARE", env, 0.10, _fraction, "a number in [0, 1]"),
        risk_max_open_positions=_parsed("TURBOMODE_RISK_MAX_OPEN_POSITIONS", env, 10, _positive_int, "a whole number >= 1"),
        risk_daily_loss_limit=_parsed("TURBOMODE_RISK_DAILY_LOSS_LIMIT", env, 500.0, _positive_float, "dollars > 0"),
        risk_min_price=_parsed("TURBOMODE_RISK_MIN_PRICE", env, 5.0, _non_negative_float, "dollars >= 0"),
        allow_short=_parsed("TURBOMODE_ALLOW_SHORT", env, False, _flag, "1 or 0"),
        live_signals_timeout_s=_parsed("TURBOMODE_LIVE_SIGNALS_TIMEOUT_S", env, 1.0, _positive_float, "seconds > 0"),
        signal_threshold=_parsed("TURBOMODE_SIGNAL_THRESHOLD", env, 0.60, _threshold, "a probability in (0.5, 1]"),
        champion_min_rank_ic_t=_parsed(
            "TURBOMODE_CHAMPION_MIN_RANK_IC_T", env, 2.0, _non_negative_float, "a number >= 0 (standard errors)"
        ),
        drift_psi_warn=_parsed("TURBOMODE_DRIFT_PSI_WARN", env, 0.1, _positive_float, "a number > 0"),
        drift_psi_drift=_parsed("TURBOMODE_DRIFT_PSI_DRIFT", env, 0.25, _positive_float, "a number > 0"),
        drift_window_sessions=_parsed("TURBOMODE_DRIFT_WINDOW_SESSIONS", env, 20, _positive_int, "a whole number >= 1"),
        drift_one_sided_share=_parsed("TURBOMODE_DRIFT_ONE_SIDED_SHARE", env, 0.85, _fraction, "a number in [0, 1]"),
        signal_retention_days=_parsed("TURBOMODE_SIGNAL_RETENTION_DAYS", env, 730, _positive_int, "a whole number >= 1"),
        min_coverage=_parsed("TURBOMODE_MIN_COVERAGE", env, 0.98, _fraction, "a number in [0, 1]"),
        history_end=_parsed("TURBOMODE_HISTORY_END", env, None, _history_end, "a date YYYY-MM-DD, not in the future"),
        live_run_retention_days=_parsed("TURBOMODE_LIVE_RUN_RETENTION_DAYS", env, 7, _positive_int, "a whole number >= 1"),
        model_archive_weeks=_parsed("TURBOMODE_MODEL_ARCHIVE_WEEKS", env, 8, _positive_int, "a whole number >= 1"),
        alert_webhook=_text("TURBOMODE_ALERT_WEBHOOK", env, None),
        alert_timeout_s=_parsed("TURBOMODE_ALERT_TIMEOUT_S", env, 5.0, _positive_float, "a number of seconds > 0"),
        alert_retries=_parsed("TURBOMODE_ALERT_RETRIES", env, 3, _positive_int, "a whole number >= 1"),
        ui_base_url=_text("TURBOMODE_UI_BASE_URL", env, "http://127.0.0.1:3000").rstrip("/"),
        asset_owner=_parsed("TURBOMODE_ASSET_OWNER", env, "team:quant-desk", _owner, "an email or team:<name>"),
        alpaca_request_deadline_s=_parsed("TURBOMODE_ALPACA_REQUEST_DEADLINE_S", env, 120.0, _positive_float, "seconds > 0"),
        alpaca_run_deadline_s=_parsed("TURBOMODE_ALPACA_RUN_DEADLINE_S", env, 1800.0, _positive_float, "seconds > 0"),
        backtest_quantiles=_parsed("TURBOMODE_BACKTEST_QUANTILES", env, 5, _quantiles, "a whole number >= 2"),
        backtest_cost_bps=_parsed("TURBOMODE_BACKTEST_COST_BPS", env, 5.0, _non_negative_float, "basis points >= 0"),
        training_processes=_parsed("TURBOMODE_TRAINING_PROCESSES", env, 0, _non_negative_int, "a whole number >= 0"),
        dask_scheduler=_text("TURBOMODE_DASK_SCHEDULER", env, None),
    )
    if settings.drift_psi_warn >= settings.drift_psi_drift:
        raise SettingsError(
            f"TURBOMODE_DRIFT_PSI_WARN={settings.drift_psi_warn} is invalid: it must be below "
            f"TURBOMODE_DRIFT_PSI_DRIFT={settings.drift_psi_drift}"
        )
    for name in ("APCA_API_DATA_URL", "APCA_API_BASE_URL", "TURBOMODE_ALERT_WEBHOOK", "TURBOMODE_UI_BASE_URL"):
        url = _text(name, env, None)
        if url is not None and not url.startswith(("http://", "https://")):
            raise SettingsError(f"{name}={url!r} is invalid: expected an http(s) URL such as http://127.0.0.1:8080")
    if settings.market_data == "alpaca" and not (settings.apca_api_key_id and settings.apca_api_secret_key):
        raise SettingsError(
            "TURBOMODE_MARKET_DATA='alpaca' needs APCA_API_KEY_ID and APCA_API_SECRET_KEY to be set"
        )
    if settings.broker == "alpaca" and not (settings.apca_api_key_id and settings.apca_api_secret_key):
        raise SettingsError("TURBOMODE_BROKER='alpaca' needs APCA_API_KEY_ID and APCA_API_SECRET_KEY to be set")
    if settings.apca_api_base_url is not None:  # the live-money guard, at load: not first in a market-hours tick
        try:
            check_trading_url(settings.apca_api_base_url, settings.allow_live_trading)
        except UnsafeTradingUrl as error:
            raise SettingsError(str(error)) from None
    if settings.history_end is not None and settings.history_end < settings.history_start:
        raise SettingsError(
            f"TURBOMODE_HISTORY_END={settings.history_end} is before TURBOMODE_HISTORY_START={settings.history_start}"
        )
    try:  # at load, so `dagster definitions validate` and the daemon refuse a bad universe before any run
        load_universe(settings.universe_path)
    except UniverseError as error:
        raise SettingsError(f"TURBOMODE_UNIVERSE is invalid: {error}") from None
    return settings


@cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()


def dagster_home() -> str | None:
    """Dagster's own instance folder (DAGSTER_HOME), read when asked: the CLI checks it before a run."""
    return os.environ.get("DAGSTER_HOME") or None


def quiet_mlflow() -> None:
    """MLflow's informational logging off (MLflow reads MLFLOW_LOGGING_LEVEL when it is imported)."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
