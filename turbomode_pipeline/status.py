"""What `turbomode status` tells: each asset's newest partition, its gaps, the active signals,
every asset's, schedule's and job's last run with a failure's reason, and the champion models;
stale when a nightly session is missing, failed when anything's last run failed.

It reads the Dagster instance and the warehouse read-only (no write lock), so it can run
while the pipeline works.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import polars as pl
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from turbomode_pipeline import clock
from turbomode_pipeline.due import due_sessions, judged_at, research_note
from turbomode_pipeline.automation.scanner import latest_due_scan, unscanned
from turbomode_pipeline.calendar import sessions_before
from turbomode_pipeline.core.model_types import MODEL_TYPES, STACKED
from turbomode_pipeline.partitions import SECTORS, week_cutoff
from turbomode_pipeline.resources.model_registry import ModelRegistry, registered_name
from turbomode_pipeline.resources.warehouse import Warehouse, WarehouseError
from turbomode_pipeline.settings import get_settings

RECENT = 10
# Nightly assets are stale when one of their recent due sessions is missing; the labelled and
# graded ones trail by the label horizon and fill weekly or on the next night, so they are shown only.
NIGHTLY = ("daily_bars", "daily_features", "scanner_signals")
TRAILING = ("training_samples", "signal_outcomes")


@dataclass
class Status:
    now: datetime
    research: str | None = None  # research mode's note: the status is judged at the history's end
    assets: list[dict] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # what failed its last run, and why
    jobs: list[dict] = field(default_factory=list)
    signals: pl.DataFrame | None = None
    schedules: list[dict] = field(default_factory=list)
    champions: pl.DataFrame | None = None
    refused: dict[str, str] = field(default_factory=dict)  # sector: why its stacked model has no champion


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    hours = (now - moment).total_seconds() / 3600
    return f"{hours:.1f} h ago" if hours < 48 else f"{hours / 24:.1f} d ago"


def _asset_row(instance: DagsterInstance, asset: str, recent: list[date], now: datetime, wall: datetime) -> dict:
    """`now` judges the partitions (the history's end in research mode); `wall` dates the writes."""
    key = AssetKey(asset)
    partitions = instance.get_materialized_partitions(key)
    event = instance.get_latest_materialization_event(key)
    written = datetime.fromtimestamp(event.timestamp, UTC) if event else None
    newest = max(partitions) if partitions else None
    missing = unscanned(instance, recent, asset) if recent else []
    age = (now.date() - date.fromisoformat(newest)).days if newest and asset != "sector_models" else None
    return {
        "asset": asset,
        "newest_partition": newest or "none",
        "partition_age": "-" if age is None else f"{age} d",
        "last_written": _ago(written, wall),
        f"missing_of_last_{RECENT}": ", ".join(map(str, missing)) if missing else "-",
        "_missing": missing,
    }


def _recent_sessions(asset: str, now: datetime) -> list[date]:
    if asset == "scanner_signals":
        latest = latest_due_scan(now)
        return [*sessions_before(latest, RECENT - 1), latest] if latest else []
    due = due_sessions(now, RECENT + get_settings().label_horizon)
    return due[-RECENT:] if asset in NIGHTLY else due[:RECENT]


def failure_reason(instance: DagsterInstance, run_id: str) -> str:
    """The first failed step's error (its innermost cause), or the run's own failure message."""
    steps = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    if steps:
        error = steps[0].dagster_event.step_failure_data.error
        while error is not None and error.cause is not None and "DagsterExecutionStepExecutionError" in error.cls_name:
            error = error.cause
        if error is not None:
            message = re.sub(rf"^[\w.]*{error.cls_name}: ", "", error.message.strip().splitlines()[-1])
            return f"step {steps[0].step_key}: {message[:200]}"
    runs = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    return runs[0].message[:200] if runs else "the run failed"


def _last_run(instance: DagsterInstance, record, now: datetime) -> dict:
    """A run record's id, result, start and, for a failure, its reason."""
    if record is None:
        return {"last_run": "none", "result": "-", "started": "-", "reason": "-"}
    run = record.dagster_run
    started = datetime.fromtimestamp(record.start_time, UTC) if record.start_time else None
    failed = run.status == DagsterRunStatus.FAILURE
    return {"last_run": run.run_id[:8], "result": run.status.value, "started": _ago(started, now),
            "reason": failure_reason(instance, run.run_id) if failed else "-"}


def _asset_last_run(instance: DagsterInstance, asset: str, now: datetime) -> dict:
    planned = instance.get_latest_planned_materialization_info(AssetKey(asset))
    records = instance.get_run_records(RunsFilter(run_ids=[planned.run_id]), limit=1) if planned else []
    return _last_run(instance, records[0] if records else None, now)


def _runs_of(instance: DagsterInstance, now: datetime, kind: str, names: list[str], tag: str | None) -> list[dict]:
    """The last run of each schedule (by its tag) or job (by name), and what failed."""
    rows = []
    for name in names:
        runs = RunsFilter(tags={tag: name}) if tag else RunsFilter(job_name=name)
        records = instance.get_run_records(runs, limit=1)
        rows.append({kind: name, **_last_run(instance, records[0] if records else None, now)})
    return rows


def collect(instance: DagsterInstance, warehouse: Warehouse, registry: ModelRegistry, schedules: list[str],
            now: datetime | None = None, assets: list[str] | None = None, jobs: list[str] | None = None) -> Status:
    """`assets` and `jobs`: every asset and job of the code location (their last runs are told); the
    nightly ones and sector_models are always shown with their partitions."""
    now = now or clock.now()
    status = Status(now=now, research=research_note(now))
    judged = judged_at(now)  # now, or the history's end in research mode
    for asset in (*NIGHTLY[:2], "training_samples", "scanner_signals", "signal_outcomes"):
        row = _asset_row(instance, asset, _recent_sessions(asset, judged), judged, now)
        status.assets.append(row)
        if asset in NIGHTLY and row["_missing"]:
            status.stale.append(f"{asset} is missing session(s) {', '.join(map(str, row['_missing']))}")
    models = _asset_row(instance, "sector_models", [], now, now)
    weeks = sorted(instance.get_materialized_partitions(AssetKey("sector_models")))
    models["newest_partition"] = f"week {weeks[-1]} (as of {week_cutoff(date.fromisoformat(weeks[-1]))})" if weeks else "-"
    status.assets.append(models)
    shown = {row["asset"] for row in status.assets}
    status.assets += [_asset_row(instance, asset, [], now, now) for asset in assets or [] if asset not in shown]
    for row in status.assets:
        last = _asset_last_run(instance, row["asset"], now)
        row.update({"last_run": last["result"], "_reason": last["reason"]})
        if last["result"] == DagsterRunStatus.FAILURE.value:
            status.failed.append(f"asset {row['asset']}: last run {last['last_run']} failed: {last['reason']}")
    try:
        status.signals = warehouse.active_signal_counts(judged)
    except WarehouseError:
        status.signals = None
    status.schedules = _runs_of(instance, now, "schedule", schedules, "dagster/schedule_name")
    status.jobs = _runs_of(instance, now, "job", jobs or [], None)
    for kind, rows in (("schedule", status.schedules), ("job", status.jobs)):
        status.failed += [f"{kind} {row[kind]}: last run {row['last_run']} failed: {row['reason']}"
                          for row in rows if row["result"] == DagsterRunStatus.FAILURE.value]
    status.champions = _champions(registry)
    missing = [f"{row['sector']}/{m}" for row in status.champions.iter_rows(named=True) for m in MODEL_TYPES if row[m] == "-"]
    if missing:
        status.stale.append(
            f"{len(missing)} of {status.champions.height * len(MODEL_TYPES)} models of the universe's "
            f"{status.champions.height} sectors have no version (e.g. {missing[0]}); train sector_models"
        )
    status.refused = {sector: registry.refusal(registered_name(sector, STACKED))
                      for sector in sectors_without_champion(status.champions)}
    return status


def _champions(registry: ModelRegistry) -> pl.DataFrame:
    """Champion version of each sector of the universe (rows) and model type (columns); 'refused' where the gate
    refused its newest version and it has no champion, '-' where there is no version."""
    aliases = registry.aliases()
    versions = {(row["registered_model"], row["alias"]): row["version"] for row in aliases.iter_rows(named=True)}

    def cell(name: str) -> str:
        return versions.get((name, "champion")) or ("refused" if (name, "challenger") in versions else "-")

    return pl.DataFrame([{"sector": s} | {m: cell(registered_name(s, m)) for m in MODEL_TYPES} for s in SECTORS])


def sectors_without_champion(champions: pl.DataFrame | None) -> list[str]:
    """Sectors whose stacked ensemble has versions but no champion, because the gate refused them: not scanned."""
    if champions is None:
        return []
    return champions.filter(pl.col(STACKED) == "refused")["sector"].to_list()


def exit_code(status: Status) -> int:
    """What `turbomode status` exits with: 1 when anything is stale or failed its last run, else 0."""
    return 1 if status.stale or status.failed else 0


def render(status: Status, champions: bool = True) -> str:
    """The status as text; `champions=False` leaves out the champion table (the demo prints its own)."""
    config = pl.Config(tbl_rows=30, tbl_cols=20, tbl_width_chars=200, tbl_hide_dataframe_shape=True,
                       tbl_hide_column_data_types=True, fmt_str_lengths=80)
    with config:
        assets = pl.DataFrame([{k: str(v) for k, v in row.items() if not k.startswith("_")} for row in status.assets])
        lines = [f"TurboMode status at {status.now:%Y-%m-%d %H:%M %Z}"]
        if status.research:
            lines.append(f"{status.research}: due sessions, partition ages and active signals are counted at its end")
        lines += ["", "assets:", str(assets), ""]
        if status.signals is None or status.signals.is_empty():
            lines.append("active signals: none (no scan yet, or every signal of the newest scan expired)")
        else:
            lines += ["active signals (newest scan):", str(status.signals)]
        lines += ["", "schedules, last run:", str(pl.DataFrame(status.schedules)), ""]
        if status.jobs:
            lines += ["jobs, last run:", str(pl.DataFrame(status.jobs)), ""]
        if champions:
            lines += ["champion model versions:", str(status.champions), ""]
        if status.refused:
            lines += ["sectors whose stacked model the champion gate refused (not scanned; more history or a lower "
                      "TURBOMODE_CHAMPION_MIN_RANK_IC_T would let it through):",
                      *(f"  - {sector}: {reason}" for sector, reason in status.refused.items()), ""]
    if status.failed:
        lines += ["FAILED (last run):", *(f"  - {reason}" for reason in status.failed)]
    if status.stale:
        lines += ["STALE:", *(f"  - {reason}" for reason in status.stale)]
    if not status.stale and not status.failed:
        lines.append("OK: every nightly asset holds its recent sessions, every model is trained (a refused one is "
                     "named above), and no last run failed")
    return "\n".join(lines)
