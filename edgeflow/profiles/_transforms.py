"""EdgeX resource transforms: what a device service does to a value between the driver and the reading.

Read (``edgexfoundry/device-sdk-go@v3.1.1:internal/transformer/transformresult.go``): NaN check, then
**mask → shift → base → scale → offset**, each step skipped when its property is absent or has its
default (mask 0, shift 0, base 0, scale 1, offset 0). Then the assertion check, then the command's
``mappings``. Write (``transformparam.go``): minimum/maximum check, then offset⁻¹ → scale⁻¹ → base⁻¹.

EdgeX mode reproduces the Go arithmetic bit for bit: the result keeps the resource's own type; the
float64 result of each step must fit that type (and be integral for integer types) or the reading
becomes the String ``"overflow"``; integer types multiply and add by the **truncated** factor
(``v * int16(scale)``: ``scale: 0.1`` turns 10 into 0, and 3 into "overflow" because 0.3 is not
integral); Float32 arithmetic rounds to float32.

Shift conventions (:class:`ShiftConvention`): ``v3`` is device-sdk-go v3.1.1 to v4.0.0 — positive shift
= **left**, mask and shift on unsigned integers only, writes neither shift nor mask. ``v4`` is v4.0.1+
(device-sdk-go PR #1736) — positive = **right**, mask and shift on every integer type, writes shift back
(left) and then mask.

Float mode (:attr:`TransformMode.FLOAT`) is edgeflow's own: base, scale and offset in float64, so an
integer register with ``scale: 0.1`` reads as a Float64 ``2.5`` rather than EdgeX's truncated integer.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from edgeflow.errors import ValueFormatError, WriteRejectedError
from edgeflow.model import ValueType, format_value, parse_value

if TYPE_CHECKING:
    from edgeflow.profiles._models import DeviceCommand, DeviceProfile, DeviceResource, ResourceProperties

__all__ = [
    "NAN",
    "OVERFLOW",
    "ReadPlan",
    "ShiftConvention",
    "TransformMode",
    "TransformResult",
    "apply_mappings",
    "check_assertion",
    "check_write",
    "go_value_string",
    "process_read",
    "read_value_type",
    "transform_read",
    "transform_write",
]

OVERFLOW: Final = "overflow"
NAN: Final = "NaN"

_MAX_FLOAT32: Final = 3.4028234663852886e38
_UNSIGNED: Final = frozenset({ValueType.UINT8, ValueType.UINT16, ValueType.UINT32, ValueType.UINT64})
_BITS: Final = {
    ValueType.UINT8: 8,
    ValueType.INT8: 8,
    ValueType.UINT16: 16,
    ValueType.INT16: 16,
    ValueType.UINT32: 32,
    ValueType.INT32: 32,
    ValueType.UINT64: 64,
    ValueType.INT64: 64,
}


class ShiftConvention(StrEnum):
    """Which device-sdk-go's ``shift`` semantics apply (see the module docstring)."""

    V3 = "v3"
    V4 = "v4"


class TransformMode(StrEnum):
    """``edgex``: device-sdk-go's typed arithmetic. ``float``: base/scale/offset in float64."""

    EDGEX = "edgex"
    FLOAT = "float"


@dataclass(frozen=True, slots=True)
class TransformResult:
    """A transformed value and its value type. ``special`` is ``"overflow"`` or ``"NaN"`` when the
    transform failed the EdgeX way; ``value`` is then that text and ``value_type`` String.

    :func:`process_read` also sets ``mapped`` (a ``mappings`` hit turned the value into its String
    label) and ``assertion_failed`` (EdgeX then drops the whole event and sets the device DOWN)."""

    value: Any
    value_type: ValueType
    special: str | None = None
    mapped: bool = False
    assertion_failed: bool = False

    @classmethod
    def failed(cls, special: str) -> TransformResult:
        return cls(special, ValueType.STRING, special)


class _Overflow(Exception):
    """A step's float64 result does not fit the resource's type (EdgeX ``KindOverflowError``)."""


# --------------------------------------------------------------------------------------------------
# Go arithmetic helpers
# --------------------------------------------------------------------------------------------------


