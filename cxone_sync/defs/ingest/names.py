"""The names the load step's assets go by (asset keys, step names, metadata keys, the warehouse
pool) and the reads of its materialization records."""

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from cxone_sync.catalog import DataType
from cxone_sync.cxone.untrusted import label, shown

STAGED_PREFIX = "cxone_staged"
TABLE_PREFIX = "cxone"
JOB_IDS_JSON = "job_ids_exact"
"""Metadata: the raw job ids as a JSON list (``job_ids`` is the readable text form)."""
JOB_LABELS = "job_labels"
"""Metadata: hash form -> raw id, for the job ids that run tags and run keys carry hashed."""
WAREHOUSE_POOL = "cxone_warehouse"
"""Concurrency pool around everything that opens the warehouse (DuckDB: one writer)."""


def job_metadata(job_ids: Sequence[str]) -> dict[str, Any]:
    """The jobs a load considered: readable (escaped, bounded), exact (JSON list), and the
    mapping from the hash form in run tags to the raw id where the two differ."""
    out: dict[str, Any] = {
        "job_ids": ", ".join(shown(j) for j in job_ids),
        JOB_IDS_JSON: dg.MetadataValue.json(list(job_ids)),
    }
    hashed = {label(j): j for j in job_ids if label(j) != j}
    if hashed:
        out[JOB_LABELS] = dg.MetadataValue.json(hashed)
    return out


def staged_key(dt: DataType) -> dg.AssetKey:
    return dg.AssetKey([STAGED_PREFIX, dt.table])


def table_key(dt: DataType) -> dg.AssetKey:
    return dg.AssetKey([TABLE_PREFIX, dt.table])


def load_step_name(dt: DataType) -> str:
    """The op (and step key) that stages and merges one data type: ``load__{table}``."""
    return f"load__{dt.table}"


def staging_path(base: str, dt: DataType, partition_key: str, run_id: str) -> Path:
    safe = re.sub(r"[^0-9A-Za-z_-]", "_", partition_key)
    return Path(base) / dt.table / safe / run_id


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
