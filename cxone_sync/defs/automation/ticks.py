"""One tick of each automation sensor, as functions of (API client, warehouse, instance, cursor).

The sensors in :mod:`.sensors` are thin wrappers around these, so tests and the benchmark can
drive a tick with their own client and read its counters.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import dagster as dg

from cxone_sync.catalog import DEFAULT_OFFSET, Category
from cxone_sync.cxone.errors import ConflictError, CXoneError, TransientAPIError
from cxone_sync.cxone.models import Job, JobStatus
from cxone_sync.cxone.source import ExportSource
from cxone_sync.cxone.untrusted import label, shown
from cxone_sync.cxone.uris import parse_s3_uri
from cxone_sync.defs.automation.state import (
    ENDED_BADLY,
    LIVE,
    GapCursor,
    JobsCursor,
    ReconciliationCursor,
    Recovery,
    RecoveryOutcome,
    covering,
    iso,
    owe,
    settle,
)
from cxone_sync.defs.ingest.assets import JOB_IDS_JSON, latest_materializations, table_key
from cxone_sync.defs.ingest.jobs import category_job_name
from cxone_sync.ingest import checks as ck
from cxone_sync.settings import AutomationSettings
from cxone_sync.warehouse.base import JobEvent, Warehouse
from cxone_sync.warehouse.locks import is_lock_error

log = logging.getLogger(__name__)

TAG_TRIGGER = "cxone/trigger"
TAG_JOB_ID = "cxone/job_id"
"""The job id when it meets Dagster's strict tag rule, else its hash form (``untrusted.label``)."""
TAG_RUN_KEY = "cxone/run_key"
RECOVERY_METADATA = "cxone/recovery"
BACKFILL = "backfill/"


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
    jobs_seen: int = 0
    cursor: str | None = None
    """The new cursor; None keeps the old one (nothing of this tick is committed)."""
    skip: str | None = None

    def summary(self) -> str:
        return "; ".join(self.lines) or "nothing new"


# -------------------------------------------------------------------------------- helpers


def first_instant(start: Any) -> datetime:
    return datetime.combine(start, time(0), tzinfo=UTC)


def partition_windows(
    pdef: dg.TimeWindowPartitionsDefinition, start: datetime, end: datetime
) -> list[tuple[str, datetime, datetime]]:
    """(key, start, end) of every partition overlapping ``[start, end)``."""
    if end <= start:
        return []
    out = []
    for key in pdef.get_partition_keys_in_time_window(dg.TimeWindow(start, end)):
        tw = pdef.time_window_for_partition_key(key)
        out.append((key, tw.start.astimezone(UTC), tw.end.astimezone(UTC)))
    return out


def job_event(job: Job) -> JobEvent:
    return JobEvent(
        job_id=job.id,
        category=job.category,
        download_id=job.download_id,
        status=job.status.value,
        interval_start=job.interval_start,
        interval_end=job.interval_end,
        updated_at=job.updated_at,
        error_details=job.error_details,
        trigger=job.trigger.value,
    )


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
            tick.lines.append(
                f"manual export {shown(o.job_id)} requested for {what} (try {r.attempts})"
            )
        elif o.kind == "conflict":
            tick.lines.append(f"{what}: an overlapping manual export already runs (409)")
        elif o.kind == "covered":
            tick.lines.append(f"{what} recovered by COMPLETED job {shown(o.job_id)}")
        elif o.kind in ("transient", "refused"):
            tick.errors.append(f"manual export for {what} not accepted: {o.detail}")
        elif o.kind == "exhausted":
            tick.errors.append(
                f"GAVE UP on {what} after {r.attempts} manual export(s): {o.detail}; the "
                "interval stays empty until someone exports it by hand"
            )
            tick.observations.extend(exhausted_observations(category, pdef, r, sensor))


# -------------------------------------------------------------------------- jobs sensor


