"""Real servers for the end-to-end tests: processes on free loopback ports, stopped with their children."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

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
