"""DuckDB merge: newest wins, idempotent, order-independent, schema evolution, all or nothing."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from cxone_sync.warehouse import duckdb_warehouse
from cxone_sync.warehouse.base import DataError, SchemaError
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.warehouse.conftest import StageFn
from cxone_sync_tests.warehouse.factories import (
    CDR,
    SKILL_GROUP,
    T0,
    cdr_rows,
    merge,
    rows_of,
    staged_file,
    ts,
)


def test_first_load_creates_table_with_metadata(warehouse: DuckDBWarehouse, stage: StageFn):
    f1 = stage(cdr_rows(("a", 1, "ann"), ("b", 2, "bob")), job_id="job-1")
    f2 = stage(cdr_rows(("c", 3, "cy")), job_id="job-1")

    result = merge(warehouse, [f1, f2])

    assert (result.files_loaded, result.files_skipped, result.rows_read) == (2, 0, 3)
    assert (result.rows_inserted, result.rows_updated, result.rows_stale) == (3, 0, 0)
    assert result.duplicates_dropped == 0
    assert result.columns_added == [] and result.columns_widened == []
    assert set(result.seconds) == {"stage", "dedup", "merge", "commit"}
    assert rows_of(warehouse) == [
        ("a", ts(1), "ann", 3),
        ("b", ts(2), "bob", 3),
        ("c", ts(3), "cy", 2),
    ]
    meta = rows_of(warehouse, "call_uuid", "_cxone_job_id", "_cxone_source_uri", "_cxone_partition")
    assert meta[0] == ("a", "job-1", f1.uri, "2024-03-15-14:00")
    assert meta[2] == ("c", "job-1", f2.uri, "2024-03-15-14:00")
    table = warehouse.read_table(CDR)
    assert table.column("_cxone_job_completed_at").to_pylist()[0] == f1.job_end_time
    assert len(set(table.column("_cxone_loaded_at").to_pylist())) == 1
    assert warehouse.table_columns(CDR) == {
        "call_uuid": "VARCHAR",
        "updated_at": "TIMESTAMP",
        "agent": "VARCHAR",
        "duration_s": "BIGINT",
        "_cxone_job_id": "VARCHAR",
        "_cxone_job_completed_at": "TIMESTAMP WITH TIME ZONE",
        "_cxone_source_uri": "VARCHAR",
        "_cxone_partition": "VARCHAR",
        "_cxone_loaded_at": "TIMESTAMP WITH TIME ZONE",
    }


def test_rerun_same_files_is_a_byte_for_byte_noop(warehouse: DuckDBWarehouse, stage: StageFn):
    files = [stage(cdr_rows(("a", 1, "ann"), ("b", 2, "bob"))), stage(cdr_rows(("c", 3, "cy")))]
    merge(warehouse, files)
    before = warehouse.read_table(CDR)

    again = merge(warehouse, files)

    assert (again.files_loaded, again.files_skipped, again.rows_read) == (0, 2, 0)
    assert (again.rows_inserted, again.rows_updated, again.rows_stale) == (0, 0, 0)
    assert warehouse.read_table(CDR).equals(before)


def test_same_file_content_restaged_under_new_audit_identity_changes_nothing(
    warehouse: DuckDBWarehouse, stage: StageFn
):
    rows = cdr_rows(("a", 1, "ann"), ("b", 2, "bob"))
    merge(warehouse, [stage(rows, job_id="job-1", name="x.parquet")])
    before = warehouse.read_table(CDR)

    # Same job, same rows, a new object version: the versions are equal, never newer.
    result = merge(warehouse, [stage(rows, job_id="job-1", name="y.parquet")])

    assert (result.rows_inserted, result.rows_updated, result.rows_stale) == (0, 0, 2)
    assert warehouse.read_table(CDR).equals(before)


def test_partitions_in_every_order_give_identical_tables(tmp_path: Path, stage: StageFn):
    partitions = [
        [stage(cdr_rows(("a", 1, "a1"), ("b", 1, "b1")), job_id="job-1", job_end_minutes=80)],
        [stage(cdr_rows(("a", 70, "a2"), ("c", 70, "c1")), job_id="job-2", job_end_minutes=140)],
        [
            stage(
                cdr_rows(("b", 1, "b-tie"), ("c", 65, "c0")), job_id="job-3", job_end_minutes=200
            ),
            stage(cdr_rows(("d", 130, "d1")), job_id="job-3", job_end_minutes=200),
        ],
    ]
    tables = []
    for n, order in enumerate(itertools.permutations(range(3))):
        warehouse = DuckDBWarehouse(tmp_path / f"order-{n}.duckdb")
        for hour in order:
            merge(warehouse, partitions[hour], hour=hour)
        tables.append(warehouse.read_table(CDR).drop_columns(["_cxone_loaded_at"]))

    assert all(t.equals(tables[0]) for t in tables[1:])
    expected = [("a", ts(70), "a2", 2), ("b", ts(1), "b-tie", 5), ("c", ts(70), "c1", 2)]
    expected.append(("d", ts(130), "d1", 2))
    assert list(zip(*(tables[0].column(i).to_pylist() for i in range(4)), strict=True)) == expected


def test_newer_update_wins_and_is_counted_as_update(warehouse: DuckDBWarehouse, stage: StageFn):
    merge(warehouse, [stage(cdr_rows(("a", 1, "old"), ("b", 1, "bob")), job_id="job-1")])

    result = merge(
        warehouse,
        [stage(cdr_rows(("a", 90, "new"), ("c", 90, "cy")), job_id="job-2", job_end_minutes=150)],
        hour=1,
    )

    assert (result.rows_inserted, result.rows_updated, result.rows_stale) == (1, 1, 0)
    assert rows_of(warehouse, "call_uuid", "agent", "_cxone_job_id", "_cxone_partition") == [
        ("a", "new", "job-2", "2024-03-15-15:00"),
        ("b", "bob", "job-1", "2024-03-15-14:00"),
        ("c", "cy", "job-2", "2024-03-15-15:00"),
    ]


def test_cross_partition_keys_count_late_updates_and_stale_redeliveries(
    warehouse: DuckDBWarehouse, stage: StageFn
):
    first = merge(warehouse, [stage(cdr_rows(("a", 1, "a1"), ("b", 5, "b1")), job_id="job-1")])
    assert first.cross_partition_keys == 0

    # Hour 1 carries a late update of a, a stale re-delivery of b (both first loaded by hour 0),
    # and a new key c twice (one staged key after dedup).
    rows = cdr_rows(("a", 70, "a2"), ("b", 2, "b0"), ("c", 61, "c0"), ("c", 62, "c1"))
    second = merge(warehouse, [stage(rows, job_id="job-2", job_end_minutes=140)], hour=1)

    assert (second.rows_inserted, second.rows_updated, second.rows_stale) == (1, 1, 1)
    assert second.duplicates_dropped == 1
    assert second.cross_partition_keys == 2

    # A second job for hour 1: a and c now live under hour 1, only b is another partition's.
    rows = cdr_rows(("a", 80, "a3"), ("b", 6, "b2"), ("c", 63, "c2"))
    third = merge(warehouse, [stage(rows, job_id="job-3", job_end_minutes=150)], hour=1)

    assert (third.rows_inserted, third.rows_updated, third.rows_stale) == (0, 3, 0)
    assert third.cross_partition_keys == 1
    assert rows_of(warehouse, "call_uuid", "agent", "_cxone_partition") == [
        ("a", "a3", "2024-03-15-15:00"),
        ("b", "b2", "2024-03-15-15:00"),
        ("c", "c2", "2024-03-15-15:00"),
    ]
    # Nothing changes on a re-run, so nothing is counted either.
    assert merge(warehouse, [], hour=1).cross_partition_keys == 0


def test_tie_breaks_do_not_depend_on_the_order_files_are_given(tmp_path: Path, stage: StageFn):
    # Same key, same updated_at: the later-completed job wins; inside one file, the later row.
    early = stage(cdr_rows(("a", 5, "early"), ("b", 5, "b-first")), job_end_minutes=100)
    late = stage(
        cdr_rows(("a", 5, "late"), ("b", 5, "b-late-1"), ("b", 5, "b-late-2")),
        job_id="job-0",
        job_end_minutes=200,
    )
    for n, files in enumerate([[early, late], [late, early]]):
        warehouse = DuckDBWarehouse(tmp_path / f"order-{n}.duckdb")

        result = merge(warehouse, files)

        assert (result.rows_inserted, result.duplicates_dropped) == (2, 3)
        assert rows_of(warehouse, "call_uuid", "agent", "_cxone_job_id") == [
            ("a", "late", "job-0"),
            ("b", "b-late-2", "job-0"),
        ]
        assert rows_of(warehouse, "_cxone_source_uri") == [(late.uri,), (late.uri,)]


def test_older_version_never_rolls_back(warehouse: DuckDBWarehouse, stage: StageFn):
    merge(warehouse, [stage(cdr_rows(("a", 90, "new")), job_id="job-2", job_end_minutes=150)])
    before = warehouse.read_table(CDR)

    # A later-completed job (a backfill) carrying an older version of the record.
    late = stage(cdr_rows(("a", 10, "old")), job_id="job-9", job_end_minutes=900)
    result = merge(warehouse, [late])

    assert (result.rows_inserted, result.rows_updated, result.rows_stale) == (0, 0, 1)
    assert warehouse.read_table(CDR).equals(before)


def test_equal_updated_at_later_completed_job_wins(warehouse: DuckDBWarehouse, stage: StageFn):
    early = stage(cdr_rows(("a", 5, "early")), job_id="job-b", job_end_minutes=100)
    late = stage(cdr_rows(("a", 5, "late")), job_id="job-a", job_end_minutes=200)

    merge(warehouse, [late])
    assert merge(warehouse, [early]).rows_stale == 1
    assert rows_of(warehouse, "agent", "_cxone_job_id") == [("late", "job-a")]

    other = DuckDBWarehouse(warehouse.path.with_name("other.duckdb"))
    merge(other, [early])
    assert merge(other, [late]).rows_updated == 1
    assert rows_of(other, "agent", "_cxone_job_id") == [("late", "job-a")]


def test_equal_updated_at_and_end_time_higher_job_id_wins(
    warehouse: DuckDBWarehouse, stage: StageFn
):
    one = stage(cdr_rows(("a", 5, "from-1")), job_id="job-1", job_end_minutes=100)
    two = stage(cdr_rows(("a", 5, "from-2")), job_id="job-2", job_end_minutes=100)

    result = merge(warehouse, [two, one])

    assert (result.rows_inserted, result.duplicates_dropped) == (1, 1)
    assert rows_of(warehouse, "agent") == [("from-2",)]


def test_duplicate_job_with_identical_rows_adds_no_rows(warehouse: DuckDBWarehouse, stage: StageFn):
    rows = cdr_rows(("a", 1, "ann"), ("b", 2, "bob"))
    merge(warehouse, [stage(rows, job_id="job-1", job_end_minutes=80)])
    data_before = rows_of(warehouse)

    result = merge(warehouse, [stage(rows, job_id="job-1b", job_end_minutes=95)])

    assert result.rows_inserted == 0
    assert rows_of(warehouse) == data_before
    assert warehouse.read_table(CDR).num_rows == 2


def test_in_file_duplicates_keep_newest(warehouse: DuckDBWarehouse, stage: StageFn):
    rows = cdr_rows(("a", 3, "v3"), ("b", 1, "bob"), ("a", 9, "v9"), ("a", 4, "v4"))

    result = merge(warehouse, [stage(rows)])

    assert (result.rows_read, result.duplicates_dropped, result.rows_inserted) == (4, 2, 2)
    assert rows_of(warehouse, "call_uuid", "agent") == [("a", "v9"), ("b", "bob")]


def test_new_column_is_added_and_old_rows_are_null(warehouse: DuckDBWarehouse, stage: StageFn):
    merge(warehouse, [stage(cdr_rows(("a", 1, "ann")))])
    newer = [{**r, "sentiment": 0.5} for r in cdr_rows(("b", 2, "bob"))]

    result = merge(warehouse, [stage(newer, job_id="job-2")], hour=1)

    assert result.columns_added == ["sentiment"]
    assert rows_of(warehouse, "call_uuid", "sentiment") == [("a", None), ("b", 0.5)]
    assert warehouse.table_columns(CDR)["sentiment"] == "DOUBLE"  # type: ignore[index]


def test_widened_types_alter_the_column(warehouse: DuckDBWarehouse, stage: StageFn):
    narrow = pa.schema(
        [("call_uuid", pa.string()), ("updated_at", pa.timestamp("ms")), ("n", pa.int32())]
    )
    wide = pa.schema(
        [("call_uuid", pa.string()), ("updated_at", pa.timestamp("ns")), ("n", pa.int64())]
    )
    merge(warehouse, [stage([{"call_uuid": "a", "updated_at": ts(1), "n": 7}], schema=narrow)])

    big = {"call_uuid": "b", "updated_at": ts(2), "n": 2**40}
    result = merge(warehouse, [stage([big], schema=wide, job_id="job-2")], hour=1)

    assert sorted(result.columns_widened) == ["n", "updated_at"]
    columns = warehouse.table_columns(CDR)
    assert columns is not None
    assert (columns["n"], columns["updated_at"]) == ("BIGINT", "TIMESTAMP_NS")
    assert rows_of(warehouse, "call_uuid", "n") == [("a", 7), ("b", 2**40)]


def test_narrower_incoming_type_fits_without_change(warehouse: DuckDBWarehouse, stage: StageFn):
    merge(warehouse, [stage(cdr_rows(("a", 1, "ann")))])
    narrow = pa.schema(
        [
            ("call_uuid", pa.string()),
            ("updated_at", pa.timestamp("us")),
            ("agent", pa.string()),
            ("duration_s", pa.int16()),
        ]
    )

    result = merge(warehouse, [stage(cdr_rows(("b", 2, "bo")), schema=narrow)], hour=1)

    assert result.columns_widened == [] and result.columns_added == []
    assert warehouse.table_columns(CDR)["duration_s"] == "BIGINT"  # type: ignore[index]
    assert rows_of(warehouse, "call_uuid", "duration_s") == [("a", 3), ("b", 2)]


def test_reordered_columns_load_by_name(warehouse: DuckDBWarehouse, stage: StageFn):
    merge(warehouse, [stage(cdr_rows(("a", 1, "ann")))])
    reordered = pa.Table.from_pylist(cdr_rows(("b", 2, "bob"))).select(
        ["duration_s", "agent", "updated_at", "call_uuid"]
    )

    merge(warehouse, [stage(reordered)], hour=1)

    assert rows_of(warehouse) == [("a", ts(1), "ann", 3), ("b", ts(2), "bob", 3)]


def test_vanished_column_loads_as_null(warehouse: DuckDBWarehouse, stage: StageFn):
    merge(warehouse, [stage(cdr_rows(("a", 1, "ann")))])
    without_agent = [{"call_uuid": "b", "updated_at": ts(2), "duration_s": 9}]

    merge(warehouse, [stage(without_agent)], hour=1)

    assert rows_of(warehouse) == [("a", ts(1), "ann", 3), ("b", ts(2), None, 9)]


def test_all_null_new_column_waits_for_a_type(warehouse: DuckDBWarehouse, stage: StageFn):
    merge(warehouse, [stage(cdr_rows(("a", 1, "ann")))])
    rows = [{**r, "later": None} for r in cdr_rows(("b", 2, "bob"))]

    result = merge(warehouse, [stage(rows)], hour=1)

    assert result.columns_added == []
    assert "later" not in (warehouse.table_columns(CDR) or {})
    assert rows_of(warehouse, "call_uuid") == [("a",), ("b",)]


def test_incompatible_type_raises_and_changes_nothing(warehouse: DuckDBWarehouse, stage: StageFn):
    merge(warehouse, [stage(cdr_rows(("a", 1, "ann")))])
    before = warehouse.read_table(CDR)
    good = stage(cdr_rows(("c", 3, "cy")), job_id="job-2")
    bad = stage(
        [{"call_uuid": "b", "updated_at": ts(2), "agent": "bob", "duration_s": "long"}],
        job_id="job-2",
    )

    with pytest.raises(SchemaError) as error:
        merge(warehouse, [good, bad], hour=1)

    assert (error.value.table, error.value.column) == ("telephony__cdr", "duration_s")
    assert (error.value.old_type, error.value.new_type, error.value.uri) == (
        "BIGINT",
        "VARCHAR",
        bad.uri,
    )
    assert warehouse.read_table(CDR).equals(before)
    assert set(warehouse.loaded_files([good.uri, bad.uri])) == set()
    assert len(warehouse.partition_loads(CDR)) == 1


def test_missing_key_column_raises(warehouse: DuckDBWarehouse, stage: StageFn):
    no_key = stage([{"updated_at": ts(1), "agent": "ann"}])
    no_updated_at = stage([{"call_uuid": "a", "agent": "ann"}])

    with pytest.raises(SchemaError, match="call_uuid"):
        merge(warehouse, [no_key])
    with pytest.raises(SchemaError, match="updated_at"):
        merge(warehouse, [no_updated_at])

    assert warehouse.table_columns(CDR) is None
    assert warehouse.partition_loads(CDR) == []


def test_reserved_metadata_column_in_file_raises(warehouse: DuckDBWarehouse, stage: StageFn):
    rows = [{**r, "_cxone_job_id": "forged"} for r in cdr_rows(("a", 1, "ann"))]

    with pytest.raises(SchemaError, match="reserved"):
        merge(warehouse, [stage(rows)])


def test_column_named_like_a_read_parquet_virtual_column_raises(
    warehouse: DuckDBWarehouse, stage: StageFn
):
    rows = [{**r, "file_row_number": 7} for r in cdr_rows(("a", 1, "ann"))]

    with pytest.raises(SchemaError, match="virtual column"):
        merge(warehouse, [stage(rows)])
    assert warehouse.table_columns(CDR) is None


@pytest.mark.parametrize(
    "bad_row",
    [
        {"call_uuid": None, "updated_at": ts(2), "agent": "x", "duration_s": 1},
        {"call_uuid": "a", "updated_at": None, "agent": "x", "duration_s": 1},
    ],
    ids=["null-key", "null-updated-at"],
)
def test_null_key_or_updated_at_raises_and_changes_nothing(
    warehouse: DuckDBWarehouse, stage: StageFn, bad_row: dict
):
    merge(warehouse, [stage(cdr_rows(("a", 1, "ann")))])
    before = warehouse.read_table(CDR)
    # The null updated_at hides behind a newer version of the same key: still caught.
    rows = [*cdr_rows(("a", 50, "newer"), ("b", 2, "bob")), bad_row]

    with pytest.raises(DataError, match="null key"):
        merge(warehouse, [stage(rows, job_id="job-2")], hour=1)

    assert warehouse.read_table(CDR).equals(before)
    assert len(warehouse.partition_loads(CDR)) == 1


def test_unreadable_file_among_valid_ones_loads_nothing(
    warehouse: DuckDBWarehouse, stage: StageFn, tmp_path: Path
):
    merge(warehouse, [stage(cdr_rows(("a", 1, "ann")))])
    before = warehouse.read_table(CDR)
    watermark = warehouse.watermark(CDR)
    garbage = tmp_path / "files" / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not a parquet file")
    files = [
        stage(cdr_rows(("a", 90, "new")), job_id="job-2"),
        staged_file(garbage, job_id="job-2", job_end=T0 + timedelta(hours=2), rows=1),
    ]

    with pytest.raises(DataError, match="cannot read Parquet"):
        merge(warehouse, files, hour=1)

    assert warehouse.read_table(CDR).equals(before)
    assert warehouse.watermark(CDR) == watermark
    assert warehouse.loaded_files([f.uri for f in files]) == {}


def test_failure_after_table_changed_rolls_everything_back(
    warehouse: DuckDBWarehouse, stage: StageFn, monkeypatch: pytest.MonkeyPatch
):
    first = stage(cdr_rows(("a", 1, "ann")))
    merge(warehouse, [first])
    before = warehouse.read_table(CDR)
    watermark = warehouse.watermark(CDR)

    def explode(*_args: object) -> bool:
        raise RuntimeError("crash while recording the schema version")

    # The last write of the transaction: BI rows, audit and watermark are already written.
    monkeypatch.setattr(duckdb_warehouse, "_record_schema_version", explode)
    rows = [{**r, "extra": 1} for r in cdr_rows(("a", 90, "new"), ("b", 2, "bob"))]
    second = stage(rows, job_id="job-2")
    with pytest.raises(RuntimeError, match="crash"):
        merge(warehouse, [second], hour=1)

    assert warehouse.read_table(CDR).equals(before)
    assert "extra" not in (warehouse.table_columns(CDR) or {})
    assert warehouse.watermark(CDR) == watermark
    assert warehouse.loaded_files([first.uri, second.uri]) == {
        first.uri: [(first.version_id, first.sha256)]
    }
    assert len(warehouse.partition_loads(CDR)) == 1


def test_composite_key(warehouse: DuckDBWarehouse, stage: StageFn):
    def row(group: int, hour: int, minute: int, calls: int) -> dict:
        start = datetime(2024, 3, 15, hour)
        return {
            "skill_group_id": group,
            "interval_start": start,
            "updated_at": ts(minute),
            "calls": calls,
        }

    merge(
        warehouse,
        [stage([row(1, 14, 1, 10), row(1, 15, 1, 20), row(2, 14, 1, 30)])],
        data_type=SKILL_GROUP,
    )
    result = merge(
        warehouse,
        [stage([row(1, 14, 9, 11), row(2, 15, 9, 40)], job_id="job-2")],
        hour=1,
        data_type=SKILL_GROUP,
    )

    assert (result.rows_inserted, result.rows_updated) == (1, 1)
    assert rows_of(warehouse, "skill_group_id", "calls", data_type=SKILL_GROUP) == [
        (1, 11),
        (1, 20),
        (2, 30),
        (2, 40),
    ]


def test_empty_partition_records_the_load(warehouse: DuckDBWarehouse):
    result = merge(warehouse, [])

    assert (result.files_loaded, result.rows_read, result.schema_hash) == (0, 0, "")
    assert warehouse.table_columns(CDR) is None
    [load] = warehouse.partition_loads(CDR)
    assert (load.partition_key, load.files, load.window_end) == (
        "2024-03-15-14:00",
        0,
        datetime(2024, 3, 15, 15, tzinfo=UTC),
    )
