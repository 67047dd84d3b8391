"""A partition's load outcome as Dagster events: the staged and table materializations, the
gate outcomes as check results (per partition, after the materialization they judge), and the
step's failure naming the blocked partitions."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from cxone_sync.catalog import DataType
from cxone_sync.cxone.untrusted import shown
from cxone_sync.defs.ingest.names import job_metadata, staged_key, table_key
from cxone_sync.ingest import checks as ck
from cxone_sync.ingest.load import PartitionLoadOutcome
from cxone_sync.ingest.stage import Window
from cxone_sync.timefmt import utc_iso as _iso
from cxone_sync.warehouse.base import MergeResult


def _jsonable(metadata: dict[str, Any]) -> dict[str, Any]:
    """Check metadata: scalars as they are, structures as JSON."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, (int, float, str, bool, dg.MetadataValue)) or value is None:
            out[key] = value
        else:
            out[key] = dg.MetadataValue.json(value)
    return out


def _evaluation(
    key: dg.AssetKey,
    partition: str,
    name: str,
    *,
    passed: bool,
    severity: str = "ERROR",
    description: str,
    metadata: dict[str, Any] | None = None,
    blocking: bool = False,
) -> dg.AssetCheckEvaluation:
    """One check result for one partition. Emitted after the partition's materialization in the
    same run, so the UI evaluates it against that materialization."""
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=name,
        passed=passed,
        severity=dg.AssetCheckSeverity(severity),
        description=description,
        metadata=_jsonable(metadata or {}),
        blocking=blocking,
        partition=partition,
    )


def gate_events(dt: DataType, window: Window, outcome: PartitionLoadOutcome) -> Iterator[Any]:
    """The staged partition's materialization and its gates (``completed_export`` included).

    A partition that was not merged (a gate blocked it, or the warehouse refused it) is not
    recorded as staged: its failed check or the step's failure says why, and re-executing the
    backfill's failed partitions then runs both assets of the step again (the step cannot run
    one without the other)."""
    staged = outcome.staged
    key = staged_key(dt)
    if outcome.merged is not None:
        yield dg.AssetMaterialization(
            asset_key=key,
            partition=window.partition_key,
            metadata={
                **staged.stats,
                **job_metadata(staged.jobs),
                "superseded_jobs": ", ".join(shown(j) for j in staged.superseded_jobs),
                "window": f"{_iso(window.start)} .. {_iso(window.end)}",
            },
        )
    yield _evaluation(
        key,
        window.partition_key,
        ck.COMPLETED_EXPORT,
        passed=True,
        description="COMPLETED export job(s) " + ", ".join(shown(j) for j in staged.jobs),
        metadata=job_metadata(staged.jobs),
        blocking=True,
    )
    for o in staged.outcomes:
        yield _evaluation(
            key,
            window.partition_key,
            o.name,
            passed=o.passed,
            severity=o.severity,
            description=o.description,
            metadata=o.metadata,
            blocking=True,
        )


def unstaged_events(dt: DataType, window: Window, why: str) -> Iterator[Any]:
    """Nothing could be staged (no COMPLETED export, or the API kept failing): no staged
    materialization, a failed blocking ``completed_export`` check with the reason."""
    yield _evaluation(
        staged_key(dt),
        window.partition_key,
        ck.COMPLETED_EXPORT,
        passed=False,
        description=why,
        metadata={"window": f"{_iso(window.start)} .. {_iso(window.end)}"},
        blocking=True,
    )


def merge_events(
    dt: DataType,
    window: Window,
    outcome: PartitionLoadOutcome,
    result: MergeResult,
    *,
    recovered: bool,
) -> Iterator[Any]:
    """The table partition's materialization; ``recovered`` passes again where the jobs sensor
    had reported the interval as unrecovered (elsewhere it has nothing to say)."""
    key = table_key(dt)
    jobs = ", ".join(shown(j) for j in outcome.staged.jobs)
    yield dg.AssetMaterialization(
        asset_key=key,
        partition=window.partition_key,
        metadata=merge_metadata(result, outcome),
    )
    if recovered:
        # the jobs sensor had given up on this interval (its `recovered` check is red): loaded now
        yield _evaluation(
            key,
            window.partition_key,
            ck.RECOVERED,
            passed=True,
            description="loaded from COMPLETED export job(s) " + jobs,
            metadata=job_metadata(outcome.staged.jobs),
        )


def merge_metadata(result: MergeResult, outcome: PartitionLoadOutcome) -> dict[str, Any]:
    staged = outcome.staged
    return {
        # the jobs this load considered: late-data reconciliation compares against them
        **job_metadata(staged.jobs),
        "files_loaded": result.files_loaded,
        "files_skipped": result.files_skipped + len(staged.skipped_files),
        "rows_read": result.rows_read,
        "in_file_duplicates_dropped": result.duplicates_dropped,
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "stale_rows_ignored": result.rows_stale,
        "columns_added": ", ".join(result.columns_added),
        "columns_widened": ", ".join(result.columns_widened),
        # keys first seen in another partition: late updates, legitimate and worth knowing
        "cross_partition_keys": result.cross_partition_keys,
        "schema_hash": result.schema_hash,
        **{f"seconds_{k}": round(v, 3) for k, v in result.seconds.items()},
    }


def blocked_failure(dt: DataType, total: int, blocked: dict[str, str]) -> dg.Failure:
    listed = "\n".join(f"  {key}: {why}" for key, why in sorted(blocked.items()))
    loaded = total - len(blocked)
    return dg.Failure(
        description=f"{dt.table}: {len(blocked)} of {total} partitions not merged"
        + (f"; the other {loaded} were" if loaded else "")
        + f". Blocked:\n{listed}\nFix the cause (the failed check or the message names it), "
        "then re-execute this run from failure, re-execute the backfill's failed partitions, or "
        "run `cxone-sync sync` over their interval: each re-stages what it merges.",
        metadata={"table": dt.table, "blocked": dg.MetadataValue.json(blocked)},
    )
