"""The per-data-type asset chain, generated from the catalog.

For every data type: ``cxone_staged/{table}`` (select COMPLETED jobs, verify and fetch files,
evaluate the blocking gates) feeds ``cxone/{table}`` (newest-wins MERGE into the BI table). A
failing blocking check on the staged asset stops the MERGE of that partition only.
"""

import re
import shutil
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster_aws.s3 import S3Resource

from cxone_sync.catalog import Category, DataType
from cxone_sync.cxone.client import CXoneClient
from cxone_sync.cxone.errors import CXoneError
from cxone_sync.defs.partitions import partitions_for
from cxone_sync.defs.resources import CXoneAPIResource, IngestResource, WarehouseResource
from cxone_sync.defs.retries import retry_transient
from cxone_sync.ingest import checks as ck
from cxone_sync.ingest.stage import (
    NoCompletedExportError,
    PartitionStager,
    StagedPartition,
    Window,
)
from cxone_sync.storage.staging import StagingError
from cxone_sync.warehouse.base import DataError, MergeResult, SchemaError, Warehouse

STAGED_PREFIX = "cxone_staged"
TABLE_PREFIX = "cxone"
WAREHOUSE_POOL = "cxone_warehouse"
"""Concurrency pool around everything that opens the warehouse (DuckDB: one writer)."""


def staged_key(dt: DataType) -> dg.AssetKey:
    return dg.AssetKey([STAGED_PREFIX, dt.table])


def table_key(dt: DataType) -> dg.AssetKey:
    return dg.AssetKey([TABLE_PREFIX, dt.table])


def staging_path(base: str, dt: DataType, partition_key: str, run_id: str) -> Path:
    safe = re.sub(r"[^0-9A-Za-z_-]", "_", partition_key)
    return Path(base) / dt.table / safe / run_id


def _run_root(context: dg.AssetExecutionContext) -> str:
    """Re-execution from failure reuses what the original run staged."""
    return context.run.root_run_id or context.run.run_id


def check_specs(dt: DataType, pdef: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name,
            asset=staged_key(dt),
            blocking=True,
            description=ck.CHECK_DESCRIPTIONS[name],
            partitions_def=pdef,
        )
        for name in ck.BLOCKING_CHECKS
    ]


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _windows(context: dg.AssetExecutionContext, dt: DataType) -> list[Window]:
    """The partitions of the run: one, or a range (a UI backfill batched by its policy)."""
    pdef = context.assets_def.partitions_def
    assert isinstance(pdef, dg.TimeWindowPartitionsDefinition)
    windows = []
    for key in context.partition_keys:
        tw = pdef.time_window_for_partition_key(key)
        windows.append(Window(dt, key, tw.start, tw.end))
    return windows


def _check_outputs(context: dg.AssetExecutionContext) -> Iterator[dg.Output[None]]:
    """A ranged step reports its checks per partition itself; the check outputs still close."""
    for name in context.assets_def.check_specs_by_output_name:
        yield dg.Output(None, output_name=name)


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Sequence[str]
) -> dict[str, dg.EventLogRecord]:
    """partition -> its newest materialization record, for many partitions in one query."""
    if not partitions:
        return {}
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(partitions)),
        limit=len(partitions) * 20,
    )
    latest: dict[str, dg.EventLogRecord] = {}
    for record in result.records:  # newest first
        partition = record.partition_key
        if partition is not None and partition not in latest:
            latest[partition] = record
    return latest


def _target(
    record: dg.EventLogRecord | None,
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """What a check evaluation of one partition was evaluated against (as a single run links it)."""
    if record is None:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
    )


def _merged_in_lineage(
    context: dg.AssetExecutionContext, record: dg.EventLogRecord | None, run_root: str
) -> bool:
    """True when a run of this run's lineage (the original or an earlier re-execution) already
    merged the partition: its staging was consumed, and merging it again is not needed."""
    if record is None:
        return False
    if record.run_id == run_root:
        return True
    run = context.instance.get_run_by_id(record.run_id)
    return run is not None and run.root_run_id == run_root


class _NotMerged(Exception):
    """Why one partition was not merged (blocked, not staged, or refused by the warehouse)."""


