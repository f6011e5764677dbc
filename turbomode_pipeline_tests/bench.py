"""`make bench`: wall times of the pipeline's heavy paths, each beside a baseline in the same run.

Benchmarks, not tests: the machines are noisy, so nothing here asserts a time.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from dagster import DagsterInstance, materialize

from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START
from turbomode_pipeline.due import due_sessions
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.settings import DEFAULT_UNIVERSE, load_settings

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
# The shipped instance batches a range run's events where the environment says so, as `make bench` exports it.
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "500")


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}\n" + "-" * (width + 16))
    for name, value in rows:
        print(f"{name:<{width}}  {value:>12}")


def bars_backfill() -> None:
    sessions = [d.isoformat() for d in due_sessions(datetime.now(UTC), 2520)]
    with tempfile.TemporaryDirectory() as tmp:
        resources = {
            "market_data": SimulatedMarketData(),
            "warehouse": Warehouse(path=str(Path(tmp) / "warehouse.duckdb")),
            "universe": Universe(path=str(DEFAULT_UNIVERSE)),
        }
        instance = DagsterInstance.ephemeral()

        def run(tags=None, partition_key=None):
            result = materialize(
                [daily_bars], resources=resources, instance=instance, tags=tags, partition_key=partition_key,
                run_config=QUIET, selection=[daily_bars.key],
            )
            assert result.success

        decade = timed(lambda: run(tags={PARTITION_RANGE_START: sessions[0], PARTITION_RANGE_END: sessions[-1]}))
        ten = timed(lambda: [run(partition_key=key) for key in sessions[-10:]])
        rows = Warehouse(path=str(Path(tmp) / "warehouse.duckdb")).query("SELECT count(*) FROM daily_bars").item()
    table(
        f"daily_bars backfill, 242 symbols ({rows:,} rows)",
        [
            (f"one run, {len(sessions)} sessions ({sessions[0]}..{sessions[-1]})", f"{decade:.1f} s"),
            ("ten runs of one session each", f"{ten:.1f} s"),
            ("one session, mean of the ten", f"{ten / 10:.2f} s"),
            ("sessions per second, one range run", f"{len(sessions) / decade:.0f}"),
            ("ratio: per-session cost, single run vs one-by-one", f"{(decade / len(sessions)) / (ten / 10):.4f}"),
            (f"ratio: {len(sessions)} sessions in one run vs 10 separate runs", f"{decade / ten:.2f}"),
        ],
    )


def ten_year_grid():
    from turbomode_pipeline.calendar import sessions_between
    from turbomode_pipeline.core.market_sim import SIM_EPOCH

    return sessions_between(SIM_EPOCH, due_sessions(datetime.now(UTC), 1)[0])


def ten_years_of_bars(predictability: float = 0.5):
    from turbomode_pipeline.core.market_sim import simulate_daily_bars
    from turbomode_pipeline.core.universe import load_universe

    grid = ten_year_grid()
    return simulate_daily_bars(load_universe(DEFAULT_UNIVERSE), grid, grid[-2520:], seed=7, predictability=predictability)


# Measured before issue 27 (the Brownian-bridge minutes; daily bars drew no minutes), on this machine's 2 shared cores.
SIM_BEFORE_ISSUE_27 = {"ten_years_s": "0.6-1.0", "best_rank_ic": "0.1716"}


def market_simulation() -> None:
    """The simulator: ten years of the full universe's daily bars (each the aggregate of its drawn minutes),
    one session's minute bars, and the best possible rank IC (the exact conditional expectation's) at 0.5."""
    import polars as pl

    from turbomode_pipeline.core.market_sim import expected_idiosyncratic_return
    from turbomode_pipeline.core.scanner import forward_returns
    from turbomode_pipeline.core.universe import load_universe

    universe, grid = load_universe(DEFAULT_UNIVERSE), ten_year_grid()
    ten = min(timed(ten_years_of_bars) for _ in range(3))
    bars = ten_years_of_bars()
    minutes = min(timed(lambda: SimulatedMarketData().minute_bars([grid[-1]], universe)) for _ in range(3))
    best = expected_idiosyncratic_return(universe, grid, grid[-2520:], seed=7, predictability=0.5, horizon=10)
    joined = forward_returns(bars, 10).join(best, on=["session", "symbol"]).join(
        bars.select("session", "symbol", "sector"), on=["session", "symbol"])
    ic = (joined.group_by("session", "sector").agg(r=pl.corr("expected_idio", "fwd_ret", method="spearman"))
          .group_by("session").agg(pl.col("r").mean())["r"].drop_nans().drop_nulls().mean())
    table(
        f"market simulation, {universe.height} symbols",
        [
            ("ten years of daily bars, minutes drawn for every bar (best of 3)", f"{ten:.2f} s"),
            ("the same before issue 27 (no minutes drawn)", f"{SIM_BEFORE_ISSUE_27['ten_years_s']} s"),
            ("one session's minute bars, every symbol (best of 3)", f"{minutes:.2f} s"),
            ("best possible rank IC, 10 sessions, predictability 0.5, ten years", f"{ic:.4f}"),
            ("the same before issue 27 (closes are unchanged)", SIM_BEFORE_ISSUE_27["best_rank_ic"]),
        ],
    )


def per_symbol_arrays(bars) -> list[tuple]:
    return [
        tuple(one[c].to_numpy() for c in ("high", "low", "close"))
        for _, one in bars.group_by("symbol", maintain_order=True)
    ]


def talib_loop(arrays) -> None:
    import talib

    for high, low, close in arrays:
        talib.RSI(close, 14), talib.ATR(high, low, close, 14), talib.MACD(close, 12, 26, 9)
        talib.BBANDS(close, 20, 2, 2, 0), talib.STOCH(high, low, close, 14, 3, 0, 3, 0), talib.ADX(high, low, close, 14)


def pandas_indicators(bars) -> None:
    """The straightforward pandas way: groupby per symbol with rolling and ewm."""
    frame = bars.to_pandas().sort_values(["symbol", "session"])
    by = frame.groupby("symbol")
    ewm = lambda series, **kw: series.groupby(frame["symbol"]).transform(lambda s: s.ewm(adjust=False, **kw).mean())  # noqa: E731
    change = by["close"].diff()
    gain, loss = ewm(change.clip(lower=0), alpha=1 / 14), ewm((-change).clip(lower=0), alpha=1 / 14)
    frame["rsi"] = 100 * gain / (gain + loss)
    prev = by["close"].shift()
    tr = (frame["high"].combine(prev, max) - frame["low"].combine(prev, min))
    frame["atr"] = ewm(tr, alpha=1 / 14)
    frame["macd"] = ewm(frame["close"], span=12) - ewm(frame["close"], span=26)
    frame["macd_signal"] = ewm(frame["macd"], span=9)
    rolling = by["close"].rolling(20)
    frame["bb_mid"] = rolling.mean().reset_index(level=0, drop=True)
    frame["bb_std"] = rolling.std(ddof=0).reset_index(level=0, drop=True)
    high14 = by["high"].rolling(14).max().reset_index(level=0, drop=True)
    low14 = by["low"].rolling(14).min().reset_index(level=0, drop=True)
    fast_k = 100 * (frame["close"] - low14) / (high14 - low14)
    frame["stoch_k"] = fast_k.groupby(frame["symbol"]).transform(lambda s: s.rolling(3).mean())
    frame["stoch_d"] = frame["stoch_k"].groupby(frame["symbol"]).transform(lambda s: s.rolling(3).mean())
    up, down = by["high"].diff(), -by["low"].diff()
    plus_dm = up.where((up > down) & (up > 0), 0.0)
    minus_dm = down.where((down > up) & (down > 0), 0.0)
    plus_di, minus_di = 100 * ewm(plus_dm, alpha=1 / 14) / frame["atr"], 100 * ewm(minus_dm, alpha=1 / 14) / frame["atr"]
    frame["adx"] = ewm(100 * (plus_di - minus_di).abs() / (plus_di + minus_di), alpha=1 / 14)


def feature_engine() -> None:
    from turbomode_pipeline.core.features import FEATURES, compute_features
    from turbomode_pipeline.core.indicators import Grid, reference_grids, reference_indicators, sorted_by_symbol

    bars = ten_years_of_bars().sort("symbol", "session")  # as the warehouse returns them
    best = lambda action, repeat=7: min(timed(action) for _ in range(repeat))  # noqa: E731
    engine = best(lambda: compute_features(bars))
    subset = best(lambda: reference_indicators(bars))
    grid = Grid(sorted_by_symbol(bars))
    subset_grid = best(lambda: reference_grids(grid))
    arrays = per_symbol_arrays(bars)
    talib_time = best(lambda: talib_loop(arrays))
    talib_split = best(lambda: talib_loop(per_symbol_arrays(bars)))
    pandas_time = best(lambda: pandas_indicators(bars), repeat=1)
    symbols, sessions = bars["symbol"].n_unique(), bars["session"].n_unique()
    table(
        f"feature engine, {symbols} symbols x {sessions} sessions (best of 7)",
        [
            (f"all {len(FEATURES)} features (polars)", f"{engine:.2f} s"),
            ("indicator subset: RSI ATR MACD BB STOCH ADX, frame in and out", f"{subset:.3f} s"),
            ("same subset, on the symbols x sessions grid ready", f"{subset_grid:.3f} s"),
            ("same subset, TA-Lib symbol by symbol (arrays ready)", f"{talib_time:.3f} s"),
            ("same subset, TA-Lib incl. splitting the frame per symbol", f"{talib_split:.3f} s"),
            ("same subset, straightforward pandas", f"{pandas_time:.2f} s"),
            ("ratio ours / TA-Lib, frame in and out vs arrays ready (target <= 2)", f"{subset / talib_time:.1f}"),
            ("ratio ours / TA-Lib, both from arrays ready", f"{subset_grid / talib_time:.1f}"),
            ("ratio ours / TA-Lib, both from the frame", f"{subset / talib_split:.1f}"),
            ("ratio pandas / ours, frame in and out (target >= 10)", f"{pandas_time / subset:.1f}"),
        ],
    )


STOCK_SQLITE_STORAGE = "storage:\n  sqlite:\n    base_dir:\n      env: DAGSTER_HOME\ntelemetry:\n  enabled: false\n"


def noop_backfill_seconds(sessions: list[str], config: str, event_batch_size: str | None = None) -> float:
    """Dagster's own cost of a single-run backfill over `sessions` on an instance with dagster.yaml
    `config` (and DAGSTER_EVENT_BATCH_SIZE, when given): a no-op asset with daily_features' partitions,
    in process (no process start, none of our work)."""
    import os
    from unittest.mock import patch

    from dagster import BackfillPolicy, MaterializeResult, asset

    from turbomode_pipeline.partitions import daily_sessions

    @asset(partitions_def=daily_sessions(), backfill_policy=BackfillPolicy.single_run())
    def noop():
        return MaterializeResult()

    with tempfile.TemporaryDirectory() as home, patch.dict(os.environ, {"DAGSTER_HOME": home}):
        os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)
        if event_batch_size:
            os.environ["DAGSTER_EVENT_BATCH_SIZE"] = event_batch_size
        Path(home, "dagster.yaml").write_text(config)
        instance = DagsterInstance.from_config(home)
        tags = {PARTITION_RANGE_START: sessions[0], PARTITION_RANGE_END: sessions[-1]}
        return timed(lambda: materialize([noop], instance=instance, tags=tags, run_config=QUIET))


def features_backfill_cli() -> None:
    """A ten-year single-run daily_features backfill through the dagster CLI, process start included,
    beside what process start and Dagster's per-partition bookkeeping alone cost."""
    import os
    import shutil
    import subprocess
    import sys

    sessions = [d.isoformat() for d in due_sessions(datetime.now(UTC), 2520)]
    repo = Path(__file__).resolve().parents[1]
    shipped = repo / "dagster_home" / "dagster.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        shutil.copy(shipped, home)
        env = dict(os.environ, DAGSTER_HOME=str(home), TURBOMODE_DATA_DIR=str(Path(tmp) / "data"))

        def run(command: list[str]) -> float:
            started = time.perf_counter()
            subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True)
            return time.perf_counter() - started

        def materialize_cli(asset: str) -> float:
            return run([
                str(repo / ".venv" / "bin" / "dagster"), "asset", "materialize", "-m", "turbomode_pipeline.definitions",
                "--select", asset, "--partition-range", f"{sessions[0]}...{sessions[-1]}",
            ])

        bars_time = materialize_cli("daily_bars")
        features_time = materialize_cli("daily_features")
        start_time = run([sys.executable, "-c", "import turbomode_pipeline.definitions"])
    batching = noop_backfill_seconds(sessions, shipped.read_text(), event_batch_size="500")
    stock = noop_backfill_seconds(sessions, STOCK_SQLITE_STORAGE)
    ours = features_time - start_time - batching
    table(
        f"ten-year backfills through `dagster asset materialize`, {len(sessions)} sessions, process start included",
        [
            ("daily_bars (the shipped instance)", f"{bars_time:.1f} s"),
            ("daily_features (the shipped instance; target < 30 s)", f"{features_time:.1f} s"),
            ("  process start: importing the definitions", f"{start_time:.1f} s"),
            ("  Dagster alone: no-op asset, same partitions, in process", f"{batching:.1f} s"),
            ("  the rest: read, features, checks, write (by difference)", f"{ours:.1f} s"),
            ("Dagster alone on its stock SQLite storage (events one by one)", f"{stock:.1f} s"),
            ("ratio: Dagster alone, batching storage / stock storage", f"{batching / stock:.2f}"),
        ],
    )


