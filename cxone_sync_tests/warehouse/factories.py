"""Test data: small CDR-like Parquet files staged on disk, and short merge helpers."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from cxone_sync.catalog import DataType, category, partition_key
from cxone_sync.warehouse.base import MergeResult, StagedFile, Warehouse

CDR = category("telephony").data_type("cdr")
SKILL_GROUP = category("telephony").data_type("skill_group")
T0 = datetime(2024, 3, 15, 14, tzinfo=UTC)
"""Start of the first test partition."""


def ts(minutes: int) -> datetime:
    """A naive UTC timestamp ``minutes`` after T0, as records carry them."""
    return (T0 + timedelta(minutes=minutes)).replace(tzinfo=None)


def cdr_rows(*rows: tuple[str, int, str]) -> list[dict[str, Any]]:
    """CDR records from (call_uuid, updated_at minutes, agent)."""
    return [
        {"call_uuid": key, "updated_at": ts(minute), "agent": agent, "duration_s": len(agent)}
        for key, minute, agent in rows
    ]


def staged_file(
    path: Path, *, job_id: str, job_end: datetime, rows: int | None = None
) -> StagedFile:
    data = path.read_bytes()
    return StagedFile(
        path=path,
        uri=f"s3://bucket/exports/telephony/cdr/{job_id}/{path.name}",
        version_id=f"v-{hashlib.md5(data).hexdigest()[:8]}",  # noqa: S324 - test id only
        sha256=hashlib.sha256(data).hexdigest(),
        rows=pq.ParquetFile(path).metadata.num_rows if rows is None else rows,
        size_bytes=len(data),
        job_id=job_id,
        job_end_time=job_end,
    )


def merge(
    warehouse: Warehouse,
    files: Sequence[StagedFile],
    hour: int = 0,
    data_type: DataType = CDR,
) -> MergeResult:
    start = T0 + timedelta(hours=hour)
    key = partition_key(start)
    return warehouse.merge_partition(data_type, key, start, start + timedelta(hours=1), files)


def rows_of(warehouse: Warehouse, *columns: str, data_type: DataType = CDR) -> list[tuple]:
    table = warehouse.read_table(data_type)
    names = columns or tuple(c for c in table.column_names if not c.startswith("_cxone_"))
    return list(zip(*(table.column(c).to_pylist() for c in names), strict=True))
