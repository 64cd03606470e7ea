"""Values from payloads, checked against the resource's ``valueType``.

What device firmware sends is JSON (numbers, strings, booleans, arrays, objects) or, for a Binary
resource, raw bytes. Each value becomes the Python type the resource's ``valueType`` asks for, as
device-mqtt's ``newResult`` does with ``spf13/cast`` -- but without its silent truncation: ``3.7``
is not an Int16, ``300`` not a Uint8, ``true`` not a Float64. Strings are read as EdgeX value
strings (``"1.500000e+00"``, ``"[1, 2]"``, ``"true"``). Anything else is a
:class:`~connectors.mqtt._rejects.PayloadError` with reason ``wrong_type``.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from typing import Any, Final

from connectors.mqtt._rejects import PayloadError, Reason
from edgeflow.errors import ValueFormatError
from edgeflow.model import ValueType, parse_value
from edgeflow.profiles import DeviceResource

__all__ = ["Coercer", "coerce", "coercer"]

_F32_MAX: Final = 3.4028234663852886e38

#: A resource's value check: raw value in, typed value out (or :class:`PayloadError`).
Coercer = Callable[[Any], Any]


def _wrong(resource: DeviceResource, raw: Any, why: str = "") -> PayloadError:
    shown = repr(raw)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    vt = resource.properties.value_type.value
    return PayloadError(
        Reason.WRONG_TYPE, f"resource {resource.name!r} ({vt}): {shown} {why or 'is not a ' + vt}"
    )


def _scalar(resource: DeviceResource, vt: ValueType, raw: Any) -> Any:
    if vt.is_float:
        if type(raw) is float or (type(raw) is int):
            f = float(raw)
        elif isinstance(raw, str):
            f = _parsed(resource, vt, raw)
        else:
            raise _wrong(resource, raw)
        if vt is ValueType.FLOAT32 and math.isfinite(f) and abs(f) > _F32_MAX:
            raise _wrong(resource, raw, "overflows Float32")
        return f
    if vt.is_integer:
        if type(raw) is int:
            i = raw
        elif type(raw) is float and math.isfinite(raw) and raw.is_integer():
            i = int(raw)
        elif isinstance(raw, str):
            return _parsed(resource, vt, raw)
        else:
            raise _wrong(resource, raw)
        lo, hi = vt.int_range
        if not lo <= i <= hi:
            raise _wrong(resource, raw, f"is out of range [{lo}, {hi}]")
        return i
    if vt is ValueType.BOOL:
        if type(raw) is bool:
            return raw
        if type(raw) is int and raw in (0, 1):
            return raw == 1
        if isinstance(raw, str):
            return _parsed(resource, vt, raw)
        raise _wrong(resource, raw)
    if vt is ValueType.STRING:
        if isinstance(raw, str):
            return raw
        if type(raw) is bool:
            return "true" if raw else "false"
        if type(raw) in (int, float):
            return str(raw)
        raise _wrong(resource, raw)
    raise _wrong(resource, raw, "cannot be read")  # pragma: no cover - every scalar type is above


def _parsed(resource: DeviceResource, vt: ValueType, text: str) -> Any:
    try:
        return parse_value(vt, text)
    except ValueFormatError as exc:
        raise _wrong(resource, text, f"does not parse: {exc}") from None


def coerce(resource: DeviceResource, raw: Any) -> Any:
    """``raw`` (a decoded JSON value, or bytes for a Binary resource) as a value of ``resource``'s
    type; raises :class:`PayloadError` (``wrong_type``)."""
    vt = resource.properties.value_type
    t = type(raw)
    if t is float and vt is ValueType.FLOAT64:  # the common case first
        return raw
    if t is str and vt is ValueType.STRING:
        return raw
    if raw is None:
        raise _wrong(resource, raw, "(null) is not a value")
    if vt is ValueType.BINARY:
        if isinstance(raw, bytes | bytearray):
            return bytes(raw)
        if isinstance(raw, str):
            try:
                return base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise _wrong(resource, raw, "is not base64") from None
        if isinstance(raw, list) and all(type(b) is int and 0 <= b <= 255 for b in raw):
            return bytes(raw)
        raise _wrong(resource, raw)
    if vt is ValueType.OBJECT:
        if isinstance(raw, bytes | bytearray):
            raise _wrong(resource, raw)
        return raw
    if vt is ValueType.OBJECT_ARRAY:
        if not isinstance(raw, list):
            raise _wrong(resource, raw, "is not an array")
        return raw
    if vt.is_array:
        if isinstance(raw, str):
            return _parsed(resource, vt, raw)
        if not isinstance(raw, list):
            raise _wrong(resource, raw, "is not an array")
        el = vt.element
        return [_scalar(resource, el, v) for v in raw]
    if isinstance(raw, bytes | bytearray):
        raise _wrong(resource, raw)
    return _scalar(resource, vt, raw)


def coercer(resource: DeviceResource) -> Coercer:
    """:func:`coerce` for one resource, with the common case of its type tried first."""
    vt = resource.properties.value_type

    def general(raw: Any) -> Any:
        return coerce(resource, raw)

    if vt is ValueType.FLOAT64:

        def float64(raw: Any) -> Any:
            return raw if type(raw) is float else coerce(resource, raw)

        return float64
    if vt is ValueType.FLOAT32:

        def float32(raw: Any) -> Any:
            return raw if type(raw) is float and -_F32_MAX <= raw <= _F32_MAX else coerce(resource, raw)

        return float32
    if vt is ValueType.STRING:

        def string(raw: Any) -> Any:
            return raw if type(raw) is str else coerce(resource, raw)

        return string
    return general
