"""Craft Parquet files whose footer lies: decode the Thrift compact footer, edit it, re-encode it.

A Parquet file ends with ``FileMetaData`` (Thrift compact protocol), its 4-byte little-endian
length and ``PAR1``. ``FileMetaData`` field 3 is the file's ``num_rows``, field 4 the row groups;
``RowGroup`` field 3 is a row group's ``num_rows``. Only the footer changes: the column chunks'
offsets point into the body, which stays byte for byte as the writer left it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

MAGIC = b"PAR1"
_BOOL_TRUE, _BOOL_FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE = 1, 2, 3, 4, 5, 6, 7
_BINARY, _LIST, _SET, _MAP, _STRUCT = 8, 9, 10, 11, 12
_FILE_NUM_ROWS, _ROW_GROUPS, _ROW_GROUP_NUM_ROWS = 3, 4, 3


@dataclass
class Field:
    id: int
    type: int
    value: Any
    """int, float, bytes, bool, list[Field] (struct), (elem_type, [values]) (list or set),
    (key_type, value_type, [(k, v)]) (map)."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int) -> Any:
        if kind in (_BOOL_TRUE, _BOOL_FALSE):  # inside a list: one byte, 1 = true
            return self.byte() == 1
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            (number,) = struct.unpack("<d", self.data[self.pos : self.pos + 8])
            self.pos += 8
            return number
        if kind == _BINARY:
            size = self.varint()
            raw = self.data[self.pos : self.pos + size]
            self.pos += size
            return raw
        if kind in (_LIST, _SET):
            header = self.byte()
            size, elem = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            return (elem, [self.value(elem) for _ in range(size)])
        if kind == _MAP:
            size = self.varint()
            if not size:
                return (0, 0, [])
            types = self.byte()
            key_type, value_type = types >> 4, types & 0x0F
            return (
                key_type,
                value_type,
                [(self.value(key_type), self.value(value_type)) for _ in range(size)],
            )
        if kind == _STRUCT:
            return self.struct()
        raise ValueError(f"unknown Thrift compact type {kind} at byte {self.pos}")

    def struct(self) -> list[Field]:
        fields: list[Field] = []
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return fields
            delta, kind = header >> 4, header & 0x0F
            field_id = last + delta if delta else self.zigzag()
            if kind in (_BOOL_TRUE, _BOOL_FALSE):
                value: Any = kind == _BOOL_TRUE
            else:
                value = self.value(kind)
            fields.append(Field(field_id, kind, value))
            last = field_id


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _encode_value(kind: int, value: Any) -> bytes:
    if kind in (_BOOL_TRUE, _BOOL_FALSE):
        return bytes([1 if value else 2])
    if kind == _BYTE:
        return bytes([value])
    if kind in (_I16, _I32, _I64):
        return _zigzag(value)
    if kind == _DOUBLE:
        return struct.pack("<d", value)
    if kind == _BINARY:
        return _varint(len(value)) + value
    if kind in (_LIST, _SET):
        elem, items = value
        head = bytes([(len(items) << 4) | elem]) if len(items) < 15 else bytes([0xF0 | elem])
        if len(items) >= 15:
            head += _varint(len(items))
        return head + b"".join(_encode_value(elem, v) for v in items)
    if kind == _MAP:
        key_type, value_type, pairs = value
        if not pairs:
            return b"\x00"
        body = b"".join(_encode_value(key_type, k) + _encode_value(value_type, v) for k, v in pairs)
        return _varint(len(pairs)) + bytes([(key_type << 4) | value_type]) + body
    if kind == _STRUCT:
        return encode_struct(value)
    raise ValueError(f"unknown Thrift compact type {kind}")


def encode_struct(fields: list[Field]) -> bytes:
    out = bytearray()
    last = 0
    for f in fields:
        kind = f.type
        if kind in (_BOOL_TRUE, _BOOL_FALSE):
            kind = _BOOL_TRUE if f.value else _BOOL_FALSE
        delta = f.id - last
        if 0 < delta <= 15:
            out.append((delta << 4) | kind)
        else:
            out.append(kind)
            out += _zigzag(f.id)
        if kind not in (_BOOL_TRUE, _BOOL_FALSE):
            out += _encode_value(kind, f.value)
        last = f.id
    out.append(0)
    return bytes(out)


def split(data: bytes) -> tuple[bytes, list[Field]]:
    """The file's body (everything before the footer) and its decoded ``FileMetaData``."""
    if data[-4:] != MAGIC:
        raise ValueError("not a Parquet file (no trailing PAR1)")
    (length,) = struct.unpack("<I", data[-8:-4])
    start = len(data) - 8 - length
    reader = _Reader(data[start : len(data) - 8])
    return data[:start], reader.struct()


def join(body: bytes, footer: list[Field]) -> bytes:
    encoded = encode_struct(footer)
    return body + encoded + struct.pack("<I", len(encoded)) + MAGIC


def _field(fields: list[Field], field_id: int) -> Field:
    return next(f for f in fields if f.id == field_id)


def inflate_row_counts(data: bytes, extra: int, *, row_groups: bool) -> bytes:
    """The same file with ``extra`` more rows claimed by the footer: by the file's ``num_rows``
    only, or (``row_groups``) by its last row group as well, so the footer stays consistent with
    itself while the pages hold fewer values than it says."""
    body, footer = split(data)
    _field(footer, _FILE_NUM_ROWS).value += extra
    if row_groups:
        last_group = _field(footer, _ROW_GROUPS).value[1][-1]
        _field(last_group, _ROW_GROUP_NUM_ROWS).value += extra
    return join(body, footer)


def graft_footer(short: bytes, long: bytes) -> bytes:
    """The body of ``short`` under the footer of ``long`` (same schema, more row groups): the
    footer names row groups whose bytes the file does not hold."""
    body, _ = split(short)
    _, footer = split(long)
    return join(body, footer)
