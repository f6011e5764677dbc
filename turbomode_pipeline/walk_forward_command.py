"""`turbomode walk-forward`: models and scanner backfilled together over a window, then one report of what
the desk would have seen: out-of-sample rank IC by model period and sector with its t, the simulator's best
possible rank IC on the same sessions (simulated market), the long-short signal backtest, and the cost.

It runs the same jobs a backfill in the UI runs: `model_training_job` over the window's training weeks (the
cadence picks which train; the others are served by the newest model before them), then `scanner_job`.
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta

FAST_HOLDOUT = 120


def register(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("walk-forward", help="train each period's models as of its cutoff, scan the window "
                                 "with them, and report out-of-sample rank IC by period and sector")
    parser.add_argument("--from", dest="start", required=True, help="first scanned session, e.g. 2025-01-02")
    parser.add_argument("--to", dest="end", required=True, help="last scanned session")
    parser.add_argument("--cadence", default="monthly", choices=("weekly", "monthly", "quarterly"),
                        help="how often a new model set is trained (default monthly)")
    parser.add_argument("--fast", action="store_true", help=f"fast model settings and a {FAST_HOLDOUT}-session holdout")
    parser.set_defaults(handler=run)
    return parser


def first_training_week(first: date, cadence: str) -> date:
    """The newest week at or before `first`'s that the cadence trains: its model serves `first`."""
    from turbomode_pipeline.core.point_in_time import serving_week, trains_in

    week = serving_week(first)
    while not trains_in(week, cadence):
        week -= timedelta(days=7)
    return week


def run(args) -> int:
    from turbomode_pipeline.calendar import sessions_after, sessions_between
    from turbomode_pipeline.cli import _one_line, _run_job
    from turbomode_pipeline.core.point_in_time import serving_week
    from turbomode_pipeline.definitions import defs
    from turbomode_pipeline.settings import get_settings

    try:
        first, last = date.fromisoformat(args.start), date.fromisoformat(args.end)
    except ValueError as error:
        return _one_line("walk-forward", f"--from and --to must be dates like 2025-01-02: {error}")
    sessions = sessions_between(first, last)
    if not sessions:
        return _one_line("walk-forward", f"no NYSE session between {first} and {last}")
    settings = get_settings()
    config = {"cadence": args.cadence, **({"fast": True, "holdout_sessions": FAST_HOLDOUT} if args.fast else {})}
    started = time.perf_counter()
    weeks = (first_training_week(sessions[0], args.cadence), serving_week(sessions[-1]))
    _run_job("model_training_job", str(weeks[0]), str(weeks[1]), run_config={"ops": {"sector_models": {"config": config}}})
    trained = time.perf_counter() - started
    _run_job("scanner_job", str(sessions[0]), str(sessions[-1]), assets=["scanner_signals"])
    scanned = time.perf_counter() - started - trained
    warehouse = defs.resources["warehouse"]
    newest = warehouse.bars(sessions[-1], None, ["session"], ordered=False)["session"].max()
    graded = [day for day in sessions if newest and sessions_after(day, settings.label_horizon)[-1] <= newest]
    if graded:
        _run_job("scanner_job", str(graded[0]), str(graded[-1]), assets=["signal_outcomes", "signal_backtest"])
    print(report(warehouse, defs.resources["reports"], sessions, args.cadence, settings,
                 {"training": trained, "scan": scanned, "total": time.perf_counter() - started}))
    return 0


def report(warehouse, reports, sessions: list[date], cadence: str, settings, seconds: dict[str, float]) -> str:
    import polars as pl

    from turbomode_pipeline.core import report_html as html
    from turbomode_pipeline.core import walk_forward
    from turbomode_pipeline.core.scanner import forward_returns

    horizon = settings.label_horizon
    scores = warehouse.scores(sessions)
    bars = warehouse.bars(sessions[0], None, ["session", "symbol", "close"], ordered=False)
    returns = forward_returns(bars, horizon)
    best = _best_possible(settings, sessions, horizon) if settings.market_data == "simulated" else None
    periods = walk_forward.period_rank_ic(scores, returns, horizon, best)
    summary = walk_forward.overall(scores, returns, horizon, best)
    pooled = periods.filter(pl.col("sector") == "all").drop("sector")
    backtest = warehouse.latest_backtest_summary("long_short") if warehouse.has_table("signal_backtest_summary") else None
    title = f"walk-forward {sessions[0]}..{sessions[-1]}, {cadence} models, out of sample"
    lines = [
        title,
        f"{summary['sessions']} graded sessions: rank IC {summary['rank_ic']:.4f} (overlap-adjusted t {summary['rank_ic_t']:.2f})"
        + (f", simulator's best possible {summary['best_rank_ic']:.4f}, ratio {summary['ratio']:.2f}" if best is not None else ""),
        f"by model cutoff (every sector pooled):\n{pooled.with_columns(pl.col(pl.Float64).round(4))}",
    ]
    if backtest:
        lines.append(f"long-short signal backtest: Sharpe {backtest['sharpe']:.2f} (t {backtest['t_stat']:.2f}) over "
                     f"{backtest['days']} sessions, {backtest['cost_bps']:g} bps per side")
    lines.append("cost: " + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()))
    page = html.page(title, [
        html.heading(title, 1), html.paragraph(lines[1]), html.paragraph(lines[-1]),
        html.heading("by model cutoff, every sector pooled"), html.table(pooled),
        html.heading("by model cutoff and sector"), html.table(periods.filter(pl.col("sector") != "all")),
    ])
    path = reports.write(f"walk_forward_{sessions[0]}_{sessions[-1]}_{cadence}.html", page)
    return "\n".join([*lines, f"report: {path}"])


def _best_possible(settings, sessions: list[date], horizon: int):
    from turbomode_pipeline.calendar import sessions_between
    from turbomode_pipeline.core.market_sim import SIM_EPOCH, expected_idiosyncratic_return
    from turbomode_pipeline.core.universe import load_universe

    return expected_idiosyncratic_return(
        load_universe(settings.universe_path), sessions_between(SIM_EPOCH, sessions[-1]), sessions,
        seed=settings.sim_seed, predictability=settings.sim_predictability, horizon=horizon,
    )
