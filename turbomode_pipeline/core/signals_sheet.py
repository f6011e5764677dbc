"""A trader's view of a scan's signals: the rows `turbomode signals` prints, each sector's recent
out-of-sample record, and the signals sheet (one self-contained HTML page, sortable and filterable
in the browser by a little vanilla JS).

Every text in the page is escaped on the server; the script only reorders and hides rows, it
never writes text, so a hostile symbol stays text.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from turbomode_pipeline.core import report_html as r

col = pl.col
# The model's cutoff (the last session its labels reach), once the signal rows carry it: shown as model_cutoff.
CUTOFF_COLUMN = "model_labels_through"
SORTS = {  # --sort: within each session, the key then the tie-breakers
    "confidence": (["confidence", "symbol"], [True, False]),
    "sector": (["sector", "confidence", "symbol"], [False, True, False]),
    "symbol": (["symbol"], [False]),
}
NOT_AVAILABLE = "n/a"


def desk_view(signals: pl.DataFrame, timezone: str) -> pl.DataFrame:
    """signal_history rows as a trader reads them: session, symbol, sector, side, confidence, entry, target,
    stop, expires (in `timezone`), model (name and version) and, when the rows carry it, model_cutoff."""
    expires = col("expires_at")
    if signals.schema["expires_at"].time_zone is None:  # type: ignore[union-attr]
        expires = expires.dt.replace_time_zone("UTC")
    cutoff = [col(CUTOFF_COLUMN).alias("model_cutoff")] if CUTOFF_COLUMN in signals.columns else []
    return signals.select(
        "session", "symbol", "sector", col("signal_type").alias("side"), col("confidence").round(3),
        col("entry_price").round(2).alias("entry"), col("target_price").round(2).alias("target"),
        col("stop_loss").round(2).alias("stop"),
        expires.dt.convert_time_zone(timezone).dt.strftime("%Y-%m-%d %H:%M %Z").alias("expires"),
        pl.format("{} v{}", "model_name", "model_version").alias("model"), *cutoff,
    )


def select_signals(view: pl.DataFrame, sector: str | None = None, side: str | None = None,
                   min_confidence: float | None = None, symbol: str | None = None) -> pl.DataFrame:
    """The rows of `view` that pass every given filter (symbol: exact, case-insensitive)."""
    keep = pl.lit(True)
    if sector is not None:
        keep &= col("sector") == sector
    if side is not None:
        keep &= col("side") == side.upper()
    if min_confidence is not None:
        keep &= col("confidence") >= min_confidence
    if symbol is not None:
        keep &= col("symbol").str.to_uppercase() == symbol.upper()
    return view.filter(keep)


def sort_signals(view: pl.DataFrame, by: str) -> pl.DataFrame:
    """Session by session (oldest first), each sorted by `by` (a key of SORTS)."""
    keys, descending = SORTS[by]
    return view.sort(["session", *keys], descending=[False, *descending])


def sector_track_record(graded: pl.DataFrame) -> pl.DataFrame:
    """Per sector of graded signals (sector, signal_type, confidence, outcome, excess_ret): how many, the hit
    rate (share that reached the target) and the rank IC of P(up) against the realised excess return over the
    sector's median, signals pooled (a sector's few signals a session give no daily correlation)."""
    buy = col("signal_type") == "BUY"
    probability_up = pl.when(buy).then(col("confidence")).otherwise(1 - col("confidence"))
    excess_up = pl.when(buy).then(col("excess_ret")).otherwise(-col("excess_ret"))
    known = col("excess_up").is_not_null()
    return (
        graded.with_columns(probability_up=probability_up, excess_up=excess_up)
        .group_by("sector")
        .agg(graded_signals=pl.len(), hit_rate=(col("outcome") == "target").mean(),
             rank_ic=pl.corr(col("probability_up").filter(known), col("excess_up").filter(known), method="spearman"))
        .with_columns(col("rank_ic").fill_nan(None))
        .sort("sector")
    )


@dataclass(frozen=True)
class SignalsSheet:
    session: str
    scanned_at: datetime  # when the scan ran
    timezone: str  # the desk's
    signals: pl.DataFrame  # desk_view rows of the session
    track_record: pl.DataFrame  # sector_track_record of the graded sessions `graded_between`
    graded_between: str  # e.g. "2026-09-08..2026-11-20"
    unscored: pl.DataFrame  # sector, reason, symbols (a list): the symbols the scan could not score


def _rate(value: float | None, digits: int = 3) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.{digits}f}"


def _with_record(signals: pl.DataFrame, record: pl.DataFrame) -> pl.DataFrame:
    return signals.join(record.select("sector", sector_hit_rate="hit_rate", sector_rank_ic="rank_ic"),
                        on="sector", how="left").sort("sector", "confidence", "symbol", descending=[False, True, False])


COLUMNS = (  # key, heading, numeric, digits
    ("symbol", "symbol", False, 0), ("sector", "sector", False, 0), ("side", "side", False, 0),
    ("confidence", "confidence", True, 3), ("entry", "entry", True, 2), ("target", "target", True, 2),
    ("stop", "stop", True, 2), ("expires", "expires", False, 0), ("model", "model", False, 0),
    ("model_cutoff", "model cutoff", False, 0),
    ("sector_hit_rate", "sector hit rate", True, 3), ("sector_rank_ic", "sector rank IC", True, 3),
)


def _cell(key: str, value, numeric: bool, digits: int) -> str:
    if numeric:
        sort, text = ("", NOT_AVAILABLE) if value is None else (repr(float(value)), f"{value:.{digits}f}")
        return f'<td class="num" data-key="{key}" data-sort="{sort}">{text}</td>'
    text = html.escape("" if value is None else str(value))
    side = f' class="{text}"' if key == "side" else ""
    return f'<td{side} data-key="{key}" data-sort="{text}">{text}</td>'


def _signal_table(rows: pl.DataFrame) -> str:
    columns = [c for c in COLUMNS if c[0] in rows.columns]
    head = "".join(f'<th data-key="{key}"{" class=num" if numeric else ""} title="sort">{html.escape(heading)}</th>'
                   for key, heading, numeric, _ in columns)
    body = []
    for row in rows.iter_rows(named=True):
        marks = "".join(f' data-{key}="{html.escape(str(row[key]), quote=True)}"' for key in ("sector", "side", "symbol"))
        body.append(f"<tr{marks}>" + "".join(_cell(key, row[key], numeric, digits)
                                              for key, _, numeric, digits in columns) + "</tr>")
    return f'<table id="signals"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _options(element_id: str, label: str, values: Sequence[str], everything: str) -> str:
    options = "".join(f'<option value="{html.escape(v, quote=True)}">{html.escape(v)}</option>' for v in values)
    return (f'<label>{html.escape(label)} <select id="{element_id}"><option value="">{html.escape(everything)}</option>'
            f"{options}</select></label>")


def _controls(rows: pl.DataFrame) -> str:
    return (
        '<p class="controls">'
        + _options("sector-filter", "sector", sorted(rows["sector"].unique().to_list()), "all sectors")
        + _options("side-filter", "side", ["BUY", "SELL"], "both sides")
        + ' <label>symbol <input id="symbol-filter" size="8"></label>'
        + f' <span id="shown">{rows.height}</span> of {rows.height} signals shown; click a heading to sort</p>'
    )


def _record_table(record: pl.DataFrame) -> str:
    """One row per sector with graded signals (eleven at most: formatting them one by one costs nothing)."""
    shown = record.select("sector", col("graded_signals").alias("graded signals"),
                          *[col(c).map_elements(_rate, return_dtype=pl.String).fill_null(NOT_AVAILABLE).alias(heading)
                            for c, heading in (("hit_rate", "hit rate"), ("rank_ic", "rank IC"))])
    return r.table(shown)


def _unscored_table(unscored: pl.DataFrame) -> str:
    return r.table(unscored.select("sector", "reason", count=col("symbols").list.len(),
                                   symbols=col("symbols").list.join(", ")))


def render_sheet(sheet: SignalsSheet) -> str:
    """The whole page; it needs nothing but itself."""
    rows = _with_record(sheet.signals, sheet.track_record)
    buy = int((rows["side"] == "BUY").sum())
    scanned = sheet.scanned_at.astimezone(_zone(sheet.timezone)).strftime("%Y-%m-%d %H:%M %Z")
    parts = [
        r.paragraph(f"Scanned {scanned}: {rows.height} signals, {buy} BUY / {rows.height - buy} SELL. Times are "
                    f"{sheet.timezone}. Each sector's hit rate (share of signals that reached their target) and rank "
                    f"IC (P(up) against the realised return over the sector's median) are out of sample: the "
                    f"scanner's own signals of the sessions {sheet.graded_between} that signal_outcomes graded "
                    f"(their horizon ended by this session's close); {NOT_AVAILABLE} when none was graded."),
        _controls(rows),
        _signal_table(rows),
        r.heading("Sectors' recent record"),
        _record_table(sheet.track_record) if sheet.track_record.height else r.paragraph("No graded signal yet."),
    ]
    if sheet.unscored.height:
        parts += [r.heading("Not scored"), _unscored_table(sheet.unscored)]
    return r.page(f"Signals of {sheet.session}", parts, head=f"<style>{STYLE}</style>", tail=f"<script>{SCRIPT}</script>")


def _zone(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


STYLE = """th{cursor:pointer;background:#f3f3f3} th.sorted-up::after{content:" \\25B2"} th.sorted-down::after{content:" \\25BC"}
#signals td:not(.num),#signals th:not(.num){text-align:left}
td.BUY{color:#2e7d32;font-weight:bold} td.SELL{color:#c62828;font-weight:bold} .controls label{margin-right:1em}"""
# Sorting reads each cell's data-sort (numbers: numerically, n/a last); filtering hides rows by their data-sector,
# data-side and data-symbol. Nothing is written into the page but the count of shown rows.
SCRIPT = """(function () {
  var table = document.getElementById("signals"), body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows), sortedBy = null, descending = false;
  function value(row, key, numeric) {
    var text = row.querySelector('td[data-key="' + key + '"]').getAttribute("data-sort");
    if (!numeric) return text;
    return text === "" ? -Infinity : parseFloat(text);
  }
  function sortBy(header) {
    var key = header.getAttribute("data-key"), numeric = header.classList.contains("num");
    descending = sortedBy === key ? !descending : numeric;
    sortedBy = key;
    rows.sort(function (a, b) {
      var x = value(a, key, numeric), y = value(b, key, numeric);
      var order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.classList.remove("sorted-up", "sorted-down");
    });
    header.classList.add(descending ? "sorted-down" : "sorted-up");
  }
  function filter() {
    var sector = document.getElementById("sector-filter").value;
    var side = document.getElementById("side-filter").value;
    var symbol = document.getElementById("symbol-filter").value.trim().toUpperCase();
    var shown = 0;
    rows.forEach(function (row) {
      var keep = (!sector || row.getAttribute("data-sector") === sector)
        && (!side || row.getAttribute("data-side") === side)
        && (!symbol || row.getAttribute("data-symbol").toUpperCase().indexOf(symbol) >= 0);
      row.hidden = !keep;
      if (keep) shown += 1;
    });
    document.getElementById("shown").textContent = String(shown);
  }
  table.tHead.addEventListener("click", function (event) {
    var header = event.target.closest("th");
    if (header) sortBy(header);
  });
  ["sector-filter", "side-filter"].forEach(function (id) {
    document.getElementById(id).addEventListener("change", filter);
  });
  document.getElementById("symbol-filter").addEventListener("input", filter);
})();"""
