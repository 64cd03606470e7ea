"""OPC-UA built-in types and EdgeX value types: what a node's value becomes in a reading, and what a
written value becomes on the wire.

The adapter hands values over as plain Python: ``bool``, ``int``, ``float``, ``str``, ``bytes``,
``datetime`` (UTC), ``uuid.UUID``, :class:`Status` for a StatusCode, ``dict`` for structures, and lists
of those for arrays. NodeIds, QualifiedNames and LocalizedTexts arrive as their text.

=====================================  =====================================================
OPC-UA built-in type                   EdgeX valueType (default first; others accepted)
=====================================  =====================================================
Boolean                                Bool
SByte, Byte                            Int8, Uint8 (any integer type that holds the value; floats)
Int16 … UInt64                         Int16 … Uint64 (same)
Float, Double                          Float32, Float64 (integer types when the value is whole)
String, XmlElement, LocalizedText,     String
QualifiedName, NodeId, ExpandedNodeId
Guid                                   String (canonical form)
DateTime                               Int64 (ns since the epoch), String (RFC 3339, UTC)
ByteString                             Binary, Uint8Array
StatusCode                             Uint32 (the code), String (its name)
ExtensionObject, DataValue,            Object (a JSON object of the structure's fields)
DiagnosticInfo, Variant
arrays of the above                    <type>Array (BoolArray, Float64Array, StringArray, …);
                                       ObjectArray for arrays of structures and byte strings
=====================================  =====================================================

Every conversion raises ``ValueError`` with a message that says what did not fit; the connector adds
the device, resource and node. Nothing here imports asyncua.
"""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from edgeflow.model import ValueType

__all__ = ["DEFAULT_VALUE_TYPES", "INT_RANGES", "Status", "default_value_type", "from_edgex", "to_edgex"]


@dataclass(frozen=True, slots=True)
class Status:
    """A StatusCode value: its 32-bit code and its name (``BadSensorFailure``)."""

    code: int
    name: str


#: The EdgeX value type each OPC-UA built-in type maps to by default (scalars).
DEFAULT_VALUE_TYPES: dict[str, ValueType] = {
    "Boolean": ValueType.BOOL,
    "SByte": ValueType.INT8,
    "Byte": ValueType.UINT8,
    "Int16": ValueType.INT16,
    "UInt16": ValueType.UINT16,
    "Int32": ValueType.INT32,
    "UInt32": ValueType.UINT32,
    "Int64": ValueType.INT64,
    "UInt64": ValueType.UINT64,
    "Float": ValueType.FLOAT32,
    "Double": ValueType.FLOAT64,
    "String": ValueType.STRING,
    "DateTime": ValueType.INT64,
    "Guid": ValueType.STRING,
    "ByteString": ValueType.BINARY,
    "XmlElement": ValueType.STRING,
    "NodeId": ValueType.STRING,
    "ExpandedNodeId": ValueType.STRING,
    "StatusCode": ValueType.UINT32,
    "QualifiedName": ValueType.STRING,
    "LocalizedText": ValueType.STRING,
    "ExtensionObject": ValueType.OBJECT,
    "DataValue": ValueType.OBJECT,
    "Variant": ValueType.OBJECT,
    "DiagnosticInfo": ValueType.OBJECT,
}

_ARRAYS = {
    ValueType.BOOL: ValueType.BOOL_ARRAY,
    ValueType.INT8: ValueType.INT8_ARRAY,
    ValueType.UINT8: ValueType.UINT8_ARRAY,
    ValueType.INT16: ValueType.INT16_ARRAY,
    ValueType.UINT16: ValueType.UINT16_ARRAY,
    ValueType.INT32: ValueType.INT32_ARRAY,
    ValueType.UINT32: ValueType.UINT32_ARRAY,
    ValueType.INT64: ValueType.INT64_ARRAY,
    ValueType.UINT64: ValueType.UINT64_ARRAY,
    ValueType.FLOAT32: ValueType.FLOAT32_ARRAY,
    ValueType.FLOAT64: ValueType.FLOAT64_ARRAY,
    ValueType.STRING: ValueType.STRING_ARRAY,
}