def relative_samples(bars, features):
    """Training samples as sector_models reads them: the sector-relative label, each odd sector's
    median stock left out, rows with a missing model feature dropped."""
    import polars as pl

    from turbomode_pipeline.core.features import MODEL_FEATURES
    from turbomode_pipeline.core.labels import triple_barrier, without_sector_median

    samples = triple_barrier(bars, features).select(
        "session", "symbol", pl.col("beats_sector").alias("label"), "barrier", "t1", "fwd_ret"
    ).join(features.select("session", "symbol", "sector", *MODEL_FEATURES), on=["session", "symbol"])
    return without_sector_median(samples).drop_nulls(list(MODEL_FEATURES))


def model_training(predictability: float = 0.5) -> None:
    """All 66 models on the full universe over ten years, as the weekly run trains them (the
    sector-relative label, MODEL_FEATURES, walk-forward calibration and the final refit), and
    the validated stacked models' holdout signals beside the simulator's best possible score.
    Trained twice in the same run: with the settings and estimators before issue 29 (the baseline)
    and with today's; the tables after the comparison are today's.

    At predictability 0 (a random walk) the AUCs scatter around 0.5 as far as one holdout's market
    path takes them; the leakage guard with its measured null band is in test_model_statistics.py.

    TURBOMODE_BENCH_SECTORS=n trains only the first n sectors (for development: the numbers are then
    not the full universe's)."""
    import resource

    import polars as pl

    from turbomode_pipeline.core.features import compute_features
    from turbomode_pipeline.core.model_zoo import MODEL_TYPES, ModelSettings

    bars = ten_years_of_bars(predictability)
    features = compute_features(bars)
    samples = relative_samples(bars, features)
    sectors = sorted(samples["sector"].unique().to_list())
    if os.environ.get("TURBOMODE_BENCH_SECTORS"):
        sectors = sectors[: int(os.environ["TURBOMODE_BENCH_SECTORS"])]
        samples = samples.filter(pl.col("sector").is_in(sectors))
    before, before_wall = train_sectors(samples, sectors, ModelSettings.before_issue_29())
    trainings, total = train_sectors(samples, sectors, ModelSettings())
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    compare_schemes(before, before_wall, trainings, total, bars, predictability)
    per_type = {m: sum(t.models[m].metrics["fit_seconds"] for t in trainings) for m in MODEL_TYPES}
    auc = {m: [t.models[m].metrics["roc_auc"] for t in trainings] for m in MODEL_TYPES}
    ece = {m: [t.models[m].metrics["ece"] for t in trainings] for m in MODEL_TYPES}
    base_rates = [t.models[MODEL_TYPES[0]].metrics["base_rate"] for t in trainings]
    table(
        f"training {6 * len(sectors)} models at predictability {predictability}: {len(sectors)} sectors x 6, {samples.height:,} samples, "
        "2 sectors at a time, each validated then refit on every labelled sample",
        [
            *((f"{m}: fit time summed over sectors, folds and the final fit", f"{per_type[m]:.0f} s") for m in MODEL_TYPES),
            *((f"{m}: holdout AUC min / mean / max", f"{min(auc[m]):.3f} / {sum(auc[m]) / len(auc[m]):.3f} / {max(auc[m]):.3f}")
              for m in MODEL_TYPES),
            *((f"{m}: holdout ECE max / mean", f"{max(ece[m]):.3f} / {sum(ece[m]) / len(ece[m]):.3f}") for m in MODEL_TYPES),
            ("holdout base rate min / max over sectors", f"{min(base_rates):.3f} / {max(base_rates):.3f}"),
            (f"wall time, all {6 * len(sectors)} (target < 600 s)", f"{total:.0f} s"),
            ("peak memory of the process", f"{peak_gib:.1f} GiB"),
        ],
    )
    where_the_time_goes(trainings, total)
    signal_quality(trainings, bars, predictability)


