"""Control tables: audit ledger, partition loads, watermarks, job events, schema registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow.parquet as pq

from cxone_sync.warehouse.base import JobEvent
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync.warehouse.schema import arrow_schema_hash
from cxone_sync_tests.warehouse.conftest import StageFn
from cxone_sync_tests.warehouse.factories import CDR, T0, cdr_rows, merge


def test_control_tables_are_created_idempotently(warehouse: DuckDBWarehouse):
    warehouse.ensure_control_tables()
    warehouse.ensure_control_tables()

    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'cxone_sync' "
            "ORDER BY table_name"
        ).fetchall()
    assert [t for (t,) in tables] == [
        "file_audit",
        "job_events",
        "partition_loads",
        "schema_versions",
        "watermarks",
    ]


def test_file_audit_and_partition_loads_record_each_load(
    warehouse: DuckDBWarehouse, stage: StageFn
):
    f1 = stage(cdr_rows(("a", 1, "ann"), ("a", 2, "ann2")), job_id="job-1", job_end_minutes=80)
    merge(warehouse, [f1])
    f2 = stage(cdr_rows(("a", 70, "new"), ("b", 70, "bob")), job_id="job-2", job_end_minutes=140)
    merge(warehouse, [f1, f2], hour=1)

    assert warehouse.loaded_files([f1.uri, f2.uri, "s3://bucket/other"]) == {
        f1.uri: [(f1.version_id, f1.sha256)],
        f2.uri: [(f2.version_id, f2.sha256)],
    }
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        audit = con.execute(
            "SELECT uri, rows, size_bytes, job_id, job_completed_at, category, data_type, "
            "partition_key FROM cxone_sync.file_audit ORDER BY loaded_at"
        ).fetchall()
    assert audit == [
        (
            f1.uri,
            2,
            f1.size_bytes,
            "job-1",
            T0 + timedelta(minutes=80),
            "telephony",
            "cdr",
            "2024-03-15-14:00",
        ),
        (
            f2.uri,
            2,
            f2.size_bytes,
            "job-2",
            T0 + timedelta(minutes=140),
            "telephony",
            "cdr",
            "2024-03-15-15:00",
        ),
    ]
    loads = warehouse.partition_loads(CDR)
    assert [
        (
            p.partition_key,
            p.files,
            p.files_skipped,
            p.rows_read,
            p.rows_inserted,
            p.rows_updated,
            p.rows_stale,
        )
        for p in loads
    ] == [("2024-03-15-14:00", 1, 0, 2, 1, 0, 0), ("2024-03-15-15:00", 1, 1, 2, 1, 1, 0)]
    assert loads[0].window_start == T0 and loads[1].window_end == T0 + timedelta(hours=2)


def test_watermark_only_moves_forward(warehouse: DuckDBWarehouse, stage: StageFn):
    assert warehouse.watermark(CDR) is None
    merge(warehouse, [stage(cdr_rows(("a", 1, "ann")))], hour=5)
    merge(warehouse, [stage(cdr_rows(("b", 1, "bob")))], hour=2)  # a backfill

    watermark = warehouse.watermark(CDR)

    assert watermark is not None
    assert watermark.high_watermark == T0 + timedelta(hours=6)
    assert watermark.last_partition_key == "2024-03-15-19:00"
    assert watermark.updated_at >= datetime.now(UTC) - timedelta(minutes=1)


def test_job_events_are_idempotent_per_state(warehouse: DuckDBWarehouse):
    def event(status: str, minute: int, job_id: str = "job-1") -> JobEvent:
        return JobEvent(
            job_id=job_id,
            category="telephony",
            download_id="dl-telephony-prod",
            status=status,
            interval_start=T0,
            interval_end=T0 + timedelta(hours=1),
            updated_at=T0 + timedelta(minutes=minute),
            error_details="boom" if status == "FAILED" else None,
            trigger="SCHEDULED",
        )

    queued, running = event("QUEUED", 80), event("RUNNING", 81)
    assert warehouse.record_job_events([queued, running, queued]) == 2
    assert warehouse.record_job_events([queued, running]) == 0
    assert (
        warehouse.record_job_events([running, event("FAILED", 99), event("QUEUED", 80, "j2")]) == 2
    )
    assert warehouse.record_job_events([]) == 0

    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        rows = con.execute(
            "SELECT job_id, status, trigger, error_details FROM cxone_sync.job_events "
            "ORDER BY job_id, updated_at"
        ).fetchall()
    assert rows == [
        ("j2", "QUEUED", "SCHEDULED", None),
        ("job-1", "QUEUED", "SCHEDULED", None),
        ("job-1", "RUNNING", "SCHEDULED", None),
        ("job-1", "FAILED", "SCHEDULED", "boom"),
    ]


def test_schema_versions_register_each_new_schema_once(warehouse: DuckDBWarehouse, stage: StageFn):
    first = stage(cdr_rows(("a", 1, "ann")))
    merge(warehouse, [first])
    merge(warehouse, [stage(cdr_rows(("b", 1, "bob")))], hour=1)
    extended = stage([{**r, "sentiment": 0.1} for r in cdr_rows(("c", 1, "cy"))])
    result = merge(warehouse, [extended], hour=2)

    versions = warehouse.schema_versions(CDR)

    assert [(v.first_partition, v.columns) for v in versions] == [
        (
            "2024-03-15-14:00",
            {
                "agent": "VARCHAR",
                "call_uuid": "VARCHAR",
                "duration_s": "BIGINT",
                "updated_at": "TIMESTAMP",
            },
        ),
        (
            "2024-03-15-16:00",
            {
                "agent": "VARCHAR",
                "call_uuid": "VARCHAR",
                "duration_s": "BIGINT",
                "sentiment": "DOUBLE",
                "updated_at": "TIMESTAMP",
            },
        ),
    ]
    assert versions[1].schema_hash == result.schema_hash
    # The hash DuckDB's reading gives equals the hash of the file's Arrow schema.
    assert versions[0].schema_hash == arrow_schema_hash(pq.read_schema(first.path), CDR)


def test_record_schema_version_directly(warehouse: DuckDBWarehouse):
    columns = {"call_uuid": "VARCHAR", "updated_at": "TIMESTAMP"}
    assert warehouse.record_schema_version(CDR, "h1", columns, "2024-03-15-14:00") is True
    assert warehouse.record_schema_version(CDR, "h1", columns, "2024-03-15-15:00") is False

    [version] = warehouse.schema_versions(CDR)
    assert (version.schema_hash, version.columns, version.first_partition) == (
        "h1",
        columns,
        "2024-03-15-14:00",
    )
