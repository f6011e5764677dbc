"""The code location: every asset, check, job, schedule, sensor and resource of TurboMode."""

from collections.abc import Callable

from dagster import AssetSpec, Definitions, EnvVar, in_process_executor, map_asset_specs

from turbomode_pipeline.assets.features import daily_features, training_samples
from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.assets.models import sector_models
from turbomode_pipeline.automation.features import backtest_data, backtest_data_job
from turbomode_pipeline.automation.market_data import (
    daily_bars_fresh,
    market_data_ingestion,
    market_data_job,
    missed_sessions_sensor,
)
from turbomode_pipeline.automation.models import model_training, model_training_job
from turbomode_pipeline.automation.run_health import dead_run_sensor
from turbomode_pipeline.assets.scanner import scanner_signals, signal_outcomes
from turbomode_pipeline.assets.signal_backtest import signal_backtest
from turbomode_pipeline.automation.scanner import (
    overnight_scanner,
    scanner_automation_sensor,
    scanner_freshness_sensor,
    scanner_job,
    scanner_signals_fresh,
)
from turbomode_pipeline.live.report import paper_trading_report, paper_trading_report_job, paper_trading_report_schedule
from turbomode_pipeline.live.trading import LiveTrading, TradingClock, live_trading_job, live_trading_sensor
from turbomode_pipeline.resources.broker import AlpacaPaperBroker, LocalPaperBroker, PaperBroker
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.assets.drift import drift_report
from turbomode_pipeline.assets.strategy_backtest import strategy_backtest
from turbomode_pipeline.automation.alerts import failed_check_alerts, halted_strategy_alerts, run_failure_alerts
from turbomode_pipeline.automation.drift import drift_monitoring, drift_monitoring_job, drift_retrain_sensor
from turbomode_pipeline.automation.maintenance import weekly_maintenance, weekly_maintenance_job
from turbomode_pipeline.resources.alerts import AlertSender
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.market_data import AlpacaMarketData, MarketDataSource, SimulatedMarketData
from turbomode_pipeline.resources.model_registry import ModelRegistry
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import Settings, get_settings


# Secrets reach resources as EnvVar: Dagster stores the variable's name, never its value, in the
# code location snapshot and in every run's job snapshot (settings have checked that they are set).
API_KEY, SECRET_KEY = EnvVar("APCA_API_KEY_ID"), EnvVar("APCA_API_SECRET_KEY")


def market_data_source(settings: Settings) -> MarketDataSource:
    if settings.market_data == "alpaca":
        return AlpacaMarketData(
            api_key=API_KEY,
            secret_key=SECRET_KEY,
            data_url=settings.apca_api_data_url,
            feed=settings.alpaca_data_feed,
            request_deadline_s=settings.alpaca_request_deadline_s,
            run_deadline_s=settings.alpaca_run_deadline_s,
        )
    return SimulatedMarketData(seed=settings.sim_seed, predictability=settings.sim_predictability)


def paper_broker(settings: Settings) -> PaperBroker:
    if settings.broker == "alpaca":
        return AlpacaPaperBroker(
            api_key=API_KEY,
            secret_key=SECRET_KEY,
            base_url=settings.apca_api_base_url,
            allow_live_trading=settings.allow_live_trading,
        )
    return LocalPaperBroker(
        ledger_path=str(settings.ledger_path),
        starting_cash=settings.paper_starting_cash,
        slippage_bps=settings.slippage_bps,
        commission_per_share=settings.commission_per_share,
    )


def live_resources(settings: Settings) -> dict:
    """The live loop's doors: its own ledger, the broker, the clock, and a warehouse reader that gives up fast."""
    return {
        "ledger": Ledger(path=str(settings.ledger_path)),
        "broker": paper_broker(settings),
        "trading_clock": TradingClock(),
        "live_trading": LiveTrading.from_settings(settings),
        "live_warehouse": Warehouse(path=str(settings.warehouse_path), lock_timeout_s=settings.live_signals_timeout_s),
    }


def resources(settings: Settings) -> dict:
    return {
        "market_data": market_data_source(settings),
        "warehouse": Warehouse(path=str(settings.warehouse_path)),
        "universe": Universe(path=str(settings.universe_path)),
        "labels": LabelSettings.from_settings(settings),
        "model_registry": ModelRegistry(
            tracking_uri=settings.mlflow_tracking_uri, artifact_root=str(settings.mlflow_artifact_root)
        ),
        **live_resources(settings),
        "reports": ReportStore(directory=str(settings.reports_dir)),
        "alerts": AlertSender(
            log_path=str(settings.alerts_log),
            webhook_url=EnvVar("TURBOMODE_ALERT_WEBHOOK") if settings.alert_webhook else None,  # a secret, too
            timeout_s=settings.alert_timeout_s,
            retries=settings.alert_retries, ui_base_url=settings.ui_base_url,
        ),
    }


def owned_by(owner: str) -> Callable[[AssetSpec], AssetSpec]:
    """Every asset's owner (TURBOMODE_ASSET_OWNER), shown and filterable in the UI."""
    return lambda spec: spec.replace_attributes(owners=[owner])


settings = get_settings()  # the settings this code location is drawn from (read once, see settings.py)
defs = Definitions(
    assets=map_asset_specs(owned_by(settings.asset_owner), [
        daily_bars, daily_features, training_samples, sector_models, scanner_signals, signal_outcomes, signal_backtest,
        drift_report, paper_trading_report, strategy_backtest,
    ]),
    asset_checks=[daily_bars_fresh, scanner_signals_fresh],
    jobs=[
        market_data_job, backtest_data_job, model_training_job, scanner_job, drift_monitoring_job,
        weekly_maintenance_job, live_trading_job, paper_trading_report_job,
    ],
    schedules=[
        market_data_ingestion, backtest_data, model_training, overnight_scanner, drift_monitoring, weekly_maintenance,
        paper_trading_report_schedule,
    ],
    sensors=[
        missed_sessions_sensor, scanner_freshness_sensor, scanner_automation_sensor, drift_retrain_sensor,
        run_failure_alerts, failed_check_alerts, halted_strategy_alerts, live_trading_sensor, dead_run_sensor,
    ],
    resources=resources(settings),
    # The pipeline's steps are a chain, each vectorised over every symbol and session: one
    # process per run saves re-importing the stack for every step.
    executor=in_process_executor,
)
