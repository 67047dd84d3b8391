"""Load one partition: stage it, then merge it unless a gate blocked it.

The one code path for a partition load: the Dagster asset step (one partition or a range), the
benchmarks' no-Dagster floor and the tests all call :func:`load_partition`. Nothing survives a
load in the staging folder: it is removed once the partition is merged or blocked.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cxone_sync.catalog import DataType, partition_key
from cxone_sync.cxone.models import Job
from cxone_sync.cxone.source import ExportSource
from cxone_sync.ingest.stage import PartitionStager, StagedPartition, Window
from cxone_sync.warehouse.base import DataError, MergeResult, SchemaError, Warehouse


@dataclass
class PartitionLoadOutcome:
    staged: StagedPartition
    merged: MergeResult | None
    refused: str | None = None
    """Why the warehouse refused a partition that passed the gates (schema or data error)."""

    @property
    def reason(self) -> str | None:
        """Why nothing was merged, or None when the partition loaded."""
        if self.merged is not None:
            return None
        if self.refused:
            return self.refused
        return "; ".join(self.staged.blocked_reasons) or "blocked"


def load_partition(
    *,
    data_type: DataType,
    start: datetime,
    end: datetime,
    source: ExportSource,
    s3_client: Any,
    warehouse: Warehouse,
    bucket: str,
    prefix: str,
    staging_dir: Path,
    tolerance: float = 0.05,
    jobs: Sequence[Job] | None = None,
    s3_filesystem: Any | None = None,
) -> PartitionLoadOutcome:
    """Stage, gate and merge one partition; ``jobs`` are the COMPLETED jobs of a range listed
    once by the caller (None: ask the API for this partition's).

    Raises :class:`~cxone_sync.ingest.stage.NoCompletedExportError` when the interval has no
    COMPLETED export, and the API's or S3's errors when they outlast the retries.
    """
    stager = PartitionStager(
        source=source,
        s3_client=s3_client,
        warehouse=warehouse,
        bucket=bucket,
        prefixes=[prefix],
        staging_dir=staging_dir,
        tolerance=tolerance,
        s3_filesystem=s3_filesystem,
    )
    # one warehouse connection for the partition's schema and ledger reads and its merge
    # (opening a DuckDB file costs more than those reads); released between partitions
    try:
        with warehouse.session():
            staged = stager.stage(Window(data_type, partition_key(start), start, end), jobs=jobs)
            if staged.blocked:
                return PartitionLoadOutcome(staged, None)
            try:
                merged = warehouse.merge_partition(
                    data_type, staged.partition_key, start, end, staged.files
                )
            except (SchemaError, DataError) as exc:
                return PartitionLoadOutcome(staged, None, refused=f"not merged: {exc}")
            return PartitionLoadOutcome(staged, merged)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
