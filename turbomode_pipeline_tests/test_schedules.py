"""All six schedules of the old system, with their times, in the one Definitions object."""

from datetime import datetime
from zoneinfo import ZoneInfo

from dagster import Definitions, build_schedule_context

from turbomode_pipeline.automation.drift import drift_monitoring
from turbomode_pipeline.automation.maintenance import weekly_maintenance
from turbomode_pipeline.definitions import defs
from turbomode_pipeline_tests.support import OLD_SYSTEMS_SIX



def test_all_six_schedules_exist_with_their_times_in_the_configured_timezone():
    schedules = {s.name: (s.cron_schedule, s.execution_timezone) for s in defs.get_repository_def().schedule_defs}
    assert {name: schedules.get(name) for name in OLD_SYSTEMS_SIX} == {name: (cron, "America/Chicago") for name, cron in OLD_SYSTEMS_SIX.items()}
    # The paper-trading report follows the exchange's close, not the desk's timezone.
    assert {name: schedules[name] for name in set(schedules) - set(OLD_SYSTEMS_SIX)} == {
        "paper_trading_report_schedule": ("30 17 * * 1-5", "America/New_York")
    }


def test_drift_monitoring_reports_on_the_week_ending_that_saturday():
    saturday = datetime(2025, 5, 17, 23, 10, tzinfo=ZoneInfo("America/Chicago"))
    context = build_schedule_context(scheduled_execution_time=saturday, repository_def=defs.get_repository_def())
    [request] = drift_monitoring.evaluate_tick(context).run_requests
    assert request.partition_key == "2025-05-11" and request.run_key == "drift_report:2025-05-11"


def test_weekly_maintenance_runs_once_per_saturday():
    saturday = datetime(2025, 5, 17, 23, 0, tzinfo=ZoneInfo("America/Chicago"))
    [request] = weekly_maintenance.evaluate_tick(build_schedule_context(scheduled_execution_time=saturday)).run_requests
    assert request.run_key == "weekly_maintenance:2025-05-17"


def test_the_definitions_load_as_the_ui_and_daemon_load_them():
    Definitions.validate_loadable(defs)  # partition mappings between weekly and session partitions included
