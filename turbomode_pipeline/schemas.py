"""The warehouse's tables: a pandera (polars) model for each, and its DuckDB DDL generated from it (resources/ddl.py).

The pandera models are the structural contract (columns, types, nulls); the semantic rules
with messages that name symbol, session and rule live in `core/bar_rules.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pandera.polars as pa
import polars as pl

from turbomode_pipeline.resources.ddl import create_table

FINITE = "finite (no NaN, no infinity)"


def _finite(data: pa.PolarsData) -> pl.LazyFrame:
    """True where a float value is finite or null (nullability is the column's own rule); other types pass."""
    column = pl.col(data.key)
    if data.lazyframe.collect_schema()[data.key].is_float():
        return data.lazyframe.select(column.is_finite() | column.is_null())
    return data.lazyframe.select(pl.lit(True).alias(data.key))


finite_check = pa.Check(_finite, name="finite", error=FINITE)


class FiniteModel(pa.DataFrameModel):
    """The base of every table's model: every numeric column holds finite values only."""

    @pa.check(".*", regex=True, name="finite", error=FINITE)
    def _every_number_finite(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _finite(data)


class DailyBars(FiniteModel):
    session: date
    symbol: str = pa.Field(str_length={"min_value": 1})
    sector: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float = pa.Field(nullable=True)
    trade_count: int = pa.Field(nullable=True)
    source: str
    ingested_at: datetime

    class Config:
        strict = True
        coerce = True


@dataclass(frozen=True)
class Table:
    name: str
    ddl: str
    partition_column: str
    key_columns: tuple[str, ...]
    stamp_column: str | None = None  # kept when a re-written row's values are unchanged


def _table(name: str, model, partition_column: str, key_columns: tuple[str, ...], stamp_column: str | None = None
           ) -> Table:
    """The table of a pandera model: its DDL generated from the model's columns, keyed by `key_columns`."""
    return Table(name, create_table(name, model, key_columns), partition_column, key_columns, stamp_column)


DAILY_BARS = _table("daily_bars", DailyBars, "session", ("session", "symbol"), stamp_column="ingested_at")


def conform(frame: pl.DataFrame, schema) -> pl.DataFrame:
    """`frame` validated by `schema` (a model or a schema; every failure at once), columns in schema order."""
    validated = schema.validate(frame, lazy=True)
    columns = schema.to_schema().columns if hasattr(schema, "to_schema") else schema.columns
    return validated.select(list(columns))


def _feature_table() -> tuple[pa.DataFrameSchema, Table]:
    from turbomode_pipeline.core.features import FEATURES

    schema = pa.DataFrameSchema(
        {
            "session": pa.Column(pl.Date),
            "symbol": pa.Column(pl.String),
            "sector": pa.Column(pl.String),
            # finiteness of the features is the blocking `features_finite` rule (core/feature_rules.py), which
            # names every offending feature of a row; here it would pre-empt that rule with a terser message
            "close": pa.Column(pl.Float64, [pa.Check.gt(0), finite_check]),
            "atr_14": pa.Column(pl.Float64, finite_check, nullable=True),
            **{name: pa.Column(pl.Float64, nullable=True) for name in FEATURES},
        },
        strict=True,
        coerce=True,
        unique=["session", "symbol"],
        name="daily_features",
    )
    return schema, _table("daily_features", schema, "session", ("session", "symbol"))


DailyFeatures, DAILY_FEATURES = _feature_table()


class TrainingSamples(FiniteModel):
    """Triple-barrier outcomes (see core/labels.py)."""

    session: date
    symbol: str
    sector: str
    entry: float = pa.Field(gt=0)
    atr_14: float = pa.Field(ge=0)
    upper: float
    lower: float
    barrier: str = pa.Field(isin=["upper", "lower", "time"])
    label: pl.Int8 = pa.Field(isin=[0, 1])
    t1: date
    exit_price: float
    ret: float
    days_held: pl.Int32 = pa.Field(ge=1)
    fwd_ret: float  # close-to-close return over the H sessions after entry
    beats_sector: pl.Int8 = pa.Field(isin=[0, 1])  # fwd_ret above its (session, sector) median

    class Config:
        strict = True
        coerce = True
        unique = ["session", "symbol"]


TRAINING_SAMPLES = _table("training_samples", TrainingSamples, "session", ("session", "symbol"))


# The scanner's tables (issue 5 writes them; drift, maintenance and live trading read them).
# `sector` is the GICS sector name, as in `daily_bars`.

SIGNAL_TYPES = ["BUY", "SELL"]


class SignalHistory(FiniteModel):
    """Every signal the scanner ever emitted; `active_signals` has the same columns."""

    id: str  # f"{session}-{symbol}": one signal per symbol and session at most
    session: date
    symbol: str
    signal_type: str = pa.Field(isin=SIGNAL_TYPES)
    confidence: float = pa.Field(ge=0, le=1)  # calibrated probability of the signalled direction
    entry_price: float = pa.Field(gt=0)
    target_price: float = pa.Field(gt=0)
    stop_loss: float = pa.Field(gt=0)
    sector: str
    created_at: datetime
    expires_at: datetime  # the close of the session H sessions after `session`
    is_active: bool
    model_name: str
    model_version: str
    mlflow_run_id: str
    # the last session whose close the model's training labels needed: always before `session`
    model_labels_through: date

    class Config:
        strict = True
        coerce = True
        unique = ["id"]


SIGNAL_HISTORY = _table("signal_history", SignalHistory, "session", ("id",))


class ScannerScores(FiniteModel):
    """Every scored symbol of a scan, signal or not: the input of IC and of confidence drift."""

    session: date
    symbol: str
    sector: str
    # the stacked champion's calibrated probability of its label (TURBOMODE_LABEL_TARGET; by
    # default that the symbol beats its sector's median over the horizon); the name is historical
    probability_up: float = pa.Field(ge=0, le=1)
    model_name: str
    model_version: str
    model_labels_through: date  # the scoring model's cutoff: always before `session`

    class Config:
        strict = True
        coerce = True
        unique = ["session", "symbol"]


SCANNER_SCORES = _table("scanner_scores", ScannerScores, "session", ("session", "symbol"))


class SignalOutcomes(FiniteModel):
    """The realised result of each signal whose horizon has passed."""

    id: str  # signal_history.id
    session: date  # the signal's session
    symbol: str
    sector: str
    signal_type: str = pa.Field(isin=SIGNAL_TYPES)
    outcome: str = pa.Field(isin=["target", "stop", "expired"])
    exit_session: date
    exit_price: float = pa.Field(gt=0)
    ret: float  # in the signal's direction: a SELL that fell has ret > 0
    days_held: pl.Int32 = pa.Field(ge=1)
    # the relative outcome: H-session return less the sector's median (scored symbols, same
    # session), in the signal's direction, and whether that is positive (the signal was right)
    excess_ret: float = pa.Field(nullable=True)
    beat_sector: bool = pa.Field(nullable=True)

    class Config:
        strict = True
        coerce = True
        unique = ["id"]


SIGNAL_OUTCOMES = _table("signal_outcomes", SignalOutcomes, "session", ("id",))


# The weekly drift report (issue 6): one row per sector, and one per sector and feature.
DRIFT_STATUSES = ["ok", "warn", "drift"]


class DriftReport(FiniteModel):
    week_ending: date  # the Saturday that ends the report's week
    sector: str
    status: str = pa.Field(isin=DRIFT_STATUSES)
    median_excess_psi: float
    median_psi: float
    max_psi: float
    top_feature: str
    max_ks: float
    features_drift: pl.Int32
    features_judged: pl.Int32
    confidence_psi: float = pa.Field(nullable=True)
    buy: pl.Int64
    sell: pl.Int64
    buy_share: float = pa.Field(nullable=True)
    one_sided: bool
    outcomes: pl.Int64
    hits: pl.Int64
    hit_rate: float = pa.Field(nullable=True)
    expected_hit_rate: float = pa.Field(nullable=True)
    hit_rate_pvalue: float = pa.Field(nullable=True)
    hit_rate_low: bool
    champion_version: str
    train_start: date
    train_end: date
    window_start: date
    window_end: date
    report_path: str
    created_at: datetime

    class Config:
        strict = True
        coerce = True
        unique = ["week_ending", "sector"]


DRIFT_REPORT = _table("drift_report", DriftReport, "week_ending", ("week_ending", "sector"))


class DriftFeatures(FiniteModel):
    week_ending: date
    sector: str
    feature: str
    psi: float
    baseline_psi: float  # the largest PSI of a window-sized block inside the training window
    excess_psi: float
    ks: float
    ks_pvalue: float
    n_reference: pl.Int64
    n_current: pl.Int64
    judged: bool  # counts towards the sector's status (short-memory feature)
    status: str = pa.Field(isin=DRIFT_STATUSES)

    class Config:
        strict = True
        coerce = True
        unique = ["week_ending", "sector", "feature"]


DRIFT_FEATURES = _table("drift_features", DriftFeatures, "week_ending", ("week_ending", "sector", "feature"))


# The scanner's signal backtest (issue 14). Per session: the long-short book's day and the signals
# entered that session as trades; per as-of session (the last partition of a run): the curves,
# the summary and the returns by quantile over the whole graded history up to it.
BACKTEST_STRATEGIES = ["long_short", "benchmark", "signals"]


class SignalBacktestDaily(FiniteModel):
    session: date  # the day: return from the previous close to this one; the book rebalanced at this close
    gross_ret: float
    turnover: float = pa.Field(ge=0)
    cost: float = pa.Field(ge=0)
    net_ret: float
    exposure: float = pa.Field(ge=0)  # gross, sum of |weights|, held from this close
    longs: pl.Int64
    shorts: pl.Int64
    benchmark_ret: float  # equal weight, every name scored the session before
    quantiles: pl.Int32
    cost_bps: float

    class Config:
        strict = True
        coerce = True
        unique = ["session"]


SIGNAL_BACKTEST_DAILY = _table("signal_backtest_daily", SignalBacktestDaily, "session", ("session",))


class SignalBacktestTrades(FiniteModel):
    id: str  # signal_history.id
    session: date  # entry: the signal's session, at its entry price
    symbol: str
    sector: str
    signal_type: str = pa.Field(isin=SIGNAL_TYPES)
    confidence: float
    outcome: str = pa.Field(isin=["target", "stop", "expired"])
    exit_session: date
    days_held: pl.Int32 = pa.Field(ge=1)
    ret: float  # signal_outcomes.ret
    cost: float = pa.Field(ge=0)  # both sides, per unit of notional
    net_ret: float

    class Config:
        strict = True
        coerce = True
        unique = ["id"]


SIGNAL_BACKTEST_TRADES = _table("signal_backtest_trades", SignalBacktestTrades, "session", ("id",))


class SignalBacktestCurves(FiniteModel):
    as_of: date
    strategy: str = pa.Field(isin=BACKTEST_STRATEGIES)
    session: date
    ret: float
    equity: float
    drawdown: float = pa.Field(le=0)

    class Config:
        strict = True
        coerce = True
        unique = ["as_of", "strategy", "session"]


SIGNAL_BACKTEST_CURVES = _table("signal_backtest_curves", SignalBacktestCurves, "as_of", ("as_of", "strategy", "session"))


class SignalBacktestSummary(FiniteModel):
    as_of: date
    strategy: str = pa.Field(isin=BACKTEST_STRATEGIES)
    first_session: date
    last_session: date
    days: pl.Int64
    ann_return: float
    ann_vol: float
    sharpe: float
    t_stat: float
    sharpe_se: float = pa.Field(nullable=True)  # standard error of the annualised Sharpe (core/sharpe.py)
    deflated_sharpe: float = pa.Field(nullable=True)  # P(true Sharpe > 0), the long-short book and the signals compared
    sharpe_before_costs: float = pa.Field(nullable=True)
    ann_costs: float  # costs paid a year, as a return on capital
    max_drawdown: float = pa.Field(le=0)
    turnover: float
    hit_rate: float
    avg_holding: float
    observations: pl.Int64  # days (long_short, benchmark) or trades (signals)
    quantiles: pl.Int32
    cost_bps: float
    report_path: str

    class Config:
        strict = True
        coerce = True
        unique = ["as_of", "strategy"]


SIGNAL_BACKTEST_SUMMARY = _table("signal_backtest_summary", SignalBacktestSummary, "as_of", ("as_of", "strategy"))


class SignalBacktestQuantiles(FiniteModel):
    as_of: date
    strategy: str = pa.Field(isin=["long_short", "signals"])  # by score quantile, or trades by confidence quantile
    quantile: pl.Int32 = pa.Field(ge=1)
    observations: pl.Int64
    mean_ret: float
    mean_excess: float

    class Config:
        strict = True
        coerce = True
        unique = ["as_of", "strategy", "quantile"]


SIGNAL_BACKTEST_QUANTILES = _table("signal_backtest_quantiles", SignalBacktestQuantiles, "as_of", ("as_of", "strategy", "quantile"))


# The live strategies backtested on history (issue 14, item 2): one backtest_id per strategy and range,
# "<strategy_id>:<first session>..<last session>", replaced as a whole when it is run again.
class StrategyBacktestSummary(FiniteModel):
    backtest_id: str
    strategy_id: str
    type: str
    symbol: str
    timeframe_minutes: pl.Int64
    first_session: date
    last_session: date
    sessions: pl.Int64
    bars: pl.Int64
    orders_filled: pl.Int64
    orders_rejected: pl.Int64
    round_trips: pl.Int64
    hit_rate: float = pa.Field(nullable=True)
    commission: float
    slippage: float  # dollars paid to slippage (slippage_bps of each fill)
    costs: float  # commission + slippage
    starting_equity: float
    final_equity: float
    pnl: float
    pnl_before_costs: float
    total_return: float
    sharpe: float = pa.Field(nullable=True)
    sharpe_se: float = pa.Field(nullable=True)  # standard error of the annualised Sharpe (core/sharpe.py)
    sharpe_t: float = pa.Field(nullable=True)
    deflated_sharpe: float = pa.Field(nullable=True)  # P(true Sharpe > 0) for the strategies backtested together
    sharpe_before_costs: float = pa.Field(nullable=True)
    max_drawdown: float
    exposure: float
    slippage_bps: float
    commission_per_share: float
    report_path: str
    created_at: datetime

    class Config:
        strict = True
        coerce = True
        unique = ["backtest_id"]


class StrategyBacktestTrades(FiniteModel):
    backtest_id: str
    strategy_id: str
    symbol: str
    bar_time: datetime
    side: str = pa.Field(isin=["buy", "sell"])
    price: float
    decision: str
    qty: float
    approved: bool
    risk_reason: str
    fill_time: datetime = pa.Field(nullable=True)
    filled_price: float = pa.Field(nullable=True)
    commission: float

    class Config:
        strict = True
        coerce = True
        unique = ["backtest_id", "bar_time", "side"]


class StrategyBacktestEquity(FiniteModel):
    backtest_id: str
    strategy_id: str
    session: date
    equity: float
    position: float
    exposure: float

    class Config:
        strict = True
        coerce = True
        unique = ["backtest_id", "session"]


STRATEGY_BACKTEST = _table("strategy_backtest", StrategyBacktestSummary, "backtest_id", ("backtest_id",))
STRATEGY_BACKTEST_TRADES = _table("strategy_backtest_trades", StrategyBacktestTrades, "backtest_id", ("backtest_id", "bar_time", "side"))
STRATEGY_BACKTEST_EQUITY = _table("strategy_backtest_equity", StrategyBacktestEquity, "backtest_id", ("backtest_id", "session"))


# Every model version the pipeline registered, kept outside MLflow: what it learnt from (its cutoff)
# and the sha256 of the bytes it stored. A model is unpickled only if its bytes match this record,
# so write access to MLflow alone cannot run code. Rows are only ever added.
class ModelVersions(FiniteModel):
    registered_model: str
    version: str
    sector: str
    model_type: str
    training_week: date  # the week the version serves: trained as of the session before it
    labels_through: date  # the last session whose close any of its training labels needed
    last_sample_session: date  # its newest training sample's entry session
    embargo_sessions: pl.Int64  # the label horizon: sessions between the last entry and labels_through
    settings_key: str  # the training settings and data source; the same key and cutoff reuse the version
    sha256: str
    mlflow_run_id: str
    promotion: str
    registered_at: datetime

    class Config:
        strict = True
        coerce = True
        unique = ["registered_model", "version"]


# Which version was each model's champion from which week on: appended when a version is promoted,
# never rewritten (a later backfill of an older week adds that week's rows and changes no other; a week
# trained again with other settings adds a row, and the newest promotion of a week is its champion).
class ChampionHistory(FiniteModel):
    registered_model: str
    sector: str
    model_type: str
    training_week: date
    labels_through: date
    version: str
    reason: str
    promoted_at: datetime

    class Config:
        strict = True
        coerce = True
        unique = ["registered_model", "training_week", "version"]


MODEL_VERSIONS = _table("model_versions", ModelVersions, "training_week", ("registered_model", "version"))
CHAMPION_HISTORY = _table("champion_history", ChampionHistory, "training_week",
                          ("registered_model", "training_week", "version"))
