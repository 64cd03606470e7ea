"""Byte-level building blocks of the ``compact`` encoding: vectorised LEB128 varints, zigzag, and a
bounds-checked reader. Every malformed input raises :class:`~edgeflow.errors.CodecError`."""

from __future__ import annotations

import struct
from typing import Final

import numpy as np
import numpy.typing as npt

from edgeflow.errors import CodecError

__all__ = [
    "Reader",
    "Writer",
    "unzigzag",
    "uvarint_decode",
    "uvarint_encode",
    "uvarint_size",
    "zigzag",
]

_U64 = npt.NDArray[np.uint64]
_I64 = npt.NDArray[np.int64]
_MAX_VARINT: Final = 10
_SMALL: Final = 128  # columns up to this long are written element by element


def zigzag(a: _I64) -> _U64:
    """Signed → unsigned so that small magnitudes of either sign become small numbers."""
    a = np.asarray(a, dtype=np.int64)
    return ((a << np.int64(1)) ^ (a >> np.int64(63))).view(np.uint64)


def unzigzag(u: _U64) -> _I64:
    u = np.asarray(u, dtype=np.uint64)
    return (u >> np.uint64(1)).view(np.int64) ^ -((u & np.uint64(1)).view(np.int64))


def uvarint_encode(a: _U64) -> bytes:
    """LEB128 of every element of ``a`` (unsigned 64-bit), concatenated."""
    a = np.asarray(a, dtype=np.uint64)
    n = len(a)
    if n == 0:
        return b""
    if n <= _SMALL:  # a small message's column: a Python loop beats numpy's per-call overhead
        small = bytearray()
        put = small.append
        for v in a.tolist():
            while v >= 0x80:
                put((v & 0x7F) | 0x80)
                v >>= 7
            put(v)
        return bytes(small)
    nb = np.ones(n, dtype=np.int64)
    x = a >> np.uint64(7)
    while True:
        nz = x != 0
        if not nz.any():
            break
        nb += nz
        x >>= np.uint64(7)
    ends = np.cumsum(nb)
    starts = ends - nb
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    for j in range(int(nb.max())):
        m = nb > j
        b = ((a[m] >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        b |= (nb[m] - 1 > j).astype(np.uint8) << np.uint8(7)
        out[starts[m] + j] = b
    return out.tobytes()


def uvarint_size(a: _U64) -> int:
    """Total bytes :func:`uvarint_encode` would write for ``a``."""
    a = np.asarray(a, dtype=np.uint64)
    total = len(a)
    for j in range(1, _MAX_VARINT):
        total += int(np.count_nonzero(a >> np.uint64(7 * j)))
    return total


def _uvarint1(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def uvarint_decode(buf: npt.NDArray[np.uint8], count: int) -> tuple[_U64, int]:
    """Decode ``count`` varints from the start of ``buf``; returns the values and the bytes consumed."""
    if count == 0:
        return np.empty(0, dtype=np.uint64), 0
    # Only the first count * 10 bytes can matter.
    head = buf[: count * _MAX_VARINT]
    term = np.flatnonzero(head < 0x80)
    if len(term) < count:
        raise CodecError("truncated varint column")
    ends = term[:count] + 1
    starts = np.empty(count, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1]
    nb = ends - starts
    if int(nb.max()) > _MAX_VARINT:
        raise CodecError("varint longer than 10 bytes")
    ten = nb == _MAX_VARINT
    if ten.any() and int(head[starts[ten] + 9].max()) > 1:
        raise CodecError("varint overflows 64 bits")
    vals = np.zeros(count, dtype=np.uint64)
    for j in range(int(nb.max())):
        m = nb > j
        vals[m] |= (head[starts[m] + j] & np.uint8(0x7F)).astype(np.uint64) << np.uint64(7 * j)
    return vals, int(ends[-1])


class Writer:
    """Appends fields to a growing byte string."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def uint(self, v: int) -> None:
        if not 0 <= v < 2**64:
            raise CodecError(f"cannot write {v} as an unsigned 64-bit varint")
        self._parts.append(_uvarint1(v))

    def sint(self, v: int) -> None:
        if not -(2**63) <= v < 2**63:
            raise CodecError(f"cannot write {v} as a signed 64-bit varint")
        self._parts.append(_uvarint1((v << 1) ^ (v >> 63)))

    def byte(self, v: int) -> None:
        self._parts.append(bytes((v,)))

    def f64(self, v: float) -> None:
        self._parts.append(struct.pack("<d", v))

    def blob(self, data: bytes) -> None:
        """Length-prefixed bytes."""
        self.uint(len(data))
        self._parts.append(data)

    def text(self, s: str) -> None:
        self.blob(s.encode("utf-8"))

    def raw(self, data: bytes) -> None:
        self._parts.append(data)

    def uints(self, a: _U64) -> None:
        self._parts.append(uvarint_encode(a))

    def sints(self, a: _I64) -> None:
        self._parts.append(uvarint_encode(zigzag(a)))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Reads fields back, checking every length against what is left."""

    __slots__ = ("_arr", "_buf", "_pos")

    def __init__(self, buf: bytes) -> None:
        self._buf = buf
        self._arr = np.frombuffer(buf, dtype=np.uint8)
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._buf) - self._pos

    @property
    def pos(self) -> int:
        return self._pos

    def span(self, start: int, end: int) -> bytes:
        """The bytes between two positions already read."""
        return self._buf[start:end]

    def at_end(self) -> bool:
        return self._pos == len(self._buf)

    def uint(self) -> int:
        buf = self._buf
        pos = self._pos
        end = min(len(buf), pos + _MAX_VARINT)
        result = 0
        shift = 0
        while pos < end:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                if result >= 2**64:
                    raise CodecError("varint overflows 64 bits")
                self._pos = pos
                return result
            shift += 7
        raise CodecError("truncated or overlong varint")

    def sint(self) -> int:
        u = self.uint()
        return (u >> 1) ^ -(u & 1)

    def count(self, limit: int) -> int:
        """An unsigned count that must not exceed ``limit`` (guards allocations against hostile input)."""
        n = self.uint()
        if n > limit:
            raise CodecError(f"count {n} exceeds what the payload can hold ({limit})")
        return n

    def byte(self) -> int:
        if self._pos >= len(self._buf):
            raise CodecError("truncated payload")
        b = self._buf[self._pos]
        self._pos += 1
        return b

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining:
            raise CodecError("truncated payload")
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def f64(self) -> float:
        v: float = struct.unpack("<d", self.take(8))[0]
        return v

    def blob(self) -> bytes:
        return self.take(self.count(self.remaining))

    def text(self) -> str:
        raw = self.blob()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"invalid UTF-8 in a name: {exc}") from None

    def uints(self, n: int) -> _U64:
        if n > self.remaining:
            raise CodecError("truncated varint column")
        vals, used = uvarint_decode(self._arr[self._pos :], n)
        self._pos += used
        return vals

    def sints(self, n: int) -> _I64:
        return unzigzag(self.uints(n))
