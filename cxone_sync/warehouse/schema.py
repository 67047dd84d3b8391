"""Schema hashing and drift detection between a BI table and incoming Parquet.

Types are compared in one neutral vocabulary derived from Arrow types (``BIGINT``,
``TIMESTAMP_NS``, ``DECIMAL(18,3)``, ``VARCHAR[]``, ``VARIANT``), spelled as DuckDB's Parquet
reader names them, so a hash or a diff computed from a ``pyarrow.Schema`` agrees with one computed
from DuckDB's own ``DESCRIBE``. Other backends map their types into it
(:mod:`cxone_sync.warehouse.types`): ``Warehouse.table_columns()`` returns neutral names.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from cxone_sync.catalog import UPDATED_AT, DataType
from cxone_sync.warehouse.base import METADATA_PREFIX

NULL_TYPE = "NULL"
"""The type of a column that is null in every row: it carries no type information yet."""
VARIANT_TYPE = "VARIANT"
"""A backend column holding any nested value (Snowflake VARIANT): every list, struct or map fits.
See :mod:`cxone_sync.warehouse.types` for the neutral vocabulary and the per-backend mappings."""

_SIGNED_BITS = {"TINYINT": 8, "SMALLINT": 16, "INTEGER": 32, "BIGINT": 64, "HUGEINT": 128}
_UNSIGNED_BITS = {"UTINYINT": 8, "USMALLINT": 16, "UINTEGER": 32, "UBIGINT": 64, "UHUGEINT": 128}
_INT_DIGITS = {8: 3, 16: 5, 32: 10, 64: 20, 128: 39}
_FLOAT_BITS = {"FLOAT": 32, "DOUBLE": 64}
_NAIVE_TS = {"TIMESTAMP_S": 0, "TIMESTAMP_MS": 1, "TIMESTAMP": 2, "TIMESTAMP_NS": 3}
_AWARE_TS = {"TIMESTAMP WITH TIME ZONE": 2, "TIMESTAMPTZ_NS": 3}
_ALIASES = {
    "INT": "INTEGER",
    "INT4": "INTEGER",
    "INT8": "BIGINT",
    "LONG": "BIGINT",
    "INT2": "SMALLINT",
    "INT1": "TINYINT",
    "REAL": "FLOAT",
    "FLOAT4": "FLOAT",
    "FLOAT8": "DOUBLE",
    "BOOL": "BOOLEAN",
    "TEXT": "VARCHAR",
    "STRING": "VARCHAR",
    "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE",
    "DATETIME": "TIMESTAMP",
    '"NULL"': NULL_TYPE,
}
_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")
MAX_DECIMAL_PRECISION = 38
"""The widest decimal DuckDB and Snowflake hold; a wider Parquet decimal would load as DOUBLE."""
_UTC_TS = {
    "TIMESTAMP_S": "TIMESTAMP WITH TIME ZONE",
    "TIMESTAMP_MS": "TIMESTAMP WITH TIME ZONE",
    "TIMESTAMP": "TIMESTAMP WITH TIME ZONE",
    "TIMESTAMP_NS": "TIMESTAMPTZ_NS",
}
"""``updated_at`` is UTC by contract: a naive one is read as UTC, the aware type of its unit."""
_KEY_REFUSED = ("FLOAT", "DOUBLE", NULL_TYPE, "STRUCT(", "MAP(", "UNION(")
"""Key column types with no exact equality (floats) or no scalar value (nested, untyped)."""
READER_COLUMNS = ("file_index", "file_row_number")
"""Names the merge's Parquet reader gives its own virtual columns; a file column of that name
would shadow them."""
_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


_QUOTED = re.compile(r'"(?:[^"]|"")*"')
_SPACES = re.compile(r"\s+")
"""A quoted identifier inside a type (a struct field name): its spaces, tabs and case are part
of the name."""


def normalize_type(sql_type: str) -> str:
    """Canonical spelling of a DuckDB type name, so equal types compare equal."""
    text = _squash(sql_type.strip())
    upper = text.upper()
    return _ALIASES.get(upper, upper if _is_simple(upper) else text)


def _squash(text: str) -> str:
    """Runs of whitespace to one space, outside quoted identifiers only."""
    parts, end = [], 0
    for match in _QUOTED.finditer(text):
        parts += [_SPACES.sub(" ", text[end : match.start()]), match[0]]
        end = match.end()
    parts.append(_SPACES.sub(" ", text[end:]))
    return "".join(parts)


def _canonical(sql_type: str) -> str:
    """For comparison only: a quoted field name that needs no quotes loses them (DuckDB quotes
    keywords such as "select", the Arrow mapping does not)."""
    return _QUOTED.sub(lambda m: m[0][1:-1] if _PLAIN_NAME.match(m[0][1:-1]) else m[0], sql_type)


def _is_simple(upper: str) -> bool:
    return (
        upper in _SIGNED_BITS
        or upper in _UNSIGNED_BITS
        or upper in _FLOAT_BITS
        or upper in _NAIVE_TS
        or upper in _AWARE_TS
        or upper in _ALIASES
        or _DECIMAL.match(upper) is not None
        or upper in {"BOOLEAN", "VARCHAR", "BLOB", "DATE", "TIME", "INTERVAL", "UUID", NULL_TYPE}
        or upper == VARIANT_TYPE
    )


def arrow_to_sql(arrow_type: pa.DataType) -> str:
    """The DuckDB type DuckDB's Parquet reader gives a column written with this Arrow type."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        return arrow_to_sql(t.value_type)
    if pa.types.is_null(t):
        return NULL_TYPE
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        names = _SIGNED_BITS if pa.types.is_signed_integer(t) else _UNSIGNED_BITS
        return next(name for name, bits in names.items() if bits == t.bit_width)
    if pa.types.is_floating(t):
        return "DOUBLE" if t.bit_width == 64 else "FLOAT"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "VARCHAR"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BLOB"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return _timestamp_to_sql(t)
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_duration(t):
        return "BIGINT"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return f"{arrow_to_sql(t.value_type)}[]"
    if pa.types.is_struct(t):
        fields = ", ".join(f"{_struct_name(f.name)} {arrow_to_sql(f.type)}" for f in t)
        return f"STRUCT({fields})"
    if pa.types.is_map(t):
        return f"MAP({arrow_to_sql(t.key_type)}, {arrow_to_sql(t.item_type)})"
    return str(t).upper()


