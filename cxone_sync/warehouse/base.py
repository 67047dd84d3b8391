"""The warehouse interface: what the assets need from DuckDB or Snowflake.

Everything here is plain data plus one Protocol; implementations live next to it
(:mod:`cxone_sync.warehouse.duckdb_warehouse`). No Dagster imports.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from cxone_sync.catalog import DataType

METADATA_PREFIX = "_cxone_"
"""BI table columns with this prefix are written by the platform, never by a Parquet file."""

JOB_ID_COLUMN = "_cxone_job_id"
JOB_COMPLETED_COLUMN = "_cxone_job_completed_at"
SOURCE_URI_COLUMN = "_cxone_source_uri"
PARTITION_COLUMN = "_cxone_partition"
LOADED_AT_COLUMN = "_cxone_loaded_at"
METADATA_COLUMNS = (
    JOB_ID_COLUMN,
    JOB_COMPLETED_COLUMN,
    SOURCE_URI_COLUMN,
    PARTITION_COLUMN,
    LOADED_AT_COLUMN,
)


def quote(identifier: str) -> str:
    """The one identifier quoter of both warehouses: every schema, table and column name in
    rendered SQL goes through it (quoted names are exact, a quote inside is doubled)."""
    return '"' + identifier.replace('"', '""') + '"'


class StepClock:
    """Wall time per merge step (``MergeResult.seconds``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - self._last
        self._last = now


@dataclass(frozen=True)
class StagedFile:
    """One verified source file, already downloaded to local disk by the staging step."""

    path: Path
    uri: str
    version_id: str | None
    sha256: str
    rows: int
    size_bytes: int
    job_id: str
    job_end_time: datetime
    """The job's end_time (aware UTC): the tie-break between equal ``updated_at``."""


@dataclass
class MergeResult:
    files_loaded: int = 0
    files_skipped: int = 0
    rows_read: int = 0
    duplicates_dropped: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_stale: int = 0
    cross_partition_keys: int = 0
    """Staged (deduplicated) keys already in the table under another ``_cxone_partition``: late
    updates and stale re-deliveries of keys first loaded by a different partition."""
    columns_added: list[str] = field(default_factory=list)
    columns_widened: list[str] = field(default_factory=list)
    schema_hash: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per step: ``stage``, ``dedup``, ``merge``, ``commit``."""


class SchemaError(Exception):
    """Breaking schema drift: the partition loads nothing until someone decides."""

    def __init__(
        self,
        table: str,
        column: str,
        old_type: str | None,
        new_type: str | None,
        uri: str | None,
        reason: str,
    ) -> None:
        self.table = table
        self.column = column
        self.old_type = old_type
        self.new_type = new_type
        self.uri = uri
        self.reason = reason
        where = f" in {uri}" if uri else ""
        super().__init__(
            f"cxone.{table}: column {column!r} {reason} "
            f"(table type {old_type or '-'}, file type {new_type or '-'}){where}"
        )


class DataError(Exception):
    """Rows that must never reach a BI table (null natural key or ``updated_at``)."""


@dataclass(frozen=True)
class JobEvent:
    """One observed state of a CXone job; the ledger keeps every transition."""

    job_id: str
    category: str
    download_id: str
    status: str
    interval_start: datetime | None
    interval_end: datetime | None
    updated_at: datetime
    error_details: str | None = None
    trigger: str | None = None


@dataclass(frozen=True)
class PartitionLoad:
    partition_key: str
    window_start: datetime
    window_end: datetime
    loaded_at: datetime
    files: int
    files_skipped: int
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_stale: int


@dataclass(frozen=True)
class SchemaVersion:
    schema_hash: str
    columns: dict[str, str]
    first_partition: str
    first_seen_at: datetime


@dataclass(frozen=True)
class Watermark:
    high_watermark: datetime
    """The largest ``window_end`` loaded so far."""
    last_partition_key: str
    """The partition whose window ends at the high watermark."""
    updated_at: datetime


class Warehouse(Protocol):
    def ensure_control_tables(self) -> None: ...

    def session(self) -> AbstractContextManager[None]:
        """Hold one connection for the calls made inside (one partition's stage and merge)."""
        ...

    def merge_partition(
        self,
        data_type: DataType,
        partition_key: str,
        window_start: datetime,
        window_end: datetime,
        files: Sequence[StagedFile],
    ) -> MergeResult: ...

    def loaded_files(self, uris: Sequence[str]) -> dict[str, list[tuple[str | None, str]]]:
        """uri -> [(version_id, sha256)] already in the audit ledger."""
        ...

    def record_job_events(self, events: Sequence[JobEvent]) -> int:
        """Idempotent on (job_id, status, updated_at); returns how many rows are new."""
        ...

    def partition_loads(self, data_type: DataType) -> list[PartitionLoad]: ...

    def watermark(self, data_type: DataType) -> Watermark | None: ...

    def table_columns(self, data_type: DataType) -> dict[str, str] | None:
        """Current BI table columns -> neutral type (:mod:`cxone_sync.warehouse.types`); None
        when the table does not exist."""
        ...

    def read_table(self, data_type: DataType) -> pa.Table: ...

    def record_schema_version(
        self, data_type: DataType, schema_hash: str, columns: dict[str, str], partition_key: str
    ) -> bool:
        """Register a schema version; True when the hash was new for the data type."""
        ...

    def schema_versions(self, data_type: DataType) -> list[SchemaVersion]: ...
