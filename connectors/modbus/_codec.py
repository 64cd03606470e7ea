"""Registers ⇄ values, exactly as EdgeX device-modbus decodes and encodes them.

- Registers are big-endian 16-bit words; multi-register values are big-endian (``ABCD``).
- ``isByteSwap`` swaps the bytes of each word (``BADC``), ``isWordSwap`` the two words (``CDAB``),
  both together give ``DCBA``. Only 32-bit raw values are swapped; 16- and 64-bit never are.
- ``rawType`` Int16/Uint16 under ``valueType`` Float32/Float64, and Int32 under Float64, are decoded
  as the raw integer and cast to float, before any transform of the profile.
- ``String`` spans ``stringRegisterSize`` registers, two bytes each; NUL bytes are trimmed from both
  ends on read, writes are padded with NUL or truncated to the size.
- ``Bool`` is a coil or discrete input, or one bit of a register (bit 0 is the least significant).

Our own code on :mod:`struct`, not pymodbus's ``convert_from_registers``: it has no byte swap, and its
signature has moved between releases.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

from connectors.modbus._config import Point, numeric_struct
from edgeflow.errors import WriteRejectedError
from edgeflow.model import ValueType

__all__ = ["decode", "encode_registers", "registers_to_bytes", "swap32"]

_INT_RANGES = {
    ValueType.INT16: (-(2**15), 2**15 - 1),
    ValueType.UINT16: (0, 2**16 - 1),
    ValueType.INT32: (-(2**31), 2**31 - 1),
    ValueType.UINT32: (0, 2**32 - 1),
    ValueType.INT64: (-(2**63), 2**63 - 1),
    ValueType.UINT64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38

_STRUCTS: dict[ValueType, struct.Struct] = {
    t: numeric_struct(t)
    for t in (
        ValueType.INT16,
        ValueType.UINT16,
        ValueType.INT32,
        ValueType.UINT32,
        ValueType.INT64,
        ValueType.UINT64,
        ValueType.FLOAT32,
        ValueType.FLOAT64,
    )
}


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    return struct.pack(f">{len(registers)}H", *registers)


def swap32(data: bytes, byte_swap: bool, word_swap: bool) -> bytes:
    """EdgeX ``swap32BitDataBytes``: byte swap first, then word swap; the same function encodes."""
    if byte_swap:
        data = bytes((data[1], data[0], data[3], data[2]))
    if word_swap:
        data = data[2:4] + data[0:2]
    return data


def _swapped(point: Point) -> bool:
    return (point.byte_swap or point.word_swap) and point.raw_type in (
        ValueType.INT32,
        ValueType.UINT32,
        ValueType.FLOAT32,
    )


def decode(point: Point, data: bytes, offset: int) -> Any:
    """The value of a register point from ``data`` (the bytes of a block of registers), starting at
    register ``offset`` of that block, cast to the point's value type."""
    start = offset * 2
    chunk = data[start : start + point.count * 2]
    vt = point.value_type
    if vt == ValueType.BOOL:
        word = (chunk[0] << 8) | chunk[1]
        return bool((word >> (point.bit or 0)) & 1)
    if vt == ValueType.STRING:
        return chunk.strip(b"\x00").decode("utf-8", errors="replace")
    if _swapped(point):
        chunk = swap32(chunk, point.byte_swap, point.word_swap)
    value = _STRUCTS[point.raw_type].unpack(chunk)[0]
    if vt.is_float:
        return float(value)
    return value


def encode_registers(point: Point, value: Any) -> list[int]:
    """The registers that hold ``value`` for a register point (not a bit of a register)."""
    vt = point.value_type
    if vt == ValueType.STRING:
        raw = str(value).encode("utf-8")[: point.count * 2].ljust(point.count * 2, b"\x00")
        return list(struct.unpack(f">{point.count}H", raw))
    raw_type = point.raw_type
    if raw_type.is_integer:
        number = _to_int(point, value)
        lo, hi = _INT_RANGES[raw_type]
        if not lo <= number <= hi:
            raise WriteRejectedError(
                f"{value!r} does not fit the register type {raw_type.value} ({lo}..{hi})",
                resource=point.resource,
                address=point.where(),
            )
        packed = _STRUCTS[raw_type].pack(number)
    else:
        number_f = _to_float(point, value)
        if raw_type == ValueType.FLOAT32 and math.isfinite(number_f) and abs(number_f) > _FLOAT32_MAX:
            raise WriteRejectedError(
                f"{value!r} is out of the Float32 range", resource=point.resource, address=point.where()
            )
        packed = _STRUCTS[raw_type].pack(number_f)
    if _swapped(point):
        packed = swap32(packed, point.byte_swap, point.word_swap)
    return list(struct.unpack(f">{len(packed) // 2}H", packed))


def _to_int(point: Point, value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise WriteRejectedError(
                f"{value!r} cannot be written as {point.raw_type.value}",
                resource=point.resource,
                address=point.where(),
            )
        # A float value over an integer rawType is the inverse-scaled value (21.7 / 0.1 = 216.99999999999997):
        # round to the nearest integer, halves away from zero (EdgeX truncates, and writes 216).
        return int(math.copysign(math.floor(abs(value) + 0.5), value))
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            pass
    raise WriteRejectedError(
        f"{value!r} is not a number for {point.raw_type.value}",
        resource=point.resource,
        address=point.where(),
    )


def _to_float(point: Point, value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise WriteRejectedError(
        f"{value!r} is not a number for {point.raw_type.value}",
        resource=point.resource,
        address=point.where(),
    )


def to_bool(point: Point, value: Any) -> bool:
    """A Bool write's value; accepts bools, 0/1 and 'true'/'false'."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise WriteRejectedError(f"{value!r} is not a Bool", resource=point.resource, address=point.where())