def _blocked_failure(dt: DataType, total: int, blocked: dict[str, str]) -> dg.Failure:
    listed = "\n".join(f"  {key}: {why}" for key, why in sorted(blocked.items()))
    return dg.Failure(
        description=f"{dt.table}: {len(blocked)} of {total} partitions not merged; the other "
        f"{total - len(blocked)} were. Blocked:\n{listed}\nFix the cause (the check or message "
        "names it), then re-run the failed partitions (re-execute the backfill's failed "
        "partitions, or `cxone-sync sync` over their interval).",
        metadata={"table": dt.table, "blocked": dg.MetadataValue.json(blocked)},
    )


def build_data_type_assets(
    category: Category,
    dt: DataType,
    pdef: dg.PartitionsDefinition,
    warehouse_kind: str,
    partitions_per_run: int = 24,
) -> list[dg.AssetsDefinition]:
    pool = WAREHOUSE_POOL
    # Staged and table share the policy, so a backfill puts both in the same ranged run.
    backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=partitions_per_run)

    def stage_one(
        client: CXoneClient,
        s3_client: Any,
        warehouse: Warehouse,
        ingest: IngestResource,
        prefix: str,
        window: Window,
        run_root: str,
    ) -> StagedPartition:
        stager = PartitionStager(
            source=client,
            s3_client=s3_client,
            warehouse=warehouse,
            bucket=ingest.bucket,
            prefixes=[prefix],
            staging_dir=staging_path(ingest.staging_dir, dt, window.partition_key, run_root),
            tolerance=ingest.tolerance(category.name),
        )
        return stager.stage(window)

    def staged_metadata(staged: StagedPartition, window: Window) -> dict[str, Any]:
        return {
            **staged.stats,
            "blocked": staged.blocked,
            "job_ids": ", ".join(staged.jobs),
            "superseded_jobs": ", ".join(staged.superseded_jobs),
            "window": f"{_iso(window.start)} .. {_iso(window.end)}",
        }

    @dg.asset(
        key=staged_key(dt),
        partitions_def=pdef,
        backfill_policy=backfill_policy,
        group_name=category.name,
        kinds={"s3", "parquet"},
        check_specs=check_specs(dt, pdef),
        pool=pool,
        description=f"{dt.table}: the files of COMPLETED CXone export jobs of each interval, "
        "verified (SHA-256, S3 version, record count, schema) and staged for the MERGE.",
        metadata={"natural_key": list(dt.key)},
    )
    @retry_transient
    def _staged(
        context: dg.AssetExecutionContext,
        cxone: CXoneAPIResource,
        s3: S3Resource,
        warehouse: WarehouseResource,
        ingest: IngestResource,
    ) -> Iterator[Any]:
        windows = _windows(context, dt)
        run_root = _run_root(context)
        s3_client, wh = s3.get_client(), warehouse.reader()  # staging only reads the ledger
        with cxone.client() as client:
            prefix = client.download_config(category.name).destination.prefix
            if context.has_partition_key:
                # One partition: Dagster's own blocking checks stop this partition's MERGE.
                window = windows[0]
                try:
                    staged = stage_one(client, s3_client, wh, ingest, prefix, window, run_root)
                except NoCompletedExportError as exc:
                    raise dg.Failure(
                        description=str(exc),
                        metadata={"partition": window.partition_key, "table": dt.table},
                    ) from None
                if staged.blocked:
                    context.log.error(
                        f"{dt.table} partition {window.partition_key} is blocked: "
                        + "; ".join(staged.blocked_reasons)
                    )
                yield dg.MaterializeResult(
                    metadata=staged_metadata(staged, window),
                    check_results=[
                        dg.AssetCheckResult(
                            check_name=o.name,
                            passed=o.passed,
                            severity=dg.AssetCheckSeverity(o.severity),
                            description=o.description,
                            metadata=_jsonable(o.metadata),
                        )
                        for o in staged.outcomes
                    ],
                )
                return
            # A range (a batched backfill): every partition is staged and checked on its own.
            # Dagster blocks per step, so here the gate is enforced per partition by the MERGE
            # step, which skips the blocked partitions and fails the run naming them.
            outcomes: dict[str, StagedPartition] = {}
            blocked: dict[str, str] = {}
            for window in windows:
                try:
                    staged = stage_one(client, s3_client, wh, ingest, prefix, window, run_root)
                except (NoCompletedExportError, CXoneError, StagingError) as exc:
                    # one interval's trouble (no export yet, an API error that outlasted the
                    # retries) blocks that partition only; the rest of the range goes on
                    why = str(exc) or type(exc).__name__
                    _save_blocked_stub(ingest, dt, window, run_root, why)
                    blocked[window.partition_key] = why
                    continue
                outcomes[window.partition_key] = staged
                if staged.blocked:
                    blocked[window.partition_key] = "; ".join(staged.blocked_reasons)
        for key, why in sorted(blocked.items()):
            context.log.error(f"{dt.table} partition {key} is blocked: {why}")
        yield dg.MaterializeResult(
            metadata={
                "partitions": len(windows),
                "partitions_blocked": len(blocked),
                "blocked": dg.MetadataValue.json(blocked),
                "rows_in_files": sum(o.stats.get("rows_in_files", 0) for o in outcomes.values()),
                "files": sum(o.stats.get("files", 0) for o in outcomes.values()),
                "files_staged": sum(o.stats.get("files_staged", 0) for o in outcomes.values()),
                "window": f"{_iso(windows[0].start)} .. {_iso(windows[-1].end)}",
            }
        )
        yield from _check_outputs(context)
        records = latest_materializations(context.instance, staged_key(dt), list(outcomes))
        for key, staged in outcomes.items():
            target = _target(records.get(key))
            for o in staged.outcomes:
                yield dg.AssetCheckEvaluation(
                    asset_key=staged_key(dt),
                    check_name=o.name,
                    passed=o.passed,
                    severity=dg.AssetCheckSeverity(o.severity),
                    description=o.description,
                    metadata={
                        **_jsonable(o.metadata),
                        "enforced_by": "MERGE step of this ranged run (skips the partition)",
                    },
                    target_materialization_data=target,
                    # Not Dagster-blocking: a failed blocking evaluation would stop the MERGE
                    # step of the whole range; the MERGE step enforces it per partition instead.
                    blocking=False,
                    partition=key,
                )

    @dg.asset(
        key=table_key(dt),
        deps=[staged_key(dt)],
        partitions_def=pdef,
        backfill_policy=backfill_policy,
        group_name=category.name,
        kinds={warehouse_kind},
        pool=pool,
        # A ranged run records a materialization per merged partition, none for blocked ones.
        output_required=False,
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=category.freshness),
        check_specs=[
            dg.AssetCheckSpec(
                name,
                asset=table_key(dt),
                description=ck.CHECK_DESCRIPTIONS[name],
                partitions_def=pdef,
            )
            for name in (ck.CROSS_PARTITION_KEYS, ck.RECOVERED)
        ],
        description=f"cxone.{dt.table}: one row per natural key ({', '.join(dt.key)}), the "
        "newest version by updated_at (tie: the later-completed job).",
        metadata={"natural_key": list(dt.key), "table": f"cxone.{dt.table}"},
    )
    @retry_transient
    def _table(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        ingest: IngestResource,
    ) -> Iterator[Any]:
        windows = _windows(context, dt)
        run_root = _run_root(context)
        wh = warehouse.get()

        def merge_one(window: Window) -> tuple[MergeResult, dict[str, Any]]:
            """Merge what the staging step let through; _NotMerged says why not."""
            directory = staging_path(ingest.staging_dir, dt, window.partition_key, run_root)
            try:
                doc, files = StagedPartition.load_files(directory)
            except FileNotFoundError as exc:
                raise _NotMerged(str(exc)) from None
            if doc["blocked"]:
                raise _NotMerged("; ".join(doc.get("blocked_reasons", [])) or "blocked")
            try:
                result = wh.merge_partition(
                    dt, window.partition_key, window.start, window.end, files
                )
            except (SchemaError, DataError) as exc:
                raise _NotMerged(f"not merged: {exc}") from None
            shutil.rmtree(directory, ignore_errors=True)
            return result, doc

        if context.has_partition_key:
            window = windows[0]
            try:
                result, doc = merge_one(window)
            except _NotMerged as exc:
                raise dg.Failure(
                    description=f"{dt.table} partition {window.partition_key}: {exc}"
                ) from None
            yield dg.MaterializeResult(
                metadata=merge_metadata(result, doc),
                check_results=[
                    dg.AssetCheckResult(
                        check_name=ck.CROSS_PARTITION_KEYS,
                        passed=True,
                        severity=dg.AssetCheckSeverity.WARN,
                        **cross_partition_result(result),
                    ),
                    dg.AssetCheckResult(check_name=ck.RECOVERED, **recovered_result(doc)),
                ],
            )
            return
        # A range: merge every partition the staging step let through, one transaction each.
        before = latest_materializations(
            context.instance, table_key(dt), [w.partition_key for w in windows]
        )
        blocked: dict[str, str] = {}
        merged: list[tuple[str, MergeResult, dict[str, Any]]] = []
        for window in windows:
            key = window.partition_key
            try:
                result, doc = merge_one(window)
            except _NotMerged as exc:
                if not _merged_in_lineage(context, before.get(key), run_root):
                    blocked[key] = str(exc)
                # else: re-execution from failure, and this partition merged the first time
                continue
            merged.append((key, result, doc))
            yield dg.AssetMaterialization(
                asset_key=table_key(dt), partition=key, metadata=merge_metadata(result, doc)
            )
        yield from _check_outputs(context)
        records = latest_materializations(
            context.instance, table_key(dt), [k for k, _, _ in merged]
        )
        for key, result, doc in merged:
            target = _target(records.get(key))
            yield dg.AssetCheckEvaluation(
                asset_key=table_key(dt),
                check_name=ck.CROSS_PARTITION_KEYS,
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                target_materialization_data=target,
                partition=key,
                **cross_partition_result(result),
            )
            yield dg.AssetCheckEvaluation(
                asset_key=table_key(dt),
                check_name=ck.RECOVERED,
                target_materialization_data=target,
                partition=key,
                **recovered_result(doc),
            )
        if blocked:
            raise _blocked_failure(dt, len(windows), blocked)

    return [_staged, _table]


