"""Self-contained HTML reports and their PNG plots, shared by the backtest reports.

The page needs nothing but itself: plots are base64 PNG, the data behind each curve plot is
embedded as JSON (so a reader, or a test, can check the plot against the warehouse). The same
PNG, as markdown, goes on a Dagster materialisation (`markdown_image`).

    page(title, [paragraph(text), table(frame), image(alt, png(figure)), data_block(id, frame)]) -> str
    equity_figure({"name": curve_frame}) -> matplotlib Figure  (curve_frame: session, equity, drawdown)
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

COLOURS = ("#1565c0", "#607d8b", "#d84315", "#2e7d32", "#6a1b9a", "#ef6c00")
STYLE = """body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:13px;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right} td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:1em 0}"""


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported at first use: ~1 s that a process which
    draws nothing (every Dagster run and CLI call imports this module) should not pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(figure, dpi: int = 90) -> str:
    """The figure as base64 PNG; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def markdown_image(encoded_png: str, alt: str) -> str:
    """Markdown that shows the PNG inline (Dagster's MetadataValue.md renders it)."""
    return f"![{alt}](data:image/png;base64,{encoded_png})"


def equity_figure(curves: Mapping[str, pl.DataFrame], title: str = "equity and drawdown"):
    """Equity (top) and drawdown (bottom) of each named curve over its sessions."""
    figure, (top, bottom) = pyplot().subplots(2, 1, figsize=(11, 6.5), sharex=True, height_ratios=(2.2, 1))
    for colour, (name, frame) in zip(COLOURS, curves.items(), strict=False):
        sessions = frame["session"].to_numpy()
        top.plot(sessions, frame["equity"].to_numpy(), color=colour, lw=1.2, label=name)
        bottom.fill_between(sessions, frame["drawdown"].to_numpy() * 100, 0, color=colour, alpha=0.35, label=name)
    top.axhline(1.0, color="#999", lw=0.6)
    top.set_ylabel("equity (start = 1)")
    top.set_title(title)
    top.legend(fontsize=8, loc="upper left")
    bottom.set_ylabel("drawdown %")
    figure.tight_layout()
    return figure


def bar_figure(frame: pl.DataFrame, x: str, ys: Sequence[str], title: str, percent: bool = True):
    """Grouped bars of `ys` against the categories in `x`."""
    figure, axis = pyplot().subplots(figsize=(7, 3.8))
    positions = np.arange(frame.height)
    width = 0.8 / max(len(ys), 1)
    for offset, (colour, column) in enumerate(zip(COLOURS, ys, strict=False)):
        values = frame[column].fill_null(0.0).to_numpy() * (100 if percent else 1)
        axis.bar(positions + (offset - (len(ys) - 1) / 2) * width, values, width, color=colour, label=column)
    axis.set_xticks(positions, [str(v) for v in frame[x].to_list()])
    axis.axhline(0, color="#999", lw=0.6)
    axis.set_xlabel(x)
    axis.set_ylabel("%" if percent else "")
    axis.set_title(title)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _cell(value, digits: int) -> str:
    if isinstance(value, float):
        return "" if not np.isfinite(value) else f"{value:.{digits}f}"
    return "" if value is None else str(value)


def table(frame: pl.DataFrame, digits: int = 4) -> str:
    """An HTML table of `frame` (a summary: a few dozen rows), floats to `digits` places."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v, digits))}</td>" for v in row) + "</tr>"
        for row in frame.iter_rows()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def heading(text: str, level: int = 2) -> str:
    return f"<h{level}>{html.escape(text)}</h{level}>"


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def image(alt: str, encoded_png: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded_png}">'


def data_block(element_id: str, frames: Mapping[str, pl.DataFrame]) -> str:
    """The frames as JSON ({name: {column: [values]}}, dates ISO) in a non-executed script element."""
    payload = {
        name: {c: [v.isoformat() if hasattr(v, "isoformat") else v for v in frame[c].to_list()] for c in frame.columns}
        for name, frame in frames.items()
    }
    text = json.dumps(payload).replace("</", "<\\/")
    return f'<script type="application/json" id="{html.escape(element_id)}">{text}</script>'


def page(title: str, parts: Sequence[str], head: str = "", tail: str = "") -> str:
    """The whole document: a title, then the parts (HTML fragments made by the functions above); `head` goes in
    the head after the shared style (a page's own style), `tail` at the end of the body (a page's own script)."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style>{head}</head><body>\n<h1>{html.escape(title)}</h1>\n" + "\n".join(parts)
        + f"\n{tail}</body></html>\n"
    )