#: Inclusive ranges of the OPC-UA integer types.
INT_RANGES: dict[str, tuple[int, int]] = {
    "SByte": (-(2**7), 2**7 - 1),
    "Byte": (0, 2**8 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "UInt16": (0, 2**16 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "UInt32": (0, 2**32 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt64": (0, 2**64 - 1),
    "StatusCode": (0, 2**32 - 1),
}

_FLOAT32_MAX = 3.4028234663852886e38
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def default_value_type(builtin: str, array: bool = False) -> ValueType:
    """The EdgeX value type a node of ``builtin`` type reads as when nothing else is said."""
    vt = DEFAULT_VALUE_TYPES.get(builtin, ValueType.OBJECT)
    if not array:
        return vt
    return _ARRAYS.get(vt, ValueType.OBJECT_ARRAY)


# --------------------------------------------------------------------------------------------------
# reading: OPC-UA value -> the resource's EdgeX value type
# --------------------------------------------------------------------------------------------------


def _utc(d: datetime) -> datetime:
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


def datetime_ns(d: datetime) -> int:
    """Nanoseconds since the epoch of a datetime (naive datetimes are UTC, as asyncua gives them)."""
    delta = _utc(d) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _rfc3339(d: datetime) -> str:
    return _utc(d).isoformat().replace("+00:00", "Z")


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, datetime):
        return _rfc3339(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, bytes | bytearray):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, Status):
        return v.name
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return str(v)


def _what(v: Any) -> str:
    return f"{type(v).__name__} {v!r}" if not isinstance(v, list | dict) else type(v).__name__


def to_edgex(vt: ValueType, value: Any) -> Any:
    """``value`` (plain, as the adapter decodes it) as a value of EdgeX type ``vt``."""
    if vt in (ValueType.OBJECT, ValueType.OBJECT_ARRAY):
        out = _jsonable(value)
        if vt is ValueType.OBJECT_ARRAY and not isinstance(out, list):
            raise ValueError(f"an ObjectArray needs an array, the node holds {_what(value)}")
        return out
    if value is None:
        raise ValueError("the node has no value (Null)")
    if vt.is_array:
        if vt is ValueType.UINT8_ARRAY and isinstance(value, bytes | bytearray):
            return list(value)
        if not isinstance(value, list | tuple):
            raise ValueError(f"{vt.value} needs an array, the node holds {_what(value)}")
        el = vt.element
        return [to_edgex(el, x) for x in value]
    if isinstance(value, list | tuple):
        raise ValueError(f"{vt.value} is a scalar type, the node holds an array of {len(value)}")
    if vt is ValueType.BOOL:
        if isinstance(value, bool):
            return value
        raise ValueError(f"Bool needs a Boolean node, the node holds {_what(value)}")
    if vt.is_integer:
        if isinstance(value, Status):
            n = value.code
        elif isinstance(value, datetime):
            n = datetime_ns(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            n = value
        elif isinstance(value, float) and value.is_integer():
            n = int(value)
        else:
            raise ValueError(f"{vt.value} cannot hold {_what(value)}")
        lo, hi = vt.int_range
        if not lo <= n <= hi:
            raise ValueError(f"{n} is out of range for {vt.value} [{lo}, {hi}]")
        return n
    if vt.is_float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{vt.value} cannot hold {_what(value)}")
        f = float(value)
        if vt is ValueType.FLOAT32 and math.isfinite(f) and abs(f) > _FLOAT32_MAX:
            raise ValueError(f"{value!r} overflows Float32")
        return f
    if vt is ValueType.STRING:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime):
            return _rfc3339(value)
        if isinstance(value, Status):
            return value.name
        if isinstance(value, int | float | uuid.UUID):
            return str(value)
        if isinstance(value, bytes | bytearray):
            return base64.b64encode(bytes(value)).decode("ascii")
        return orjson.dumps(_jsonable(value)).decode()
    if vt is ValueType.BINARY:
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        raise ValueError(f"Binary needs a ByteString node, the node holds {_what(value)}")
    raise ValueError(f"valueType {vt.value} is not supported")  # pragma: no cover - every type above


# --------------------------------------------------------------------------------------------------
# writing: a checked EdgeX value -> the node's own built-in type
# --------------------------------------------------------------------------------------------------

_TEXT_TYPES = {"String", "XmlElement", "LocalizedText", "QualifiedName", "NodeId", "ExpandedNodeId"}


def from_edgex(builtin: str, array: bool, value: Any) -> Any:
    """``value`` (typed as its resource's valueType) as a plain value of the node's built-in type,
    ready for the adapter to wrap in a Variant of that type."""
    if array:
        if builtin == "Byte" and isinstance(value, bytes | bytearray):
            return list(value)
        if not isinstance(value, list | tuple):
            raise ValueError(f"the node holds an array of {builtin}, the value is {_what(value)}")
        return [from_edgex(builtin, False, x) for x in value]
    if isinstance(value, list | tuple) and builtin != "ByteString":
        raise ValueError(f"the node holds one {builtin}, the value is an array of {len(value)}")
    if builtin == "Boolean":
        if isinstance(value, bool):
            return value
        raise ValueError(f"a Boolean node takes true or false, not {_what(value)}")
    if builtin in INT_RANGES:
        if isinstance(value, bool):
            raise ValueError(f"an {builtin} node takes a number, not {value!r}")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"an {builtin} node takes whole numbers, not {value!r}")
            value = int(value)
        if not isinstance(value, int):
            raise ValueError(f"an {builtin} node takes a number, not {_what(value)}")
        lo, hi = INT_RANGES[builtin]
        if not lo <= value <= hi:
            raise ValueError(f"{value} is out of range for the node's type {builtin} [{lo}, {hi}]")
        return value
    if builtin in ("Float", "Double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"a {builtin} node takes a number, not {_what(value)}")
        f = float(value)
        if builtin == "Float" and math.isfinite(f) and abs(f) > _FLOAT32_MAX:
            raise ValueError(f"{value!r} overflows the node's type Float")
        return f
    if builtin in _TEXT_TYPES:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        raise ValueError(f"a {builtin} node takes text, not {_what(value)}")
    if builtin == "DateTime":
        if isinstance(value, datetime):
            return _utc(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return datetime.fromtimestamp(value // 1_000_000_000, UTC).replace(
                microsecond=(value % 1_000_000_000) // 1_000
            )
        if isinstance(value, str):
            try:
                return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
            except ValueError:
                raise ValueError(f"{value!r} is not an RFC 3339 time") from None
        raise ValueError(f"a DateTime node takes ns since the epoch or RFC 3339 text, not {_what(value)}")
    if builtin == "Guid":
        try:
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a GUID") from None
    if builtin == "ByteString":
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, list | tuple) and all(isinstance(b, int) and 0 <= b <= 255 for b in value):
            return bytes(value)
        raise ValueError(f"a ByteString node takes bytes, not {_what(value)}")
    if builtin == "Variant":
        return value  # an abstract DataType (BaseDataType, Number): the value's own type
    raise ValueError(f"edgeflow cannot write a value of built-in type {builtin}")
