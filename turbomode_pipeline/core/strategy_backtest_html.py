"""The strategy backtest as one self-contained HTML page (the drift report's style): plots as base64 PNG."""

from __future__ import annotations

import html

import numpy as np
import polars as pl

from turbomode_pipeline.core.drift_html import _png
from turbomode_pipeline.core.report_html import pyplot

SUMMARY_COLUMNS = ["strategy_id", "type", "symbol", "timeframe_minutes", "sessions", "orders_filled", "orders_rejected",
                   "round_trips", "hit_rate", "pnl_before_costs", "commission", "slippage", "pnl", "total_return",
                   "sharpe_before_costs", "sharpe", "sharpe_se", "sharpe_t", "deflated_sharpe", "max_drawdown", "exposure"]
TRADE_COLUMNS = ["strategy_id", "bar_time", "side", "price", "qty", "risk_reason", "fill_time", "filled_price"]
MAX_TRADES = 300


def equity_png(equity: pl.DataFrame) -> str:
    """Each strategy's equity per session and its drawdown, one line per strategy."""
    figure, (curve, drawdown) = pyplot().subplots(2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for (strategy_id,), frame in equity.sort("session").group_by("strategy_id", maintain_order=True):
        values = frame["equity"].to_numpy()
        sessions = frame["session"].to_list()
        curve.plot(sessions, values, label=strategy_id, linewidth=1)
        drawdown.plot(sessions, values / np.maximum.accumulate(values) - 1, linewidth=1)
    curve.set_title("equity per strategy (USD, each in its own paper account)")
    curve.legend(fontsize=7, ncol=3)
    drawdown.set_title("drawdown")
    figure.autofmt_xdate()
    figure.tight_layout()
    return _png(figure)


def _table(frame: pl.DataFrame, columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in frame.select(columns).iter_rows(named=True):  # a handful of strategies; trades capped at MAX_TRADES
        cells = []
        for column in columns:
            value = row[column]
            text = f"{value:.3f}" if isinstance(value, float) else "" if value is None else str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_report(title: str, summary: pl.DataFrame, equity: pl.DataFrame, trades: pl.DataFrame, notes: list[str],
                  image: str | None = None) -> str:
    """The whole page; it needs nothing but itself to display. `image`: equity_png(equity), when already drawn."""
    image = image or (equity_png(equity) if not equity.is_empty() else None)
    figure = (f'<h2>Equity and drawdown</h2><img alt="equity curves" src="data:image/png;base64,{image}">'
              if image else "<p>No bars in the range: no equity curve.</p>")
    shown = trades.sort("bar_time").head(MAX_TRADES)
    more = f" (the first {MAX_TRADES} of {trades.height}; all are in the warehouse)" if trades.height > MAX_TRADES else ""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>TurboMode strategy backtest, {html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}} td:first-child{{text-align:left}}
img{{max-width:100%;display:block;margin:1em 0}}</style></head><body>
<h1>Strategy backtest, {html.escape(title)}</h1>
<p>The live strategies' own decision code, the live risk manager and the local paper broker's fill model (next bar's
open, slippage, commission), over history. Sharpe from daily equity returns, annualised over 252 sessions, after
costs (sharpe_before_costs: the same returns with the commission and slippage paid added back); sharpe_se is its
standard error (about 1 for a year of data: a Sharpe within two of them of zero is no evidence of an edge), sharpe_t
its t, and deflated_sharpe the probability that the true Sharpe is above zero allowing for the best of the
strategies in this table having been picked (Bailey and L&oacute;pez de Prado). Exposure is the share of bars with a
position.</p>
<ul>{items}</ul>
{_table(summary, SUMMARY_COLUMNS)}
{figure}
<h2>Orders{more}</h2>
{_table(shown, TRADE_COLUMNS)}
</body></html>
"""
