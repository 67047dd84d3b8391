"""One tick of each automation sensor, as functions of (API client, warehouse, instance, cursor).

The sensors in :mod:`.sensors` are thin wrappers around these, so tests and the benchmark can
drive a tick with their own client and read its counters.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import dagster as dg

from cxone_sync.catalog import DEFAULT_OFFSET, PARTITION_FMT, Category
from cxone_sync.cxone.errors import CXoneError
from cxone_sync.cxone.models import Job, JobStatus, JobTrigger
from cxone_sync.cxone.source import ExportSource
from cxone_sync.cxone.untrusted import label, shown
from cxone_sync.cxone.uris import parse_s3_uri
from cxone_sync.defs.automation.actions import (
    RECORD_JOB_EVENTS_JOB,
    REQUEST_MANUAL_EXPORT_JOB,
    JobEventConfig,
)
from cxone_sync.defs.automation.state import (
    ENDED_BADLY,
    LIVE,
    GapCursor,
    JobsCursor,
    ReconciliationCursor,
    Recovery,
    RecoveryOutcome,
    covering,
    interval_id,
    owe,
    settle,
)
from cxone_sync.defs.ingest.assets import load_step_name, table_key
from cxone_sync.defs.ingest.jobs import category_job_name
from cxone_sync.defs.ingest.loaded import loaded_jobs
from cxone_sync.defs.maintenance.staging import IN_FLIGHT
from cxone_sync.ingest import checks as ck
from cxone_sync.settings import AutomationSettings
from cxone_sync.storage.staging import s3_sha256_hex
from cxone_sync.timefmt import utc_iso as iso
from cxone_sync.warehouse.base import Warehouse
from cxone_sync.warehouse.locks import is_lock_error

log = logging.getLogger(__name__)

TAG_TRIGGER = "cxone/trigger"
TAG_JOB_ID = "cxone/job_id"
"""The job id when it meets Dagster's strict tag rule, else its hash form (``untrusted.label``)."""
TAG_RUN_KEY = "cxone/run_key"
RECOVERY_METADATA = ck.RECOVERY_METADATA
BACKFILL = "backfill/"
TAG_RANGE_START = "dagster/asset_partition_range_start"
TAG_RANGE_END = "dagster/asset_partition_range_end"
EVENTS_PER_RUN = 500
"""Partitions per materialization query (it fetches up to 20 records per partition)."""


@dataclass
class Tick:
    """What one evaluation decided; the sensor turns it into a ``SensorResult``."""

    run_requests: list[dg.RunRequest] = field(default_factory=list)
    observations: list[dg.AssetObservation | dg.AssetCheckEvaluation] = field(default_factory=list)
    outcomes: list[RecoveryOutcome] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """Log lines: what happened, and what a person should know."""
    errors: list[str] = field(default_factory=list)
    events_written: int = 0
    """Job state changes handed to ``record_job_events_job`` runs (written by those runs)."""
    jobs_seen: int = 0
    partitions_requested: list[str] = field(default_factory=list)
    """Every partition key a load request of this tick covers (singles and ranges)."""
    partitions_skipped: int = 0
    exports_requested: int = 0
    stopped_early: bool = False
    cursor: str | None = None
    """The new cursor; None keeps the old one (nothing of this tick is committed)."""
    skip: str | None = None

    def summary(self) -> str:
        return "; ".join(self.lines) or "nothing new"


# -------------------------------------------------------------------------------- helpers


def first_instant(start: Any) -> datetime:
    return datetime.combine(start, time(0), tzinfo=UTC)


def _fixed_step(pdef: dg.TimeWindowPartitionsDefinition) -> timedelta | None:
    """The partition length when the partitions are every N hours from midnight UTC (ours)."""
    if pdef.timezone != "UTC" or pdef.fmt != PARTITION_FMT:
        return None
    match = re.fullmatch(r"0 (\*|\*/(\d+)) \* \* \*", pdef.cron_schedule or "")
    if match is None:
        return None
    hours = int(match.group(2) or 1)
    return timedelta(hours=hours) if 24 % hours == 0 else None


