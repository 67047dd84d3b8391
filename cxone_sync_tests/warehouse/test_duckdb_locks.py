"""DuckDB's single-writer lock: read-only handles, the bounded wait, and control-table DDL once.

Every lock is held by a real second process (:mod:`cxone_sync_tests.lockholder`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from cxone_sync.warehouse.base import JobEvent
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync.warehouse.locks import is_lock_error
from cxone_sync_tests.lockholder import LockHolder, release_after_waits
from cxone_sync_tests.warehouse.conftest import StageFn
from cxone_sync_tests.warehouse.factories import CDR, T0, cdr_rows, merge


def _marker(path: Path) -> str | None:
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute(
            "SELECT comment FROM duckdb_tables() "
            "WHERE schema_name = 'cxone_sync' AND table_name = 'file_audit'"
        ).fetchone()
    return row[0] if row else None


def _event(job_id: str) -> JobEvent:
    return JobEvent(job_id, "telephony", "dl", "COMPLETED", T0, T0 + timedelta(hours=1), T0)


def test_control_table_ddl_runs_once_per_file_and_again_when_the_file_is_recreated(
    tmp_path: Path, stage: StageFn
) -> None:
    path = tmp_path / "wh.duckdb"
    DuckDBWarehouse(path).ensure_control_tables()
    first = _marker(path)
    assert first and first.startswith("cxone_sync control tables version 1, applied ")
    # many connections from several handles, writes and reads: the DDL is not applied again
    for i in range(3):
        warehouse = DuckDBWarehouse(path)
        warehouse.ensure_control_tables()
        assert warehouse.record_job_events([_event(f"job-{i}")]) == 1
        merge(warehouse, [stage(cdr_rows((f"k{i}", 1, "x")), job_id=f"job-{i}")], hour=i)
        assert warehouse.reader().partition_loads(CDR)
    assert _marker(path) == first
    assert DuckDBWarehouse(path).reader().read_table(CDR).num_rows == 3
    # the file is deleted and created again (as between tests): the tables come back
    path.unlink()
    fresh = DuckDBWarehouse(path)
    assert fresh.record_job_events([_event("job-9")]) == 1
    assert fresh.partition_loads(CDR) == []
    second = _marker(path)
    assert second and second != first


def test_a_reader_never_creates_the_file_and_answers_nothing_loaded(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "wh.duckdb"
    reader = DuckDBWarehouse(path, read_only=True)
    assert reader.loaded_files(["s3://b/k"]) == {}
    assert reader.table_columns(CDR) is None
    assert reader.partition_loads(CDR) == []
    assert reader.watermark(CDR) is None
    assert reader.schema_versions(CDR) == []
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(PermissionError, match="read-only"):
        reader.record_job_events([_event("job-1")])
    assert not path.exists()


def test_readers_share_the_file_a_writer_gives_up_after_its_bound(
    tmp_path: Path, stage: StageFn
) -> None:
    path = tmp_path / "wh.duckdb"
    staged = stage(cdr_rows(("a", 1, "ann")))
    merge(DuckDBWarehouse(path), [staged])
    with LockHolder(path, read_only=True) as holder:
        # a read-only handle shares the file with the other reader
        reader = DuckDBWarehouse(path, read_only=True, lock_wait_seconds=0)
        assert reader.loaded_files([staged.uri]) == {
            staged.uri: [(staged.version_id, staged.sha256)]
        }
        assert reader.table_columns(CDR)
        # a writer cannot: it waits its bound, then says who holds the file and what to do
        writer = DuckDBWarehouse(path, lock_wait_seconds=0.5)
        with pytest.raises(Exception) as caught:
            writer.record_job_events([_event("job-2")])
    error = caught.value
    assert is_lock_error(error)
    message = str(error)
    assert str(path) in message and f"(PID {holder.pid})" in message
    assert "still locked after waiting" in message
    assert "CXONE_WAREHOUSE_LOCK_WAIT_SECONDS" in message
    assert getattr(error, "waited", 0) >= 0.5 and getattr(error, "attempts", 0) >= 2
    # nothing was written while locked; the writer works once the reader is gone
    assert DuckDBWarehouse(path, lock_wait_seconds=0).record_job_events([_event("job-2")]) == 1


def test_a_writer_waits_for_a_lock_released_within_its_bound(
    tmp_path: Path, stage: StageFn
) -> None:
    path = tmp_path / "wh.duckdb"
    DuckDBWarehouse(path).ensure_control_tables()
    staged = stage(cdr_rows(("a", 1, "ann"), ("b", 2, "bob")))
    with LockHolder(path) as holder, release_after_waits(holder) as waits:
        result = merge(DuckDBWarehouse(path, lock_wait_seconds=60), [staged])
    assert waits and f"PID {holder.pid}" in waits[0]
    assert result.rows_inserted == 2
    assert DuckDBWarehouse(path).read_table(CDR).num_rows == 2


def test_only_duckdbs_lock_error_counts_as_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "not-a-database.duckdb"
    path.write_bytes(b"this is not a DuckDB file" * 100)
    with pytest.raises(duckdb.Error) as caught:
        DuckDBWarehouse(path).ensure_control_tables()
    assert not is_lock_error(caught.value)  # raised at once, not waited on
    with duckdb.connect() as con, pytest.raises(duckdb.Error) as missing:
        con.execute('SELECT * FROM "lock"')
    assert "lock" in str(missing.value) and not is_lock_error(missing.value)