def train_sectors(samples, sectors: list[str], settings) -> tuple[list, float]:
    """Every sector's six models with `settings`, two sectors at a time (threads, as the multiprocess
    executor runs two steps on this machine); the trainings and the wall time."""
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    from turbomode_pipeline.core.features import MODEL_FEATURES
    from turbomode_pipeline.core.training import train_sector

    train = lambda sector: train_sector(  # noqa: E731
        sector, samples.filter(pl.col("sector") == sector), list(MODEL_FEATURES), horizon=10, settings=settings
    )
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        trainings = list(pool.map(train, sectors))
    return trainings, time.perf_counter() - started


def compare_schemes(before, before_wall: float, after, after_wall: float, bars, predictability: float) -> None:
    """The same samples trained before issue 29's changes and after, in this run: wall time and fit time
    per model type (ratios), holdout AUC per model type (mean over sectors, its standard error from each
    sector's block bootstrap, and the mean paired difference), the stacked model's rank IC / best possible."""
    import numpy as np

    from turbomode_pipeline.core.model_zoo import MODEL_TYPES

    def fit(trainings, m):
        return sum(t.models[m].metrics["fit_seconds"] for t in trainings)

    def auc(trainings, m):
        values = np.array([t.models[m].metrics["roc_auc"] for t in trainings])
        se = np.sqrt(sum(t.models[m].metrics["roc_auc_se"] ** 2 for t in trainings)) / len(trainings)
        return values, se

    rows = [("wall time, all models, before -> after (target <= 150 s)", f"{before_wall:.0f} s -> {after_wall:.0f} s"),
            ("ratio before / after", f"{before_wall / after_wall:.2f}x")]
    rows += [(f"{m}: fit seconds summed, before -> after (ratio)",
              f"{fit(before, m):.0f} -> {fit(after, m):.0f} ({fit(before, m) / max(fit(after, m), 1e-9):.1f}x)") for m in MODEL_TYPES]
    for m in MODEL_TYPES:
        (old, old_se), (new, new_se) = auc(before, m), auc(after, m)
        rows.append((f"{m}: holdout AUC mean (se) before -> after; mean difference",
                     f"{old.mean():.4f} ({old_se:.4f}) -> {new.mean():.4f} ({new_se:.4f}); {np.mean(new - old):+.4f}"))
    ic = {name: stacked_rank_ic(trainings, bars, predictability) for name, trainings in (("before", before), ("after", after))}
    for name, (model, best, se) in ic.items():
        rows.append((f"stacked daily rank IC (se) / best possible, ratio: {name}",
                     f"{model:.4f} ({se:.4f}) / {best:.4f}, {model / best:.2f}" if best else f"{model:.4f} ({se:.4f})"))
    table(f"training before issue 29 (ModelSettings.before_issue_29) and now (ModelSettings()), same samples, same run, "
          f"predictability {predictability}", rows)


def where_the_time_goes(trainings, wall: float) -> None:
    """Seconds by stage (each walk-forward fold, the refit, data preparation, calibration, holdout scoring)
    and model type, summed over sectors (two sectors train at a time: the sum is about twice the wall
    time), and MLflow logging of the same models, in process."""
    stages: dict[tuple[str, str], float] = {}
    for training in trainings:
        for key, seconds in training.timings.items():
            stages[key] = stages.get(key, 0.0) + seconds
    from turbomode_pipeline.core.model_zoo import MODEL_TYPES

    order = lambda key: (  # noqa: E731
        not key[0].startswith("fold"), key[0] != "refit", key[0], MODEL_TYPES.index(key[1]) if key[1] in MODEL_TYPES else 9, key[1]
    )
    rows = [(f"{stage}: {what}", f"{seconds:.1f} s") for (stage, what), seconds in sorted(stages.items(), key=lambda kv: order(kv[0]))]
    by_stage: dict[str, float] = {}
    for (stage, _), seconds in stages.items():
        by_stage[stage] = by_stage.get(stage, 0.0) + seconds
    rows += [(f"total of {stage}", f"{seconds:.1f} s") for stage, seconds in sorted(by_stage.items())]
    logging = mlflow_logging_seconds(trainings[:1])
    rows += [
        ("all stages, summed over sectors", f"{sum(stages.values()):.1f} s"),
        ("wall time of the trainings (2 at a time)", f"{wall:.1f} s"),
        ("MLflow: logging and registering one sector's 6 models (SQLite, local artifacts)", f"{logging:.1f} s"),
        (f"  the same for all {6 * len(trainings)} models, extrapolated (the registration step, one process)",
         f"{logging * len(trainings):.0f} s"),
    ]
    table("where the training time goes: seconds summed over sectors", rows)


def mlflow_logging_seconds(trainings) -> float:
    """Wall time of ModelRegistry.log_training for these trainings into a fresh SQLite MLflow."""
    import logging

    from turbomode_pipeline.resources.model_registry import ModelRegistry

    logging.getLogger("mlflow").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as tmp:
        registry = ModelRegistry(tracking_uri=f"sqlite:///{tmp}/mlflow.db", artifact_root=f"{tmp}/artifacts")
        for training in trainings:
            training.labels_through, training.training_week = training.holdout["session"].max(), date.today()
        tags = {"label_target": "beats_sector", "fast": "False", "training_week": str(date.today())}
        started = time.perf_counter()
        registry.log_training(trainings, run_name="bench", tags=tags, min_rank_ic_t=2.0, samples_source="bench",
                              standing=lambda name, through: (None, True))
        return time.perf_counter() - started


def stacked_holdout_scores(trainings, bars, predictability: float, horizon: int = 10):
    """The validated stacked models' holdout probabilities, the simulator's best possible score and the
    H-session return, per (session, symbol); and the holdout's sessions."""
    import polars as pl

    from turbomode_pipeline.core.market_sim import expected_idiosyncratic_return
    from turbomode_pipeline.core.model_zoo import STACKED
    from turbomode_pipeline.core.scanner import forward_returns
    from turbomode_pipeline.core.universe import load_universe

    holdout = pl.concat(
        t.holdout.select("session", "symbol", "sector").with_columns(probability=pl.Series(t.models[STACKED].holdout_probability))
        for t in trainings
    )
    sessions = holdout["session"].unique().sort().to_list()
    best = expected_idiosyncratic_return(
        load_universe(DEFAULT_UNIVERSE), ten_year_grid(), sessions, seed=7, predictability=predictability, horizon=horizon
    )
    return holdout.join(best, on=["session", "symbol"]).join(forward_returns(bars, horizon), on=["session", "symbol"]), sessions


def daily_rank_ic_within_sectors(scored, score: str):
    import polars as pl

    return (
        scored.group_by("session", "sector").agg(r=pl.corr(score, "fwd_ret", method="spearman"))
        .group_by("session").agg(pl.col("r").mean()).sort("session")["r"].drop_nans().drop_nulls()
    )


def stacked_rank_ic(trainings, bars, predictability: float, horizon: int = 10) -> tuple[float, float, float]:
    """The stacked models' mean daily rank IC within sectors, the best possible score's, and the first's
    standard error (overlap-adjusted: sessions / H independent outcomes)."""
    scored, _ = stacked_holdout_scores(trainings, bars, predictability, horizon)
    model, best = daily_rank_ic_within_sectors(scored, "probability"), daily_rank_ic_within_sectors(scored, "expected_idio")
    se = float(model.std() / (model.len() / horizon) ** 0.5) if model.len() > 1 else float("nan")
    return float(model.mean()), float(best.mean()), se


