"""The drift, maintenance and alert settings: defaults, and errors that name the variable."""

import pytest

from turbomode_pipeline.settings import SettingsError, load_settings


def test_monitoring_defaults():
    settings = load_settings({"TURBOMODE_DATA_DIR": "/srv/turbomode"})
    assert (settings.drift_psi_warn, settings.drift_psi_drift, settings.drift_window_sessions) == (0.1, 0.25, 20)
    assert str(settings.reports_dir) == "/srv/turbomode/reports" and str(settings.alerts_log) == "/srv/turbomode/alerts.log"
    assert settings.alert_webhook is None and settings.ui_base_url == "http://127.0.0.1:3000"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TURBOMODE_DRIFT_PSI_WARN": "0.3"}, "TURBOMODE_DRIFT_PSI_WARN"),  # not below the drift threshold
        ({"TURBOMODE_DRIFT_ONE_SIDED_SHARE": "1.5"}, "TURBOMODE_DRIFT_ONE_SIDED_SHARE"),
        ({"TURBOMODE_SIGNAL_RETENTION_DAYS": "0"}, "TURBOMODE_SIGNAL_RETENTION_DAYS"),
        ({"TURBOMODE_ALERT_WEBHOOK": "hooks.example/alerts"}, "TURBOMODE_ALERT_WEBHOOK"),
        ({"TURBOMODE_ALERT_TIMEOUT_S": "-1"}, "TURBOMODE_ALERT_TIMEOUT_S"),
    ],
)
def test_a_bad_monitoring_setting_names_its_variable(env, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(env)
