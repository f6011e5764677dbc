"""Where alerts go: always a JSON line in alerts.log; an HTTP POST too when a webhook is set.

Delivery never raises: a dead or slow webhook costs at most `retries` x `timeout_s` plus
short pauses, and the outcome is recorded in the log line that follows.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from dagster import ConfigurableResource, get_dagster_logger


class AlertSender(ConfigurableResource):
    log_path: str
    webhook_url: str | None = None
    timeout_s: float = 5.0
    retries: int = 3
    retry_pause_s: float = 0.5
    ui_base_url: str = "http://127.0.0.1:3000"

    def send(self, alert: dict) -> str:
        """Log `alert`, post it if a webhook is set; returns how the post went."""
        self._append(alert)
        if not self.webhook_url:
            return "logged"
        outcome = self._post(alert)
        if outcome != "delivered":
            get_dagster_logger().warning(f"alert not delivered to {self.webhook_url}: {outcome}")
            self._append({"kind": "alert_delivery_failed", "summary": alert.get("summary"), "outcome": outcome})
        return outcome

    def _append(self, record: dict) -> None:
        path = Path(self.log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record, sort_keys=True, default=str) + "\n")

    def _post(self, alert: dict) -> str:
        body = json.dumps(alert, default=str).encode()
        outcome = "not attempted"
        for attempt in range(1, self.retries + 1):
            request = urllib.request.Request(
                self.webhook_url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return "delivered"
                    outcome = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                outcome = f"HTTP {error.code}"
            except (OSError, ValueError) as error:  # refused, timed out, bad URL
                outcome = f"{type(error).__name__}: {error}"
            if attempt < self.retries:
                time.sleep(self.retry_pause_s * attempt)
        return f"gave up after {self.retries} attempts: {outcome}"