def signal_quality(trainings, bars, predictability: float, horizon: int = 10) -> None:
    """The validated stacked models' holdout scores as the scanner would have emitted them: daily
    rank IC beside the simulator's best possible score's on the same sessions, BUY/SELL balance, ECE."""
    import polars as pl

    from turbomode_pipeline.core.model_zoo import STACKED
    from turbomode_pipeline.settings import load_settings

    scored, sessions = stacked_holdout_scores(trainings, bars, predictability, horizon)
    model_ic, best_ic = daily_rank_ic_within_sectors(scored, "probability"), daily_rank_ic_within_sectors(scored, "expected_idio")
    threshold = load_settings({}).signal_threshold
    last = scored.filter(pl.col("session").is_in(sessions[-30:]))
    buy, sell = int((last["probability"] >= threshold).sum()), int((last["probability"] <= 1 - threshold).sum())
    newest = scored.filter(pl.col("session") == sessions[-1])
    table(
        f"signal quality on the {len(sessions)}-session holdout at predictability {predictability} (validated stacked models)",
        [
            ("scanner's daily rank IC within sectors (mean)", f"{model_ic.mean():.4f}"),
            ("simulator's best possible rank IC, same sessions", f"{best_ic.mean():.4f}"),
            ("ratio (target >= 0.75)", f"{model_ic.mean() / best_ic.mean():.2f}" if best_ic.mean() else "n/a"),
            (f"BUY / SELL over the last 30 sessions (threshold {threshold})", f"{buy} / {sell} ({buy / max(buy + sell, 1):.0%} BUY)"),
            ("BUY / SELL newest session", f"{int((newest['probability'] >= threshold).sum())} / {int((newest['probability'] <= 1 - threshold).sum())}"),
            ("worst sector's stacked holdout ECE", f"{max(t.models[STACKED].metrics['ece'] for t in trainings):.4f}"),
        ],
    )


def real_closes() -> None:
    """The 20 S&P 500 stocks of skfolio's dataset, 2012-2022 (bars derived from adjusted closes as
    in test_real_closes, AMD listed late, RRC delisted and halted once), trained per sector with the
    weekly run's settings and a 250-session holdout: the validated stacked model's holdout per sector."""
    import polars as pl

    from turbomode_pipeline.core.features import MODEL_FEATURES, compute_features
    from turbomode_pipeline.core.model_zoo import STACKED
    from turbomode_pipeline.core.training import TooFewSamples, overlap_adjusted_t, train_sector
    from turbomode_pipeline.settings import load_settings
    from turbomode_pipeline_tests import conftest  # noqa: F401 (importing it drops the host's TURBOMODE_* variables)
    from turbomode_pipeline_tests.support import real_closes as closes
    from turbomode_pipeline_tests.support import vendor_bars

    bars = vendor_bars(closes(date(2012, 1, 3), date(2022, 12, 28)), date(2015, 6, 1), date(2021, 10, 29), date(2015, 3, 2))
    features = compute_features(bars)
    samples = relative_samples(bars, features)
    threshold, rows = load_settings({}).signal_threshold, []
    for sector in sorted(bars["sector"].unique().to_list()):
        symbols = bars.filter(pl.col("sector") == sector)["symbol"].n_unique()
        try:
            trained = train_sector(sector, samples.filter(pl.col("sector") == sector), list(MODEL_FEATURES), horizon=10, refit=False)
        except TooFewSamples as error:
            rows.append((f"{sector} ({symbols} stock{'s' * (symbols > 1)})", f"skipped: {error}"))
            continue
        model = trained.models[STACKED]
        scored = trained.holdout.select("session", "fwd_ret").with_columns(p=pl.Series(model.holdout_probability))
        daily = scored.group_by("session").agg(
            ic=pl.corr("p", "fwd_ret"), rank_ic=pl.corr("p", "fwd_ret", method="spearman")
        ).sort("session")
        ic, rank_ic = (daily[c].drop_nans().drop_nulls() for c in ("ic", "rank_ic"))
        buy, sell = int((scored["p"] >= threshold).sum()), int((scored["p"] <= 1 - threshold).sum())
        rows.append((
            f"{sector} ({symbols} stock{'s' * (symbols > 1)})",
            f"AUC {model.metrics['roc_auc']:.3f} (se {model.metrics['roc_auc_se']:.3f}), {buy} BUY / {sell} SELL, "
            f"IC {ic.mean():+.3f} (t {overlap_adjusted_t(ic, 10):+.2f}), rank IC {rank_ic.mean():+.3f} "
            f"(t {overlap_adjusted_t(rank_ic, 10):+.2f}), ECE {model.metrics['ece']:.3f}",
        ))
    table(
        f"real closes: 20 stocks 2012-2022, {samples.height:,} samples; validated stacked model on each sector's "
        f"250-session holdout (threshold {threshold}; t overlap-adjusted for the 10-session horizon)",
        rows,
    )


def live_tick() -> None:
    """One live tick (10 strategies, local broker) beside its budget, the minute; with the warehouse locked by another process."""
    import logging
    import statistics
    import subprocess
    import sys
    from datetime import timedelta

    import polars as pl

    from turbomode_pipeline.core.risk import RiskLimits
    from turbomode_pipeline.live.tick import run_tick
    from turbomode_pipeline.resources.broker import LocalPaperBroker
    from turbomode_pipeline.resources.ledger import Ledger
    from turbomode_pipeline.settings import DEFAULT_STRATEGIES

    universe = pl.read_csv(DEFAULT_UNIVERSE)
    opening = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(path=f"{tmp}/trading.sqlite")
        ledger.seed_strategies(str(DEFAULT_STRATEGIES))
        ids = ledger.strategies()["id"].to_list()
        warehouse = Warehouse(path=f"{tmp}/warehouse.duckdb", lock_timeout_s=1.0)
        tick = dict(ledger=ledger, broker=LocalPaperBroker(ledger_path=ledger.path), market_data=SimulatedMarketData(),
                    universe=universe, warehouse=warehouse, limits=RiskLimits(), kill_switch=False,
                    log=logging.getLogger("bench"))
        run_tick(opening + timedelta(minutes=10), ids, **tick)  # imports and first simulation
        free = [timed(lambda m=m: run_tick(opening + timedelta(minutes=m), ids, **tick)) for m in range(11, 41)]
        holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                                   "print(1, flush=True); time.sleep(60)", warehouse.path], stdout=subprocess.PIPE)
        holder.stdout.readline()
        locked = [timed(lambda m=m: run_tick(opening + timedelta(minutes=m), ids, **tick)) for m in range(41, 46)]
        holder.kill()
        holder.wait()
    median, worst = statistics.median(free), max(free)
    table(
        "live tick, 10 strategies, local broker (budget: the 60 s minute)",
        [
            ("median tick", f"{median:.3f} s"),
            ("slowest of 30 ticks", f"{worst:.3f} s"),
            ("median share of the minute", f"{median / 60:.2%}"),
            ("median tick, warehouse locked", f"{statistics.median(locked):.3f} s"),
            ("locked / free", f"{statistics.median(locked) / median:.1f}x"),
        ],
    )


def instance_storage() -> None:
    """The same one-run backfill on the SQLite instance (dagster_home/) and on PostgreSQL (dagster_home_postgres/)."""
    import os
    import shutil

    from turbomode_pipeline_tests.servers import PG_BIN, REPO, PostgresServer

    if not (PG_BIN / "initdb").exists():
        print(f"\ninstance storage: skipped, no PostgreSQL server binaries in {PG_BIN}")
        return
    sessions = [d.isoformat() for d in due_sessions(datetime.now(UTC), 500)]
    tags = {PARTITION_RANGE_START: sessions[0], PARTITION_RANGE_END: sessions[-1]}
    postgres = PostgresServer()
    os.environ["TURBOMODE_DAGSTER_PG_URL"] = postgres.sqlalchemy_url
    times = {}
    try:
        for name, config in (("sqlite", "dagster_home"), ("postgres", "dagster_home_postgres")):
            with tempfile.TemporaryDirectory() as tmp:
                shutil.copy(REPO / config / "dagster.yaml", Path(tmp) / "dagster.yaml")
                os.environ["DAGSTER_HOME"] = tmp
                resources = {
                    "market_data": SimulatedMarketData(),
                    "warehouse": Warehouse(path=str(Path(tmp) / "warehouse.duckdb")),
                    "universe": Universe(path=str(DEFAULT_UNIVERSE)),
                }
                with DagsterInstance.get() as instance:
                    times[name] = timed(lambda: materialize(
                        [daily_bars], resources=resources, instance=instance, tags=tags, run_config=QUIET,
                    ))
    finally:
        postgres.stop()
    table(
        f"daily_bars, one run over {len(sessions)} sessions x 242 symbols, by instance storage",
        [
            ("SQLite instance (dagster_home/)", f"{times['sqlite']:.1f} s"),
            ("PostgreSQL 15 on loopback (dagster_home_postgres/)", f"{times['postgres']:.1f} s"),
            ("ratio: PostgreSQL / SQLite", f"{times['postgres'] / times['sqlite']:.2f}"),
        ],
    )


