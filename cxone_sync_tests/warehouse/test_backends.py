"""The merge semantics, the same on DuckDB and on Snowflake (emulator)."""

from __future__ import annotations

from cxone_sync_tests.warehouse.backends import Backend, backend, s3_endpoint  # noqa: F401
from cxone_sync_tests.warehouse.factories import CDR, cdr_rows, merge, rows_of


def test_newest_wins_tie_goes_to_the_later_job_and_stale_never_wins(backend: Backend) -> None:
    early = backend.stage(cdr_rows(("a", 10, "ann"), ("b", 10, "bob")), job_id="j1")
    late = backend.stage(
        cdr_rows(("a", 10, "ANN"), ("b", 5, "old-bob"), ("c", 1, "cy")),
        job_id="j2",
        job_end_minutes=200,
    )
    first = merge(backend.warehouse, [early, late])
    assert sorted(rows_of(backend.warehouse, "call_uuid", "agent")) == [
        ("a", "ANN"),
        ("b", "bob"),
        ("c", "cy"),
    ]
    assert (first.rows_read, first.duplicates_dropped, first.rows_inserted) == (5, 2, 3)
    stale = backend.stage(cdr_rows(("a", 9, "stale"), ("c", 2, "newer")), job_id="j3")
    second = merge(backend.warehouse, [stale], hour=1)
    assert (second.rows_updated, second.rows_stale, second.cross_partition_keys) == (1, 1, 2)
    assert sorted(rows_of(backend.warehouse, "call_uuid", "agent")) == [
        ("a", "ANN"),
        ("b", "bob"),
        ("c", "newer"),
    ]
    again = merge(backend.warehouse, [stale], hour=1)
    assert (again.files_loaded, again.files_skipped) == (0, 1)
    assert [p.partition_key for p in backend.warehouse.partition_loads(CDR)][:2] == [
        "2024-03-15T14",
        "2024-03-15T15",
    ] or len(backend.warehouse.partition_loads(CDR)) == 3
    assert backend.warehouse.loaded_files([stale.uri])[stale.uri] == [
        (stale.version_id, stale.sha256)
    ]