def merge_metadata(result: MergeResult, doc: dict[str, Any]) -> dict[str, Any]:
    return {
        # the jobs this load considered: late-data reconciliation compares against them
        "job_ids": ", ".join(doc.get("jobs", [])),
        "files_loaded": result.files_loaded,
        "files_skipped": result.files_skipped + len(doc.get("skipped_files", [])),
        "rows_read": result.rows_read,
        "in_file_duplicates_dropped": result.duplicates_dropped,
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "stale_rows_ignored": result.rows_stale,
        "columns_added": ", ".join(result.columns_added),
        "columns_widened": ", ".join(result.columns_widened),
        "schema_hash": result.schema_hash,
        **{f"seconds_{k}": round(v, 3) for k, v in result.seconds.items()},
    }


def cross_partition_result(result: MergeResult) -> dict[str, Any]:
    cross = result.cross_partition_keys
    return {
        "description": (
            f"{cross} keys of this partition first arrived in another partition "
            "(late updates are legitimate)"
            if cross
            else "ok"
        ),
        "metadata": {"cross_partition_keys": cross},
    }


def recovered_result(doc: dict[str, Any]) -> dict[str, Any]:
    """The partition loaded: whatever recovery the sensor gave up on is resolved now."""
    return {
        "passed": True,
        "description": "loaded from COMPLETED export job(s) " + ", ".join(doc.get("jobs", [])),
        "metadata": {"job_ids": ", ".join(doc.get("jobs", []))},
    }


