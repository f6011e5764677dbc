"""`make bench`: wall times of the pipeline's heavy paths, each beside a baseline in the same run.

Benchmarks, not tests: the machines are noisy, so nothing here asserts a time.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dagster import DagsterInstance, materialize

from turbomode_pipeline.assets.market_data import daily_bars
from turbomode_pipeline.automation.market_data import PARTITION_RANGE_END, PARTITION_RANGE_START, due_sessions
from turbomode_pipeline.resources.market_data import SimulatedMarketData
from turbomode_pipeline.resources.universe import Universe
from turbomode_pipeline.resources.warehouse import Warehouse
from turbomode_pipeline.settings import DEFAULT_UNIVERSE

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


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


def ten_years_of_bars(predictability: float = 0.5):
    from turbomode_pipeline.calendar import sessions_between
    from turbomode_pipeline.core.market_sim import SIM_EPOCH, simulate_daily_bars
    from turbomode_pipeline.core.universe import load_universe

    grid = sessions_between(SIM_EPOCH, due_sessions(datetime.now(UTC), 1)[0])
    return simulate_daily_bars(load_universe(DEFAULT_UNIVERSE), grid, grid[-2520:], seed=7, predictability=predictability)


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
    from turbomode_pipeline.core.indicators import reference_indicators

    bars = ten_years_of_bars().sort("symbol", "session")  # as the warehouse returns them
    best = lambda action, repeat=3: min(timed(action) for _ in range(repeat))  # noqa: E731
    engine = best(lambda: compute_features(bars))
    subset = best(lambda: reference_indicators(bars))
    arrays = per_symbol_arrays(bars)
    talib_time = best(lambda: talib_loop(arrays))
    talib_split = best(lambda: talib_loop(per_symbol_arrays(bars)))
    pandas_time = best(lambda: pandas_indicators(bars), repeat=1)
    symbols, sessions = bars["symbol"].n_unique(), bars["session"].n_unique()
    table(
        f"feature engine, {symbols} symbols x {sessions} sessions (best of 3)",
        [
            (f"all {len(FEATURES)} features (polars)", f"{engine:.2f} s"),
            ("indicator subset: RSI ATR MACD BB STOCH ADX (polars)", f"{subset:.3f} s"),
            ("same subset, TA-Lib symbol by symbol (arrays ready)", f"{talib_time:.3f} s"),
            ("same subset, TA-Lib incl. splitting the frame per symbol", f"{talib_split:.3f} s"),
            ("same subset, straightforward pandas", f"{pandas_time:.2f} s"),
            ("ratio polars / TA-Lib, arrays ready (target <= 2)", f"{subset / talib_time:.1f}"),
            ("ratio polars / TA-Lib incl. split", f"{subset / talib_split:.1f}"),
            ("ratio pandas / polars (target >= 10)", f"{pandas_time / subset:.1f}"),
        ],
    )


def features_backfill_cli() -> None:
    """A ten-year single-run daily_features backfill through the dagster CLI, process start included."""
    import os
    import shutil
    import subprocess

    sessions = [d.isoformat() for d in due_sessions(datetime.now(UTC), 2520)]
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        shutil.copy(repo / "dagster_home" / "dagster.yaml", home)
        env = dict(os.environ, DAGSTER_HOME=str(home), TURBOMODE_DATA_DIR=str(Path(tmp) / "data"))

        def materialize_cli(asset: str) -> float:
            command = [
                str(repo / ".venv" / "bin" / "dagster"), "asset", "materialize", "-m", "turbomode_pipeline.definitions",
                "--select", asset, "--partition-range", f"{sessions[0]}...{sessions[-1]}",
            ]
            started = time.perf_counter()
            subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True)
            return time.perf_counter() - started

        bars_time = materialize_cli("daily_bars")
        features_time = materialize_cli("daily_features")
    table(
        f"ten-year backfills through `dagster asset materialize`, {len(sessions)} sessions, process start included",
        [
            ("daily_bars (sqlite instance)", f"{bars_time:.1f} s"),
            ("daily_features (sqlite instance; target < 30 s)", f"{features_time:.1f} s"),
        ],
    )


def model_training(predictability: float = 0.5) -> None:
    """All 66 models on the full universe over ten years, as the weekly run trains them.

    At predictability 0 (a random walk) every AUC should be near 0.5: the leakage guard."""
    import resource
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    from turbomode_pipeline.core.features import FEATURES, compute_features
    from turbomode_pipeline.core.labels import triple_barrier
    from turbomode_pipeline.core.model_zoo import MODEL_TYPES
    from turbomode_pipeline.core.training import train_sector

    bars = ten_years_of_bars(predictability)
    features = compute_features(bars)
    samples = triple_barrier(bars, features).select("session", "symbol", "label", "barrier", "t1").join(
        features.select("session", "symbol", "sector", *FEATURES), on=["session", "symbol"]
    ).drop_nulls(list(FEATURES))
    sectors = sorted(samples["sector"].unique().to_list())
    train = lambda sector: train_sector(  # noqa: E731
        sector, samples.filter(pl.col("sector") == sector), list(FEATURES), horizon=10
    )
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        trainings = list(pool.map(train, sectors))
    total = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    per_type = {m: sum(t.models[m].metrics["fit_seconds"] for t in trainings) for m in MODEL_TYPES}
    auc = {m: [t.models[m].metrics["roc_auc"] for t in trainings] for m in MODEL_TYPES}
    ece = {m: [t.models[m].metrics["ece"] for t in trainings] for m in MODEL_TYPES}
    base_rates = [t.models[MODEL_TYPES[0]].metrics["base_rate"] for t in trainings]
    table(
        f"training 66 models at predictability {predictability}: {len(sectors)} sectors x 6, {samples.height:,} samples, "
        "2 sectors at a time",
        [
            *((f"{m}: fit time summed over sectors and folds", f"{per_type[m]:.0f} s") for m in MODEL_TYPES),
            *((f"{m}: holdout AUC min / mean / max", f"{min(auc[m]):.3f} / {sum(auc[m]) / len(auc[m]):.3f} / {max(auc[m]):.3f}")
              for m in MODEL_TYPES),
            *((f"{m}: holdout ECE max / mean", f"{max(ece[m]):.3f} / {sum(ece[m]) / len(ece[m]):.3f}") for m in MODEL_TYPES),
            ("holdout base rate min / max over sectors", f"{min(base_rates):.3f} / {max(base_rates):.3f}"),
            ("wall time, all 66 (target < 600 s)", f"{total:.0f} s"),
            ("peak memory of the process", f"{peak_gib:.1f} GiB"),
        ],
    )


def main() -> None:
    bars_backfill()
    feature_engine()
    features_backfill_cli()
    model_training()
    model_training(predictability=0.0)


if __name__ == "__main__":
    main()
