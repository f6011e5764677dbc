"""The real dagster-daemon and dagster-webserver on a fresh DAGSTER_HOME, driven through GraphQL and Chromium.

One stack serves every test here (starting it costs most of the time). Before the daemon
starts, the instance is put in the state a machine is in after the daemon died: the
warehouse's newest bars are four sessions old, and `market_data_ingestion` has been
running (toggled off and on through GraphQL, as in the UI) since just after the tick of
that fourth-newest session. What is simulated: only that start timestamp is written
back in time. Everything after it is the real daemon, scheduler, sensor and run launcher.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter, materialize

from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.due import INGESTION_TIME, due_sessions
from turbomode_pipeline.definitions import resources as configured_resources
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import load_settings
from turbomode_pipeline_tests.support import range_tags, small_universe
from turbomode_pipeline_tests.servers import (
    REPO,
    REPOSITORY,
    GraphQL,
    backdate_schedule,
    chromium_page,
    dagster_daemon,
    dagster_webserver,
    daily_ticks_between,
    instance_home,
    schedule_state,
    server_env,
    wait_until,
)
from turbomode_pipeline_tests.support import OLD_SYSTEMS_SIX

SENSORS = {"missed_sessions_sensor", "live_trading_sensor"}
MISSED = 3

LAUNCH_BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status runs(limit: 10) { runId status } } } }"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops")
    home = instance_home(root, REPO / "dagster_home" / "dagster.yaml")
    env = server_env(root, home, small_universe(root, per_sector=1))
    settings = load_settings(env)
    recent = due_sessions(datetime.now(UTC), 10)
    kept = recent[:-MISSED]  # what the warehouse held when the daemon died
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        instance = DagsterInstance.get()
        assert materialize([daily_bars], resources=configured_resources(settings), instance=instance,
                           tags=range_tags(kept[0].isoformat(), kept[-1].isoformat())).success

        webserver, url = dagster_webserver(env, root)
        graphql = GraphQL(url)
        died = datetime.combine(kept[-1], INGESTION_TIME, tzinfo=ZoneInfo(settings.timezone)) + timedelta(minutes=1)
        backdate_schedule(instance, graphql, "market_data_ingestion", died)
        older = due_sessions(datetime.now(UTC), 16)[:3]  # outside the sensor's window of 10
        launched = graphql(LAUNCH_BACKFILL, p={
            "assetSelection": [{"path": ["daily_bars"]}], "partitionNames": [d.isoformat() for d in older],
        })["launchPartitionBackfill"]
        daemon = dagster_daemon(env, root)
        try:
            yield {
                "instance": instance, "graphql": graphql, "url": url, "settings": settings,
                "recent": recent, "missed": recent[-MISSED:], "died": died, "older": older,
                "backfill": launched, "daemon": daemon,
            }
        finally:
            daemon.stop()
            webserver.stop()


def test_the_six_schedules_exist_with_their_cron_and_timezone(stack):
    schedules = stack["graphql"](REPOSITORY)["repositoryOrError"]["schedules"]
    found = {s["name"]: (s["cronSchedule"], s["executionTimezone"]) for s in schedules}
    assert {name: found.get(name) for name in OLD_SYSTEMS_SIX} == {name: (cron, "America/Chicago") for name, cron in OLD_SYSTEMS_SIX.items()}
    # Beyond the old system's six: the paper-trading report, after New York's close.
    assert set(found) - set(OLD_SYSTEMS_SIX) == {"paper_trading_report_schedule"}


def test_the_sensors_exist_and_the_catch_up_sensor_runs(stack):
    sensors = {s["name"]: s["sensorState"]["status"] for s in stack["graphql"](REPOSITORY)["repositoryOrError"]["sensors"]}
    assert SENSORS <= set(sensors), sorted(sensors)
    assert sensors["missed_sessions_sensor"] == "RUNNING"


def test_a_backfill_launched_through_graphql_completes_and_its_rows_are_in_the_warehouse(stack):
    assert stack["backfill"]["__typename"] == "LaunchBackfillSuccess", stack["backfill"]
    graphql = stack["graphql"]

    def finished():
        backfill = graphql(BACKFILL, id=stack["backfill"]["backfillId"])["partitionBackfillOrError"]
        return backfill if backfill["status"] not in ("REQUESTED",) else None

    backfill = wait_until(finished, 240, "the backfill to finish", every=2)
    assert backfill["status"] == "COMPLETED_SUCCESS", stack["daemon"].tail()
    assert [run["status"] for run in backfill["runs"]] == ["SUCCESS"]  # one run for the range
    rows = bars(stack).filter(pl.col("session").is_in(stack["older"]))
    assert rows.group_by("session").len().sort("session").rows() == [(day, 11) for day in stack["older"]]


def test_after_downtime_the_daemon_fills_the_missed_sessions_by_itself(stack):
    instance, missed = stack["instance"], {day.isoformat() for day in stack["missed"]}
    wait_until(lambda: missed <= set(instance.get_materialized_partitions(AssetKey("daily_bars"))), 240,
               f"daily_bars for {sorted(missed)}", every=2)
    healing = instance.get_runs(RunsFilter(tags={"dagster/sensor_name": "missed_sessions_sensor"}))
    scheduled = instance.get_runs(RunsFilter(tags={"dagster/schedule_name": "market_data_ingestion"}))
    assert len(healing) == 1  # one run for every gap
    healed = set(healing[0].tags["turbomode/healing"].split(","))
    # On a weekday evening the scheduler's latest missed tick may take the newest session itself.
    assert missed <= healed | {run.tags["dagster/partition"] for run in scheduled}
    for run in [*healing, *scheduled]:
        wait_until(lambda run=run: instance.get_run_by_id(run.run_id).is_finished, 120, f"run {run.run_id}")
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS
    assert bars(stack).filter(pl.col("session").is_in(stack["recent"])).height == 11 * len(stack["recent"])

    sensors = stack["graphql"](REPOSITORY)["repositoryOrError"]["sensors"]
    ticks = next(s["sensorState"]["ticks"] for s in sensors if s["name"] == "missed_sessions_sensor")
    assert [tick["runIds"] for tick in ticks if tick["runIds"]] == [[healing[0].run_id]]


def test_the_missed_ticks_show_in_the_schedule_history(stack):
    graphql, died, zone = stack["graphql"], stack["died"], ZoneInfo(stack["settings"].timezone)
    history = wait_until(lambda: schedule_state(graphql, "market_data_ingestion")["ticks"], 120, "the first tick")
    missed_ticks = daily_ticks_between(died, datetime.now(UTC), INGESTION_TIME, zone)
    recorded = sorted(datetime.fromtimestamp(tick["timestamp"], UTC) for tick in history)
    # Dagster's scheduler evaluates only the latest missed tick of this schedule (dagster #10335);
    # the older missed sessions are the sensor's run above.
    assert recorded == missed_ticks[-1:], (recorded, missed_ticks)
    tick, day = history[0], missed_ticks[-1].astimezone(zone).date()
    if tick["status"] == "SKIPPED":  # a weekend or holiday tick says why, naming the day
        assert str(day) in tick["skipReason"]
    else:
        assert tick["status"] == "SUCCESS" and len(tick["runIds"]) == 1


def bars(stack) -> pl.DataFrame:
    warehouse = Warehouse(path=str(stack["settings"].warehouse_path))
    return warehouse.query("SELECT session, symbol FROM daily_bars")


def test_the_dagster_ui_draws_the_asset_graph(stack):
    from playwright.sync_api import expect

    screenshots = stack["settings"].data_dir / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        page.goto(f"{stack['url']}/asset-groups", wait_until="domcontentloaded")
        page.get_by_role("button", name="Skip").click()  # a fresh instance's "Join the Dagster community" modal
        page.get_by_text("market_data", exact=True).last.wait_for()  # the graph's group nodes are drawn
        page.keyboard.press("Alt+e")  # the graph's "Expand all groups"
        for asset in ("daily_bars", "daily_features", "training_samples", "sector_models"):
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        page.screenshot(path=screenshots / "dagster-asset-graph.png")
    assert (screenshots / "dagster-asset-graph.png").stat().st_size > 10_000


def test_the_daily_bars_page_shows_its_owner_and_its_columns(stack):
    """The asset page a user opens from the graph: the desk as owner and the pandera model's columns
    (`dagster/column_schema`), with their types."""
    from playwright.sync_api import expect

    screenshots = stack["settings"].data_dir / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        page.goto(f"{stack['url']}/assets/daily_bars", wait_until="domcontentloaded")
        skip = page.get_by_role("button", name="Skip")
        if skip.count():
            skip.click()
        expect(page.get_by_text("quant-desk").first).to_be_visible(timeout=60_000)
        for column in ("session", "symbol", "vwap", "trade_count"):
            expect(page.get_by_text(column, exact=True).first).to_be_visible()
        page.screenshot(path=screenshots / "dagster-daily-bars.png", full_page=True)
    assert (screenshots / "dagster-daily-bars.png").stat().st_size > 10_000