def _save_blocked_stub(
    ingest: IngestResource, dt: DataType, window: Window, run_root: str, why: str
) -> None:
    """A partition with nothing to stage still tells the MERGE step why."""
    StagedPartition(
        table=dt.table,
        partition_key=window.partition_key,
        window_start=window.start,
        window_end=window.end,
        blocked=True,
        files=[],
        jobs=[],
        superseded_jobs=[],
        skipped_files=[],
        outcomes=[ck.CheckOutcome("export", False, "ERROR", why)],
    ).save(staging_path(ingest.staging_dir, dt, window.partition_key, run_root))


def _jsonable(metadata: dict[str, Any]) -> dict[str, Any]:
    """Check metadata: scalars as they are, structures as JSON."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, (int, float, str, bool)) or value is None:
            out[key] = value
        else:
            out[key] = dg.MetadataValue.json(value)
    return out


def build_ingest_assets(
    categories: tuple[Category, ...],
    start: Any,
    warehouse_kind: str,
    partitions_per_run: int = 24,
) -> list[dg.AssetsDefinition]:
    assets: list[dg.AssetsDefinition] = []
    for category in categories:
        pdef = partitions_for(category, start)
        for dt in category.data_types:
            assets.extend(
                build_data_type_assets(category, dt, pdef, warehouse_kind, partitions_per_run)
            )
    return assets