def _timestamp_to_sql(t: pa.TimestampType) -> str:
    if t.tz is None:
        return "TIMESTAMP_NS" if t.unit == "ns" else "TIMESTAMP"
    return "TIMESTAMPTZ_NS" if t.unit == "ns" else "TIMESTAMP WITH TIME ZONE"


def _struct_name(name: str) -> str:
    return name if _PLAIN_NAME.match(name) else '"' + name.replace('"', '""') + '"'


def arrow_columns(schema: pa.Schema) -> dict[str, str]:
    return {f.name: arrow_to_sql(f.type) for f in schema}


def columns_hash(columns: Mapping[str, str], data_type: DataType) -> str:
    """SHA-256 over the key and the sorted ``name:type`` lines: stable under column order."""
    lines = [f"key:{','.join(data_type.key)}"]
    lines += sorted(f"{name}:{normalize_type(t)}" for name, t in columns.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def arrow_schema_hash(schema: pa.Schema, data_type: DataType) -> str:
    return columns_hash(arrow_columns(schema), data_type)


def columns_json(columns: Mapping[str, str]) -> str:
    return json.dumps({n: normalize_type(t) for n, t in sorted(columns.items())})


def lossless(source: str, target: str) -> bool:
    """True when every value of type ``source`` converts to ``target`` without loss."""
    src, dst = normalize_type(source), normalize_type(target)
    if src in (dst, NULL_TYPE) or _canonical(src) == _canonical(dst):
        return True
    if dst == VARIANT_TYPE:
        return _nested(src)
    if src in _SIGNED_BITS:
        return _signed_fits(_SIGNED_BITS[src], dst)
    if src in _UNSIGNED_BITS:
        return _unsigned_fits(_UNSIGNED_BITS[src], dst)
    if src in _FLOAT_BITS:
        return dst in _FLOAT_BITS and _FLOAT_BITS[src] <= _FLOAT_BITS[dst]
    if src in _NAIVE_TS:
        return dst in _NAIVE_TS and _NAIVE_TS[src] <= _NAIVE_TS[dst]
    if src in _AWARE_TS:
        return dst in _AWARE_TS and _AWARE_TS[src] <= _AWARE_TS[dst]
    if src == "DATE":
        return dst in _NAIVE_TS
    src_dec, dst_dec = _DECIMAL.match(src), _DECIMAL.match(dst)
    if src_dec and dst_dec:
        p1, s1, p2, s2 = (int(v) for v in (*src_dec.groups(), *dst_dec.groups()))
        return s2 >= s1 and p2 - s2 >= p1 - s1
    return False


def _nested(sql_type: str) -> bool:
    return sql_type.endswith("]") or sql_type.upper().startswith(("STRUCT(", "MAP("))


def _signed_fits(bits: int, dst: str) -> bool:
    if dst in _SIGNED_BITS:
        return bits <= _SIGNED_BITS[dst]
    return dst == "DOUBLE" or _decimal_holds(_INT_DIGITS[bits], dst)


def _unsigned_fits(bits: int, dst: str) -> bool:
    if dst in _UNSIGNED_BITS:
        return bits <= _UNSIGNED_BITS[dst]
    if dst in _SIGNED_BITS:
        return bits < _SIGNED_BITS[dst]
    return dst == "DOUBLE" or _decimal_holds(_INT_DIGITS[bits], dst)


def _decimal_holds(digits: int, dst: str) -> bool:
    match = _DECIMAL.match(dst)
    return match is not None and int(match[1]) - int(match[2]) >= digits


@dataclass
class SchemaDiff:
    """What an incoming schema would change in a BI table (``existing`` None: no table yet)."""

    added: dict[str, str] = field(default_factory=dict)
    widened: dict[str, tuple[str, str]] = field(default_factory=dict)
    """column -> (table type, new wider type)."""
    vanished: list[str] = field(default_factory=list)
    incompatible: dict[str, tuple[str, str]] = field(default_factory=dict)
    """column -> (table type, file type) with no lossless conversion either way."""
    missing_keys: list[str] = field(default_factory=list)
    reserved: list[str] = field(default_factory=list)
    """Incoming columns using the platform's metadata prefix (any case) or a reader's name."""
    bad_names: list[str] = field(default_factory=list)
    """Why the file's column names cannot be columns of a table (empty, or equal ignoring
    case, as DuckDB and Snowflake resolve names)."""
    bad_keys: dict[str, str] = field(default_factory=dict)
    """Key columns -> a type a natural key cannot have (float, nested, untyped); ``updated_at``
    -> its type when it is not a timestamp (newest-wins orders by it)."""
    unsupported: dict[str, str] = field(default_factory=dict)
    """Columns -> a type no warehouse column holds without loss (decimal precision > 38)."""
    untyped: list[str] = field(default_factory=list)
    """New columns null in every row: not added until they carry a type."""

    @property
    def breaking(self) -> bool:
        return bool(
            self.incompatible
            or self.missing_keys
            or self.reserved
            or self.bad_names
            or self.bad_keys
            or self.unsupported
        )

    def apply(self, existing: Mapping[str, str] | None) -> dict[str, str]:
        """The table's columns after the additions and widenings."""
        columns = dict(existing or {})
        for name, (_old, new) in self.widened.items():
            columns[name] = new
        columns.update(self.added)
        return columns


def diff_columns(
    existing: Mapping[str, str] | None, incoming: Mapping[str, str], data_type: DataType
) -> SchemaDiff:
    """Compare a table's columns (None: no table) with a file's, both as SQL type names.

    Names compare case-insensitively, as DuckDB and Snowflake resolve them.
    """
    diff = SchemaDiff()
    table = {name.casefold(): (name, t) for name, t in (existing or {}).items()}
    seen = {name.casefold() for name in incoming}
    diff.missing_keys = [c for c in (*data_type.key, UPDATED_AT) if c.casefold() not in seen]
    keys = {c.casefold() for c in data_type.key}
    for name, new_type in incoming.items():
        folded, new = name.casefold(), normalize_type(new_type)
        if folded.startswith(METADATA_PREFIX) or folded in READER_COLUMNS:
            diff.reserved.append(name)
            continue
        if _bad_key_type(folded, new, keys):
            diff.bad_keys[name] = new
        if _too_wide(new):
            diff.unsupported[name] = new
        elif folded not in table:
            _add(diff, name, new)
        else:
            table_name, old_type = table[folded]
            old = normalize_type(old_type)
            if folded == UPDATED_AT and (old in _AWARE_TS) != (new in _AWARE_TS):
                old, new = _UTC_TS.get(old, old), _UTC_TS.get(new, new)
            _compare(diff, table_name, old, new)
    diff.vanished = [
        name
        for key, (name, _t) in table.items()
        if key not in seen and not name.startswith(METADATA_PREFIX)
    ]
    return diff


def _bad_key_type(folded: str, sql_type: str, keys: set[str]) -> bool:
    if folded in keys:
        return sql_type.upper().startswith(_KEY_REFUSED) or sql_type.endswith("]")
    return folded == UPDATED_AT and sql_type not in _NAIVE_TS and sql_type not in _AWARE_TS


def _too_wide(sql_type: str) -> bool:
    match = _DECIMAL.match(sql_type)
    return match is not None and int(match[1]) > MAX_DECIMAL_PRECISION


def name_problems(names: Sequence[str]) -> list[str]:
    """Why a file's column names cannot all be columns of one table: an empty name, a name
    given twice, names equal ignoring case (DuckDB and Snowflake resolve names that way, and a
    reader would rename one of them)."""
    problems = []
    if any(not name.strip() for name in names):
        problems.append("a column has an empty name")
    counts = Counter(names)
    problems += [f"column {n!r} appears more than once" for n, c in counts.items() if c > 1]
    folded: dict[str, list[str]] = {}
    for name in counts:
        folded.setdefault(name.casefold(), []).append(name)
    problems += [
        f"columns {' and '.join(repr(n) for n in same)} differ only by case"
        for same in folded.values()
        if len(same) > 1
    ]
    return problems


def _add(diff: SchemaDiff, name: str, new_type: str) -> None:
    if new_type == NULL_TYPE:
        diff.untyped.append(name)
    else:
        diff.added[name] = new_type


def _compare(diff: SchemaDiff, name: str, old_type: str, new_type: str) -> None:
    if lossless(new_type, old_type):
        return
    if lossless(old_type, new_type):
        diff.widened[name] = (old_type, new_type)
    else:
        diff.incompatible[name] = (old_type, new_type)


def diff_schema(
    existing: Mapping[str, str] | None, incoming: pa.Schema, data_type: DataType
) -> SchemaDiff:
    diff = diff_columns(existing, arrow_columns(incoming), data_type)
    diff.bad_names = name_problems(incoming.names)
    return diff
