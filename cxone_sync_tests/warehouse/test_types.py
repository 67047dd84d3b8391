"""The neutral type vocabulary: Arrow -> neutral -> each backend, and back."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cxone_sync.warehouse.schema import arrow_to_sql, diff_columns, lossless
from cxone_sync.warehouse.types import (
    UnsupportedTypeError,
    from_duckdb,
    from_snowflake,
    snowflake_widening,
    to_duckdb,
    to_snowflake,
)
from cxone_sync_tests.warehouse.factories import CDR

ROUND_TRIP = [
    (pa.int32(), "NUMBER(38,0)", ("NUMBER", 38, 0)),
    (pa.int64(), "NUMBER(38,0)", ("NUMBER", 38, 0)),
    (pa.float32(), "FLOAT", ("FLOAT", None, None)),
    (pa.float64(), "FLOAT", ("FLOAT", None, None)),
    (pa.decimal128(10, 2), "NUMBER(10,2)", ("NUMBER", 10, 2)),
    (pa.string(), "VARCHAR", ("TEXT", None, None)),
    (pa.bool_(), "BOOLEAN", ("BOOLEAN", None, None)),
    (pa.date32(), "DATE", ("DATE", None, None)),
    (pa.timestamp("us"), "TIMESTAMP_NTZ(9)", ("TIMESTAMP_NTZ", None, None)),
    (pa.timestamp("ns"), "TIMESTAMP_NTZ(9)", ("TIMESTAMP_NTZ", None, None)),
    (pa.timestamp("us", "UTC"), "TIMESTAMP_TZ(9)", ("TIMESTAMP_TZ", None, None)),
    (pa.binary(), "BINARY", ("BINARY", None, None)),
    (pa.list_(pa.int64()), "VARIANT", ("VARIANT", None, None)),
    (pa.struct([("x", pa.int64())]), "VARIANT", ("VARIANT", None, None)),
    (pa.map_(pa.string(), pa.int64()), "VARIANT", ("VARIANT", None, None)),
]


@pytest.mark.parametrize(("arrow", "snowflake", "described"), ROUND_TRIP)
def test_snowflake_stores_every_arrow_type_and_reads_back_a_compatible_neutral_type(
    arrow: pa.DataType, snowflake: str, described: tuple[str, int | None, int | None]
) -> None:
    neutral = arrow_to_sql(arrow)
    assert to_snowflake(neutral) == snowflake
    back = from_snowflake(*described)
    # the file's type loads into the column the table reads back as, with no change
    assert lossless(neutral, back), (neutral, back)
    assert snowflake_widening(back, neutral) is None or lossless(back, neutral)


def test_duckdb_mapping_is_the_identity() -> None:
    for arrow, _sf, _d in ROUND_TRIP:
        neutral = arrow_to_sql(arrow)
        assert to_duckdb(neutral) == neutral
        assert from_duckdb(neutral) == neutral
    assert (
        from_duckdb("int8") == "BIGINT" and from_duckdb("timestamptz") == "TIMESTAMP WITH TIME ZONE"
    )


def test_integer_and_float_widening_are_no_change_on_snowflake() -> None:
    table = {"call_uuid": from_snowflake("TEXT"), "updated_at": from_snowflake("TIMESTAMP_NTZ")}
    table["n"] = from_snowflake("NUMBER", 38, 0)
    table["x"] = from_snowflake("FLOAT")
    incoming = {"call_uuid": "VARCHAR", "updated_at": "TIMESTAMP", "n": "BIGINT", "x": "DOUBLE"}
    diff = diff_columns(table, incoming, CDR)
    assert not diff.breaking and diff.widened == {} and diff.added == {}


def test_decimal_precision_widens_in_place_but_scale_changes_are_refused() -> None:
    assert snowflake_widening("DECIMAL(10,2)", "DECIMAL(18,2)") == "NUMBER(18,2)"
    assert snowflake_widening("BIGINT", "DECIMAL(38,0)") is None
    with pytest.raises(UnsupportedTypeError, match=r"NUMBER\(10,2\) to NUMBER\(18,4\)"):
        snowflake_widening("DECIMAL(10,2)", "DECIMAL(18,4)")
    with pytest.raises(UnsupportedTypeError, match="NUMBER"):
        snowflake_widening("BIGINT", "DOUBLE")


def test_nested_values_fit_a_variant_column_and_nothing_else_does() -> None:
    assert lossless("STRUCT(a BIGINT)", "VARIANT")
    assert lossless("VARCHAR[]", "VARIANT")
    assert not lossless("VARCHAR", "VARIANT")
    assert not lossless("VARIANT", "VARCHAR")


def test_unmappable_types_are_refused_with_the_reason() -> None:
    with pytest.raises(UnsupportedTypeError, match="38 digits"):
        to_snowflake("DECIMAL(76,2)")
    with pytest.raises(UnsupportedTypeError, match="null in every row"):
        to_snowflake("NULL")
    with pytest.raises(UnsupportedTypeError, match="GEOGRAPHY"):
        from_snowflake("GEOGRAPHY")