_F32: Final = struct.Struct("<f")


def _f32(x: float) -> float:
    """``float32(x)`` as a Python float, rounded to nearest (±Inf when out of range, as Go does)."""
    try:
        return float(_F32.unpack(_F32.pack(x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def _wrap(vt: ValueType, i: int) -> int:
    """Two's-complement wrap of ``i`` into integer type ``vt`` (Go's integer overflow)."""
    bits = _BITS[vt]
    i &= (1 << bits) - 1
    if vt not in _UNSIGNED and i >= 1 << (bits - 1):
        i -= 1 << bits
    return i


def _to_int(vt: ValueType, f: float) -> int:
    """Go's float64 → integer conversion on amd64: truncate (out of int64 range: the "integer
    indefinite" MinInt64), then keep the low bits of the target type."""
    if vt is ValueType.UINT64 and 0 <= f < 2.0**64:
        return math.trunc(f)
    if not math.isfinite(f) or not -(2.0**63) <= f < 2.0**63:
        return _wrap(vt, -(2**63))
    return _wrap(vt, math.trunc(f))


def _in_range(vt: ValueType, f: float) -> bool:
    """``checkTransformedValueInRange`` of device-sdk-go."""
    if vt is ValueType.FLOAT64:
        return math.isfinite(f)
    if vt is ValueType.FLOAT32:
        return not math.isnan(f) and abs(f) <= _MAX_FLOAT32
    if math.isnan(f) or math.isinf(f):
        return False
    lo, hi = vt.int_range
    # Go compares against the float64 of the bound: MaxInt64 and MaxUint64 round up to 2**63 and 2**64.
    return float(lo) <= f <= float(hi) and math.trunc(f) == f


def _go_pow(base: float, x: float) -> float:
    try:
        return math.pow(base, x)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


def _go_log(x: float) -> float:
    if x == 0:
        return -math.inf
    if x < 0 or math.isnan(x):
        return math.nan
    return math.log(x)


def _go_div(a: int, b: int) -> int:
    """Go's truncating integer division."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _as_number(vt: ValueType, value: Any) -> int | float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise ValueFormatError(f"{vt.value} value must be a number, not {type(value).__name__}")
    if vt.is_integer:
        if isinstance(value, float | np.floating) and not float(value).is_integer():
            raise ValueFormatError(f"{vt.value} value must be an integer, not {value!r}")
        i = int(value)
        lo, hi = vt.int_range
        if not lo <= i <= hi:
            raise ValueFormatError(f"{i} is out of range for {vt.value} [{lo}, {hi}]")
        return i
    f = float(value)
    return _f32(f) if vt is ValueType.FLOAT32 else f


def _shift(vt: ValueType, v: int, shift: int, *, left_if_positive: bool) -> int:
    left = (shift > 0) == left_if_positive
    n = shift if shift > 0 else -shift
    bits = _BITS[vt]
    if bits < 64:  # Go converts the count to int8/int16/int32 first
        n &= (1 << bits) - 1
        if n >= 1 << (bits - 1):
            n -= 1 << bits
    if n < 0:
        raise ValueFormatError(f"shift {shift} is not a valid shift count for {vt.value}")
    if n >= bits:
        return 0 if left or v >= 0 else -1
    return _wrap(vt, v << n) if left else v >> n


def _step(vt: ValueType, v: int | float, factor: float, op: str) -> int | float:
    """One of base/scale/offset (``op`` in ``pow log mul div add sub``), exactly as device-sdk-go."""
    fv = float(v)
    if op == "pow":
        f = _go_pow(factor, fv)
    elif op == "log":
        f = _go_log(fv) / math.log(factor) if factor > 0 else math.nan
    elif op == "mul":
        f = fv * factor
    elif op == "div":
        f = fv / factor if factor != 0 else (math.nan if fv == 0 else math.copysign(math.inf, fv))
    elif op == "add":
        f = fv + factor
    else:
        f = fv - factor
    if not _in_range(vt, f):
        raise _Overflow
    if op in ("pow", "log"):
        if vt.is_integer:
            return _to_int(vt, f)
        return _f32(f) if vt is ValueType.FLOAT32 else f
    if vt.is_integer:
        k = _to_int(vt, factor)
        i = int(v)
        if op == "mul":
            return _wrap(vt, i * k)
        if op == "div":
            if k == 0:
                raise ValueFormatError(f"{op} by {factor} truncates to 0 in {vt.value} (EdgeX would panic)")
            return _wrap(vt, _go_div(i, k))
        return _wrap(vt, i + k if op == "add" else i - k)
    if vt is ValueType.FLOAT32:
        a, b = float(v), _f32(factor)
        if op == "mul":
            return _f32(a * b)
        if op == "div":
            return _f32(a / b) if b != 0 else _f32(f)
        return _f32(a + b if op == "add" else a - b)
    return f


def _active(p: ResourceProperties) -> tuple[int, int, float, float, float]:
    return (p.mask or 0, p.shift or 0, p.base or 0.0, 1.0 if p.scale is None else p.scale, p.offset or 0.0)


def read_value_type(
    resource: DeviceResource, *, mode: TransformMode | str = TransformMode.EDGEX
) -> ValueType:
    """The value type a transformed reading of ``resource`` has (``"overflow"``/``"NaN"`` aside)."""
    vt = resource.properties.value_type
    if TransformMode(mode) is TransformMode.FLOAT and vt.is_integer:
        _, _, base, scale, offset = _active(resource.properties)
        if base != 0 or scale != 1 or offset != 0:
            return ValueType.FLOAT64
    return vt


def transform_read(
    resource: DeviceResource,
    value: Any,
    *,
    shift_convention: ShiftConvention | str = ShiftConvention.V3,
    mode: TransformMode | str = TransformMode.EDGEX,
) -> TransformResult:
    """Apply ``resource``'s mask, shift, base, scale and offset to a raw ``value`` read from a device.

    Non-numeric value types pass through unchanged. A NaN float gives ``TransformResult("NaN")``, a
    result outside the resource's type ``TransformResult("overflow")`` (both String, as EdgeX does).
    A raw value that is not a number of the resource's type raises :class:`ValueFormatError`.
    """
    props = resource.properties
    vt = props.value_type
    if not vt.is_numeric:
        return TransformResult(value, vt)
    conv = ShiftConvention(shift_convention)
    v = _as_number(vt, value)
    if isinstance(v, float) and math.isnan(v):
        return TransformResult.failed(NAN)
    mask, shift, base, scale, offset = _active(props)
    bits_ok = vt in _UNSIGNED or (conv is ShiftConvention.V4 and vt.is_integer)
    if bits_ok:
        if mask != 0:
            v = _wrap(vt, int(v) & (mask & ((1 << _BITS[vt]) - 1)))
        if shift != 0:
            v = _shift(vt, int(v), shift, left_if_positive=conv is ShiftConvention.V3)
    if TransformMode(mode) is TransformMode.FLOAT:
        return _float_read(resource, v, base, scale, offset)
    try:
        if base != 0:
            v = _step(vt, v, base, "pow")
        if scale != 1:
            v = _step(vt, v, scale, "mul")
        if offset != 0:
            v = _step(vt, v, offset, "add")
    except _Overflow:
        return TransformResult.failed(OVERFLOW)
    return TransformResult(v, vt)


def _float_read(
    resource: DeviceResource, v: int | float, base: float, scale: float, offset: float
) -> TransformResult:
    out_vt = read_value_type(resource, mode=TransformMode.FLOAT)
    if out_vt is not resource.properties.value_type:  # an integer resource that is scaled
        f = float(v)
    elif isinstance(v, int):
        return TransformResult(v, out_vt)
    else:
        f = v
    if base != 0:
        f = _go_pow(base, f)
    f = f * scale + offset
    if math.isnan(f):
        return TransformResult.failed(NAN)
    if out_vt is ValueType.FLOAT32:
        f = _f32(f)
    if not math.isfinite(f):
        return TransformResult.failed(OVERFLOW)
    return TransformResult(f, out_vt)


def transform_write(
    resource: DeviceResource,
    value: Any,
    *,
    shift_convention: ShiftConvention | str = ShiftConvention.V3,
    mode: TransformMode | str = TransformMode.EDGEX,
) -> Any:
    """The raw value to send to the device for a write of ``value`` (the inverse of :func:`transform_read`):
    subtract offset, divide by scale, log to base; with the ``v4`` convention then shift back and mask.

    In float mode an integer resource takes a float ``value`` and the result is rounded to the nearest
    integer. Raises :class:`WriteRejectedError` when the result does not fit the resource's type.
    """
    props = resource.properties
    vt = props.value_type
    if not vt.is_numeric:
        return value
    conv = ShiftConvention(shift_convention)
    mask, shift, base, scale, offset = _active(props)
    try:
        if TransformMode(mode) is TransformMode.FLOAT and read_value_type(resource, mode=mode) is not vt:
            f = (float(value) - offset) / scale
            if base != 0:
                f = _go_log(f) / math.log(base) if base > 0 else math.nan
            if not math.isfinite(f) or not _in_range(vt, float(round(f))):
                raise _Overflow
            v: int | float = round(f)
        else:
            v = _as_number(vt, value)
            if TransformMode(mode) is TransformMode.FLOAT and not vt.is_integer:
                # (an integer resource that reads as its own type has no base/scale/offset to undo: it
                # stays an exact int, so Int64/Uint64 values beyond 2**53 are written unrounded)
                v = _float_write(vt, v, base, scale, offset)
            else:
                if offset != 0:
                    v = _step(vt, v, offset, "sub")
                if scale != 1:
                    v = _step(vt, v, scale, "div")
                if base != 0:
                    v = _step(vt, v, base, "log")
    except _Overflow:
        raise WriteRejectedError(
            f"value {value!r} does not fit {vt.value} after the inverse transform", resource=resource.name
        ) from None
    except ValueFormatError as exc:
        raise WriteRejectedError(str(exc), resource=resource.name) from None
    if conv is ShiftConvention.V4 and vt.is_integer:
        if shift != 0:
            v = _shift(vt, int(v), -shift, left_if_positive=False)
        if mask != 0:
            v = _wrap(vt, int(v) & mask)
    return v


def _float_write(vt: ValueType, v: int | float, base: float, scale: float, offset: float) -> int | float:
    f = (float(v) - offset) / scale
    if base != 0:
        f = _go_log(f) / math.log(base) if base > 0 else math.nan
    if vt is ValueType.FLOAT32:
        f = _f32(f)
    if not _in_range(vt, f):
        raise _Overflow
    return f


def check_write(
    resource: DeviceResource, value: Any, *, mode: TransformMode | str = TransformMode.EDGEX
) -> Any:
    """Check a value a user wants to write to ``resource``; return it typed (strings are parsed as
    EdgeX value strings). Raises :class:`WriteRejectedError` for a read-only resource, a value of the
    wrong type, or one outside ``minimum``/``maximum`` (compared as device-sdk-go does: the bound is
    converted to the resource's type first, so an integer bound is truncated). In ``float`` mode a scaled
    integer resource reads as Float64, so a write takes a Float64 in engineering units too."""
    props = resource.properties
    vt = read_value_type(resource, mode=mode)
    if not props.writable:
        raise WriteRejectedError(
            f"resource is read-only (readWrite {props.read_write})", resource=resource.name
        )
    try:
        if vt is ValueType.BINARY:
            if not isinstance(value, bytes | bytearray):
                raise ValueFormatError(f"Binary value must be bytes, not {type(value).__name__}")
            typed: Any = bytes(value)
        elif vt in (ValueType.OBJECT, ValueType.OBJECT_ARRAY):
            typed = value
        else:
            raw = parse_value(vt, value) if isinstance(value, str) and vt is not ValueType.STRING else value
            format_value(vt, raw)  # raises on a wrong type, an out-of-range integer or Float32
            typed = int(raw) if vt.is_integer else float(raw) if vt.is_float else raw
    except ValueFormatError as exc:
        raise WriteRejectedError(f"not a valid {vt.value}: {exc}", resource=resource.name) from None
    if vt.is_numeric:
        if props.maximum is not None and typed > _bound(vt, props.maximum):
            raise WriteRejectedError(f"{typed!r} is above maximum {props.maximum}", resource=resource.name)
        if props.minimum is not None and typed < _bound(vt, props.minimum):
            raise WriteRejectedError(f"{typed!r} is below minimum {props.minimum}", resource=resource.name)
    return typed


def _bound(vt: ValueType, bound: float) -> float:
    if vt.is_integer:
        return float(math.trunc(bound)) if math.isfinite(bound) else bound
    return _f32(bound) if vt is ValueType.FLOAT32 else bound


# --------------------------------------------------------------------------------------------------
# Assertion and mappings
# --------------------------------------------------------------------------------------------------


def _go_float(f: float, vt: ValueType) -> str:
    """Go's ``%v`` of a float32/float64: shortest digits, ``%e`` form when exp < -4 or exp >= 6
    (``strconv/ftoa.go``: "if precision was the shortest possible, use precision 6 for this decision")."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    x: Any = np.float32(f) if vt is ValueType.FLOAT32 else np.float64(f)
    sci = np.format_float_scientific(x, unique=True, trim="-")
    mant, _, exp_text = sci.partition("e")
    exp = int(exp_text)
    neg = mant.startswith("-")
    digits = mant.lstrip("-").replace(".", "")
    sign = "-" if neg else ""
    if exp < -4 or exp >= 6:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if len(digits) <= exp + 1:
        return sign + digits + "0" * (exp + 1 - len(digits))
    return f"{sign}{digits[: exp + 1]}.{digits[exp + 1 :]}"


def go_value_string(value_type: ValueType, value: Any) -> str:
    """The value as device-sdk-go's ``CommandValue.ValueToString`` (Go ``%v``) prints it: the key that
    ``mappings`` and ``assertion`` are compared against (``true``, ``42``, ``25.5``, ``1e+21``)."""
    vt = value_type
    if vt.is_array and isinstance(value, list | tuple):
        return "[" + " ".join(go_value_string(vt.element, v) for v in value) + "]"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if vt.is_float and isinstance(value, int | float | np.number):
        return _go_float(float(value), vt)
    if isinstance(value, float) and not vt.is_integer:
        return _go_float(value, ValueType.FLOAT64)
    return str(value)


def check_assertion(resource: DeviceResource, result: TransformResult) -> bool:
    """Whether a transformed reading passes the resource's ``assertion`` (no assertion: always). In
    EdgeX a failed assertion drops the event and sets the device's operating state DOWN."""
    assertion = resource.properties.assertion
    if not assertion:
        return True
    return go_value_string(result.value_type, result.value) == assertion


def apply_mappings(command: DeviceCommand | None, resource_name: str, value_str: str) -> str | None:
    """The mapped text for ``value_str`` in ``command``'s resource operation for ``resource_name``, or
    ``None`` when there is no such operation or no mapping for the value (the value then passes through
    unchanged). A hit makes the reading a String with that text."""
    if command is None:
        return None
    for op in command.resource_operations:
        if op.device_resource == resource_name:
            return _lookup(op.mappings, value_str)
    return None


def _lookup(mappings: Mapping[str, str], key: str) -> str | None:
    return mappings.get(key) if mappings else None


def process_read(
    profile: DeviceProfile,
    resource: DeviceResource | str,
    value: Any,
    *,
    command: str | None = None,
    shift_convention: ShiftConvention | str = ShiftConvention.V3,
    mode: TransformMode | str = TransformMode.EDGEX,
    mappings: Mapping[str, str] | None = None,
) -> TransformResult:
    """Everything device-sdk-go does to one raw value on its way to a reading, in its order
    (``CommandValuesToEventDTO``): transforms (:func:`transform_read`), the assertion check, then the
    ``mappings`` of the resource operation (``command``'s, else the profile-wide lookup of
    :meth:`DeviceProfile.mappings_for`). A mapped value becomes a String reading with the label.
    ``mappings``, when given, is that lookup done beforehand (a caller reading the same resources again
    and again looks them up once)."""
    res = profile.resource(resource) if isinstance(resource, str) else resource
    result = transform_read(res, value, shift_convention=shift_convention, mode=mode)
    failed = not check_assertion(res, result)
    if mappings is None:
        mappings = profile.mappings_for(res.name, command)
    label = _lookup(mappings, go_value_string(result.value_type, result.value)) if mappings else None
    if label is not None:
        return TransformResult(label, ValueType.STRING, result.special, mapped=True, assertion_failed=failed)
    if failed:
        return TransformResult(result.value, result.value_type, result.special, assertion_failed=True)
    return result


class ReadPlan:
    """:func:`process_read` for one resource of one profile (and one command), worked out once.

    Calling it gives exactly what ``process_read`` gives for the same value, without looking up the
    resource's transforms, assertion and mappings again: the hot path of pushed readings (many
    messages of few resources). A resource with no transform step, no assertion and no mappings takes
    a short path that only checks and (Float32) rounds the value."""

    __slots__ = (
        "_conv",
        "_f32",
        "_float",
        "_floaty",
        "_inty",
        "_mappings",
        "_mode",
        "_numeric",
        "_plain",
        "_resource",
        "_vt",
    )

    def __init__(
        self,
        profile: DeviceProfile,
        resource: DeviceResource | str,
        *,
        command: str | None = None,
        shift_convention: ShiftConvention | str = ShiftConvention.V3,
        mode: TransformMode | str = TransformMode.EDGEX,
    ) -> None:
        res = profile.resource(resource) if isinstance(resource, str) else resource
        self._resource = res
        self._vt = res.properties.value_type
        self._conv = ShiftConvention(shift_convention)
        self._mode = TransformMode(mode)
        self._float = self._mode is TransformMode.FLOAT
        self._numeric = self._vt.is_numeric
        self._mappings = profile.mappings_for(res.name, command)
        identity = _active(res.properties) == (0, 0, 0.0, 1.0, 0.0)
        self._plain = identity and not res.properties.assertion and not self._mappings
        self._floaty = self._plain and self._vt.is_float
        # a plain integer resource: an int in the type's range is the reading as is, in either mode
        self._inty = self._vt.int_range if self._plain and self._vt.is_integer else None
        self._f32 = self._vt is ValueType.FLOAT32

    def apply(self, value: Any) -> tuple[Any, ValueType, bool]:
        """``(value, value type, assertion failed)`` of :meth:`__call__`, without building a
        :class:`TransformResult` (a float of a plain Float32/Float64 resource takes a few operations)."""
        if self._floaty and type(value) is float:
            f = _f32(value) if self._f32 else value
            if math.isnan(f):
                return NAN, ValueType.STRING, False
            if self._float:  # _float_read with scale 1, offset 0
                f = f * 1.0 + 0.0
                if self._f32:
                    f = _f32(f)
                if not math.isfinite(f):
                    return OVERFLOW, ValueType.STRING, False
            return f, self._vt, False
        inty = self._inty
        if inty is not None and type(value) is int and inty[0] <= value <= inty[1]:
            return value, self._vt, False
        r = self(value)
        return r.value, r.value_type, r.assertion_failed

    def __call__(self, value: Any) -> TransformResult:
        vt = self._vt
        if self._plain:  # transform_read with every step skipped; no assertion, no mappings
            if not self._numeric:
                return TransformResult(value, vt)
            v = _as_number(vt, value)
            if isinstance(v, float) and math.isnan(v):
                return TransformResult.failed(NAN)
            if self._float:
                return _float_read(self._resource, v, 0.0, 1.0, 0.0)
            return TransformResult(v, vt)
        res = self._resource
        result = transform_read(res, value, shift_convention=self._conv, mode=self._mode)
        failed = not check_assertion(res, result)
        mappings = self._mappings
        label = _lookup(mappings, go_value_string(result.value_type, result.value)) if mappings else None
        if label is not None:
            return TransformResult(
                label, ValueType.STRING, result.special, mapped=True, assertion_failed=failed
            )
        if failed:
            return TransformResult(result.value, result.value_type, result.special, assertion_failed=True)
        return result
