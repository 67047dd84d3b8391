"""Load one partition outside Dagster: stage it, then merge it unless a gate blocked it.

The assets split these two steps so the blocking checks sit between them; the benchmark and the
tests call them back to back through this function, the same code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cxone_sync.catalog import DataType, partition_key
from cxone_sync.cxone.source import ExportSource
from cxone_sync.ingest.stage import PartitionStager, StagedPartition, Window
from cxone_sync.warehouse.base import MergeResult, Warehouse


@dataclass
class PartitionLoadOutcome:
    staged: StagedPartition
    merged: MergeResult | None


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
) -> PartitionLoadOutcome:
    stager = PartitionStager(
        source=source,
        s3_client=s3_client,
        warehouse=warehouse,
        bucket=bucket,
        prefixes=[prefix],
        staging_dir=staging_dir,
        tolerance=tolerance,
    )
    staged = stager.stage(Window(data_type, partition_key(start), start, end))
    if staged.blocked:
        return PartitionLoadOutcome(staged, None)
    merged = warehouse.merge_partition(data_type, staged.partition_key, start, end, staged.files)
    return PartitionLoadOutcome(staged, merged)
