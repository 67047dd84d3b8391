"""The jobs sensor's tick: job state changes since the cursor -> loads of COMPLETED jobs, job
events, manual exports for failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from cxone_sync.automation.state import ENDED_BADLY, JobsCursor, Recovery, owe, settle
from cxone_sync.catalog import Category
from cxone_sync.cxone.errors import CXoneError
from cxone_sync.cxone.models import JobStatus, JobTrigger
from cxone_sync.cxone.source import ExportSource
from cxone_sync.cxone.untrusted import label, shown
from cxone_sync.defs.automation.actions import RECORD_JOB_EVENTS_JOB
from cxone_sync.defs.automation.job_events import JobEventConfig, may_wait
from cxone_sync.defs.automation.manual_exports import previous_export_pending, report_outcomes
from cxone_sync.defs.automation.run_requests import carry_events, event_requests_of, load_requests
from cxone_sync.defs.automation.tick_common import (
    TAG_JOB_ID,
    Budget,
    Tick,
    next_start,
    partition_start,
    partition_windows,
    span,
)
from cxone_sync.settings import AutomationSettings
from cxone_sync.timefmt import utc_iso as iso


def jobs_tick(
    *,
    category: Category,
    pdef: dg.TimeWindowPartitionsDefinition,
    source: ExportSource,
    instance: dg.DagsterInstance | None,
    cursor_text: str | None,
    settings: AutomationSettings,
    history_start: datetime,
    sensor: str,
    now: datetime | None = None,
) -> Tick:
    """Job state changes since the cursor: request their recording, load COMPLETED ones, request
    manual exports for failures. Writes nothing itself; bounded per tick (jobs, wall time).

    ``now`` (this machine's clock; Dagster opens a partition once it has ended by it) decides
    which partitions can be requested; the jobs of later ones wait in the cursor."""
    now = now or datetime.now(UTC)
    tick = Tick()
    budget = Budget(settings.sensor_tick_budget_seconds)
    cursor = JobsCursor.loads(cursor_text)
    cursor.tick += 1
    since = cursor.position.high_water or history_start
    stream = source.iter_jobs(category.name, updated_since=since)
    fresh, more = cursor.position.take(stream, settings.max_jobs_per_tick, budget.spent)
    tick.jobs_seen = len(fresh)
    tick.stopped_early = more
    completed = [j for j in fresh if j.status == JobStatus.COMPLETED]
    # jobs that waited for their partition to open: fetched again once it has (a few calls)
    opened = [k for k in cursor.waiting if next_start(pdef, k) <= now]
    seen = {j.id for j in completed}
    for key in opened:
        for job_id in cursor.waiting.pop(key):
            if job_id in seen:
                continue
            try:
                job = source.get_job(category.name, job_id)
            except CXoneError as exc:  # asked again next tick
                cursor.waiting.setdefault(key, []).append(job_id)
                tick.lines.append(f"job {shown(job_id)} for {key}: not fetched ({exc})")
                continue
            if job.status == JobStatus.COMPLETED:
                completed.append(job)
                seen.add(job_id)
    waiting = load_requests(tick, category, pdef, instance, completed, settings, sensor, now)
    # this tick's state changes, after those earlier ticks left waiting (no job had ended)
    events = [JobEventConfig(**e) for e in cursor.unrecorded]
    events += [JobEventConfig.of(j) for j in fresh]
    handed = carry_events(tick, category, events, instance, sensor, may_wait=may_wait(events))
    cursor.unrecorded = [] if handed else [e.model_dump() for e in events]
    for key, ids in waiting.items():
        held = cursor.waiting.setdefault(key, [])
        held.extend(i for i in ids if i not in held)
    if cursor.waiting:
        tick.lines.append(
            f"{len(cursor.waiting)} partition(s) with COMPLETED jobs wait for Dagster to open "
            f"them (their interval ends after this machine's clock {iso(now)}): "
            + span(sorted(cursor.waiting, key=lambda k: partition_start(pdef, k)))
        )
    for job in completed:
        for _, start, end in partition_windows(pdef, job.interval_start, job.interval_end):
            covered = [r.key for r in cursor.owed.values() if r.window == (start, end)]
            for k in covered:
                r = cursor.owed.pop(k)
                if r.exhausted:
                    tick.lines.append(
                        f"{category.name} {r.start} recovered late by {shown(job.id)}"
                    )
    for job in fresh:
        if job.status in ENDED_BADLY:
            reason = f"job {shown(job.id)} ({job.trigger.value}) {job.status.value}: " + (
                shown(job.error_details, 300) if job.error_details else "no error details"
            )
            for _, start, end in partition_windows(pdef, job.interval_start, job.interval_end):
                owe(cursor.owed, start, end, reason, job.id, job.trigger == JobTrigger.MANUAL)
            tick.lines.append(reason)
    outcomes = settle(
        source,
        category.name,
        cursor.owed,
        tick=cursor.tick,
        max_attempts=settings.recovery_max_attempts,
        backoff_ticks=settings.recovery_backoff_ticks,
        max_exports=settings.max_exports_per_tick,
        pending=previous_export_pending(instance, sensor),
    )
    report_outcomes(tick, category, pdef, outcomes, sensor)
    hashed = sorted({f"{shown(j.id)} -> {label(j.id)}" for j in completed if label(j.id) != j.id})
    if hashed:
        tick.lines.append(
            f"{len(hashed)} job id(s) are not valid tag values; their runs carry {TAG_JOB_ID} "
            "and run keys in hash form: " + "; ".join(hashed[:5]) + ("; ..." if hashed[5:] else "")
        )
    _prune(cursor.owed, cursor.position.high_water, settings.gap_lookback)
    loads = len(tick.run_requests) - tick.exports_requested - len(event_requests_of(tick))
    own = len(event_requests_of(tick))
    carrier = next((r for r in tick.run_requests if "cxone/events" in r.tags), None)
    if cursor.unrecorded:
        recorded_by = f"{len(cursor.unrecorded)} waiting in the cursor: no job ended"
    elif own or carrier is None:
        recorded_by = f"{own} {RECORD_JOB_EVENTS_JOB} run(s)"
    else:
        recorded_by = f"the load run {carrier.run_key}"
    tick.lines.insert(
        0,
        f"{len(fresh)} job state change(s) since {iso(since)} (recorded by {recorded_by}), "
        f"{loads} load run(s) "
        f"for {len(tick.partitions_requested)} partition(s)"
        + (f" ({span(tick.partitions_requested)})" if tick.partitions_requested else "")
        + (
            f", {tick.partitions_skipped} partition(s) skipped: already loaded from these jobs"
            if tick.partitions_skipped
            else ""
        )
        + (
            f"; STOPPED EARLY after {budget.elapsed():.1f} s (limit "
            f"{settings.max_jobs_per_tick} jobs / {settings.sensor_tick_budget_seconds:g} s): "
            f"the cursor is at {iso(cursor.position.high_water or since)}, the next tick "
            "resumes there"
            if more
            else ""
        ),
    )
    tick.cursor = cursor.dumps()
    if not tick.run_requests:
        tick.skip = tick.summary()
    return tick


def _prune(owed: dict[str, Recovery], now: datetime | None, lookback: timedelta) -> None:
    """Forget given-up intervals older than the lookback (their observation stays in the UI)."""
    if now is None:
        return
    for key in [k for k, r in owed.items() if r.exhausted and r.window[1] < now - lookback]:
        del owed[key]
