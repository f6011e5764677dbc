"""The signal backtest's HTML page, built from core/report_html.py's parts."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from turbomode_pipeline.core import report_html as r

CURVE_LABELS = {"long_short": "long-short (net)", "benchmark": "equal-weight benchmark", "signals": "signals as trades"}


@dataclass(frozen=True)
class SignalBacktestReport:
    as_of: str
    summary: pl.DataFrame  # signal_backtest_summary rows
    curves: pl.DataFrame  # signal_backtest_curves rows: strategy, session, ret, equity, drawdown
    quantiles: pl.DataFrame  # signal_backtest_quantiles rows
    horizon: int
    cost_bps: float
    quantile_count: int


def curves_by_strategy(curves: pl.DataFrame, strategies: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    return {
        CURVE_LABELS[name]: curves.filter(pl.col("strategy") == name).sort("session")
        for name in strategies if curves.filter(pl.col("strategy") == name).height
    }


def equity_png(curves: pl.DataFrame, dpi: int = 90) -> str:
    """The long-short book against the benchmark: equity and drawdown."""
    figure = r.equity_figure(curves_by_strategy(curves, ("long_short", "benchmark")),
                             "sector-neutral long-short of the scanner's scores, after costs")
    return r.png(figure, dpi)


def _uncertainty(row: dict) -> str:
    se, deflated = row.get("sharpe_se"), row.get("deflated_sharpe")
    parts = [f"t {row['t_stat']:.1f}"] + ([f"standard error {se:.2f}"] if se is not None else []) + (
        [f"deflated Sharpe {deflated:.2f} for the two strategies compared"] if deflated is not None else [])
    return f" ({', '.join(parts)})"


def _before_costs(row: dict) -> str:
    before = row.get("sharpe_before_costs")
    return (f"{before:.2f} before costs ({100 * row['ann_costs']:.2f}% a year paid), "
            if before is not None and row.get("ann_costs") is not None else "")


def render_report(data: SignalBacktestReport) -> str:
    summary = data.summary.select(
        "strategy", "first_session", "last_session", "days", "ann_return", "ann_vol", "sharpe_before_costs", "ann_costs",
        "sharpe", "sharpe_se", "t_stat", "deflated_sharpe", "max_drawdown", "turnover", "hit_rate", "avg_holding", "observations",
    )
    long_short = data.summary.filter(pl.col("strategy") == "long_short").row(0, named=True)
    by_score = data.quantiles.filter(pl.col("strategy") == "long_short").sort("quantile")
    by_confidence = data.quantiles.filter(pl.col("strategy") == "signals").sort("quantile")
    signals_figure = r.equity_figure(curves_by_strategy(data.curves, ("signals",)),
                                     "the scanner's BUY/SELL signals as trades (equal size, not compounded)")
    parts = [
        r.paragraph(
            f"Long-short: within each sector, long the top and short the bottom 1/{data.quantile_count} of the "
            f"scanner's score (at least one name each side), equal weight, held {data.horizon} sessions in "
            f"overlapping daily tranches; {data.cost_bps:g} bps per side on every trade. Sharpe "
            f"{long_short['sharpe']:.2f} after costs{_uncertainty(long_short)}, "
            f"{_before_costs(long_short)}annualised return "
            f"{100 * long_short['ann_return']:.2f}%, max drawdown {100 * long_short['max_drawdown']:.2f}%."
        ),
        r.paragraph(
            "Signals as trades: every BUY/SELL entered at its entry price and closed at target, stop or expiry as "
            "signal_outcomes grades it, one equal notional each, costs on entry and exit; capital is the peak "
            "number of trades open at once. Turnover is traded notional per day over capital; hit rate is the "
            "share of positive days (long-short, benchmark) or of trades with a positive net return (signals)."
        ),
        r.table(summary),
        r.heading("Long-short equity and drawdown"),
        r.image("long-short equity and drawdown", equity_png(data.curves)),
        r.heading("Signals as trades"),
        r.image("signals equity and drawdown", r.png(signals_figure)),
        r.heading("Returns by score quantile (within sector)"),
        r.paragraph(f"mean {data.horizon}-session forward return of each quantile; monotone: "
                    f"{'yes' if _monotone(by_score) else 'no'}"),
        r.table(by_score.select("quantile", "observations", "mean_ret", "mean_excess"), digits=5),
        r.image("returns by score quantile", r.png(r.bar_figure(by_score, "quantile", ["mean_ret", "mean_excess"],
                                                                 "forward return by score quantile"))),
        r.heading("Signals by confidence quantile"),
        r.table(by_confidence.select("quantile", "observations", "mean_ret", "mean_excess"), digits=5),
        r.data_block("equity-data", {
            name: data.curves.filter(pl.col("strategy") == name).sort("session").select("session", "equity", "drawdown")
            for name in ("long_short", "benchmark", "signals")
        }),
    ]
    return r.page(f"Signal backtest as of {data.as_of}", parts)


def _monotone(by_quantile: pl.DataFrame) -> bool:
    values = by_quantile["mean_ret"].to_list()
    return len(values) > 1 and all(b >= a for a, b in zip(values, values[1:], strict=False))
