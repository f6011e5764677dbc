"""`turbomode signals`: a scan's signals as a trader reads them (core/signals_sheet.desk_view), from the warehouse.

The newest scanned session by default; it says when that scan ran and warns when a newer scan is due
(the scanner's due policy, automation/scanner.latest_due_scan). It reads the warehouse read-only, so it
runs while the pipeline works.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from datetime import date

FORMATS = ("table", "csv", "json")


def add_parser(commands) -> argparse.ArgumentParser:
    """The `signals` subcommand on cli.main's subparsers."""
    parser = commands.add_parser("signals", help="the newest scan's signals (or a session's): filter, sort, "
                                 "print as a table, CSV or JSON")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--session", metavar="DATE", help="the scanned session, e.g. 2026-12-04 (default: the newest scanned)")
    when.add_argument("--from", dest="start", metavar="DATE", help="first session of a range (with --to)")
    parser.add_argument("--to", dest="end", metavar="DATE", help="last session of the range (default: the newest scanned)")
    parser.add_argument("--sector", help="one sector, e.g. Energy")
    parser.add_argument("--side", type=str.upper, choices=("BUY", "SELL"))
    parser.add_argument("--min-confidence", type=float, metavar="P", help="at least this confidence, e.g. 0.65")
    parser.add_argument("--symbol", help="one symbol")
    parser.add_argument("--sort", choices=("confidence", "sector", "symbol"), default="confidence",
                        help="within each session (default confidence, highest first)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="table (default), csv or json")
    parser.set_defaults(handler=signals)
    return parser


def _fail(message: str) -> int:
    print(f"turbomode signals: {message}", file=sys.stderr)
    return 2


def signals(args: argparse.Namespace) -> int:
    """Print the chosen sessions' signals; 2 with one line when the choice names no scan or no sector."""
    from turbomode_pipeline.resources.warehouse import Warehouse
    from turbomode_pipeline.settings import get_settings

    problem = _filter_problem(args)
    if problem:
        return _fail(problem)
    settings = get_settings()
    warehouse = Warehouse(path=str(settings.warehouse_path))
    newest = warehouse.newest_scan()
    if newest is None:
        return _fail(f"no session was scanned yet: {settings.warehouse_path} holds no scanner_scores "
                     "(make demo scans the latest sessions)")
    sessions, problem = _chosen_sessions(args, warehouse, newest)
    if problem:
        return _fail(problem)
    return _print(args, warehouse, sessions, newest, settings.timezone)


def _chosen_sessions(args: argparse.Namespace, warehouse, newest: date) -> tuple[list[date], str | None]:
    """The scanned sessions the arguments choose, or the one-line reason there are none."""
    from turbomode_pipeline.calendar import not_a_session
    from turbomode_pipeline.cli import _session_range

    if args.end and not args.start:
        return [], "--to needs --from"
    if args.start:
        chosen, problem = _session_range(args.start, args.end or newest.isoformat())
    else:
        try:
            day = date.fromisoformat(args.session) if args.session else newest
        except ValueError as error:
            return [], f"--session must be a date like 2026-01-30: {error}"
        chosen, problem = ([], not_a_session(day)) if not_a_session(day) else ([day], None)
    if problem:
        return [], problem
    scanned = sorted(warehouse.held_sessions("scanner_scores", chosen))
    if not scanned:
        one = len(chosen) == 1
        what, partitions = (chosen[0], chosen[0]) if one else (f"any session of {chosen[0]}..{chosen[-1]}",
                                                               f"{chosen[0]}...{chosen[-1]}")
        return [], (f"no scan of {what}: the newest scanned session is {newest}; materialise scanner_signals "
                    f"{partitions} first")
    return scanned, None


def _filter_problem(args: argparse.Namespace) -> str | None:
    from turbomode_pipeline.partitions import SECTORS

    if args.sector is not None and args.sector not in SECTORS:
        near = difflib.get_close_matches(args.sector, SECTORS, n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        return f"no sector {args.sector!r} in the universe; {hint}its sectors are {', '.join(SECTORS)}"
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        return f"--min-confidence must be between 0 and 1, got {args.min_confidence}"
    return None


def _print(args: argparse.Namespace, warehouse, sessions: list[date], newest: date, timezone: str) -> int:
    from turbomode_pipeline.core.signals_sheet import desk_view, select_signals, sort_signals

    found = warehouse.scanned_signals(sessions[0], sessions[-1])  # only scanned sessions hold signals
    view = desk_view(found, timezone) if found is not None else None
    shown = view if view is None else sort_signals(
        select_signals(view, args.sector, args.side, args.min_confidence, args.symbol), args.sort)
    notes = sys.stdout if args.format == "table" else sys.stderr  # csv and json: stdout holds the data alone
    print(_headline(found, sessions, shown, timezone), file=notes)
    warning = _stale_warning(newest)
    if warning:
        print(warning, file=sys.stderr)
    if shown is not None and shown.height:
        one_session = len(sessions) == 1 and args.format == "table"  # the headline names it
        print(_formatted(shown.drop("session") if one_session else shown, args.format))
    return 0


def _headline(found, sessions: list[date], shown, timezone: str) -> str:
    """Which sessions, when their scan ran (in the desk's timezone), how many signals and how many shown."""
    what = f"signals of {sessions[0]}" if len(sessions) == 1 else (
        f"signals of {len(sessions)} scanned sessions {sessions[0]}..{sessions[-1]}")
    if found is None or found.is_empty():
        return f"{what}: the scan found no signal"
    scanned = found["created_at"].max().astimezone(_zone(timezone))
    buy = int((found["signal_type"] == "BUY").sum())
    return (f"{what}, scanned {scanned:%Y-%m-%d %H:%M %Z}: {found.height} signals ({buy} BUY / {found.height - buy} "
            f"SELL), {shown.height} shown")


def _stale_warning(newest: date) -> str | None:
    """A warning when a scan newer than `newest` was due by now (in research mode: at the history's end)."""
    from turbomode_pipeline import clock
    from turbomode_pipeline.automation.scanner import latest_due_scan, scan_due_at
    from turbomode_pipeline.due import desk_timezone, judged_at

    due = latest_due_scan(judged_at(clock.now()))
    if due is None or due <= newest:
        return None
    return (f"WARNING: stale: the newest scan is of {newest}, but the scan of {due} was due by "
            f"{scan_due_at(due).astimezone(desk_timezone()):%Y-%m-%d %H:%M %Z}; turbomode status says what is missing")


def _formatted(shown, format_: str) -> str:
    import polars as pl

    if format_ == "csv":
        return shown.write_csv().rstrip("\n")
    if format_ == "json":
        return shown.with_columns(pl.col("session").cast(pl.String)).write_json()
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, fmt_str_lengths=60, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        return str(shown)


def _zone(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
