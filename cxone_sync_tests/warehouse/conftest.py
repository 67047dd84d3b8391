"""Fixtures: a DuckDB warehouse on a real file under tmp_path, and a Parquet stager."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxone_sync.warehouse.base import StagedFile
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.warehouse.backends import backend, emulator, s3_endpoint  # noqa: F401
from cxone_sync_tests.warehouse.factories import T0, staged_file

StageFn = Callable[..., StagedFile]


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "warehouse.duckdb", threads=2)


@pytest.fixture
def stage(tmp_path: Path) -> StageFn:
    """Write rows (dicts or an Arrow table) to Parquet and describe them as a staged file."""
    counter = iter(range(10_000))

    def _stage(
        rows: Sequence[Mapping[str, Any]] | pa.Table,
        *,
        job_id: str = "job-1",
        job_end_minutes: int = 100,
        name: str | None = None,
        schema: pa.Schema | None = None,
    ) -> StagedFile:
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema)
        path = tmp_path / "files" / (name or f"part-{next(counter):05d}.parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
        return staged_file(path, job_id=job_id, job_end=T0 + timedelta(minutes=job_end_minutes))

    return _stage
