"""Real servers for the end-to-end tests: processes on free loopback ports, stopped with their children."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

import requests
from dagster._core.scheduler.instigation import ScheduleInstigatorData

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "turbomode_pipeline.definitions"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable, timeout: float, what: str, every: float = 1.0):
    """`condition()`'s first truthy value, polled until `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")


class Server:
    """A process in its own session, so stopping it stops the processes it spawned (code servers, runs)."""

    def __init__(self, name: str, command: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log = log_dir / f"{name}.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def serving(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def dagster_webserver(env: dict, log_dir: Path) -> tuple[Server, str]:
    port = free_port()
    command = [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    server = Server("dagster-webserver", command, env, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: serving(f"{url}/server_info") or server.process.poll() is not None, 120, "dagster-webserver")
    assert server.process.poll() is None, server.tail()
    return server, url


def dagster_daemon(env: dict, log_dir: Path) -> Server:
    return Server("dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, log_dir)


class GraphQL:
    def __init__(self, base_url: str):
        self.url = f"{base_url}/graphql"

    def __call__(self, query: str, **variables) -> dict:
        response = requests.post(self.url, json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


def _postgres_bin() -> Path:
    """TEST_PG_BIN, else the newest of Debian's installed PostgreSQL servers."""
    if "TEST_PG_BIN" in os.environ:
        return Path(os.environ["TEST_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _postgres_bin()


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free loopback port (run as `postgres` when we are root: it refuses root)."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="turbomode-pg-"))  # not under pytest's root-only tmp
        self.port = free_port()
        self.url = f"postgresql://dagster@127.0.0.1:{self.port}/dagster"
        self.sqlalchemy_url = self.url.replace("postgresql://", "postgresql+psycopg2://")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        data = self.folder / "data"
        self._pg("initdb", "-D", data, "-U", "dagster", "--auth=trust", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        self._pg("pg_ctl", "-D", data, "-l", self.folder / "postgres.log", "-o", options, "-w", "start")
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "dagster", "dagster")

    def _pg(self, tool: str, *args):
        command = [str(PG_BIN / tool), *map(str, args)]
        as_postgres = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
        subprocess.run(command, check=True, capture_output=True, cwd=self.folder, **as_postgres)

    def stop(self):
        self._pg("pg_ctl", "-D", self.folder / "data", "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


REPOSITORY = """{ repositoryOrError(repositorySelector: {repositoryLocationName: "%s", repositoryName: "__repository__"}) {
  ... on Repository {
    schedules { name cronSchedule executionTimezone
      scheduleState { id status ticks(limit: 20) { status timestamp skipReason runIds } } }
    sensors { name sensorState { status ticks(limit: 20) { status timestamp skipReason runIds } } }
  } } }""" % LOCATION
SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
STOP_SCHEDULE = """mutation($id: String!) { stopRunningSchedule(id: $id) { __typename } }"""
START_SCHEDULE = """mutation($s: ScheduleSelector!) { startSchedule(scheduleSelector: $s) {
  __typename ... on ScheduleStateResult { scheduleState { id selectorId status } } } }"""


def schedule_state(graphql: GraphQL, name: str) -> dict:
    schedules = graphql(REPOSITORY)["repositoryOrError"]["schedules"]
    return next(s["scheduleState"] for s in schedules if s["name"] == name)


def backdate_schedule(instance, graphql: GraphQL, name: str, since: datetime):
    """Toggle the schedule off and on as in the UI (which stores its state), then move its start back to `since`."""
    graphql(STOP_SCHEDULE, id=schedule_state(graphql, name)["id"])
    started = graphql(START_SCHEDULE, s={**SELECTOR, "scheduleName": name})["startSchedule"]["scheduleState"]
    state = instance.get_instigator_state(*started["id"].split("::"))
    cron = state.instigator_data.cron_schedule
    instance.update_instigator_state(state.with_data(ScheduleInstigatorData(cron, since.timestamp())))


def instance_home(root: Path, config: Path) -> Path:
    """A fresh DAGSTER_HOME holding a copy of one of the repository's instance configs."""
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(config, home / "dagster.yaml")
    return home


def server_env(root: Path, home: Path, universe: Path, **extra: str) -> dict:
    """The servers' whole environment: nothing leaks in from the test process but PATH."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "DAGSTER_HOME": str(home),
        "TURBOMODE_DATA_DIR": str(root / "data"),
        "TURBOMODE_UNIVERSE": str(universe),
        "TURBOMODE_MARKET_DATA": "simulated",
        "PYTHONWARNINGS": "ignore",
        "DAGSTER_EVENT_BATCH_SIZE": "500",  # as the Makefile and deploy/turbomode.env.example set it
        **extra,
    }


def daily_ticks_between(start: datetime, end: datetime, at: clock_time, zone) -> list[datetime]:
    """The ticks of a daily schedule at `at` (in `zone`) after `start` and not after `end`, in UTC."""
    day, ticks = start.astimezone(zone).date(), []
    while (tick := datetime.combine(day, at, tzinfo=zone)) <= end:
        if tick > start:
            ticks.append(tick.astimezone(UTC))
        day += timedelta(days=1)
    return ticks


CHROMIUM = os.environ.get("TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@contextmanager
def chromium_page(width: int = 1600, height: int = 1000):
    """A page in the system's headless Chromium (Playwright never downloads a browser here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def mlflow_server(backend_store_uri: str, artifacts_destination: Path, log_dir: Path) -> tuple[Server, str]:
    """A tracking server that also serves artifacts (clients write them to `mlflow-artifacts:/...`)."""
    port = free_port()
    command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", backend_store_uri, "--artifacts-destination", str(artifacts_destination)]
    server = Server("mlflow", command, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: serving(f"{url}/health") or server.process.poll() is not None, 180, "mlflow server")
    assert server.process.poll() is None, server.tail()
    return server, url
