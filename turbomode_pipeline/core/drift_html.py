"""The drift report as one self-contained HTML page: plots embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import numpy as np
import polars as pl

from turbomode_pipeline.core.drift import HIT_RATE_ALPHA, psi_matrix
from turbomode_pipeline.core.report_html import pyplot

STATUS_COLOURS = {"ok": "#2e7d32", "warn": "#ef6c00", "drift": "#c62828"}
REFERENCE, CURRENT = "#607d8b", "#d84315"


@dataclass(frozen=True)
class DriftReportData:
    week_ending: str
    sectors: pl.DataFrame  # the drift_report rows
    features: pl.DataFrame  # the drift_features rows
    reference: pl.DataFrame  # sector + feature values of the champions' training windows
    current: pl.DataFrame  # sector + feature values of the current window
    confidence_reference: pl.DataFrame  # sector, probability_up
    confidence_current: pl.DataFrame


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    pyplot().close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _heat_map(data: DriftReportData) -> str:
    sectors, features, matrix = psi_matrix(data.features)
    figure, axis = pyplot().subplots(figsize=(max(8, 0.32 * len(features)), 0.45 * len(sectors) + 2.5))
    limit = max(1.0, float(np.nanmax(np.abs(matrix))))
    image = axis.imshow(matrix, cmap="RdYlGn_r", vmin=-limit, vmax=limit, aspect="auto")
    axis.set_xticks(range(len(features)), features, rotation=90, fontsize=7)
    axis.set_yticks(range(len(sectors)), sectors, fontsize=8)
    axis.set_title("excess PSI (PSI minus the training window's own month-to-month PSI)")
    figure.colorbar(image, ax=axis, fraction=0.025)
    figure.tight_layout()
    return _png(figure)


def _distributions(data: DriftReportData) -> str:
    rows = data.sectors.sort("sector").iter_rows(named=True)  # one panel per sector (11)
    figure, axes = pyplot().subplots(3, 4, figsize=(14, 9))
    for axis in axes.ravel():
        axis.set_visible(False)
    for axis, row in zip(axes.ravel(), rows, strict=False):
        feature, sector = row["top_feature"], row["sector"]
        reference = data.reference.filter(pl.col("sector") == sector)[feature].drop_nulls().to_numpy()
        current = data.current.filter(pl.col("sector") == sector)[feature].drop_nulls().to_numpy()
        low, high = np.quantile(np.concatenate([reference, current]), [0.005, 0.995])
        bins = np.linspace(low, high, 31) if high > low else 10
        axis.set_visible(True)
        axis.hist(reference, bins=bins, density=True, alpha=0.55, color=REFERENCE, label="training window")
        axis.hist(current, bins=bins, density=True, alpha=0.55, color=CURRENT, label="last sessions")
        axis.set_title(f"{sector}: {feature}", fontsize=9, color=STATUS_COLOURS[row["status"]])
        axis.tick_params(labelsize=7)
    axes.ravel()[0].legend(fontsize=7)
    figure.suptitle("each sector's most drifted judged feature")
    figure.tight_layout()
    return _png(figure)


def _signals(data: DriftReportData) -> str:
    figure, (hits, balance, confidence) = pyplot().subplots(1, 3, figsize=(16, 4.8))
    table = data.sectors.sort("sector")
    positions = np.arange(table.height)
    hits.bar(positions - 0.2, table["hit_rate"].fill_null(0).to_numpy(), 0.4, color=CURRENT, label="realised")
    hits.bar(positions + 0.2, table["expected_hit_rate"].fill_null(0).to_numpy(), 0.4, color=REFERENCE, label="holdout")
    hits.set_xticks(positions, table["sector"].to_list(), rotation=60, ha="right", fontsize=7)
    hits.set_title("hit rate of resolved signals")
    hits.legend(fontsize=7)
    signals = (table["buy"] + table["sell"]).to_numpy().clip(min=1)
    balance.bar(positions, table["buy"].to_numpy() / signals, color="#2e7d32", label="BUY")
    balance.bar(positions, table["sell"].to_numpy() / signals, bottom=table["buy"].to_numpy() / signals,
                color="#c62828", label="SELL")
    balance.set_xticks(positions, table["sector"].to_list(), rotation=60, ha="right", fontsize=7)
    balance.set_title("BUY / SELL share of the week's signals")
    balance.legend(fontsize=7)
    bins = np.linspace(0, 1, 21)
    confidence.hist(data.confidence_reference["probability_up"].to_numpy(), bins=bins, density=True, alpha=0.55,
                    color=REFERENCE, label="previous sessions")
    confidence.hist(data.confidence_current["probability_up"].to_numpy(), bins=bins, density=True, alpha=0.55,
                    color=CURRENT, label="last sessions")
    confidence.set_title("scanner's P(up), all sectors")
    confidence.legend(fontsize=7)
    for axis, empty, what in ((balance, (table["buy"] + table["sell"]).sum() == 0, "signals"),
                              (confidence, data.confidence_current.is_empty(), "scanner scores")):
        if empty:
            axis.text(0.5, 0.5, f"no {what} in this window yet", ha="center", transform=axis.transAxes)
    figure.tight_layout()
    return _png(figure)


def _summary_table(sectors: pl.DataFrame) -> str:
    columns = ["sector", "status", "median_excess_psi", "top_feature", "max_ks", "confidence_psi", "buy", "sell",
               "one_sided", "outcomes", "hit_rate", "expected_hit_rate", "hit_rate_pvalue", "hit_rate_low"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in sectors.sort("sector").iter_rows(named=True):  # 11 sectors
        cells = []
        for column in columns:
            value = row[column]
            text = f"{value:.{4 if column == 'hit_rate_pvalue' else 3}f}" if isinstance(value, float) else (
                "" if value is None else str(value))
            style = f' style="color:{STATUS_COLOURS[value]};font-weight:bold"' if column == "status" else ""
            cells.append(f"<td{style}>{html.escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_report(data: DriftReportData) -> str:
    """The whole page; it needs nothing but itself to display."""
    drifted = data.sectors.filter(pl.col("status") == "drift")["sector"].to_list()
    one_sided = data.sectors.filter(pl.col("one_sided"))["sector"].to_list()
    images = {
        "PSI heat map": _heat_map(data),
        "Distributions": _distributions(data),
        "Signals, hit rates and confidence": _signals(data),
    }
    figures = "".join(
        f'<h2>{title}</h2><img alt="{title}" src="data:image/png;base64,{png}">' for title, png in images.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>TurboMode drift report, week ending {data.week_ending}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}} td:first-child{{text-align:left}}
img{{max-width:100%;display:block;margin:1em 0}}</style></head><body>
<h1>Drift report, week ending {data.week_ending}</h1>
<p>Drifted sectors: <b>{html.escape(", ".join(drifted) or "none")}</b>. One-sided signals (more than the
threshold pointing one way): <b>{html.escape(", ".join(one_sided) or "none")}</b>.</p>
<p>A sector's status is that of the median excess PSI of its short-memory features: PSI against the champion's
training window minus the largest PSI any window of the same length shows inside that training window. A sector
whose realised hit rate is significantly below its holdout's (one-sided binomial test, <code>hit_rate_pvalue</code>
below {HIT_RATE_ALPHA}: <code>hit_rate_low</code>) is at least <b>warn</b>.</p>
{_summary_table(data.sectors)}
{figures}
</body></html>
"""
