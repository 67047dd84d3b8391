"""Schema hashing and drift rules."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxone_sync.warehouse.schema import (
    arrow_columns,
    arrow_schema_hash,
    diff_schema,
    lossless,
    name_problems,
    normalize_type,
)
from cxone_sync_tests.warehouse.factories import CDR

CDR_SCHEMA = pa.schema(
    [("call_uuid", pa.string()), ("updated_at", pa.timestamp("us")), ("agent", pa.string())]
)


def test_hash_is_stable_under_column_order_and_changes_with_types():
    reordered = pa.schema([CDR_SCHEMA.field(i) for i in (2, 0, 1)])
    retyped = CDR_SCHEMA.set(2, pa.field("agent", pa.int64()))

    assert arrow_schema_hash(CDR_SCHEMA, CDR) == arrow_schema_hash(reordered, CDR)
    assert arrow_schema_hash(CDR_SCHEMA, CDR) != arrow_schema_hash(retyped, CDR)
    assert len(arrow_schema_hash(CDR_SCHEMA, CDR)) == 64


def test_arrow_types_map_to_what_duckdb_reads(tmp_path: Path):
    table = pa.table(
        {
            "b": pa.array([True]),
            "i8": pa.array([1], pa.int8()),
            "i32": pa.array([1], pa.int32()),
            "u16": pa.array([1], pa.uint16()),
            "f32": pa.array([1.0], pa.float32()),
            "f64": pa.array([1.0]),
            "dec": pa.array([decimal.Decimal("1.23")], pa.decimal128(10, 2)),
            "s": pa.array(["x"], pa.large_string()),
            "bin": pa.array([b"x"]),
            "d": pa.array([dt.date(2024, 1, 1)]),
            "ts_ms": pa.array([1], pa.timestamp("ms")),
            "ts_ns": pa.array([1], pa.timestamp("ns")),
            "tz_us": pa.array([1], pa.timestamp("us", "UTC")),
            "tz_ns": pa.array([1], pa.timestamp("ns", "UTC")),
            "nul": pa.array([None], pa.null()),
            "lst": pa.array([[1]], pa.list_(pa.int32())),
            "st": pa.array([{"a": 1, "b c": "x"}]),
            "dict": pa.array(["a"]).dictionary_encode(),
        }
    )
    path = tmp_path / "types.parquet"
    pq.write_table(table, path)
    with duckdb.connect() as con:
        relation = con.read_parquet(str(path))
        duck = {n: str(t) for n, t in zip(relation.columns, relation.types, strict=True)}

    mapped = arrow_columns(pq.read_schema(path))

    assert {n: t.strip('"') for n, t in duck.items()} == mapped


def _diff(existing: dict[str, str] | None, *fields: tuple[str, pa.DataType]):
    base = [("call_uuid", pa.string()), ("updated_at", pa.timestamp("us"))]
    return diff_schema(existing, pa.schema(base + list(fields)), CDR)


KEYS = {"call_uuid": "VARCHAR", "updated_at": "TIMESTAMP"}
UTC = pa.timestamp("us", "UTC")


def test_first_schema_adds_every_column():
    diff = _diff(None, ("n", pa.int32()))

    assert diff.added == {"call_uuid": "VARCHAR", "updated_at": "TIMESTAMP", "n": "INTEGER"}
    assert not diff.breaking


def test_added_vanished_and_case_insensitive_names():
    existing = {**KEYS, "Agent": "VARCHAR", "gone": "BIGINT", "_cxone_job_id": "VARCHAR"}

    diff = _diff(existing, ("AGENT", pa.string()), ("new", pa.float64()))

    assert diff.added == {"new": "DOUBLE"}
    assert diff.vanished == ["gone"]
    assert diff.widened == {} and not diff.breaking


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("TINYINT", "SMALLINT"),
        ("SMALLINT", "INTEGER"),
        ("INTEGER", "BIGINT"),
        ("UTINYINT", "UINTEGER"),
        ("UINTEGER", "BIGINT"),
        ("FLOAT", "DOUBLE"),
        ("INTEGER", "DOUBLE"),
        ("BIGINT", "DOUBLE"),
        ("TIMESTAMP", "TIMESTAMP_NS"),
        ("TIMESTAMP_MS", "TIMESTAMP"),
        ("DATE", "TIMESTAMP"),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS"),
        ("DECIMAL(10,2)", "DECIMAL(12,3)"),
        ("INTEGER", "DECIMAL(18,2)"),
    ],
)
def test_widening_rules(old: str, new: str):
    assert lossless(old, new)
    assert not lossless(new, old) or old == "TIMESTAMP_MS"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("VARCHAR", "BIGINT"),
        ("BIGINT", "VARCHAR"),
        ("BOOLEAN", "INTEGER"),
        ("INTEGER", "BOOLEAN"),
        ("TIMESTAMP", "BIGINT"),
        ("BIGINT", "TIMESTAMP"),
        ("BIGINT", "UBIGINT"),
        ("UBIGINT", "BIGINT"),
        ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE"),
        ("DOUBLE", "DECIMAL(38,10)"),
    ],
)
def test_incompatible_pairs(old: str, new: str):
    assert not lossless(new, old) and not lossless(old, new)


def test_diff_classifies_widened_fitting_and_incompatible():
    existing = {**KEYS, "n": "INTEGER", "m": "BIGINT", "s": "VARCHAR", "t": "TIMESTAMP"}

    diff = _diff(
        existing,
        ("n", pa.int64()),
        ("m", pa.int16()),
        ("s", pa.int64()),
        ("t", pa.timestamp("ns")),
    )

    assert diff.widened == {"n": ("INTEGER", "BIGINT"), "t": ("TIMESTAMP", "TIMESTAMP_NS")}
    assert diff.incompatible == {"s": ("VARCHAR", "BIGINT")}
    assert diff.breaking
    assert diff.apply(existing)["n"] == "BIGINT"


def test_missing_keys_and_untyped_columns():
    diff = diff_schema(KEYS, pa.schema([("agent", pa.string()), ("x", pa.null())]), CDR)

    assert diff.missing_keys == ["call_uuid", "updated_at"]
    assert diff.untyped == ["x"]
    assert diff.breaking


def test_names_a_table_cannot_hold():
    problems = name_problems(["call_uuid", "agent", "AGENT", "", "n", "n"])

    assert problems == [
        "a column has an empty name",
        "column 'n' appears more than once",
        "columns 'agent' and 'AGENT' differ only by case",
    ]
    assert diff_schema(None, pa.schema([("a", pa.int8()), ("A", pa.int8())]), CDR).breaking


def test_reserved_names_in_any_case_and_reader_columns():
    diff = _diff(None, ("_CXONE_PARTITION", pa.string()), ("File_Row_Number", pa.int64()))

    assert diff.reserved == ["_CXONE_PARTITION", "File_Row_Number"]
    assert diff.breaking


@pytest.mark.parametrize(
    "key_type",
    [pa.float64(), pa.float32(), pa.struct([("id", pa.string())]), pa.list_(pa.string())],
)
def test_key_types_without_exact_equality_are_refused(key_type: pa.DataType):
    diff = diff_schema(None, pa.schema([("call_uuid", key_type), ("updated_at", UTC)]), CDR)

    assert list(diff.bad_keys) == ["call_uuid"] and diff.breaking


def test_updated_at_must_be_a_timestamp_and_naive_reads_as_utc():
    as_text = diff_schema(
        None, pa.schema([("call_uuid", pa.string()), ("updated_at", pa.string())]), CDR
    )
    aware_table = {
        "call_uuid": "VARCHAR",
        "updated_at": "TIMESTAMP WITH TIME ZONE",
        "t": "TIMESTAMP WITH TIME ZONE",
    }
    naive_file = pa.schema(
        [("call_uuid", pa.string()), ("updated_at", pa.timestamp("us")), ("t", pa.timestamp("us"))]
    )

    assert as_text.bad_keys == {"updated_at": "VARCHAR"}
    diff = diff_schema(aware_table, naive_file, CDR)
    assert diff.incompatible == {"t": ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP")}
    assert "updated_at" not in diff.widened
    widened = diff_schema(
        KEYS,
        pa.schema([("call_uuid", pa.string()), ("updated_at", pa.timestamp("ns", "UTC"))]),
        CDR,
    )
    assert widened.widened == {"updated_at": ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS")}


def test_decimals_wider_than_38_digits_are_refused():
    diff = _diff(None, ("amount", pa.decimal256(40, 2)), ("ok", pa.decimal128(38, 10)))

    assert diff.unsupported == {"amount": "DECIMAL(40,2)"} and diff.breaking
    assert "ok" in diff.added


def test_struct_field_names_keep_their_whitespace_and_compare_without_optional_quotes():
    assert normalize_type('STRUCT("tab\tname"  INTEGER,  "a  b" VARCHAR)') == (
        'STRUCT("tab\tname" INTEGER, "a  b" VARCHAR)'
    )
    assert lossless('STRUCT("select" INTEGER)', "STRUCT(select INTEGER)")
    assert not lossless('STRUCT("Select" INTEGER)', "STRUCT(select INTEGER)")