LABELS = LabelSettings.from_settings(load_settings({}))  # the defaults, whatever the shell exports

FRESH_SCAN = """
import json, sys, time
started = time.perf_counter()
from dagster import DagsterInstance, materialize
from turbomode_pipeline.assets.scanner import scanner_signals
from turbomode_pipeline.resources.model_registry import ModelRegistry
from turbomode_pipeline.resources.labels import LabelSettings
from turbomode_pipeline.resources.reports import ReportStore
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import load_settings
imported = time.perf_counter()
tracking, artifacts, warehouse, partition = sys.argv[1:5]
result = materialize(
    [scanner_signals], partition_key=partition, instance=DagsterInstance.ephemeral(),
    resources={"warehouse": Warehouse(path=warehouse), "model_registry": ModelRegistry(tracking_uri=tracking, artifact_root=artifacts),
               "labels": LabelSettings.from_settings(load_settings({})),
               "reports": ReportStore(directory=warehouse + ".reports")},
    run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
)
done = time.perf_counter()
metadata = result.asset_materializations_for_node("scanner_signals")[0].metadata
print(json.dumps({"imports": imported - started, "scan": done - imported, "load": metadata["model_load_seconds"].value}))
"""


def best_of(action, repeat: int) -> float:
    return min(timed(action) for _ in range(repeat))


