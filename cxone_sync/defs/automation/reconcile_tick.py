"""The late-data reconciliation tick: re-load partitions with COMPLETED jobs their last load did
not see, then the file audit (:mod:`.file_audit`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import dagster as dg

from cxone_sync.automation.state import ReconciliationCursor, covering
from cxone_sync.catalog import Category
from cxone_sync.cxone.errors import CXoneError
from cxone_sync.cxone.models import Job, JobStatus
from cxone_sync.cxone.source import ExportSource
from cxone_sync.cxone.untrusted import label, shown
from cxone_sync.defs.automation.file_audit import audit_files
from cxone_sync.defs.automation.run_requests import describe_load, ranged_request
from cxone_sync.defs.automation.tick_common import (
    TAG_JOB_ID,
    TAG_RANGE_END,
    TAG_RANGE_START,
    TAG_RUN_KEY,
    TAG_TRIGGER,
    Budget,
    Tick,
    api_now,
    consecutive,
    partition_windows,
    short_digest,
)
from cxone_sync.defs.ingest.jobs import category_job_name
from cxone_sync.defs.ingest.loaded import loaded_jobs
from cxone_sync.defs.maintenance.staging import IN_FLIGHT
from cxone_sync.settings import AutomationSettings
from cxone_sync.warehouse.base import Warehouse


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
        for group in consecutive(pdef, list(missing_by_key)):
            if len(group) >= settings.sensor_ranged_run_min_partitions:
                # a stretch never loaded (e.g. a lost run): ranged runs, like a backfill
                per_run = settings.sensor_partitions_per_run
                for i in range(0, len(group), per_run):
                    chunk = group[i : i + per_run]
                    ids = sorted({m for key in chunk for m in missing_by_key[key]})
                    rk = f"reconcile:{chunk[0]}..{chunk[-1]}:{short_digest(ids)}"
                    tick.run_requests.append(ranged_request(cat, chunk, ids, rk, sensor))
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
    audit_files(
        tick, categories, pdefs, completed, warehouse, s3_client, cursor, settings, sensor, budget
    )
    tick.cursor = cursor.dumps()
    if not tick.run_requests:
        tick.skip = tick.summary()
    return tick
