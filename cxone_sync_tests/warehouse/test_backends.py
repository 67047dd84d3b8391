"""The merge semantics, the same on DuckDB and on Snowflake (the in-process emulator).

Files are real Parquet on disk and in a versioned bucket on moto's S3 server; Snowflake's COPY
reads them from the bucket through its stage.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxone_sync.simulator.s3 import S3Endpoint
from cxone_sync.warehouse.base import DataError, SchemaError, StagedFile
from cxone_sync.warehouse.snowflake_warehouse import CopyProofError
from cxone_sync_tests.warehouse.backends import BUCKET, Backend, snowflake_backend
from cxone_sync_tests.warehouse.factories import CDR, T0, cdr_rows, merge, rows_of, ts


def test_newest_wins_tie_goes_to_the_later_job_and_stale_never_wins(backend: Backend) -> None:
    early = backend.stage(cdr_rows(("a", 10, "ann"), ("b", 10, "bob")), job_id="j1")
    late = backend.stage(
        cdr_rows(("a", 10, "ANN"), ("b", 5, "old-bob"), ("c", 1, "cy")),
        job_id="j2",
        job_end_minutes=200,
    )
    first = merge(backend.warehouse, [late, early])
    assert rows_of(backend.warehouse, "call_uuid", "agent") == [
        ("a", "ANN"),
        ("b", "bob"),
        ("c", "cy"),
    ]
    assert (first.rows_read, first.duplicates_dropped, first.rows_inserted) == (5, 2, 3)
    stale = backend.stage(cdr_rows(("a", 9, "stale"), ("c", 2, "newer")), job_id="j3")
    second = merge(backend.warehouse, [stale], hour=1)
    assert (second.rows_updated, second.rows_stale, second.cross_partition_keys) == (1, 1, 2)
    assert rows_of(backend.warehouse, "call_uuid", "agent", "_cxone_job_id") == [
        ("a", "ANN", "j2"),
        ("b", "bob", "j1"),
        ("c", "newer", "j3"),
    ]
    again = merge(backend.warehouse, [stale], hour=1)
    assert (again.files_loaded, again.files_skipped, again.rows_read) == (0, 1, 0)
    loads = backend.warehouse.partition_loads(CDR)
    assert [(p.partition_key, p.files, p.rows_inserted) for p in loads] == [
        ("2024-03-15-14:00", 2, 3),
        ("2024-03-15-15:00", 1, 0),
        ("2024-03-15-15:00", 0, 0),
    ]
    assert backend.warehouse.loaded_files([stale.uri])[stale.uri] == [
        (stale.version_id, stale.sha256)
    ]
    watermark = backend.warehouse.watermark(CDR)
    assert watermark is not None
    assert (watermark.high_watermark, watermark.last_partition_key) == (
        T0 + timedelta(hours=2),
        "2024-03-15-15:00",
    )
    [version] = backend.warehouse.schema_versions(CDR)
    assert version.columns == {
        "agent": "VARCHAR",
        "call_uuid": "VARCHAR",
        "duration_s": "BIGINT",
        "updated_at": "TIMESTAMP",
    }


def test_additive_drift_vanished_columns_and_integer_widening(backend: Backend) -> None:
    narrow = pa.schema(
        [("call_uuid", pa.string()), ("updated_at", pa.timestamp("us")), ("n", pa.int32())]
    )
    merge(
        backend.warehouse,
        [backend.stage([{"call_uuid": "a", "updated_at": ts(1), "n": 7}], schema=narrow)],
    )
    wider = [{"call_uuid": "b", "updated_at": ts(2), "n": 2**40, "sentiment": 0.5}]
    result = merge(backend.warehouse, [backend.stage(wider, job_id="j2")], hour=1)
    assert result.columns_added == ["sentiment"]
    vanished = [{"call_uuid": "a", "updated_at": ts(3), "sentiment": 0.25}]
    merge(backend.warehouse, [backend.stage(vanished, job_id="j3")], hour=2)
    table = backend.warehouse.read_table(CDR)
    assert [int(v) if v is not None else None for v in table.column("n").to_pylist()] == [
        None,
        2**40,
    ]
    assert table.column("sentiment").to_pylist() == [0.25, 0.5]
    columns = backend.warehouse.table_columns(CDR)
    assert columns is not None and columns["n"] == "BIGINT" and columns["sentiment"] == "DOUBLE"


def test_hostile_column_names_load_as_data_and_never_run_as_sql(backend: Backend) -> None:
    hostile = 'x"; DROP TABLE "cxone"."telephony__cdr"; -- %s Mixed Case'
    rows = [{**r, hostile: "payload", "Agent Name": "Zoë"} for r in cdr_rows(("a", 1, "ann"))]
    merge(backend.warehouse, [backend.stage(rows)])
    update = [{**r, hostile: "v2", "Agent Name": "Zed"} for r in cdr_rows(("a", 2, "ann"))]
    merge(backend.warehouse, [backend.stage(update, job_id="j2")], hour=1)
    assert rows_of(backend.warehouse, "call_uuid", hostile, "Agent Name") == [("a", "v2", "Zed")]
    columns = backend.warehouse.table_columns(CDR)
    assert columns is not None and hostile in columns and "Agent Name" in columns


def test_null_key_fails_the_partition_and_changes_nothing(backend: Backend) -> None:
    merge(backend.warehouse, [backend.stage(cdr_rows(("a", 1, "ann")))])
    before = backend.warehouse.read_table(CDR)
    rows = [*cdr_rows(("a", 50, "newer")), {"call_uuid": None, "updated_at": ts(3)}]
    with pytest.raises(DataError, match="null key"):
        merge(backend.warehouse, [backend.stage(rows, job_id="j2")], hour=1)
    assert backend.warehouse.read_table(CDR).equals(before)
    assert len(backend.warehouse.partition_loads(CDR)) == 1


def test_incompatible_type_fails_before_anything_changes(backend: Backend) -> None:
    merge(backend.warehouse, [backend.stage(cdr_rows(("a", 1, "ann")))])
    before = backend.warehouse.read_table(CDR)
    bad = backend.stage(
        [{"call_uuid": "b", "updated_at": ts(2), "agent": "bob", "duration_s": "long"}], job_id="j2"
    )
    with pytest.raises(SchemaError) as error:
        merge(backend.warehouse, [bad], hour=1)
    assert (error.value.column, error.value.new_type, error.value.uri) == (
        "duration_s",
        "VARCHAR",
        bad.uri,
    )
    assert backend.warehouse.read_table(CDR).equals(before)
    assert backend.warehouse.loaded_files([bad.uri]) == {}


# -- Snowflake only: verified-bytes proof, crash safety, concurrency, nothing via the worker --


@pytest.fixture
def snowflake(emulator: Any, s3_endpoint: S3Endpoint, tmp_path: Path) -> Iterator[Backend]:
    with snowflake_backend(emulator, s3_endpoint, tmp_path) as b:
        yield b


def test_a_file_replaced_after_verification_fails_the_partition(snowflake: Backend) -> None:
    merge(snowflake.warehouse, [snowflake.stage(cdr_rows(("a", 1, "ann")))])
    before = snowflake.warehouse.read_table(CDR)
    verified = snowflake.stage(cdr_rows(("a", 5, "verified"), ("b", 5, "bob")), job_id="j2")
    # someone overwrites the object between verification and COPY (same row count)
    other = pa.Table.from_pylist(cdr_rows(("a", 9, "forged"), ("b", 9, "forged")))
    forged = snowflake.tmp / "forged.parquet"
    pq.write_table(other, forged)
    key = verified.uri.removeprefix(f"s3://{BUCKET}/")
    snowflake.s3.put_object(Bucket=BUCKET, Key=key, Body=forged.read_bytes())
    with pytest.raises(CopyProofError, match="changed after it was verified"):
        merge(snowflake.warehouse, [verified], hour=1)
    assert snowflake.warehouse.read_table(CDR).equals(before)
    assert snowflake.warehouse.loaded_files([verified.uri]) == {}


def test_copy_row_count_must_equal_the_verified_count(snowflake: Backend) -> None:
    staged = snowflake.stage(cdr_rows(("a", 1, "ann"), ("b", 1, "bob")))
    wrong = StagedFile(**{**staged.__dict__, "rows": 3})
    with pytest.raises(CopyProofError, match="2 rows, but 3 rows were verified"):
        merge(snowflake.warehouse, [wrong])
    assert snowflake.warehouse.table_columns(CDR) is None


def test_no_row_passes_through_the_worker(snowflake: Backend) -> None:
    """The local staged copy's rows are replaced: the table still holds the bucket's rows."""
    staged = snowflake.stage(cdr_rows(("a", 1, "from-s3"), ("b", 1, "from-s3")))
    local = pa.Table.from_pylist(cdr_rows(("x", 1, "local"), ("y", 1, "local")))
    pq.write_table(local, staged.path)
    merge(snowflake.warehouse, [staged])
    assert rows_of(snowflake.warehouse, "call_uuid", "agent") == [
        ("a", "from-s3"),
        ("b", "from-s3"),
    ]


CRASH_STEPS = ["copy", "tag", "alter", "merge", "ledger", "partition_load", "watermark"]
"""Every statement that changes state; the default run kills after the MERGE, soak after each."""


@pytest.mark.parametrize(
    "step",
    [s if s == "merge" else pytest.param(s, marks=pytest.mark.soak) for s in CRASH_STEPS],
)
def test_killed_after_any_statement_the_rerun_ends_equal(
    emulator: Any, s3_endpoint: S3Endpoint, tmp_path: Path, step: str
) -> None:
    def scenario(b: Backend) -> tuple[list[StagedFile], list[StagedFile]]:
        first = [b.stage(cdr_rows(("a", 1, "ann"), ("b", 1, "bob")), name="p1.parquet")]
        rows = [{**r, "extra": 1.5} for r in cdr_rows(("a", 9, "ANN"), ("c", 9, "cy"))]
        second = [b.stage(rows, job_id="j2", name="p2.parquet")]
        return first, second

    def table(b: Backend) -> pa.Table:
        t = b.warehouse.read_table(CDR)
        return t.drop_columns(["_cxone_loaded_at"])

    stack = ExitStack()
    reference = stack.enter_context(snowflake_backend(emulator, s3_endpoint, tmp_path / "ref"))
    first, second = scenario(reference)
    merge(reference.warehouse, first)
    merge(reference.warehouse, second, hour=1)

    crashed = stack.enter_context(snowflake_backend(emulator, s3_endpoint, tmp_path / "crash"))
    first, second = scenario(crashed)
    merge(crashed.warehouse, first)

    class Killed(Exception):
        pass

    def kill(name: str) -> None:
        if name == step:
            raise Killed(step)

    crashed.warehouse.on_statement = kill  # type: ignore[attr-defined]
    with pytest.raises(Killed):
        merge(crashed.warehouse, second, hour=1)
    crashed.warehouse.on_statement = None  # type: ignore[attr-defined]
    merge(crashed.warehouse, second, hour=1)
    with stack:
        assert table(crashed).equals(table(reference)), step
        assert crashed.warehouse.loaded_files([second[0].uri]) == {
            second[0].uri: [(second[0].version_id, second[0].sha256)]
        }


@pytest.mark.soak
def test_two_partitions_merged_at_once_equal_one_after_the_other(
    emulator: Any, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    def files(b: Backend) -> list[list[StagedFile]]:
        return [
            [b.stage(cdr_rows(*[(f"k{h}-{i}", h + 1, f"a{h}") for i in range(50)]), job_id=f"j{h}")]
            for h in range(4)
        ]

    stack = ExitStack()
    serial = stack.enter_context(snowflake_backend(emulator, s3_endpoint, tmp_path / "serial"))
    merge(serial.warehouse, files(serial)[0])  # the table exists before the parallel merges
    for hour, batch in enumerate(files(serial)[1:], start=1):
        merge(serial.warehouse, batch, hour=hour)

    parallel = stack.enter_context(snowflake_backend(emulator, s3_endpoint, tmp_path / "parallel"))
    batches = files(parallel)
    merge(parallel.warehouse, batches[0])
    errors: list[BaseException] = []

    def run(hour: int) -> None:
        try:
            merge(parallel.warehouse, batches[hour], hour=hour)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(h,)) for h in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stack.callback(lambda: None)
    assert errors == []
    cols = ["call_uuid", "agent", "_cxone_partition"]
    assert (
        parallel.warehouse.read_table(CDR)
        .select(cols)
        .equals(serial.warehouse.read_table(CDR).select(cols))
    )
    assert parallel.warehouse.read_table(CDR).num_rows == 200


def test_decimal_aware_timestamp_binary_and_date_values_round_trip(backend: Backend) -> None:
    import datetime as dt
    from decimal import Decimal

    schema = pa.schema(
        [
            ("call_uuid", pa.string()),
            ("updated_at", pa.timestamp("us")),
            ("amount", pa.decimal128(10, 2)),
            ("answered_at", pa.timestamp("us", "UTC")),
            ("blob", pa.binary()),
            ("day", pa.date32()),
        ]
    )
    row = {
        "call_uuid": "a",
        "updated_at": ts(1),
        "amount": Decimal("12345678.90"),
        "answered_at": dt.datetime(2024, 3, 15, 14, 5, 6, 789000, tzinfo=dt.UTC),
        "blob": b"\x00\xffbytes",
        "day": dt.date(2024, 3, 15),
    }
    merge(backend.warehouse, [backend.stage([row], schema=schema)])
    [loaded] = backend.warehouse.read_table(CDR).select(list(row)).to_pylist()
    answered = loaded.pop("answered_at")
    assert answered == row["answered_at"]
    assert loaded == {k: v for k, v in row.items() if k != "answered_at"}
    columns = backend.warehouse.table_columns(CDR)
    assert columns is not None and columns["amount"] == "DECIMAL(10,2)"