def partition_windows(
    pdef: dg.TimeWindowPartitionsDefinition, start: datetime, end: datetime
) -> list[tuple[str, datetime, datetime]]:
    """(key, start, end) of every partition starting in ``[start, end)`` (job intervals are
    whole partitions, so: the partitions a job covers).

    Fixed-length UTC partitions are computed directly (Dagster walks the cron schedule from
    the first partition for a 6-hourly one: ~2 ms a call, too slow for a year of jobs).
    """
    if end <= start:
        return []
    step = _fixed_step(pdef)
    if step is None:
        out = []
        for key in pdef.get_partition_keys_in_time_window(dg.TimeWindow(start, end)):
            tw = pdef.time_window_for_partition_key(key)
            out.append((key, tw.start.astimezone(UTC), tw.end.astimezone(UTC)))
        return out
    # as Dagster's get_partition_keys_in_time_window: the partitions starting in [start, end)
    # (a partition that starts before ``start`` is not included), never before the first one
    first = pdef.start.astimezone(UTC)
    t = first + max(-((first - start.astimezone(UTC)) // step), 0) * step
    windows = []
    while t < end:
        windows.append((t.strftime(PARTITION_FMT), t, t + step))
        t += step
    return windows


def partition_start(pdef: dg.TimeWindowPartitionsDefinition, key: str) -> datetime:
    if _fixed_step(pdef) is not None:
        return datetime.strptime(key, PARTITION_FMT).replace(tzinfo=UTC)
    return pdef.time_window_for_partition_key(key).start.astimezone(UTC)


def backfill_prefix(source: ExportSource, category: str) -> Callable[[], str]:
    """The manual-export destination: the download's prefix plus ``backfill/`` (asked lazily)."""
    return lambda: f"{source.download_config(category).destination.prefix}{BACKFILL}"


def run_key(job_id: str, partition_key: str) -> str:
    """``{job id}:{partition}``; an id that is not a safe tag value (``/``, NUL, spaces,
    non-ASCII, over 63 characters, ...) enters as its stable hash form, so run keys stay short,
    printable and distinct. Ordinary ids (``job-8f3a...``) keep their run key unchanged."""
    return f"{label(job_id)}:{partition_key}"


def exhausted_observations(
    category: Category, pdef: dg.TimeWindowPartitionsDefinition, r: Recovery, sensor: str
) -> list[dg.AssetObservation | dg.AssetCheckEvaluation]:
    """The failed-status marker on every table of each partition it covers: the ``recovered``
    check fails (ERROR, red on the check dashboard and the partition) and an observation keeps
    the details; a later load of the partition passes the check again."""
    start, end = r.window
    out: list[dg.AssetObservation | dg.AssetCheckEvaluation] = []
    reason = r.last_error or r.reason
    description = (
        f"UNRECOVERED: {category.name} interval {r.start} .. {r.end} has no "
        f"COMPLETED export after {r.attempts} manual export(s). Reason: "
        f"{reason}. Request a manual export by hand (overwrite "
        f"false, destination prefix {{prefix}}{BACKFILL}) or ask CXone support."
    )
    metadata: dict[str, Any] = {
        RECOVERY_METADATA: "exhausted",
        "reason": reason,
        "attempts": r.attempts,
        "failed_jobs": ", ".join(shown(j) for j in r.failed_jobs),
        "manual_export_jobs": ", ".join(shown(j) for j in r.export_jobs),
        "sensor": sensor,
    }
    for key, _, _ in partition_windows(pdef, start, end):
        for dt in category.data_types:
            out.append(
                dg.AssetObservation(
                    asset_key=table_key(dt),
                    partition=key,
                    description=description,
                    metadata=metadata,
                    tags={"cxone/sensor": sensor},
                )
            )
            out.append(
                dg.AssetCheckEvaluation(
                    asset_key=table_key(dt),
                    check_name=ck.RECOVERED,
                    passed=False,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=description,
                    metadata=metadata,
                    partition=key,
                )
            )
    return out


def _digest(parts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class Budget:
    """A tick's wall-time budget (monotonic)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = _time.monotonic()

    def spent(self) -> bool:
        return _time.monotonic() - self.started >= self.seconds

    def elapsed(self) -> float:
        return _time.monotonic() - self.started


def api_now(source: ExportSource, category: str) -> tuple[datetime, str]:
    """CXone's clock now and where it came from.

    The client records the HTTP ``Date`` of its answers (CXone's clock; the simulator sends its
    simulated clock there), so "now" is the source's own time, in production and against the
    simulator alike, also under the real daemon. Before any answer, one cheap call (the
    download configuration) asks for it; a source without a clock gives the local wall clock.
    """
    server_now = getattr(source, "server_now", None)
    if server_now is None:
        return datetime.now(UTC), "local clock"
    now = server_now()
    if now is None:
        source.download_config(category)
        now = server_now()
    if now is None:
        return datetime.now(UTC), "local clock (the API sent no Date)"
    return now.astimezone(UTC), "CXone's clock (HTTP Date)"


def manual_export_request(
    category: Category, r: Recovery, sensor: str, attempt: str | int | None = None
) -> dg.RunRequest:
    """The run that POSTs one manual export: run key per sensor, interval and attempt."""
    attempt = r.attempts if attempt is None else attempt
    rk = f"manual-export:{sensor}:{r.key}:{attempt}"
    return dg.RunRequest(
        run_key=rk,
        job_name=REQUEST_MANUAL_EXPORT_JOB,
        run_config={
            "ops": {
                "request_manual_export": {
                    "config": {
                        "category": category.name,
                        "start": r.start,
                        "end": r.end,
                        "attempt": int(r.attempts) if isinstance(attempt, str) else attempt,
                        "reason": (r.last_error or r.reason)[:500],
                        "sensor": sensor,
                    }
                }
            }
        },
        tags={TAG_TRIGGER: sensor, TAG_RUN_KEY: rk, "cxone/interval": r.key},
    )


def previous_export_pending(
    instance: dg.DagsterInstance | None, sensor: str
) -> Callable[[Recovery], str | None]:
    """Whether the manual-export run of an interval's last attempt has not finished (then the
    sensor waits instead of asking again); its failure becomes the interval's last error."""

    def pending(r: Recovery) -> str | None:
        if instance is None:
            return None
        rk = f"manual-export:{sensor}:{r.key}:{r.attempts}"
        runs = instance.get_runs(filters=dg.RunsFilter(tags={TAG_RUN_KEY: rk}), limit=1)
        if not runs:
            # requested by an evaluation whose result was not committed, or not launched yet
            return None
        run = runs[0]
        if not run.is_finished:
            return f"manual-export run {run.run_id} is {run.status.value}"
        if run.status != dg.DagsterRunStatus.SUCCESS:
            r.last_error = f"manual-export run {run.run_id} {run.status.value} (see its log)"
        return None

    return pending


def _report(
    tick: Tick,
    category: Category,
    pdef: dg.TimeWindowPartitionsDefinition,
    outcomes: list[RecoveryOutcome],
    sensor: str,
) -> None:
    tick.outcomes.extend(outcomes)
    for o in outcomes:
        r = o.recovery
        what = f"{category.name} {r.start} .. {r.end}"
        if o.kind == "requested":
            tick.run_requests.append(manual_export_request(category, r, sensor))
            tick.exports_requested += 1
            tick.lines.append(
                f"manual export requested for {what} (try {r.attempts}, run "
                f"request_manual_export_job): {r.last_error or r.reason}"
            )
        elif o.kind == "pending":
            tick.lines.append(f"{what}: waiting for the previous attempt ({o.detail})")
        elif o.kind == "covered":
            tick.lines.append(f"{what} recovered by COMPLETED job {shown(o.job_id)}")
        elif o.kind == "exhausted":
            tick.errors.append(
                f"GAVE UP on {what} after {r.attempts} manual export(s): {o.detail}; the "
                "interval stays empty until someone exports it by hand"
            )
            tick.observations.extend(exhausted_observations(category, pdef, r, sensor))


# -------------------------------------------------------------------------- jobs sensor


def event_requests(category: Category, jobs: Sequence[Job], sensor: str) -> list[dg.RunRequest]:
    """``record_job_events_job`` runs carrying the state changes (the sensor writes nothing)."""
    out = []
    for i in range(0, len(jobs), EVENTS_PER_RUN):
        chunk = jobs[i : i + EVENTS_PER_RUN]
        rk = "job-events:{}:{}".format(
            category.name,
            _digest([f"{j.id}|{j.status.value}|{iso(j.updated_at)}" for j in chunk]),
        )
        out.append(
            dg.RunRequest(
                run_key=rk,
                job_name=RECORD_JOB_EVENTS_JOB,
                run_config={
                    "ops": {
                        "record_job_events": {
                            "config": {
                                "category": category.name,
                                "sensor": sensor,
                                "events": [JobEventConfig.of(j).model_dump() for j in chunk],
                            }
                        }
                    }
                },
                tags={TAG_TRIGGER: sensor, TAG_RUN_KEY: rk, "cxone/events": str(len(chunk))},
            )
        )
    return out


def _consecutive(pdef: dg.TimeWindowPartitionsDefinition, keys: Sequence[str]) -> list[list[str]]:
    """``keys`` (sorted by time) split into runs of adjacent partitions."""
    groups: list[list[str]] = []
    previous: str | None = None
    for key in keys:
        start = partition_start(pdef, key)
        # adjacent: the previous key is the partition just before this one
        if groups and previous is not None and _next_start(pdef, previous) == start:
            groups[-1].append(key)
        else:
            groups.append([key])
        previous = key
    return groups


def describe_load(
    category: Category, partitions: str, job_ids: Sequence[str], sensor: str
) -> dict[str, Any]:
    """Run config that says what a load request is for (``dagster sensor preview`` prints only
    a request's run config, so without it every request reads ``{}``). It sits on the load
    step of the category's first data type, whose config is free-form and not read."""
    op = load_step_name(category.data_types[0])
    return {
        "ops": {
            op: {
                "config": {
                    "cxone_request": {
                        "sensor": sensor,
                        "category": category.name,
                        "partitions": partitions,
                        "jobs": [shown(j) for j in job_ids],
                    }
                }
            }
        }
    }


def _next_start(pdef: dg.TimeWindowPartitionsDefinition, key: str) -> datetime:
    step = _fixed_step(pdef)
    if step is not None:
        return partition_start(pdef, key) + step
    return pdef.time_window_for_partition_key(key).end.astimezone(UTC)


def load_requests(
    tick: Tick,
    category: Category,
    pdef: dg.TimeWindowPartitionsDefinition,
    instance: dg.DagsterInstance | None,
    completed: Sequence[Job],
    settings: AutomationSettings,
    sensor: str,
    open_until: datetime | None = None,
) -> dict[str, list[str]]:
    """Load requests for the partitions of newly COMPLETED jobs.

    A partition whose latest load (every table of the category) already considered all these
    jobs is skipped (materialization metadata ``job_ids``): e.g. the first tick after
    ``cxone-sync sync``. Runs of at least ``sensor_ranged_run_min_partitions`` adjacent
    partitions become ranged runs of at most ``CXONE_BACKFILL_PARTITIONS_PER_RUN`` partitions
    (the assets' BackfillPolicy); the others one run per job and partition.

    A partition that ends after ``open_until`` (this machine's clock) does not exist in Dagster
    yet: its jobs are returned (partition key -> job ids) for the cursor to hold, not requested.
    """
    by_key: dict[str, list[Job]] = {}
    waiting: dict[str, list[str]] = {}
    for job in completed:
        for key, _, end in partition_windows(pdef, job.interval_start, job.interval_end):
            if open_until is not None and end > open_until:
                waiting.setdefault(key, []).append(job.id)
                continue
            by_key.setdefault(key, []).append(job)
    if not by_key:
        return waiting
    keys = sorted(by_key, key=lambda k: partition_start(pdef, k))
    if instance is not None:
        loaded = loaded_jobs(instance, category, keys)
        kept = []
        for key in keys:
            seen = loaded[key]
            if seen is not None and {j.id for j in by_key[key]} <= seen:
                tick.partitions_skipped += 1
            else:
                kept.append(key)
        keys = kept
    per_run = settings.sensor_partitions_per_run
    for group in _consecutive(pdef, keys):
        if len(group) < settings.sensor_ranged_run_min_partitions:
            for key in group:
                for job in by_key[key]:
                    rk = run_key(job.id, key)
                    tick.run_requests.append(
                        dg.RunRequest(
                            run_key=rk,
                            job_name=category_job_name(category),
                            partition_key=key,
                            run_config=describe_load(category, key, [job.id], sensor),
                            tags={
                                TAG_TRIGGER: sensor,
                                TAG_JOB_ID: label(job.id),
                                TAG_RUN_KEY: rk,
                                "cxone/export_trigger": job.trigger.value,
                            },
                        )
                    )
                tick.partitions_requested.append(key)
            continue
        for i in range(0, len(group), per_run):
            chunk = group[i : i + per_run]
            ids = sorted({j.id for key in chunk for j in by_key[key]})
            rk = f"range:{chunk[0]}..{chunk[-1]}:{_digest(ids)}"
            tick.run_requests.append(
                dg.RunRequest(
                    run_key=rk,
                    job_name=category_job_name(category),
                    run_config=describe_load(category, f"{chunk[0]} .. {chunk[-1]}", ids, sensor),
                    tags={
                        TAG_TRIGGER: sensor,
                        TAG_RUN_KEY: rk,
                        TAG_RANGE_START: chunk[0],
                        TAG_RANGE_END: chunk[-1],
                        "cxone/jobs": str(len(ids)),
                    },
                )
            )
            tick.partitions_requested.extend(chunk)
    return waiting


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
    tick.run_requests.extend(event_requests(category, fresh, sensor))
    tick.events_written = len(fresh)
    completed = [j for j in fresh if j.status == JobStatus.COMPLETED]
    # jobs that waited for their partition to open: fetched again once it has (a few calls)
    opened = [k for k in cursor.waiting if _next_start(pdef, k) <= now]
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
    for key, ids in waiting.items():
        held = cursor.waiting.setdefault(key, [])
        held.extend(i for i in ids if i not in held)
    if cursor.waiting:
        tick.lines.append(
            f"{len(cursor.waiting)} partition(s) with COMPLETED jobs wait for Dagster to open "
            f"them (their interval ends after this machine's clock {iso(now)}): "
            + _span(sorted(cursor.waiting, key=lambda k: partition_start(pdef, k)))
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
    _report(tick, category, pdef, outcomes, sensor)
    hashed = sorted({f"{shown(j.id)} -> {label(j.id)}" for j in completed if label(j.id) != j.id})
    if hashed:
        tick.lines.append(
            f"{len(hashed)} job id(s) are not valid tag values; their runs carry {TAG_JOB_ID} "
            "and run keys in hash form: " + "; ".join(hashed[:5]) + ("; ..." if hashed[5:] else "")
        )
    _prune(cursor.owed, cursor.position.high_water, settings.gap_lookback)
    loads = len(tick.run_requests) - tick.exports_requested - len(event_requests_of(tick))
    tick.lines.insert(
        0,
        f"{len(fresh)} job state change(s) since {iso(since)} (recorded by "
        f"{len(event_requests_of(tick))} {RECORD_JOB_EVENTS_JOB} run(s)), {loads} load run(s) "
        f"for {len(tick.partitions_requested)} partition(s)"
        + (f" ({_span(tick.partitions_requested)})" if tick.partitions_requested else "")
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


def event_requests_of(tick: Tick) -> list[dg.RunRequest]:
    return [r for r in tick.run_requests if r.job_name == RECORD_JOB_EVENTS_JOB]


def _span(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:6])
    return shown + (f", ... {keys[-1]}" if len(keys) > 6 else "")


def _prune(owed: dict[str, Recovery], now: datetime | None, lookback: timedelta) -> None:
    """Forget given-up intervals older than the lookback (their observation stays in the UI)."""
    if now is None:
        return
    for key in [k for k, r in owed.items() if r.exhausted and r.window[1] < now - lookback]:
        del owed[key]


# --------------------------------------------------------------------------- gap sensor


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
    _report(tick, category, pdef, outcomes, sensor)
    if silent:
        tick.errors.append(
            f"OVERDUE: {len(silent)} {category.name} interval(s) without any export job by "
            f"CXone's clock {iso(now)} (an export outage?): {_span(silent)}; manual exports "
            "are requested"
        )
    tick.lines.insert(
        0,
        f"now {iso(now)} ({clock_source}): {len(gaps)} interval(s) without load or live job in "
        f"the last {lookback.days} day(s)"
        + (f" ({_span(gaps)})" if gaps else "")
        + (
            f"; {left_to_jobs_sensor} more whose export job failed, recovered by the jobs sensor"
            if left_to_jobs_sensor
            else ""
        ),
    )
    tick.cursor = cursor.dumps()
    tick.skip = tick.summary()
    return tick


# ---------------------------------------------------------------- late-data reconciliation


def partitions_in_flight(
    instance: dg.DagsterInstance, category: Category, pdef: dg.TimeWindowPartitionsDefinition
) -> set[str]:
    """Partitions a queued or running load run of the category (any trigger) will load."""
    out: set[str] = set()
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=category_job_name(category), statuses=IN_FLIGHT)
    )
    for run in runs:
        tags = run.tags
        if "dagster/partition" in tags:
            out.add(tags["dagster/partition"])
        elif TAG_RANGE_START in tags and TAG_RANGE_END in tags:
            keys = pdef.get_partition_keys_in_range(
                dg.PartitionKeyRange(tags[TAG_RANGE_START], tags[TAG_RANGE_END])
            )
            out.update(keys)
    return out


def reconcile_tick(
    *,
    categories: Sequence[Category],
    pdefs: dict[str, dg.TimeWindowPartitionsDefinition],
    source: ExportSource,
    instance: dg.DagsterInstance,
    warehouse: Warehouse,
    s3_client: Any,
    cursor_text: str | None,
    settings: AutomationSettings,
    history_start: datetime,
    sensor: str,
) -> Tick:
    """Re-load partitions with COMPLETED jobs their last load did not see; re-verify files.

    Bounded: only the lookback is listed (from CXone's clock, also on the first tick), and the
    file audit checks at most ``reconciliation_max_heads_per_tick`` files or until the tick's
    wall-time budget is spent, resuming from its position in the cursor next tick.
    """
    tick = Tick()
    budget = Budget(settings.sensor_tick_budget_seconds)
    cursor = ReconciliationCursor.loads(cursor_text)
    lookback = settings.reconciliation_lookback
    clock: datetime | None = None
    completed: dict[str, list[Job]] = {}
    for c in categories:
        try:
            if clock is None:
                clock, _ = api_now(source, c.name)
            floor = max(history_start, clock - lookback)
            completed[c.name] = list(
                source.iter_jobs(c.name, statuses=(JobStatus.COMPLETED,), updated_since=floor)
            )
        except CXoneError as exc:  # one category's API trouble must not stop the others
            tick.errors.append(f"{c.name}: cannot list COMPLETED jobs ({exc}); skipped this tick")
    categories = [c for c in categories if c.name in completed]
    newest = max((j.updated_at for js in completed.values() for j in js), default=None)
    now = max(filter(None, (cursor.now, newest)), default=None)
    if now is None:
        tick.skip = "CXone has no COMPLETED job yet"
        tick.cursor = cursor.dumps()
        return tick
    cursor.now = now
    lo, hi = max(history_start, now - lookback), now - settings.reconciliation_min_age
    stale: list[str] = []
    waiting: list[str] = []
    for cat in categories:
        pdef = pdefs[cat.name]
        windows = [w for w in partition_windows(pdef, lo, hi) if w[2] <= hi]
        loaded = loaded_jobs(instance, cat, [k for k, _, _ in windows])
        queued = partitions_in_flight(instance, cat, pdef)
        missing_by_key: dict[str, list[str]] = {}
        for key, start, end in windows:
            jobs = covering(completed[cat.name], start, end)
            seen = loaded[key]
            missing = sorted(j.id for j in jobs if seen is None or j.id not in seen)
            if jobs and missing:
                if key in queued:
                    # a load run of this partition (whoever requested it) is queued or
                    # running: it lists the partition's jobs when it runs; judge after it ends
                    waiting.append(f"{cat.name} {key}")
                    continue
                missing_by_key[key] = missing
        for group in _consecutive(pdef, list(missing_by_key)):
            if len(group) >= settings.sensor_ranged_run_min_partitions:
                # a stretch never loaded (e.g. a lost run): ranged runs, like a backfill
                per_run = settings.sensor_partitions_per_run
                for i in range(0, len(group), per_run):
                    chunk = group[i : i + per_run]
                    ids = sorted({m for key in chunk for m in missing_by_key[key]})
                    rk = f"reconcile:{chunk[0]}..{chunk[-1]}:{_digest(ids)}"
                    tick.run_requests.append(
                        dg.RunRequest(
                            run_key=rk,
                            job_name=category_job_name(cat),
                            run_config=describe_load(
                                cat, f"{chunk[0]} .. {chunk[-1]}", ids, sensor
                            ),
                            tags={
                                TAG_TRIGGER: sensor,
                                TAG_RUN_KEY: rk,
                                TAG_RANGE_START: chunk[0],
                                TAG_RANGE_END: chunk[-1],
                                "cxone/jobs": str(len(ids)),
                            },
                        )
                    )
                    stale.append(f"{cat.name} {chunk[0]} .. {chunk[-1]} ({len(ids)} job(s))")
                continue
            for key in group:
                missing = missing_by_key[key]
                # labels: never a ',' inside one, so the join is unambiguous; ordinary ids kept
                labels = ",".join(label(j) for j in missing)
                digest = hashlib.sha256(labels.encode()).hexdigest()[:16]
                rk = f"reconcile:{key}:{digest}"
                tick.run_requests.append(
                    dg.RunRequest(
                        run_key=rk,
                        job_name=category_job_name(cat),
                        partition_key=key,
                        run_config=describe_load(cat, key, missing, sensor),
                        tags={TAG_TRIGGER: sensor, TAG_RUN_KEY: rk, TAG_JOB_ID: labels},
                    )
                )
                stale.append(f"{cat.name} {key} ({', '.join(shown(j) for j in missing)})")
    tick.lines.append(
        f"{len(stale)} partition(s) with COMPLETED jobs their last load did not include"
        + (": " + "; ".join(stale[:10]) if stale else "")
        + (
            f"; {len(waiting)} more with a load run already queued or running, not requested "
            "again: " + "; ".join(waiting[:10])
            if waiting
            else ""
        )
    )
    _audit_files(
        tick, categories, pdefs, completed, warehouse, s3_client, cursor, settings, sensor, budget
    )
    tick.cursor = cursor.dumps()
    if not tick.run_requests:
        tick.skip = tick.summary()
    return tick


def _audit_files(
    tick: Tick,
    categories: Sequence[Category],
    pdefs: dict[str, dg.TimeWindowPartitionsDefinition],
    completed: dict[str, list[Job]],
    warehouse: Warehouse,
    s3_client: Any,
    cursor: ReconciliationCursor,
    settings: AutomationSettings,
    sensor: str,
    budget: Budget,
) -> None:
    """Stored (version id, SHA-256) of loaded files against what S3 holds now, a bounded slice
    per tick in uri order from ``cursor.audit_after``; a mismatch requests a manual export."""
    owner: dict[str, tuple[Category, Job]] = {}
    for cat in categories:
        for job in completed[cat.name]:
            for uri in job.file_uris:
                owner[uri] = (cat, job)
    try:
        stored: dict[str, list[tuple[str | None, str]]] = {}
        uris = sorted(owner)
        for i in range(0, len(uris), 500):
            stored.update(warehouse.loaded_files(uris[i : i + 500]))
    except Exception as exc:
        if not is_lock_error(exc):
            raise
        tick.errors.append(f"file audit skipped this tick: the warehouse is locked ({exc})")
        return
    order = sorted(stored)
    start = cursor.audit_after
    todo = [u for u in order if start is None or u > start]
    checked = mismatched = 0
    exports = 0
    stopped = False
    for uri in todo:
        if checked >= settings.reconciliation_max_heads_per_tick or budget.spent():
            stopped = True
            break
        cursor.audit_after = uri
        versions = stored[uri]
        loc = parse_s3_uri(uri)
        try:
            head = s3_client.head_object(Bucket=loc.bucket, Key=loc.key, ChecksumMode="ENABLED")
        except Exception as exc:  # gone or unreadable: the loaded rows stay, a person looks
            tick.errors.append(f"file audit: cannot HEAD {uri} ({type(exc).__name__})")
            continue
        finally:
            checked += 1
        version = head.get("VersionId")
        sha = s3_sha256_hex(head.get("ChecksumSHA256"))
        known = dict(versions)
        if version in known and (sha is None or known[version] == sha):
            continue
        mismatched += 1
        if cursor.acknowledged.get(uri) == version:
            continue  # asked for this one already
        cat, job = owner[uri]
        why = (
            f"{uri} is now S3 version {version}"
            + (f" (SHA-256 {sha[:12]}...)" if sha else "")
            + f"; loaded as {', '.join(f'{v} ({s[:12]}...)' for v, s in versions)}"
        )
        if exports >= settings.max_exports_per_tick:
            tick.errors.append(f"file audit: {why}; export budget spent, next tick")
            continue
        pdef = pdefs[cat.name]
        for key, wstart, wend in partition_windows(pdef, job.interval_start, job.interval_end):
            exports += 1
            r = Recovery(iso(wstart), iso(wend), f"file audit mismatch: {why}", attempts=1)
            tick.run_requests.append(
                manual_export_request(cat, r, sensor, attempt=f"audit-{_digest([uri, version])}")
            )
            tick.exports_requested += 1
            tick.lines.append(f"file audit: {why}; manual export requested for {key}")
            for dt in cat.data_types:
                tick.observations.append(
                    dg.AssetObservation(
                        asset_key=table_key(dt),
                        partition=key,
                        description=f"file audit mismatch: {why}",
                        metadata={
                            "cxone/file_audit": "mismatch",
                            "manual_export": "requested (request_manual_export_job)",
                        },
                        tags={"cxone/sensor": sensor},
                    )
                )
        cursor.acknowledged[uri] = version
    if not stopped:
        cursor.audit_after = None  # round complete: the next tick starts a new one
    for uri in [u for u in cursor.acknowledged if u not in owner]:
        del cursor.acknowledged[uri]
    tick.lines.append(
        f"file audit: {checked} of {len(order)} loaded file(s) checked, {mismatched} differ"
        + (
            f"; STOPPED EARLY (limit {settings.reconciliation_max_heads_per_tick} files / "
            f"{settings.sensor_tick_budget_seconds:g} s): the next tick resumes after "
            f"{cursor.audit_after}"
            if stopped
            else ""
        )
    )
    tick.stopped_early = tick.stopped_early or stopped
