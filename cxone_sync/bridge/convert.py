"""CSV answers to typed Arrow tables: pyarrow's CSV reader, never hand parsing.

What the Data Extraction API's CSV can hold, handled here: a UTF-8 byte-order mark (pyarrow
skips it), quoted values with commas, doubled quotes and line breaks inside, an empty answer
(0 bytes, or only a BOM) for an empty window, a header without rows. Columns named in ``types``
get that Arrow type (a value that does not fit is a :class:`CsvFormatError` naming the column);
every other column is text (a new column appears without notice and is never guessed, so
"00123" stays "00123"). An unquoted empty value is null; a quoted empty one is the empty string.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cxone_sync.catalog import UPDATED_AT

BOM = b"\xef\xbb\xbf"
TYPE_NAMES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float": pa.float32(),
    "float32": pa.float32(),
    "double": pa.float64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


class CsvFormatError(ValueError):
    """The CSV cannot be read with the declared types; the message says where."""


def arrow_type(name: str) -> pa.DataType:
    try:
        return TYPE_NAMES[name]
    except KeyError:
        raise ValueError(
            f"unknown column type {name!r}; use one of {', '.join(TYPE_NAMES)}"
        ) from None


def type_name(t: pa.DataType) -> str:
    """The inverse of :func:`arrow_type` (for the fake's announced entity types)."""
    if pa.types.is_timestamp(t):
        return "timestamp"
    for name, candidate in TYPE_NAMES.items():
        if candidate == t:
            return name
    return "string"


def csv_to_table(
    body: bytes,
    types: Mapping[str, str],
    *,
    what: str,
    updated_at: str | None = None,
    extracted_at: datetime | None = None,
) -> pa.Table:
    """The CSV ``body`` as a table; ``what`` names it in errors.

    ``updated_at``: the column copied to the platform's ``updated_at`` when the entity has no
    column of that name; when None and absent, every row gets ``extracted_at``.
    """
    declared = {name: arrow_type(t) for name, t in types.items()}
    if not body.removeprefix(BOM).strip():
        table = pa.schema(list(declared.items())).empty_table()
    else:
        table = _read(body, declared, what)
    if UPDATED_AT not in table.column_names:
        if updated_at is not None and updated_at in table.column_names:
            column = table.column(updated_at)
            if not pa.types.is_timestamp(column.type):
                column = _cast(column, TYPE_NAMES["timestamp"], what, updated_at)
            table = table.append_column(UPDATED_AT, column)
        elif extracted_at is not None:
            stamp = pa.scalar(extracted_at, TYPE_NAMES["timestamp"])
            table = table.append_column(
                UPDATED_AT, pa.array([stamp] * table.num_rows, TYPE_NAMES["timestamp"])
            )
    return table


def _read(body: bytes, declared: dict[str, pa.DataType], what: str) -> pa.Table:
    parse = pacsv.ParseOptions(newlines_in_values=True)
    read = pacsv.ReadOptions(use_threads=False)
    try:
        # the header alone: undeclared columns become text, never inferred
        head = pacsv.open_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 16),
            parse_options=parse,
            convert_options=pacsv.ConvertOptions(column_types=declared, strings_can_be_null=True),
        )
        names = head.schema.names
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise CsvFormatError(f"{what}: not a readable CSV ({_first_line(exc)})") from None
    column_types = {n: declared.get(n, pa.string()) for n in names}
    convert = pacsv.ConvertOptions(
        column_types=column_types,
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        timestamp_parsers=[pacsv.ISO8601],
    )
    try:
        return pacsv.read_csv(
            io.BytesIO(body), read_options=read, parse_options=parse, convert_options=convert
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise CsvFormatError(
            f"{what}: a value does not fit its declared column type ({_first_line(exc)}); "
            "fix the entity's types in CXONE_EXTRACTION_ENTITIES"
        ) from None


def _cast(column: pa.ChunkedArray, to: pa.DataType, what: str, name: str) -> pa.ChunkedArray:
    try:
        return pc.cast(column, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CsvFormatError(f"{what}: column {name!r} is not a timestamp ({exc})") from None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