def scanner_scan(repeat: int = 5) -> None:
    """The nightly scan of one session, model loading included, for the full universe and for 3,000 symbols,
    beside the same scan with the champions already loaded, Dagster's own cost of a run, and the old way
    of loading a champion (MLflow's skops load_model). Best of `repeat`; the machine's load is printed.

    The 66 models are trained first with the production settings (not `fast`) on the 44-symbol
    test universe, so that loading and scoring pay for full-size models; the 3,000 symbols are the full
    universe's features repeated under synthetic names with a little noise.
    """
    import hashlib
    import json
    import os
    import pickle
    import subprocess
    import sys

    import mlflow
    import numpy as np
    import polars as pl
    from dagster import MaterializeResult, asset

    from turbomode_pipeline.assets.models import sector_models
    from turbomode_pipeline.assets.scanner import scanner_signals
    from turbomode_pipeline.core.features import FEATURES, compute_features
    from turbomode_pipeline.core.point_in_time import serving_week
    from turbomode_pipeline.core.labels import triple_barrier
    from turbomode_pipeline.core.model_zoo import STACKED
    from turbomode_pipeline.core.universe import GICS_SECTORS, load_universe
    from turbomode_pipeline.resources import model_registry
    from turbomode_pipeline.schemas import (
        CHAMPION_HISTORY, DAILY_FEATURES, MODEL_VERSIONS, TRAINING_SAMPLES, DailyFeatures, TrainingSamples, conform,
    )
    from turbomode_pipeline_tests import conftest  # noqa: F401 (importing it drops the host's TURBOMODE_* variables)
    from turbomode_pipeline_tests.support import small_universe

    sessions = due_sessions(datetime.now(UTC), 700)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        registry = model_registry.ModelRegistry(
            tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", artifact_root=str(folder / "mlartifacts")
        )
        training = Warehouse(path=str(folder / "training.duckdb"))
        bars = SimulatedMarketData().daily_bars(sessions, load_universe(small_universe(folder)))
        features = compute_features(bars)
        training.replace_partitions(DAILY_FEATURES, conform(features, DailyFeatures), sessions)
        training.replace_partitions(TRAINING_SAMPLES, conform(triple_barrier(bars, features), TrainingSamples), sessions)
        instance = DagsterInstance.ephemeral()
        # the champion gate off: the scan needs all 11 champions, which 4 stocks a sector rarely earn
        config = {**QUIET, "ops": {"sector_models": {"config": {"holdout_sessions": 80, "champion_min_rank_ic_t": -1e9}}}}
        train_time = timed(lambda: materialize(
            [sector_models], resources={"warehouse": training, "model_registry": registry, "labels": LABELS}, instance=instance,
            run_config=config, partition_key=str(serving_week(sessions[-1])),  # the newest session is after its cutoff
        ))

        newest = sessions[-1]
        full = compute_features(SimulatedMarketData().daily_bars(sessions[-300:], load_universe(DEFAULT_UNIVERSE)))
        full = full.filter(pl.col("session") == newest)
        rng = np.random.default_rng(1)
        copies = -(-3000 // full.height)
        wide = pl.concat(
            [full.with_columns(pl.col("symbol") + f"_{i}", *(pl.col(f) * (1 + 0.01 * rng.standard_normal(full.height)) for f in FEATURES))
             for i in range(copies)]
        ).head(3000)
        warehouses = {}
        for name, frame in (("full", full), ("wide", wide)):
            warehouses[name] = Warehouse(path=str(folder / f"{name}.duckdb"))
            warehouses[name].replace_partitions(DAILY_FEATURES, conform(frame, DailyFeatures), [newest])
            warehouses[name].append_new(MODEL_VERSIONS, training.model_versions())  # the records the scan trusts
            warehouses[name].append_new(CHAMPION_HISTORY, training.champion_history())

        def scan(name: str, cold: bool) -> tuple[float, float]:
            if cold:
                model_registry._LOADED.clear()  # as in a fresh process: every champion loaded from MLflow
            started = time.perf_counter()
            result = materialize(
                [scanner_signals], resources={"warehouse": warehouses[name], "model_registry": registry, "labels": LABELS,
                                              "reports": ReportStore(directory=str(folder / "reports"))},
                instance=instance, partition_key=newest.isoformat(), run_config=QUIET,
            )
            wall = time.perf_counter() - started
            return wall, result.asset_materializations_for_node("scanner_signals")[0].metadata["model_load_seconds"].value

        def best_scan(name: str, cold: bool, times: int) -> tuple[float, float]:
            return min(scan(name, cold) for _ in range(times))

        def fresh_process() -> dict:
            output = subprocess.run(
                [sys.executable, "-c", FRESH_SCAN, registry.tracking_uri, registry.artifact_root, warehouses["full"].path,
                 newest.isoformat()],
                check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
            ).stdout
            return json.loads(output.strip().splitlines()[-1])

        @asset(partitions_def=scanner_signals.partitions_def)
        def noop():
            return MaterializeResult()

        scan("full", cold=True)  # the process's first scan pays one-off imports; the next rows do not
        full_time, full_load = best_scan("full", cold=True, times=repeat)
        warm_full, _ = best_scan("full", cold=False, times=repeat)
        wide_time, wide_load = best_scan("wide", cold=True, times=max(repeat // 2, 1))
        warm_wide, _ = best_scan("wide", cold=False, times=max(repeat // 2, 1))
        dagster_alone = best_of(lambda: materialize([noop], instance=instance, partition_key=newest.isoformat(),
                                                    run_config=QUIET), repeat)
        fresh = min((fresh_process() for _ in range(3)), key=lambda r: r["imports"] + r["scan"])

        # One model, loaded the new way (registry: alias, artifact location, read, sha256, unpickle)
        # and the old way (MLflow's load_model of the same model logged as skops), in this process.
        names = [model_registry.registered_name(sector, STACKED) for sector in GICS_SECTORS]
        client = registry._client()
        records = {row["registered_model"]: row for row in training.model_versions(STACKED).iter_rows(named=True)}
        sizes = {n: len(model_registry._artifact_bytes(client, n, records[n]["version"])) for n in names}
        biggest = max(sizes, key=sizes.get)

        def load_new(name: str):
            model_registry._LOADED.clear()
            return registry.load(name, records[name]["version"], records[name]["sha256"]).model

        model = load_new(biggest)
        data = pickle.dumps(model, protocol=pickle.DEFAULT_PROTOCOL)
        new_one = best_of(lambda: load_new(biggest), repeat)
        unpickle_only = best_of(lambda: pickle.loads(data), repeat)
        hash_only = best_of(lambda: hashlib.sha256(data).hexdigest(), repeat)
        new_all = best_of(lambda: [load_new(n) for n in names], 3)
        import skops.io

        skops_uris = {}
        with mlflow.start_run(experiment_id=registry._experiment_id(client), run_name="bench-skops-baseline"):
            for name in names:
                champion = load_new(name)
                trusted = skops.io.get_untrusted_types(data=skops.io.dumps(champion))
                skops_uris[name] = mlflow.sklearn.log_model(
                    champion, name=f"skops-{name}", serialization_format="skops", skops_trusted_types=trusted
                ).model_uri
        old_one = best_of(lambda: mlflow.sklearn.load_model(skops_uris[biggest]), 3)
        old_all = timed(lambda: [mlflow.sklearn.load_model(uri) for uri in skops_uris.values()])
    load_average = os.getloadavg()
    table(
        f"scanner_signals, one session ({newest}), champions trained with production settings in {train_time:.0f} s; "
        f"best of {repeat}, load average {load_average[0]:.1f} / {load_average[1]:.1f} (1 / 5 min) on {os.cpu_count()} cores",
        [
            (f"full universe, {full.height} symbols, incl. loading the 11 champions (target < 5 s)", f"{full_time:.2f} s"),
            ("  of which loading the 11 champions from MLflow", f"{full_load:.2f} s"),
            ("full universe, champions already loaded in the process", f"{warm_full:.2f} s"),
            ("Dagster alone: a no-op asset, same partition and instance", f"{dagster_alone:.2f} s"),
            ("ratio: scan incl. loading / champions already loaded", f"{full_time / warm_full:.2f}"),
            ("ratio: scan incl. loading / Dagster alone", f"{full_time / dagster_alone:.1f}"),
            ("fresh process (best of 3): importing dagster + the scanner", f"{fresh['imports']:.2f} s"),
            ("fresh process: then the first scan, incl. importing MLflow and loading", f"{fresh['scan']:.2f} s"),
            ("  of which loading the 11 champions (MLflow import included)", f"{fresh['load']:.2f} s"),
            (f"{wide.height} symbols, incl. loading", f"{wide_time:.2f} s"),
            ("  of which loading the 11 champions from MLflow", f"{wide_load:.2f} s"),
            (f"{wide.height} symbols, champions already loaded", f"{warm_wide:.2f} s"),
            (f"ratio {wide.height} / {full.height} symbols, champions already loaded", f"{warm_wide / warm_full:.2f}"),
        ],
    )
    table(
        f"loading one stacked champion ({biggest}, {sizes[biggest] / 1e6:.1f} MB pickle), best of {repeat} (skops: of 3)",
        [
            ("registry: alias + location + read + sha256 + unpickle", f"{new_one:.3f} s"),
            ("  sha256 of the bytes alone", f"{hash_only:.3f} s"),
            ("  pickle.loads of the bytes alone", f"{unpickle_only:.3f} s"),
            ("baseline: mlflow.sklearn.load_model, skops (how champions loaded before)", f"{old_one:.3f} s"),
            ("ratio: skops baseline / registry load", f"{old_one / new_one:.0f}"),
            ("all 11 stacked champions through the registry (best of 3)", f"{new_all:.2f} s"),
            ("all 11, baseline: MLflow's skops load_model (once)", f"{old_all:.2f} s"),
            ("ratio: all 11, skops baseline / registry", f"{old_all / new_all:.0f}"),
        ],
    )


def signal_backtest(repeat: int = 3) -> None:
    """The signal backtest's computation on ten years of the full universe, scored by a 5-session reversal."""
    import polars as pl

    from turbomode_pipeline.core import signal_backtest as backtest

    bars = ten_years_of_bars()
    scores = bars.sort("symbol", "session").with_columns(
        move=pl.col("close") / pl.col("close").shift(5).over("symbol")
    ).drop_nulls("move").with_columns(
        probability_up=(-pl.col("move")).rank().over("session") / (pl.len().over("session") + 1)
    ).select("session", "symbol", "sector", "probability_up")
    outcomes = None

    def run() -> None:
        nonlocal outcomes
        daily = backtest.long_short(scores, bars, 10, 5, backtest.Costs(5.0))
        backtest.long_short_summary(daily, 10)
        backtest.curve(daily, "net_ret")
        backtest.returns_by_score_quantile(scores, bars, 10, 5)
        outcomes = daily

    seconds = best_of(run, repeat)
    long_short, _ = backtest.long_short_summary(outcomes, 10)
    table(
        "signal_backtest: ten-year long-short of the full universe (core/signal_backtest.py)",
        [
            ("sessions x symbols scored", f"{scores['session'].n_unique()} x {scores['symbol'].n_unique()} "
                                          f"= {scores.height:,} scores"),
            ("long-short book, summary, curve, returns by quantile (best of 3; target < 5 s)", f"{seconds:.2f} s"),
            ("long-short Sharpe / t / turnover per day (reversal score, 5 bps)",
             f"{long_short['sharpe']:.2f} / {long_short['t_stat']:.1f} / {long_short['turnover']:.3f}"),
        ],
    )


def strategy_backtest_year() -> None:
    """A one-year minute-bar backtest of the nine indicator strategies (AAPL, AMD, NVDA), bars and backtest apart."""
    import json
    from datetime import date

    import polars as pl

    from turbomode_pipeline.calendar import sessions_between
    from turbomode_pipeline.core.risk import RiskLimits
    from turbomode_pipeline.core.strategy_backtest import Costs, backtest_strategy
    from turbomode_pipeline.resources.ledger import Ledger
    from turbomode_pipeline.settings import DEFAULT_STRATEGIES

    universe = pl.read_csv(DEFAULT_UNIVERSE).filter(pl.col("symbol").is_in(["AAPL", "AMD", "NVDA"]))
    sessions = sessions_between(date(2025, 12, 1), date(2026, 11, 30))
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(path=f"{tmp}/trading.sqlite")
        ledger.seed_strategies(str(DEFAULT_STRATEGIES))
        strategies = ledger.strategies().filter(pl.col("type") != "turbomode_signals")
    started = time.perf_counter()
    bars = SimulatedMarketData().minute_bars(sessions, universe)
    loaded = time.perf_counter() - started
    results, each = [], []
    for strategy in strategies.iter_rows(named=True):  # nine
        spec = {**strategy, "params": json.loads(strategy["params"])}
        each.append(timed(lambda spec=spec: results.append(backtest_strategy(spec, bars, RiskLimits(), Costs()))))
    decisions = sum(result.trades.height for result in results)
    table(
        f"strategy backtest, {strategies.height} strategies, {len(sessions)} sessions of minute bars ({bars.height:,} bars)",
        [
            ("simulated minute bars", f"{loaded:.2f} s"),
            ("nine backtests", f"{sum(each):.2f} s"),
            ("slowest strategy", f"{max(each):.2f} s"),
            ("buy/sell decisions reviewed", f"{decisions:,}"),
            ("per decision", f"{sum(each) / max(decisions, 1) * 1000:.2f} ms"),
        ],
    )


def replay_ticks() -> None:
    """`turbomode replay`'s tick: a live_trading_job run per minute (execute_in_process) beside run_tick called directly."""
    import logging
    from datetime import date

    import polars as pl

    from turbomode_pipeline.core.risk import RiskLimits
    from turbomode_pipeline.live.replay import replay_session, tick_times
    from turbomode_pipeline.live.tick import run_tick
    from turbomode_pipeline.live.trading import LiveTrading, TradingClock
    from turbomode_pipeline.resources.broker import LocalPaperBroker
    from turbomode_pipeline.resources.ledger import Ledger
    from turbomode_pipeline.settings import DEFAULT_STRATEGIES

    session, every = date(2026, 11, 20), 13  # 31 of the session's 390 ticks
    with tempfile.TemporaryDirectory() as tmp:
        universe_path = f"{tmp}/universe.csv"
        pl.read_csv(DEFAULT_UNIVERSE).write_csv(universe_path)
        strategies = Ledger(path=f"{tmp}/trading.sqlite")
        strategies.seed_strategies(str(DEFAULT_STRATEGIES))
        live = {"market_data": SimulatedMarketData(), "universe": Universe(path=universe_path), "trading_clock": TradingClock(),
                "live_warehouse": Warehouse(path=f"{tmp}/warehouse.duckdb", lock_timeout_s=1.0),
                "live_trading": LiveTrading.from_settings(load_settings({}))}
        replayed = replay_session(session, every, live, strategies, Path(tmp) / "replay", 100_000.0, 5.0, 0.0, progress=None)
        ledger = Ledger(path=f"{tmp}/direct.sqlite")
        ledger.seed_strategies(str(DEFAULT_STRATEGIES))
        ids = ledger.strategies()["id"].to_list()
        tick = dict(ledger=ledger, broker=LocalPaperBroker(ledger_path=ledger.path), market_data=SimulatedMarketData(),
                    universe=pl.read_csv(DEFAULT_UNIVERSE), warehouse=live["live_warehouse"], limits=RiskLimits(),
                    kill_switch=False, log=logging.getLogger("bench"))
        times = tick_times(session, every)
        direct = timed(lambda: [run_tick(now, ids, **tick) for now in times])
    full = len(tick_times(session, 1))
    table(
        f"replay of {session}, {replayed.ticks} ticks of {full}, 10 strategies",
        [
            ("per tick, live_trading_job run", f"{replayed.seconds / replayed.ticks:.3f} s"),
            ("per tick, run_tick directly", f"{direct / len(times):.3f} s"),
            (f"whole session ({full} ticks), job runs", f"{replayed.seconds / replayed.ticks * full:.0f} s"),
        ],
    )


def on_local_dask(run, env: dict, scheduler: str, root: Path) -> float:
    """`run(env)` with a dask scheduler at `scheduler` and two one-thread workers started in `env`, stopped after."""
    from turbomode_pipeline_tests.servers import BIN, Server

    cluster = [Server("scheduler", [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                    scheduler.rsplit(":", 1)[1], "--no-dashboard"], env, root)]
    cluster += [Server(f"w{i}", [str(BIN / "dask"), "worker", scheduler, "--nthreads", "1", "--no-nanny",
                                 "--no-dashboard"], env, root) for i in (1, 2)]
    try:
        return run(env)
    finally:
        for server in cluster:
            server.stop()


def training_executors(per_sector: int = 0, sessions: int = 2520) -> None:
    """`model_training_job` over every sector, fast settings, three ways on this machine: the old way
    (the sectors' training in 2 threads of one process, registration excluded), the multiprocess
    executor (one step per core) and a dask scheduler with 2 local workers, each a
    `dagster job execute` from process start to the last registered model. `per_sector` symbols a
    sector (0: the full universe) over `sessions` sessions: TURBOMODE_BENCH_PER_SECTOR,
    TURBOMODE_BENCH_SESSIONS."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    # read before importing conftest, which drops every TURBOMODE_* variable from the environment
    per_sector = int(os.environ.get("TURBOMODE_BENCH_PER_SECTOR", per_sector))
    sessions = int(os.environ.get("TURBOMODE_BENCH_SESSIONS", sessions))
    from turbomode_pipeline.assets.models import _samples
    from turbomode_pipeline.core.features import MODEL_FEATURES, compute_features
    from turbomode_pipeline.core.labels import triple_barrier
    from turbomode_pipeline.core.model_zoo import ModelSettings
    from turbomode_pipeline.core.training import train_sector
    from turbomode_pipeline.core.point_in_time import serving_week
    from turbomode_pipeline.core.universe import load_universe
    from turbomode_pipeline.partitions import universe_sectors
    from turbomode_pipeline.schemas import DAILY_FEATURES, TRAINING_SAMPLES, DailyFeatures, TrainingSamples, conform
    from turbomode_pipeline_tests import conftest  # noqa: F401 (importing it drops the host's TURBOMODE_* variables)
    from turbomode_pipeline_tests.support import small_universe
    from turbomode_pipeline_tests.servers import BIN, free_port, server_env

    sessions = due_sessions(datetime.now(UTC), sessions)
    holdout = 120  # fits a reduced history too (700 sessions leave ~450 of samples)
    config = {**QUIET, "ops": {"sector_models": {"config": {"fast": True, "holdout_sessions": holdout,
                                                            "champion_min_rank_ic_t": -1e9}}}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        universe_path = small_universe(root, per_sector=per_sector) if per_sector else DEFAULT_UNIVERSE
        universe = load_universe(universe_path)
        bars = SimulatedMarketData().daily_bars(sessions, universe)
        features = compute_features(bars)
        warehouse = Warehouse(path=str(root / "warehouse.duckdb"))
        warehouse.replace_partitions(DAILY_FEATURES, conform(features, DailyFeatures), sessions)
        warehouse.replace_partitions(TRAINING_SAMPLES, conform(triple_barrier(bars, features), TrainingSamples), sessions)
        sectors = universe_sectors(universe)

        def threads():
            def train(sector):
                rows = _samples(warehouse, sector, "relative", sessions[-1])
                return train_sector(sector, rows, list(MODEL_FEATURES), horizon=10, holdout_sessions=holdout,
                                    settings=ModelSettings.fast())
            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(train, sectors))

        (root / "config.json").write_text(json.dumps(config))
        tags = json.dumps({"dagster/partition": str(serving_week(sessions[-1]))})

        def job_env(name: str, **extra: str) -> dict:
            folder = root / name
            (folder / "data").mkdir(parents=True)
            (folder / "home").mkdir()
            shutil.copy(root / "warehouse.duckdb", folder / "data" / "warehouse.duckdb")
            return server_env(folder, folder / "home", universe_path, **extra)

        def job(env: dict) -> float:
            command = [str(BIN / "dagster"), "job", "execute", "-m", "turbomode_pipeline.definitions",
                       "-j", "model_training_job", "-c", str(root / "config.json"), "--tags", tags]
            return timed(lambda: subprocess.run(command, env=env, check=True, capture_output=True))

        in_threads = timed(threads)
        multiprocess = job(job_env("multiprocess"))
        scheduler = f"tcp://127.0.0.1:{free_port()}"
        distributed = on_local_dask(job, job_env("dask", TURBOMODE_DASK_SCHEDULER=scheduler), scheduler, root)
    table(
        f"training {len(sectors)} sectors x 6 models, fast settings, {universe.height} symbols x {len(sessions)} sessions "
        f"({os.cpu_count()} cores; python {sys.version_info.major}.{sys.version_info.minor})",
        [
            ("2 threads in one process, training only (the old sector_models)", f"{in_threads:.0f} s"),
            ("multiprocess executor, one step per core: dagster job execute", f"{multiprocess:.0f} s"),
            ("dask, scheduler + 2 local workers: dagster job execute", f"{distributed:.0f} s"),
            ("multiprocess / threads", f"{multiprocess / in_threads:.2f}"),
            ("dask / multiprocess", f"{distributed / multiprocess:.2f}"),
        ],
    )


LAUNCHED_TICK = """
import sys, time
started = time.perf_counter()
from dagster import DagsterInstance
from turbomode_pipeline.definitions import defs
imported = time.perf_counter()
instance = DagsterInstance.get()
opened = time.perf_counter()
job = defs.get_job_def("live_trading_job")
config = {"ops": {"live_trading_tick": {"config": {"tick_time": sys.argv[1], "strategy_ids": sys.argv[2].split(",")}}}}
assert job.execute_in_process(run_config=config, instance=instance).success
print(imported - started, opened - imported, time.perf_counter() - started)
"""


def start_up(repeat: int = 3) -> None:
    """What every Dagster process pays before it works: `import dagster`, the code location, and a live
    tick as a launched run does it (a fresh process: imports, the job run on the instance, ledger written)."""
    import os
    import resource
    import statistics
    import subprocess
    import sys

    from turbomode_pipeline.resources.ledger import Ledger
    from turbomode_pipeline.settings import DEFAULT_STRATEGIES

    def wall(code: str, *args: str, env: dict | None = None) -> tuple[float, str, float]:
        """Wall seconds, stdout, and the child's CPU seconds (user + system: less at the mercy of a busy machine)."""
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return time.perf_counter() - started, out.stdout, cpu

    def medians(runs) -> str:
        return f"{statistics.median(r[0] for r in runs):.2f} s, CPU {statistics.median(r[2] for r in runs):.2f} s"

    dagster_runs = [wall("import dagster") for _ in range(repeat)]
    # the floor: the definitions need Dagster and the pandera models (pandera imports pandas when it is installed)
    floor_runs = [wall("import dagster, pandera.polars") for _ in range(repeat)]
    location_runs = [wall("import turbomode_pipeline.definitions") for _ in range(repeat)]
    floor, location = (statistics.median(r[0] for r in runs) for runs in (floor_runs, location_runs))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DAGSTER_HOME": tmp, "TURBOMODE_DATA_DIR": tmp}
        Path(tmp, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        ledger = Ledger(path=f"{tmp}/trading.sqlite")
        ledger.seed_strategies(str(DEFAULT_STRATEGIES))
        ids = ",".join(ledger.strategies()["id"].to_list())
        ticks = [wall(LAUNCHED_TICK, f"2026-11-20T14:{40 + m}:00+00:00", ids, env=env) for m in range(repeat)]
        written = ledger.query("SELECT count(*) AS n FROM equity")["n"][0]
    tick_import, tick_instance = (statistics.median(float(out.split()[i]) for _, out, _ in ticks) for i in (0, 1))
    table(
        f"start-up, median of {repeat} fresh processes (goal: code location < 2 s idle, launched tick < 5 s)",
        [
            ("import dagster", medians(dagster_runs)),
            ("import dagster + pandera.polars (floor)", medians(floor_runs)),
            ("import the code location", medians(location_runs)),
            ("code location / floor", f"{location / floor:.2f}x"),
            ("launched live tick, end to end", medians(ticks)),
            ("of which imports", f"{tick_import:.2f} s"),
            ("of which opening the instance", f"{tick_instance:.2f} s"),
            ("equity rows written", f"{written}"),
        ],
    )


def walk_forward(predictability: float = 0.5, months: int = 12, cadence: str = "monthly", fast: bool = True) -> None:
    """Models and scanner backfilled together over the last `months` of ten years, full universe, at `cadence`:
    each period's models trained as of its cutoff (model_training_job through the dagster CLI, the multiprocess
    executor, and a dask cluster of two local workers), the window scanned with the champion as of each session.
    Prints the out-of-sample rank IC beside the simulator's best possible on the same sessions, and the cost."""
    import json
    import shutil
    import subprocess

    import polars as pl

    from turbomode_pipeline.assets.scanner import scanner_signals
    from turbomode_pipeline.core.features import compute_features
    from turbomode_pipeline.core.labels import triple_barrier
    from turbomode_pipeline.core.market_sim import expected_idiosyncratic_return
    from turbomode_pipeline.core.point_in_time import serving_week, trains_in
    from turbomode_pipeline.core.scanner import forward_returns
    from turbomode_pipeline.core.universe import load_universe
    from turbomode_pipeline.core.walk_forward import overall, period_rank_ic
    from turbomode_pipeline.definitions import resources
    from turbomode_pipeline.schemas import DAILY_FEATURES, TRAINING_SAMPLES, DailyFeatures, TrainingSamples, conform
    from turbomode_pipeline.walk_forward_command import FAST_HOLDOUT, first_training_week
    from turbomode_pipeline_tests import conftest  # noqa: F401 (importing it drops the host's TURBOMODE_* variables)
    from turbomode_pipeline_tests.servers import BIN, free_port, server_env

    horizon = 10
    grid = ten_year_grid()
    bars = ten_years_of_bars(predictability)
    features = compute_features(bars)
    window = grid[-months * 21 - horizon:-horizon]  # sessions whose horizon has passed
    weeks = (first_training_week(window[0], cadence), serving_week(window[-1]))
    periods = sum(trains_in(weeks[0] + timedelta(days=7 * k), cadence)
                  for k in range((weeks[1] - weeks[0]).days // 7 + 1))
    config = {**QUIET, "ops": {"sector_models": {"config": {
        "cadence": cadence, **({"fast": True, "holdout_sessions": FAST_HOLDOUT} if fast else {})}}}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config.json").write_text(json.dumps(config))
        seeded = Warehouse(path=str(root / "warehouse.duckdb"))
        sessions = grid[-2520:]
        seeded.replace_partitions(DAILY_FEATURES, conform(features, DailyFeatures), sessions)
        seeded.replace_partitions(TRAINING_SAMPLES, conform(triple_barrier(bars, features), TrainingSamples), sessions)
        tags = json.dumps({PARTITION_RANGE_START: str(weeks[0]), PARTITION_RANGE_END: str(weeks[1])})

        def prepared(name: str, **extra: str) -> dict:
            folder = root / name
            (folder / "data").mkdir(parents=True)
            (folder / "home").mkdir()
            shutil.copy(root / "warehouse.duckdb", folder / "data" / "warehouse.duckdb")
            return server_env(folder, folder / "home", DEFAULT_UNIVERSE, TURBOMODE_SIM_PREDICTABILITY=str(predictability),
                              **extra)

        def train(env: dict) -> float:
            command = [str(BIN / "dagster"), "job", "execute", "-m", "turbomode_pipeline.definitions",
                       "-j", "model_training_job", "-c", str(root / "config.json"), "--tags", tags]
            return timed(lambda: subprocess.run(command, env=env, check=True, capture_output=True))

        env = prepared("multiprocess")
        multiprocess = train(env)
        scheduler = f"tcp://127.0.0.1:{free_port()}"
        distributed = on_local_dask(train, prepared("dask", TURBOMODE_DASK_SCHEDULER=scheduler), scheduler, root)
        doors = resources(load_settings(env))
        scan = timed(lambda: materialize([scanner_signals], resources=doors, instance=DagsterInstance.ephemeral(),
                                         run_config=QUIET, tags={PARTITION_RANGE_START: str(window[0]),
                                                                 PARTITION_RANGE_END: str(window[-1])}))
        scores = doors["warehouse"].scores(window)
    returns = forward_returns(bars, horizon)
    best = expected_idiosyncratic_return(load_universe(DEFAULT_UNIVERSE), grid, window, seed=7,
                                         predictability=predictability, horizon=horizon)
    summary = overall(scores, returns, horizon, best)
    by_period = period_rank_ic(scores, returns, horizon, best).filter(pl.col("sector") == "all")
    table(
        f"walk-forward over {len(window)} sessions {window[0]}..{window[-1]} at predictability {predictability}: "
        f"{cadence} models ({periods} periods, {'fast' if fast else 'full'} settings), full universe",
        [
            ("out-of-sample daily rank IC within sectors (mean)", f"{summary['rank_ic']:.4f}"),
            ("its overlap-adjusted t", f"{summary['rank_ic_t']:.2f}"),
            ("simulator's best possible rank IC, same sessions", f"{summary['best_rank_ic']:.4f}"),
            ("ratio (target >= 0.75)", f"{summary['ratio']:.2f}"),
            ("periods whose pooled rank IC t > 0", f"{int((by_period['rank_ic_t'] > 0).sum())} of {by_period.height}"),
            ("training, multiprocess executor (2 processes)", f"{multiprocess:.0f} s"),
            ("training, per period, multiprocess", f"{multiprocess / max(periods, 1):.0f} s"),
            ("training, dask (2 local workers)", f"{distributed:.0f} s"),
            ("ratio: dask / multiprocess", f"{distributed / multiprocess:.2f}"),
            ("scan of the window, one run", f"{scan:.0f} s"),
        ],
    )


SECTIONS = {
    "start_up": start_up, "live_tick": live_tick, "bars_backfill": bars_backfill, "feature_engine": feature_engine,
    "features_backfill_cli": features_backfill_cli, "model_training": model_training,
    "model_training_random_walk": lambda: model_training(predictability=0.0), "market_simulation": market_simulation,
    "instance_storage": instance_storage,
    "scanner_scan": scanner_scan, "strategy_backtest_year": strategy_backtest_year, "replay_ticks": replay_ticks,
    "signal_backtest": signal_backtest, "real_closes": real_closes, "training_executors": training_executors,
    "walk_forward": walk_forward, "walk_forward_random_walk": lambda: walk_forward(predictability=0.0),
}


def main(names: list[str]) -> None:
    """Every section, or only those named: `python -m turbomode_pipeline_tests.bench scanner_scan`."""
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown bench section(s) {unknown}; known: {', '.join(SECTIONS)}")
    for name in names or SECTIONS:
        SECTIONS[name]()


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
