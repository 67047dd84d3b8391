"""The reconciliation's file audit: stored (version id, SHA-256) of loaded files against what S3
holds now, a bounded slice per tick; a mismatch requests a manual export."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from cxone_sync.automation.state import ReconciliationCursor, Recovery
from cxone_sync.catalog import Category
from cxone_sync.cxone.models import Job
from cxone_sync.cxone.uris import parse_s3_uri
from cxone_sync.defs.automation.manual_exports import manual_export_request
from cxone_sync.defs.automation.tick_common import Budget, Tick, partition_windows, short_digest
from cxone_sync.defs.ingest.names import table_key
from cxone_sync.settings import AutomationSettings
from cxone_sync.storage.staging import s3_sha256_hex
from cxone_sync.timefmt import utc_iso as iso
from cxone_sync.warehouse.base import Warehouse
from cxone_sync.warehouse.locks import is_lock_error


def audit_files(
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
                manual_export_request(
                    cat, r, sensor, attempt=f"audit-{short_digest([uri, version])}"
                )
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
