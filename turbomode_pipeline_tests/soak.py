"""A simulated trading week under attack (`make soak`; the suite runs a short version, test_soak.py).

For each session of the week, oldest first: the live paper-trading ticks of every market minute
(or every EVERY_MINUTES-th), then that night's chain (`daily_bars` from the alpaca source, then
`daily_features` and `scanner_signals`), each in a long-lived worker process that takes its
orders on stdin, as the daemon's runs would. Bars come from the loopback Alpaca emulator, orders
go to it through the real alpaca-py SDK, and both workers share one Dagster instance (the shipped
dagster.yaml) and one warehouse file. Three things go wrong on purpose, at seeded random points:

- the tick worker is killed (kill -9) in the middle of a tick, and started again for the next minute;
- the nightly worker is killed mid-chain, and the night is run again, as the catch-up sensor would;
- one night the server trickles its bytes, the request deadline cuts the run with its message,
  and the night is run again once the server recovers.

What must hold: every session of the week has its bars, features and scores; every order the
broker holds is in the ledger exactly once, none is left `submitting`; no process met a lock error.
The suite runs the newest two sessions, ticking every 5th minute; `make soak` runs five sessions,
every minute (TEST_SOAK_SESSIONS, TEST_SOAK_EVERY).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from pathlib import Path

import polars as pl

from turbomode_pipeline_tests.alpaca_emulator import KEY_ID, SECRET

REPO = Path(__file__).resolve().parents[1]
TICK_SYMBOLS = ("AAPL", "AMD", "NVDA")
ANSWER = "soak-answer "
LOCK_WORDS = ("Could not set lock", "lock on file", "database is locked", "Conflicting lock")


@dataclass(frozen=True)
class SoakConfig:
    folder: str
    data_url: str  # the emulator, for bars and for orders
    warehouse: str
    universe: str  # the nightly chain's universe
    tick_universe: str
    registry: dict  # ModelRegistry fields
    request_deadline_s: float = 1.0


def _resources(config: SoakConfig) -> dict:
    from turbomode_pipeline.live.trading import LiveTrading, TradingClock
    from turbomode_pipeline.resources.broker import AlpacaPaperBroker
    from turbomode_pipeline.resources.ledger import Ledger
    from turbomode_pipeline.resources.market_data import AlpacaMarketData, SimulatedMarketData
    from turbomode_pipeline.resources.model_registry import ModelRegistry
    from turbomode_pipeline.resources.reports import ReportStore
    from turbomode_pipeline.resources.universe import Universe
    from turbomode_pipeline.resources.labels import LabelSettings
    from turbomode_pipeline.resources.warehouse import Warehouse
    from turbomode_pipeline.settings import get_settings

    return {
        "nightly": {
            "market_data": AlpacaMarketData(api_key=KEY_ID, secret_key=SECRET, data_url=config.data_url, backoff_s=0.01,
                                            timeout_s=2.0, request_deadline_s=config.request_deadline_s),
            "warehouse": Warehouse(path=config.warehouse, lock_timeout_s=30.0),
            "universe": Universe(path=config.universe),
            "model_registry": ModelRegistry(**config.registry),
            "labels": LabelSettings.from_settings(get_settings()),
            "reports": ReportStore(directory=str(Path(config.warehouse).parent / "reports")),
        },
        "live": {
            "ledger": Ledger(path=str(Path(config.folder) / "trading.sqlite")),
            "broker": AlpacaPaperBroker(api_key=KEY_ID, secret_key=SECRET, base_url=config.data_url, backoff_s=0.01,
                                        timeout_s=30),
            "market_data": SimulatedMarketData(seed=11),
            "universe": Universe(path=config.tick_universe),
            "live_warehouse": Warehouse(path=config.warehouse, lock_timeout_s=0.5),
            "trading_clock": TradingClock(),
            "live_trading": LiveTrading.from_settings(get_settings()),
        },
    }


def _warnings(instance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.level >= 30 and e.user_message]


def _failure(result) -> str | None:
    failures = result.get_step_failure_events()
    if not failures:
        return None
    error = failures[0].step_failure_data.error
    return " <- ".join(e.message.strip() for e in (error, error.cause) if e is not None)


def _say(answer: dict) -> None:
    """One answer to the driver; marked, since libraries print to stdout too."""
    print(ANSWER + json.dumps(answer), flush=True)


def nightly_worker(config_json: str) -> None:
    """Reads a session per line; runs that night's chain; answers a JSON line."""
    from dagster import DagsterInstance, materialize

    from turbomode_pipeline.assets.features import daily_features
    from turbomode_pipeline.assets.market_data import daily_bars
    from turbomode_pipeline.assets.scanner import scanner_signals

    resources = _resources(SoakConfig(**json.loads(config_json)))["nightly"]
    instance = DagsterInstance.get()
    for line in sys.stdin:
        session = line.strip()
        _say({"started": session})
        result = materialize([daily_bars, daily_features, scanner_signals], resources=resources, instance=instance,
                             partition_key=session, raise_on_error=False)
        _say({"session": session, "ok": result.success, "error": _failure(result),
              "warnings": _warnings(instance, result.run_id)})