def jobs_tick(
    *,
    category: Category,
    pdef: dg.TimeWindowPartitionsDefinition,
    source: ExportSource,
    warehouse: Warehouse,
    cursor_text: str | None,
    settings: AutomationSettings,
    history_start: datetime,
    sensor: str,
) -> Tick:
    """Job state changes since the cursor: record them, load COMPLETED ones, recover failures."""
    tick = Tick()
    cursor = JobsCursor.loads(cursor_text)
    cursor.tick += 1
    since = cursor.position.high_water or history_start
    stream = source.iter_jobs(category.name, updated_since=since)
    fresh, more = cursor.position.take(stream, settings.max_jobs_per_tick)
    tick.jobs_seen = len(fresh)
    try:
        tick.events_written = warehouse.record_job_events([job_event(j) for j in fresh])
    except Exception as exc:
        if not is_lock_error(exc):
            raise
        # Nothing of this tick is committed: the same changes come back next tick.
        tick.skip = (
            f"the warehouse is locked by another process ({exc}); {len(fresh)} job state "
            "change(s) not recorded, the cursor stays where it was"
        )
        return tick
    hashed: list[str] = []
    for job in fresh:
        if job.status == JobStatus.COMPLETED:
            for key, start, end in partition_windows(pdef, job.interval_start, job.interval_end):
                rk = run_key(job.id, key)
                tick.run_requests.append(
                    dg.RunRequest(
                        run_key=rk,
                        partition_key=key,
                        tags={
                            TAG_TRIGGER: sensor,
                            TAG_JOB_ID: label(job.id),
                            TAG_RUN_KEY: rk,
                            "cxone/export_trigger": job.trigger.value,
                        },
                    )
                )
                covered = [r.key for r in cursor.owed.values() if r.window == (start, end)]
                for k in covered:
                    r = cursor.owed.pop(k)
                    if r.exhausted:
                        tick.lines.append(
                            f"{category.name} {r.start} recovered late by {shown(job.id)}"
                        )
            if label(job.id) != job.id:
                hashed.append(f"{shown(job.id)} -> {label(job.id)}")
        elif job.status in ENDED_BADLY:
            reason = f"job {shown(job.id)} ({job.trigger.value}) {job.status.value}: " + (
                shown(job.error_details, 300) if job.error_details else "no error details"
            )
            for _, start, end in partition_windows(pdef, job.interval_start, job.interval_end):
                owe(cursor.owed, start, end, reason, job.id)
            tick.lines.append(reason)
    outcomes = settle(
        source,
        category.name,
        cursor.owed,
        tick=cursor.tick,
        destination_prefix=backfill_prefix(source, category.name),
        max_attempts=settings.recovery_max_attempts,
        backoff_ticks=settings.recovery_backoff_ticks,
        max_exports=settings.max_exports_per_tick,
    )
    _report(tick, category, pdef, outcomes, sensor)
    if hashed:
        tick.lines.append(
            f"{len(hashed)} job id(s) are not valid tag values; their runs carry {TAG_JOB_ID} "
            "and run keys in hash form: " + "; ".join(hashed[:5]) + ("; ..." if hashed[5:] else "")
        )
    _prune(cursor.owed, cursor.position.high_water, settings.gap_lookback)
    tick.lines.insert(
        0,
        f"{len(fresh)} job state change(s) since {iso(since)}, {tick.events_written} new in "
        f"the job-events table, {len(tick.run_requests)} partition load(s) requested"
        + (" (more waiting: next tick)" if more else ""),
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
    """Intervals due by the API's now with neither a load nor a live job get a manual export."""
    tick = Tick()
    cursor = GapCursor.loads(cursor_text)
    cursor.tick += 1
    lookback = settings.gap_lookback
    floor = max(history_start, cursor.now - lookback) if cursor.now else history_start
    jobs = list(source.iter_jobs(category.name, updated_since=floor))
    newest = max((j.updated_at for j in jobs), default=None)
    now = max(filter(None, (cursor.now, newest)), default=None)
    if now is None:
        tick.skip = f"CXone has no {category.name} job yet: nothing is due"
        tick.cursor = cursor.dumps()
        return tick
    cursor.now = now
    due_by = DEFAULT_OFFSET + category.lag_max + settings.gap_grace
    lo = max(history_start, now - lookback)
    loaded = loaded_partitions(instance, category)
    live = [j for j in jobs if j.status in LIVE]
    gaps: list[str] = []
    for key, start, end in partition_windows(pdef, lo, now):
        if end + due_by > now or key in loaded or covering(live, start, end):
            continue
        failed = [j for j in covering(jobs, start, end) if j.status not in LIVE]
        reason = (
            f"no export job by {iso(end + due_by)} (interval end + offset + lag + grace)"
            if not failed
            else "only failed export jobs: "
            + ", ".join(f"{shown(j.id)} {j.status.value}" for j in failed)
        )
        owe(cursor.owed, start, end, reason, None)
        gaps.append(key)
    for key in [k for k, r in cursor.owed.items() if r.window[1] < lo]:
        del cursor.owed[key]
    outcomes = settle(
        source,
        category.name,
        cursor.owed,
        tick=cursor.tick,
        destination_prefix=backfill_prefix(source, category.name),
        max_attempts=settings.recovery_max_attempts,
        backoff_ticks=settings.recovery_backoff_ticks,
        max_exports=settings.max_exports_per_tick,
        known_jobs=jobs,
    )
    _report(tick, category, pdef, outcomes, sensor)
    tick.lines.insert(
        0,
        f"API now {iso(now)}: {len(gaps)} interval(s) without load or live job in the last "
        f"{lookback.days} day(s)" + (f" ({', '.join(gaps[:10])})" if gaps else ""),
    )
    tick.cursor = cursor.dumps()
    tick.skip = tick.summary()
    return tick


# ---------------------------------------------------------------- late-data reconciliation


def _loaded_jobs(
    instance: dg.DagsterInstance, category: Category, keys: Sequence[str]
) -> dict[str, set[str] | None]:
    """partition -> ids of the jobs its latest load considered (None: some table never loaded).

    Read from the BI table's latest materialization of the partition (metadata ``job_ids``,
    written per partition by single and ranged runs alike).
    """
    out: dict[str, set[str] | None] = {key: set() for key in keys}
    for dt in category.data_types:
        merged = latest_materializations(instance, table_key(dt), keys)
        for key in keys:
            ids = _job_ids(merged.get(key))
            current = out[key]
            if ids is None:
                out[key] = None
            elif current is not None:
                current.update(ids)
    return out


def _job_ids(record: dg.EventLogRecord | None) -> set[str] | None:
    mat = record.asset_materialization if record is not None else None
    if mat is None or "job_ids" not in mat.metadata:
        return None
    exact = getattr(mat.metadata.get(JOB_IDS_JSON), "value", None)
    if isinstance(exact, list):  # the raw ids, whatever they hold (',' included)
        return {str(v) for v in exact}
    value = getattr(mat.metadata["job_ids"], "value", "") or ""
    return {v.strip() for v in str(value).split(",") if v.strip()}


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
    """Re-load partitions with COMPLETED jobs their last load did not see; re-verify files."""
    tick = Tick()
    cursor = ReconciliationCursor.loads(cursor_text)
    lookback = settings.reconciliation_lookback
    floor = max(history_start, cursor.now - lookback) if cursor.now else history_start
    completed: dict[str, list[Job]] = {}
    for c in categories:
        try:
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
    for cat in categories:
        pdef = pdefs[cat.name]
        windows = [w for w in partition_windows(pdef, lo, hi) if w[2] <= hi]
        loaded = _loaded_jobs(instance, cat, [k for k, _, _ in windows])
        for key, start, end in windows:
            jobs = covering(completed[cat.name], start, end)
            seen = loaded[key]
            missing = sorted(j.id for j in jobs if seen is None or j.id not in seen)
            if not jobs or not missing:
                continue
            # labels: never a ',' inside one, so the join is unambiguous; ordinary ids unchanged
            labels = ",".join(label(j) for j in missing)
            digest = hashlib.sha256(labels.encode()).hexdigest()[:16]
            rk = f"reconcile:{key}:{digest}"
            tick.run_requests.append(
                dg.RunRequest(
                    run_key=rk,
                    job_name=category_job_name(cat),
                    partition_key=key,
                    tags={TAG_TRIGGER: sensor, TAG_RUN_KEY: rk, TAG_JOB_ID: labels},
                )
            )
            stale.append(f"{cat.name} {key} ({', '.join(shown(j) for j in missing)})")
    tick.lines.append(
        f"{len(stale)} partition(s) with COMPLETED jobs their last load did not include"
        + (": " + "; ".join(stale[:10]) if stale else "")
    )
    _audit_files(
        tick, categories, pdefs, completed, source, warehouse, s3_client, cursor, settings, sensor
    )
    tick.cursor = cursor.dumps()
    if not tick.run_requests:
        tick.skip = tick.summary()
    return tick


def s3_sha256_hex(checksum: str | None) -> str | None:
    """S3's ``ChecksumSHA256`` (base64) as hex; None when absent or a multipart composite."""
    if not checksum or "-" in checksum:
        return None
    return base64.b64decode(checksum).hex()


def _audit_files(
    tick: Tick,
    categories: Sequence[Category],
    pdefs: dict[str, dg.TimeWindowPartitionsDefinition],
    completed: dict[str, list[Job]],
    source: ExportSource,
    warehouse: Warehouse,
    s3_client: Any,
    cursor: ReconciliationCursor,
    settings: AutomationSettings,
    sensor: str,
) -> None:
    """Stored (version id, SHA-256) of every loaded file against what S3 holds now."""
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
    checked = mismatched = 0
    exports = 0
    prefixes: dict[str, str] = {}
    for uri, versions in sorted(stored.items()):
        loc = parse_s3_uri(uri)
        try:
            head = s3_client.head_object(Bucket=loc.bucket, Key=loc.key, ChecksumMode="ENABLED")
        except Exception as exc:  # gone or unreadable: the loaded rows stay, a person looks
            tick.errors.append(f"file audit: cannot HEAD {uri} ({type(exc).__name__})")
            continue
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
        ok = True
        for key, start, end in partition_windows(pdef, job.interval_start, job.interval_end):
            exports += 1
            try:
                if cat.name not in prefixes:
                    prefixes[cat.name] = backfill_prefix(source, cat.name)()
                new = source.manual_export(
                    cat.name, start, end, prefixes[cat.name], overwrite=False
                ).id
            except ConflictError:
                tick.lines.append(f"file audit: {cat.name} {key} export already running (409)")
                continue
            except (TransientAPIError, CXoneError) as exc:
                ok = False
                tick.errors.append(f"file audit: manual export for {cat.name} {key} failed: {exc}")
                continue
            tick.lines.append(f"file audit: {why}; manual export {new} requested for {key}")
            for dt in cat.data_types:
                tick.observations.append(
                    dg.AssetObservation(
                        asset_key=table_key(dt),
                        partition=key,
                        description=f"file audit mismatch: {why}",
                        metadata={"cxone/file_audit": "mismatch", "manual_export_job": new},
                        tags={"cxone/sensor": sensor},
                    )
                )
        if ok:
            cursor.acknowledged[uri] = version
    for uri in [u for u in cursor.acknowledged if u not in owner]:
        del cursor.acknowledged[uri]
    tick.lines.append(f"file audit: {checked} loaded file(s) checked, {mismatched} differ")
