"""Alerts from a really failed run and a really failed check, to alerts.log and a loopback webhook."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    Definitions,
    Failure,
    asset,
    build_run_status_sensor_context,
    build_sensor_context,
    materialize,
)

from turbomode_pipeline.automation.alerts import failed_check_alerts, run_failure_alerts
from turbomode_pipeline.resources.alerts import AlertSender


class Webhook(ThreadingHTTPServer):
    """A loopback webhook answering `status` (or never, when `hang`) and keeping what it received."""

    def __init__(self, status: int = 200, hang: bool = False):
        self.status, self.hang, self.received = status, hang, []
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"

    def stop(self):
        self.release.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append(body)
        if self.server.hang:
            self.server.release.wait(10)
            return
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(request):
    server = Webhook(**getattr(request, "param", {}))
    yield server
    server.stop()


@asset(partitions_def=None, check_specs=[AssetCheckSpec("prices_positive", asset="bars", blocking=True)])
def bars():
    yield AssetCheckResult(check_name="prices_positive", passed=False, severity=AssetCheckSeverity.ERROR,
                           description="AAPL 2025-04-25: close -1.0 is not positive (rule prices_positive)")
    raise Failure(description="bars not written: AAPL 2025-04-25 failed prices_positive")


def fail_a_run(instance):
    result = materialize([bars], instance=instance, raise_on_error=False, tags={"dagster/partition": "2025-04-25"})
    assert not result.success
    return result


def run_failure_alert_for(instance, result, sender: AlertSender):
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_instance=instance, dagster_run=instance.get_run_by_id(result.run_id),
        dagster_event=failure, resources={"alerts": sender},
    ).for_run_failure()
    run_failure_alerts(context)


def log_lines(sender: AlertSender) -> list[dict]:
    with open(sender.log_path) as log:
        return [json.loads(line) for line in log]


def test_a_failed_run_writes_an_alert_line_and_posts_it(instance, tmp_path, webhook):
    sender = AlertSender(log_path=str(tmp_path / "alerts.log"), webhook_url=webhook.url, timeout_s=2)
    result = fail_a_run(instance)
    run_failure_alert_for(instance, result, sender)
    [line] = log_lines(sender)
    assert line["kind"] == "run_failure" and line["partition"] == "2025-04-25"
    assert "prices_positive" in line["error"] and line["ui_link"] == f"http://127.0.0.1:3000/runs/{result.run_id}"
    assert webhook.received == [line]


@pytest.mark.parametrize("webhook", [{"status": 500}, {"hang": True}], indirect=True, ids=["500", "hang"])
def test_a_failing_webhook_is_retried_a_bounded_time_and_never_raises(instance, tmp_path, webhook):
    sender = AlertSender(log_path=str(tmp_path / "alerts.log"), webhook_url=webhook.url, timeout_s=0.5, retries=2,
                         retry_pause_s=0.1)
    result = fail_a_run(instance)
    started = time.monotonic()
    run_failure_alert_for(instance, result, sender)
    assert time.monotonic() - started < 3
    alert, delivery = log_lines(sender)
    assert alert["kind"] == "run_failure" and len(webhook.received) == 2
    assert delivery["kind"] == "alert_delivery_failed" and "gave up after 2 attempts" in delivery["outcome"]
    assert ("HTTP 500" if webhook.status == 500 and not webhook.hang else "timed out") in delivery["outcome"]


def test_a_failed_blocking_check_sends_one_alert(instance, tmp_path):
    sender = AlertSender(log_path=str(tmp_path / "alerts.log"), ui_base_url="http://dagster.example:3000")
    definitions = Definitions(assets=[bars], sensors=[failed_check_alerts], resources={"alerts": sender})

    def tick(cursor=None):
        return failed_check_alerts(build_sensor_context(instance=instance, cursor=cursor, definitions=definitions,
                                                         resources={"alerts": sender}))

    fail_a_run(instance)  # before the sensor ever ran: history, not news
    first_tick = tick()
    assert first_tick.skip_reason is not None
    result = fail_a_run(instance)
    again = tick(first_tick.cursor)
    [line] = log_lines(sender)
    assert line["kind"] == "check_failure" and line["check"] == "prices_positive" and line["asset"] == "bars"
    assert line["partition"] == "2025-04-25" and "AAPL 2025-04-25" in line["error"]
    assert line["ui_link"] == f"http://dagster.example:3000/runs/{result.run_id}"
    later = tick(again.cursor)
    assert later.skip_reason is not None and len(log_lines(sender)) == 1


def test_a_failed_runs_alert_carries_the_innermost_cause_whatever_its_type(resources, instance, tmp_path):
    """A real `daily_bars` run whose warehouse cannot be created (its folder is a file): the step's error is
    Dagster's DagsterExecutionStepExecutionError wrapping an OSError; the alert must carry the OSError's words."""
    from turbomode_pipeline.resources.warehouse import Warehouse
    from turbomode_pipeline_tests.support import materialize_bars

    (tmp_path / "not_a_folder").write_text("a file where the data folder should be")
    broken = Warehouse(path=str(tmp_path / "not_a_folder" / "warehouse.duckdb"), lock_timeout_s=0.5)
    result = materialize_bars({**resources, "warehouse": broken}, instance, partition_key="2024-03-04")
    assert not result.success
    sender = AlertSender(log_path=str(tmp_path / "alerts.log"))
    run_failure_alert_for(instance, result, sender)
    [line] = log_lines(sender)
    assert "DagsterExecutionStepExecutionError" in line["error"]  # the wrapper is still named
    assert "FileExistsError" in line["error"] and "not_a_folder" in line["error"], line["error"]
    assert "not_a_folder" in line["summary"]
