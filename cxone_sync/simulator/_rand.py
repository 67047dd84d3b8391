"""Counter-based, vectorised randomness: every value is a pure function of (salt, row index).

No generator state is carried between calls, so any subset of an interval's rows can be rebuilt
exactly (late updates re-use earlier rows; the ground truth rebuilds whole files) and chunks of a
large file can be produced independently.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_PAIRS = np.frombuffer("".join(f"{k:02d}" for k in range(100)).encode(), np.uint8).reshape(100, 2)


def salt(*parts: object) -> int:
    """A stable 64-bit salt from any printable parts (seed, names, timestamps)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def mix(s: int, idx: np.ndarray) -> np.ndarray:
    """splitmix64 of ``idx + s``: a bijection of the row index for a fixed salt (uint64)."""
    with np.errstate(over="ignore"):
        z = idx.astype(np.uint64) + np.uint64(s) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def unit(s: int, idx: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1)."""
    return (mix(s, idx) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def ints(s: int, idx: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Uniform int64 in [lo, hi)."""
    return (mix(s, idx) % np.uint64(hi - lo)).astype(np.int64) + lo


def scalar_unit(*parts: object) -> float:
    """One uniform float in [0, 1) for a decision (fault draws, lags)."""
    return float(unit(salt(*parts), np.zeros(1, dtype=np.uint64))[0])


def _strings(matrix: np.ndarray) -> pa.StringArray:
    """Fixed-width ASCII rows of a (n, width) uint8 matrix as an Arrow string array, zero-copy."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix)
    array = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    assert isinstance(array, pa.StringArray)
    return array


def coded(prefix: str, numbers: np.ndarray, width: int) -> pa.StringArray:
    """``prefix`` followed by ``numbers`` zero-padded to ``width`` digits (``AG-000123``)."""
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    out = np.empty((len(numbers), len(head) + width), dtype=np.uint8)
    out[:, : len(head)] = head
    rest = numbers.astype(np.uint64)
    column = out.shape[1]
    while column > len(head):  # two digits per division, right to left
        pair = (rest % np.uint64(100)).astype(np.intp)
        rest //= np.uint64(100)
        take = min(2, column - len(head))
        out[:, column - take : column] = _PAIRS[pair][:, 2 - take :]
        column -= take
    return _strings(out)


def _hex(values: np.ndarray) -> np.ndarray:
    """(n, 16) lowercase hex characters of uint64 values, most significant first."""
    octets = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    chars = np.empty((len(values), 16), dtype=np.uint8)
    chars[:, 0::2] = _HEX[octets >> 4]
    chars[:, 1::2] = _HEX[octets & 0xF]
    return chars


def hex_ids(prefix: str, values: np.ndarray) -> pa.StringArray:
    """``prefix`` followed by 16 lowercase hex digits of each uint64."""
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    return _strings(np.hstack([np.broadcast_to(head, (len(values), len(head))), _hex(values)]))


def uuids(hi: np.ndarray, lo: np.ndarray) -> pa.StringArray:
    """Canonical 8-4-4-4-12 UUID text of two uint64 halves (version-4 style)."""
    chars = np.hstack([_hex(hi), _hex(lo)])
    dash = np.full((len(hi), 1), ord("-"), dtype=np.uint8)
    chars[:, 12] = ord("4")
    parts = [chars[:, :8], dash, chars[:, 8:12], dash, chars[:, 12:16], dash]
    return _strings(np.hstack([*parts, chars[:, 16:20], dash, chars[:, 20:]]))


def pick(choices: pa.Array, codes: np.ndarray) -> pa.Array:
    """``choices[codes]`` as an Arrow array (vectorised categorical values)."""
    return choices.take(pa.array(codes, type=pa.int64()))
