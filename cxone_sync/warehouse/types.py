"""The neutral type vocabulary and its mapping onto each warehouse backend.

The schema rules (add, widen, vanish, break) in :mod:`cxone_sync.warehouse.schema` reason in one
neutral vocabulary: the canonical names :func:`~cxone_sync.warehouse.schema.arrow_to_sql` derives
from Arrow types (``BIGINT``, ``DECIMAL(18,3)``, ``TIMESTAMP_NS``, ``TIMESTAMPTZ_NS``, ``X[]``,
``STRUCT(...)``, ...), plus ``VARIANT`` for a backend column that holds any nested value. The
spelling happens to be DuckDB's, so DuckDB's mapping is the identity; every other backend maps
its own types into the vocabulary (:func:`from_snowflake`) and back (:func:`to_snowflake`), and
says which widenings it can perform in place (:func:`snowflake_widening`).

``Warehouse.table_columns()`` returns neutral names on every backend, so the staging gate and the
merge plan reason identically whatever the warehouse.

Snowflake mapping (decided here, documented in the README):

* every integer width is ``NUMBER(38,0)`` (Snowflake has one integer type); it reads back as
  ``BIGINT``, so int32 -> int64 drift is no change at all;
* ``FLOAT``/``DOUBLE`` are ``FLOAT`` (always 64-bit); reads back as ``DOUBLE``;
* ``DECIMAL(p,s)`` is ``NUMBER(p,s)``; widening the precision at the same scale is an in-place
  ``ALTER COLUMN ... SET DATA TYPE``; any other widening Snowflake cannot do in place is refused
  as breaking drift (a clear SchemaError, nothing merged);
* naive timestamps are ``TIMESTAMP_NTZ(9)``, aware ones ``TIMESTAMP_TZ(9)`` (nanoseconds from the
  start, so a unit change never needs an ALTER);
* structs, maps and lists are ``VARIANT``.
"""

from __future__ import annotations

import re

from cxone_sync.warehouse.schema import NULL_TYPE, VARIANT_TYPE, normalize_type

VARIANT = VARIANT_TYPE
"""Neutral name of a column that holds any nested value (Snowflake VARIANT/OBJECT/ARRAY)."""

_INTEGERS = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}
_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")
_SIMPLE_TO_SNOWFLAKE = {
    "BOOLEAN": "BOOLEAN",
    "FLOAT": "FLOAT",
    "DOUBLE": "FLOAT",
    "VARCHAR": "VARCHAR",
    "UUID": "VARCHAR",
    "INTERVAL": "VARCHAR",
    "BLOB": "BINARY",
    "DATE": "DATE",
    "TIME": "TIME(9)",
    "TIMESTAMP_S": "TIMESTAMP_NTZ(9)",
    "TIMESTAMP_MS": "TIMESTAMP_NTZ(9)",
    "TIMESTAMP": "TIMESTAMP_NTZ(9)",
    "TIMESTAMP_NS": "TIMESTAMP_NTZ(9)",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP_TZ(9)",
    "TIMESTAMPTZ_NS": "TIMESTAMP_TZ(9)",
    VARIANT: "VARIANT",
}
_FROM_SNOWFLAKE = {
    "BOOLEAN": "BOOLEAN",
    "FLOAT": "DOUBLE",
    "FLOAT4": "DOUBLE",
    "FLOAT8": "DOUBLE",
    "DOUBLE": "DOUBLE",
    "DOUBLE PRECISION": "DOUBLE",
    "REAL": "DOUBLE",
    "TEXT": "VARCHAR",
    "VARCHAR": "VARCHAR",
    "STRING": "VARCHAR",
    "CHAR": "VARCHAR",
    "CHARACTER": "VARCHAR",
    "BINARY": "BLOB",
    "VARBINARY": "BLOB",
    "DATE": "DATE",
    "TIME": "TIME",
    "TIMESTAMP_NTZ": "TIMESTAMP_NS",
    "DATETIME": "TIMESTAMP_NS",
    "TIMESTAMP": "TIMESTAMP_NS",
    "TIMESTAMP_TZ": "TIMESTAMPTZ_NS",
    "TIMESTAMP_LTZ": "TIMESTAMPTZ_NS",
    "VARIANT": VARIANT,
    "OBJECT": VARIANT,
    "ARRAY": VARIANT,
}


class UnsupportedTypeError(ValueError):
    """A neutral type the backend cannot store or change in place."""


def is_nested(neutral: str) -> bool:
    """Lists, structs and maps: stored as VARIANT where the backend has no nested types."""
    text = normalize_type(neutral)
    return text.endswith("]") or text.upper().startswith(("STRUCT(", "MAP(")) or text == VARIANT


# -- DuckDB: the identity ------------------------------------------------------------------------


def to_duckdb(neutral: str) -> str:
    return normalize_type(neutral)


def from_duckdb(sql_type: str) -> str:
    return normalize_type(sql_type)


# -- Snowflake -------------------------------------------------------------------------------------


def to_snowflake(neutral: str) -> str:
    """The Snowflake column type that stores every value of ``neutral`` losslessly."""
    text = normalize_type(neutral)
    if text == NULL_TYPE:
        raise UnsupportedTypeError("a column null in every row has no type to create")
    if text in _INTEGERS:
        return "NUMBER(38,0)"
    decimal = _DECIMAL.match(text)
    if decimal:
        precision, scale = int(decimal[1]), int(decimal[2])
        if precision > 38:
            raise UnsupportedTypeError(
                f"{text}: Snowflake's NUMBER holds at most 38 digits; this column cannot load"
            )
        return f"NUMBER({precision},{scale})"
    if is_nested(text):
        return "VARIANT"
    mapped = _SIMPLE_TO_SNOWFLAKE.get(text)
    if mapped is None:
        raise UnsupportedTypeError(f"{text}: no Snowflake type is mapped for this column type")
    return mapped


def from_snowflake(data_type: str, precision: int | None = None, scale: int | None = None) -> str:
    """The neutral name of a Snowflake column (``INFORMATION_SCHEMA.COLUMNS`` fields)."""
    base = data_type.strip().upper().split("(")[0].strip()
    if base in ("NUMBER", "DECIMAL", "NUMERIC", "INT", "INTEGER", "BIGINT", "SMALLINT"):
        p = 38 if precision is None else int(precision)
        s = 0 if scale is None else int(scale)
        return "BIGINT" if (p, s) == (38, 0) else f"DECIMAL({p},{s})"
    mapped = _FROM_SNOWFLAKE.get(base)
    if mapped is None:
        raise UnsupportedTypeError(f"Snowflake type {data_type} has no neutral mapping")
    return mapped


def snowflake_widening(old: str, new: str) -> str | None:
    """How Snowflake widens a column from neutral ``old`` to neutral ``new`` (already lossless).

    None when both store as the same Snowflake type (nothing to do); the new Snowflake type when
    ``ALTER COLUMN ... SET DATA TYPE`` can change it in place (NUMBER precision at the same
    scale); :class:`UnsupportedTypeError` otherwise.
    """
    old_sf, new_sf = to_snowflake(old), to_snowflake(new)
    if old_sf == new_sf:
        return None
    a = re.match(r"^NUMBER\((\d+),(\d+)\)$", old_sf)
    b = re.match(r"^NUMBER\((\d+),(\d+)\)$", new_sf)
    if a and b and a[2] == b[2] and int(b[1]) >= int(a[1]):
        return new_sf
    raise UnsupportedTypeError(
        f"Snowflake cannot change a column from {old_sf} to {new_sf} in place "
        f"(neutral {normalize_type(old)} -> {normalize_type(new)})"
    )
