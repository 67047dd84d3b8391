"""The per-data-type asset chain, generated from the catalog.

For every data type: ``cxone_staged/{table}`` (select COMPLETED jobs, verify and fetch files,
evaluate the blocking gates) feeds ``cxone/{table}`` (newest-wins MERGE into the BI table). A
failing blocking check on the staged asset stops the MERGE of that partition only.
"""

import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from cxone_sync.catalog import Category, DataType
from cxone_sync.defs.partitions import partitions_for
from cxone_sync.defs.resources import CXoneAPIResource, IngestResource, WarehouseResource
from cxone_sync.ingest import checks as ck
from cxone_sync.ingest.stage import (
    NoCompletedExportError,
    PartitionStager,
    StagedPartition,
    Window,
)
from cxone_sync.warehouse.base import DataError, SchemaError

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


def _window(context: dg.AssetExecutionContext, dt: DataType) -> Window:
    tw = context.partition_time_window
    return Window(dt, context.partition_key, tw.start, tw.end)


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


def build_data_type_assets(
    category: Category, dt: DataType, pdef: dg.PartitionsDefinition, warehouse_kind: str
) -> list[dg.AssetsDefinition]:
    pool = WAREHOUSE_POOL

    @dg.asset(
        key=staged_key(dt),
        partitions_def=pdef,
        group_name=category.name,
        kinds={"s3", "parquet"},
        check_specs=check_specs(dt, pdef),
        pool=pool,
        description=f"{dt.table}: the files of COMPLETED CXone export jobs of each interval, "
        "verified (SHA-256, S3 version, record count, schema) and staged for the MERGE.",
        metadata={"natural_key": list(dt.key)},
    )
    def _staged(
        context: dg.AssetExecutionContext,
        cxone: CXoneAPIResource,
        s3: S3Resource,
        warehouse: WarehouseResource,
        ingest: IngestResource,
    ) -> dg.MaterializeResult:
        window = _window(context, dt)
        directory = staging_path(ingest.staging_dir, dt, window.partition_key, _run_root(context))
        with cxone.client() as client:
            prefix = client.download_config(category.name).destination.prefix
            stager = PartitionStager(
                source=client,
                s3_client=s3.get_client(),
                warehouse=warehouse.get(),
                bucket=ingest.bucket,
                prefixes=[prefix],
                staging_dir=directory,
                tolerance=ingest.tolerance(category.name),
            )
            try:
                staged = stager.stage(window)
            except NoCompletedExportError as exc:
                raise dg.Failure(
                    description=str(exc),
                    metadata={"partition": window.partition_key, "table": dt.table},
                ) from None
        results = [
            dg.AssetCheckResult(
                check_name=o.name,
                passed=o.passed,
                severity=dg.AssetCheckSeverity(o.severity),
                description=o.description,
                metadata=_jsonable(o.metadata),
            )
            for o in staged.outcomes
        ]
        if staged.blocked:
            context.log.error(
                f"{dt.table} partition {window.partition_key} is blocked: "
                + "; ".join(o.description for o in staged.outcomes if not o.passed)
            )
        return dg.MaterializeResult(
            metadata={
                **staged.stats,
                "blocked": staged.blocked,
                "job_ids": ", ".join(staged.jobs),
                "superseded_jobs": ", ".join(staged.superseded_jobs),
                "window": f"{_iso(window.start)} .. {_iso(window.end)}",
            },
            check_results=results,
        )

    @dg.asset(
        key=table_key(dt),
        deps=[staged_key(dt)],
        partitions_def=pdef,
        group_name=category.name,
        kinds={warehouse_kind},
        pool=pool,
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=category.freshness),
        check_specs=[
            dg.AssetCheckSpec(
                ck.CROSS_PARTITION_KEYS,
                asset=table_key(dt),
                description=ck.CHECK_DESCRIPTIONS[ck.CROSS_PARTITION_KEYS],
                partitions_def=pdef,
            )
        ],
        description=f"cxone.{dt.table}: one row per natural key ({', '.join(dt.key)}), the "
        "newest version by updated_at (tie: the later-completed job).",
        metadata={"natural_key": list(dt.key), "table": f"cxone.{dt.table}"},
    )
    def _table(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        ingest: IngestResource,
    ) -> dg.MaterializeResult:
        window = _window(context, dt)
        directory = staging_path(ingest.staging_dir, dt, window.partition_key, _run_root(context))
        try:
            doc, files = StagedPartition.load_files(directory)
        except FileNotFoundError as exc:
            raise dg.Failure(description=str(exc)) from None
        if doc["blocked"]:
            raise dg.Failure(description=f"{dt.table} {window.partition_key} is blocked")
        try:
            result = warehouse.get().merge_partition(
                dt, window.partition_key, window.start, window.end, files
            )
        except (SchemaError, DataError) as exc:
            raise dg.Failure(
                description=f"{dt.table} partition {window.partition_key} not merged: {exc}"
            ) from None
        shutil.rmtree(directory, ignore_errors=True)
        cross = result.cross_partition_keys
        return dg.MaterializeResult(
            metadata={
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
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=ck.CROSS_PARTITION_KEYS,
                    passed=True,
                    severity=dg.AssetCheckSeverity.WARN,
                    description=(
                        f"{cross} keys of this partition first arrived in another partition "
                        "(late updates are legitimate)"
                        if cross
                        else "ok"
                    ),
                    metadata={"cross_partition_keys": cross},
                )
            ],
        )

    return [_staged, _table]


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
    categories: tuple[Category, ...], start: Any, warehouse_kind: str
) -> list[dg.AssetsDefinition]:
    assets: list[dg.AssetsDefinition] = []
    for category in categories:
        pdef = partitions_for(category, start)
        for dt in category.data_types:
            assets.extend(build_data_type_assets(category, dt, pdef, warehouse_kind))
    return assets