def tick_worker(config_json: str) -> None:
    """Reads an ISO minute per line; runs that minute's live tick over the due strategies; answers a JSON line."""
    from datetime import datetime

    from dagster import DagsterInstance

    from turbomode_pipeline.live.trading import live_trading_job
    from turbomode_pipeline.settings import DEFAULT_STRATEGIES

    resources = _resources(SoakConfig(**json.loads(config_json)))["live"]
    ledger = resources["ledger"]
    ledger.seed_strategies(str(DEFAULT_STRATEGIES))
    instance = DagsterInstance.get()
    for line in sys.stdin:
        minute = line.strip()
        _say({"started": minute})
        due = ledger.due_strategies(datetime.fromisoformat(minute))
        if not due:
            _say({"minute": minute, "ok": True, "skipped": True, "warnings": []})
            continue
        run_config = {"ops": {"live_trading_tick": {"config": {"tick_time": minute, "strategy_ids": due}}}}
        result = live_trading_job.execute_in_process(run_config=run_config, instance=instance, resources=resources,
                                                     raise_on_error=False)
        _say({"minute": minute, "ok": result.success, "error": _failure(result),
              "warnings": _warnings(instance, result.run_id)})


class Worker:
    """A worker process and the one-line-per-order conversation with it."""

    def __init__(self, kind: str, config: SoakConfig, env: dict):
        code = f"from turbomode_pipeline_tests.soak import {kind}_worker as w; import sys; w(sys.argv[1])"
        self.log_path = Path(config.folder) / f"{kind}-worker-{time.monotonic_ns()}.log"  # Dagster logs to stderr
        with self.log_path.open("w") as stderr:
            self.process = subprocess.Popen([sys.executable, "-c", code, json.dumps(config.__dict__)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)

    def send(self, order: str) -> None:
        self.process.stdin.write(order + "\n")
        self.process.stdin.flush()
        started = json.loads(self._line())
        assert started == {"started": order}, started

    def answer(self) -> dict:
        return json.loads(self._line())

    def _line(self) -> str:
        while line := self.process.stdout.readline():
            if line.startswith(ANSWER):
                return line.removeprefix(ANSWER)
        raise RuntimeError(f"worker died: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


@dataclass
class SoakLog:
    ticks: int = 0
    ticks_skipped: int = 0
    nights: int = 0
    reruns: list[str] = field(default_factory=list)  # what went wrong, and was run again
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def market_minutes(session: date, every: int) -> list[str]:
    from turbomode_pipeline.calendar import session_close, session_open

    opened, closed = session_open(session).astimezone(UTC), session_close(session).astimezone(UTC)
    minutes = int((closed - opened).total_seconds() // 60)
    return [(opened + timedelta(minutes=m)).isoformat() for m in range(1, minutes + 1, every)]


def run_soak(trained_models, emulator, folder: Path, sessions: list[date], every: int = 1, seed: int = 20) -> dict:
    """The week (`sessions`, the newest of `trained_models`' history) replayed as described above; returns the
    printed report. The warehouse starts as trained_models' copy without the week's rows."""
    from turbomode_pipeline.resources.market_data import SimulatedMarketData
    from turbomode_pipeline.resources.universe import Universe

    rng = random.Random(seed)
    home = folder / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with _instance(home):  # created once before the workers, as `dagster dev` would: two processes creating
        pass  # a fresh SQLite instance at once both stamp its schema version (alembic: "more than one head")
    warehouse_path = folder / "warehouse.duckdb"
    warehouse = trained_models.resources(folder)["warehouse"]
    for table in ("daily_bars", "daily_features", "scanner_scores", "signal_history"):
        if warehouse.has_table(table):
            warehouse.update(f"DELETE FROM {table} WHERE session >= ?", [sessions[0]])
    universe = Universe(path=str(trained_models.universe_path)).load()
    emulator.bars = SimulatedMarketData(seed=trained_models.seed, predictability=0.5).daily_bars(sessions, universe)
    tick_universe = folder / "tick_universe.csv"
    universe.filter(pl.col("symbol").is_in(TICK_SYMBOLS)).write_csv(tick_universe)
    config = SoakConfig(str(folder), emulator.url, str(warehouse_path), str(trained_models.universe_path),
                        str(tick_universe), trained_models.registry.model_dump())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "TURBOMODE_", "DAGSTER_"))} | {
        "DAGSTER_HOME": str(home), "TURBOMODE_DATA_DIR": str(folder), "DAGSTER_EVENT_BATCH_SIZE": "500"}

    minutes = {session: market_minutes(session, every) for session in sessions}
    tick_kill = (rng.randrange(len(sessions)), rng.random())  # which session, how far into it
    night_kill, slow_night = rng.sample(range(len(sessions)), 2)
    log = SoakLog()
    ticks, nightly = Worker("tick", config, env), Worker("nightly", config, env)
    started = time.monotonic()
    try:
        for index, session in enumerate(sessions):
            kill_at = int(tick_kill[1] * len(minutes[session])) if index == tick_kill[0] else None
            for number, minute in enumerate(minutes[session]):
                ticks.send(minute)
                if number == kill_at:
                    time.sleep(rng.uniform(0.02, 0.12))  # somewhere inside the tick
                    ticks.kill()
                    log.reruns.append(f"tick worker killed (kill -9) during the tick of {minute}; {_heal(home)}")
                    ticks = Worker("tick", config, env)
                    continue
                _record(log, ticks.answer(), minute)
            emulator.trickle_s = 0.01 if index == slow_night else 0.0
            nightly.send(session.isoformat())
            if index == night_kill:
                time.sleep(rng.uniform(1.0, 4.0))
                nightly.kill()
                log.reruns.append(f"nightly worker killed (kill -9) during the chain of {session}; {_heal(home)}")
                nightly = Worker("nightly", config, env)
                nightly.send(session.isoformat())
            answer = nightly.answer()
            if index == slow_night:
                assert not answer["ok"] and "total deadline" in (answer["error"] or ""), answer
                log.reruns.append(f"slow server on {session}: {answer['error'].split(' <- ')[-1].splitlines()[0]}")
                emulator.trickle_s = 0.0
                nightly.send(session.isoformat())
                answer = nightly.answer()
            _record(log, answer, session.isoformat())
            log.nights += 1
    finally:
        ticks.close()
        nightly.close()
    return _report(log, warehouse, config, emulator, home, sessions, time.monotonic() - started)


