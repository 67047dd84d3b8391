"""The gap sensor's tick: intervals overdue by CXone's clock with neither a load nor a live job
-> manual exports."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from cxone_sync.automation.state import (
    ENDED_BADLY,
    LIVE,
    GapCursor,
    covering,
    interval_id,
    owe,
    settle,
)
from cxone_sync.catalog import DEFAULT_OFFSET, Category
from cxone_sync.cxone.source import ExportSource
from cxone_sync.defs.automation.manual_exports import previous_export_pending, report_outcomes
from cxone_sync.defs.automation.tick_common import Tick, api_now, partition_windows, span
from cxone_sync.defs.ingest.names import table_key
from cxone_sync.settings import AutomationSettings
from cxone_sync.timefmt import utc_iso as iso


def loaded_partitions(instance: dg.DagsterInstance, category: Category) -> set[str]:
    """Partitions whose every BI table of the category has been materialized."""
    loaded: set[str] | None = None
    for dt in category.data_types:
        keys = instance.get_materialized_partitions(table_key(dt))
        loaded = keys if loaded is None else loaded & keys
    return loaded or set()


def gap_tick(
    *,
    category: Category,
    pdef: dg.TimeWindowPartitionsDefinition,
    source: ExportSource,
    instance: dg.DagsterInstance,
    cursor_text: str | None,
    settings: AutomationSettings,
    history_start: datetime,
    sensor: str,
) -> Tick:
    """Intervals overdue by CXone's clock with neither a load nor a live job: manual exports.

    "Now" is CXone's clock (:func:`api_now`), not the newest ``updated_at``: when CXone exports
    nothing at all (an outage), its intervals still become due, are reported and requested.
    """
    tick = Tick()
    cursor = GapCursor.loads(cursor_text)
    cursor.tick += 1
    lookback = settings.gap_lookback
    clock, clock_source = api_now(source, category.name)
    floor = max(history_start, clock - lookback)
    jobs = list(source.iter_jobs(category.name, updated_since=floor))
    newest = max((j.updated_at for j in jobs), default=None)
    cursor.now = max(filter(None, (cursor.now, newest)), default=None)
    now = max(filter(None, (clock, cursor.now)))
    cursor.clock = now
    due_by = DEFAULT_OFFSET + category.lag_max + settings.gap_grace
    lo = max(history_start, now - lookback)
    loaded = loaded_partitions(instance, category)
    live = [j for j in jobs if j.status in LIVE]
    gaps: list[str] = []
    silent: list[str] = []
    left_to_jobs_sensor = 0
    for key, start, end in partition_windows(pdef, lo, now):
        if end + due_by > now or key in loaded or covering(live, start, end):
            continue
        if any(j.status in ENDED_BADLY for j in covering(jobs, start, end)):
            # the jobs sensor saw that job fail and owns its recovery (manual exports, then
            # UNRECOVERED): one owner per interval, never two exports asked for one failure
            cursor.owed.pop(interval_id(start, end), None)
            left_to_jobs_sensor += 1
            continue
        reason = (
            f"no export job by {iso(end + due_by)} (interval end + offset + lag + grace); "
            f"CXone's clock {iso(now)}"
        )
        silent.append(key)
        owe(cursor.owed, start, end, reason, None)
        gaps.append(key)
    for key in [k for k, r in cursor.owed.items() if r.window[1] < lo]:
        del cursor.owed[key]
    outcomes = settle(
        source,
        category.name,
        cursor.owed,
        tick=cursor.tick,
        max_attempts=settings.recovery_max_attempts,
        backoff_ticks=settings.recovery_backoff_ticks,
        max_exports=settings.max_exports_per_tick,
        known_jobs=jobs,
        pending=previous_export_pending(instance, sensor),
    )
    report_outcomes(tick, category, pdef, outcomes, sensor)
    if silent:
        tick.errors.append(
            f"OVERDUE: {len(silent)} {category.name} interval(s) without any export job by "
            f"CXone's clock {iso(now)} (an export outage?): {span(silent)}; manual exports "
            "are requested"
        )
    tick.lines.insert(
        0,
        f"now {iso(now)} ({clock_source}): {len(gaps)} interval(s) without load or live job in "
        f"the last {lookback.days} day(s)"
        + (f" ({span(gaps)})" if gaps else "")
        + (
            f"; {left_to_jobs_sensor} more whose export job failed, recovered by the jobs sensor"
            if left_to_jobs_sensor
            else ""
        ),
    )
    tick.cursor = cursor.dumps()
    tick.skip = tick.summary()
    return tick
