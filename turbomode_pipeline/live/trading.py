"""The live paper-trading loop in Dagster: a 60-second sensor that decides when, a job that acts.

Each tick is one run of `live_trading_job` (run key = the minute, so a minute never runs
twice) over the strategies that are due. The job touches the warehouse only to read the
scanner's active signals, read-only and briefly, so it needs no warehouse pool slot.
"""

from datetime import UTC, datetime

import pandas as pd
from dagster import (
    Config,
    ConfigurableResource,
    DefaultSensorStatus,
    DagsterRunStatus,
    OpExecutionContext,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    in_process_executor,
    job,
    op,
    sensor,
)

from turbomode_pipeline import clock
from turbomode_pipeline.automation.run_health import max_runtime
from turbomode_pipeline.calendar import xnys
from turbomode_pipeline.core.risk import RiskLimits
from turbomode_pipeline.live.tick import run_tick
from turbomode_pipeline.resources.broker import PaperBroker
from turbomode_pipeline.resources.ledger import Ledger
from turbomode_pipeline.resources.market_data import MarketDataSource
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import Settings

STRATEGIES_TAG = "turbomode/strategies"
UNFINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


class TradingClock(ConfigurableResource):
    """What time it is for the live loop: the wall clock, or `fixed_now` (ISO, UTC) when tests set it."""

    fixed_now: str | None = None

    def now(self) -> datetime:
        if self.fixed_now:
            return datetime.fromisoformat(self.fixed_now).astimezone(UTC)
        return clock.now().replace(microsecond=0)


class LiveTrading(ConfigurableResource):
    """The desk's terms for live paper trading: the kill switch, the strategies file, the risk limits
    (TURBOMODE_KILL_SWITCH, TURBOMODE_STRATEGIES_FILE, TURBOMODE_RISK_*, TURBOMODE_ALLOW_SHORT) and the
    paper account the strategy backtest assumes (TURBOMODE_PAPER_CASH, _SLIPPAGE_BPS, _COMMISSION_PER_SHARE)."""

    kill_switch: bool
    strategies_file: str
    max_allocation_share: float
    max_equity_share: float
    max_open_positions: int
    daily_loss_limit: float
    min_price: float
    allow_short: bool
    starting_cash: float
    slippage_bps: float
    commission_per_share: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "LiveTrading":
        return cls(
            kill_switch=settings.kill_switch, strategies_file=str(settings.strategies_file),
            max_allocation_share=settings.risk_max_allocation_share, max_equity_share=settings.risk_max_equity_share,
            max_open_positions=settings.risk_max_open_positions, daily_loss_limit=settings.risk_daily_loss_limit,
            min_price=settings.risk_min_price, allow_short=settings.allow_short,
            starting_cash=settings.paper_starting_cash, slippage_bps=settings.slippage_bps,
            commission_per_share=settings.commission_per_share,
        )

    def limits(self) -> RiskLimits:
        return RiskLimits(
            max_allocation_share=self.max_allocation_share, max_equity_share=self.max_equity_share,
            max_open_positions=self.max_open_positions, daily_loss_limit=self.daily_loss_limit,
            min_price=self.min_price, allow_short=self.allow_short,
        )


class TickConfig(Config):
    tick_time: str  # ISO UTC minute the sensor decided on
    strategy_ids: list[str]


@op(description="Evaluate the due strategies on the newest minute bars, apply risk, trade, reconcile, record.")
def live_trading_tick(
    context: OpExecutionContext,
    config: TickConfig,
    ledger: Ledger,
    broker: PaperBroker,
    market_data: MarketDataSource,
    universe: Universe,
    live_warehouse: Warehouse,
    live_trading: LiveTrading,
) -> None:
    result = run_tick(
        datetime.fromisoformat(config.tick_time).astimezone(UTC),
        config.strategy_ids,
        ledger=ledger,
        broker=broker,
        market_data=market_data,
        universe=universe.load(),
        warehouse=live_warehouse,
        limits=live_trading.limits(),
        kill_switch=live_trading.kill_switch,
        log=context.log,
    )
    context.log.info(
        f"tick {config.tick_time}: {result.decisions.height} strategies, {result.reviewed.height} proposals, "
        f"{len(result.submitted)} orders submitted, equity {result.equity:,.2f}"
    )


@job(name="live_trading_job", executor_def=in_process_executor, tags={"turbomode/live": "true", **max_runtime(minutes=5)},
     description="One live paper-trading tick (launched every minute in market hours by live_trading_sensor).")
def live_trading_job():
    live_trading_tick()


def next_open_message(now: datetime) -> str:
    next_open = xnys().next_open(pd.Timestamp(now).floor("min")).tz_convert("America/New_York")
    return f"market closed at {now:%Y-%m-%d %H:%M} UTC; it next opens {next_open:%a %Y-%m-%d %H:%M %Z}"


@sensor(
    name="live_trading_sensor",
    job=live_trading_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Every minute of NYSE hours: one live_trading_job run for the strategies that are due.",
)
def live_trading_sensor(
    context: SensorEvaluationContext, ledger: Ledger, broker: PaperBroker, trading_clock: TradingClock,
    live_trading: LiveTrading,
):
    now = trading_clock.now()
    if live_trading.kill_switch:
        return SkipReason("TURBOMODE_KILL_SWITCH is on: live trading is halted")
    if not xnys().is_open_on_minute(pd.Timestamp(now).floor("min")):
        return SkipReason(next_open_message(now))
    clock = broker.clock(now)
    if not clock.is_open:
        return SkipReason(f"the broker's clock says the market is closed; it next opens {clock.next_open:%Y-%m-%d %H:%M %Z}")
    unfinished = context.instance.get_runs(RunsFilter(job_name=live_trading_job.name, statuses=UNFINISHED), limit=1)
    if unfinished:
        return SkipReason(f"the previous tick (run {unfinished[0].run_id}) has not finished; ticks never overlap")
    ledger.seed_strategies(live_trading.strategies_file)
    due = ledger.due_strategies(now)
    if not due:
        return SkipReason(f"no strategy is due at {now:%H:%M} UTC")
    minute = now.replace(second=0, microsecond=0).isoformat()
    return RunRequest(
        run_key=f"live:{minute}",
        run_config={"ops": {"live_trading_tick": {"config": {"tick_time": minute, "strategy_ids": due}}}},
        tags={STRATEGIES_TAG: ",".join(due)},
    )