@contextmanager
def _instance(home: Path):
    """The workers' instance, opened here as the daemon would (its dagster.yaml reads DAGSTER_HOME)."""
    from dagster import DagsterInstance

    before = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with DagsterInstance.get() as instance:
            yield instance
    finally:
        if before is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = before


def _heal(home: Path) -> str:
    """What the daemon does next: dead_run_sensor fails the run whose worker is gone and frees its pool slot."""
    from dagster import build_sensor_context

    from turbomode_pipeline.automation.run_health import dead_run_sensor

    with _instance(home) as instance:
        return dead_run_sensor(build_sensor_context(instance=instance)).skip_message


def _record(log: SoakLog, answer: dict, what: str) -> None:
    if answer.get("skipped"):
        log.ticks_skipped += 1
    elif "minute" in answer:
        log.ticks += 1
    log.warnings += answer["warnings"]
    if not answer["ok"]:
        log.failures.append(f"{what}: {answer['error']}")


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 1e6, 1)


def _report(log: SoakLog, warehouse, config: SoakConfig, emulator, home: Path, sessions: list[date], seconds: float) -> dict:
    from turbomode_pipeline.resources.ledger import Ledger

    ledger = Ledger(path=str(Path(config.folder) / "trading.sqlite"))
    orders = ledger.query("SELECT client_order_id, status FROM orders WHERE status != 'unsent'")
    per_session = {
        table: dict(warehouse.query(f"SELECT session, count(*) FROM {table} WHERE session >= ? GROUP BY session",
                                    [sessions[0]]).rows())
        for table in ("daily_bars", "daily_features", "scanner_scores")
    }
    from dagster import DagsterRunStatus, RunsFilter

    with _instance(home) as instance:
        started = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
    return {
        "sessions": [s.isoformat() for s in sessions],
        "live ticks run": log.ticks,
        "ticks with no strategy due": log.ticks_skipped,
        "nights run": log.nights,
        "what went wrong and was run again": log.reruns,
        "failed runs (after recovery)": log.failures,
        "runs left STARTED": [run.run_id for run in started],
        "lock errors": [w for w in log.warnings if any(word in w for word in LOCK_WORDS)],
        "rows per session": {t: {str(k): v for k, v in rows.items()} for t, rows in per_session.items()},
        "orders in the ledger": orders.height,
        "orders the broker holds": len(emulator.orders),
        "duplicate client_order_ids": orders.height - orders["client_order_id"].n_unique(),
        "broker orders the ledger lacks": sorted(set(emulator.orders) - set(orders["client_order_id"])),
        "ledger orders left submitting": orders.filter(pl.col("status") == "submitting")["client_order_id"].to_list(),
        "warehouse MB": _size_mb(Path(config.warehouse)),
        "Dagster index database MB": _size_mb(home / "history" / "runs" / "index.db")
        if (home / "history" / "runs" / "index.db").exists() else _size_mb(home / "history"),
        "Dagster instance MB (all storage)": _size_mb(home),
        "wall seconds": round(seconds, 1),
    }


def print_report(report: dict) -> None:
    for name, value in report.items():
        print(f"soak | {name:>36}: {value}")
