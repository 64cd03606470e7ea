"""Readings and events, in two forms.

* :class:`Event` and :class:`Reading` read and write EdgeX v3 JSON exactly (``AddEventRequest`` wrapper,
  ``apiVersion "v3"``, every simple value as a string in EdgeX's formatting, origins in nanoseconds).
  This is what users and the ``edgex-json`` encoding see.
* :class:`ReadingBatch` is the columnar form of the hot path: numpy arrays of origins, values and series
  ids, plus a :class:`SeriesTable` that names each series once. Rules and encoders work on it.

Converting between the two is :func:`batch_from_events` and :meth:`ReadingBatch.to_events`.

This module imports nothing of edgeflow but its exception tree.
"""

from __future__ import annotations

import base64
import math
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import orjson

from edgeflow.errors import ValueFormatError

__all__ = [
    "API_VERSION",
    "EXACT_INT",
    "Event",
    "Interpolation",
    "OverflowPolicy",
    "Reading",
    "ReadingBatch",
    "SeriesInfo",
    "SeriesTable",
    "ValueType",
    "batch_from_events",
    "batch_from_readings",
    "batch_from_values",
    "decode_event",
    "encode_add_event_request",
    "format_value",
    "is_numeric_value",
    "normalize_origin",
    "parse_value",
]

API_VERSION: Final = "v3"

#: Integers up to this magnitude are exact in a float64 and ride in the numeric column.
EXACT_INT: Final = 2**53

Interpolation = Literal["hold", "linear"]
"""How the cloud rebuilds a series between the points shipped: ``hold`` (step) or ``linear``. Rules
declare it, encodings carry it."""

OverflowPolicy = Literal["block", "drop-oldest", "drop-newest"]
"""What a bounded queue (a bus subscription, the outbox) does when full: ``block`` the producer, drop
the ``drop-oldest`` queued items to make room, or refuse the new one (``drop-newest``). Every drop is
counted."""


class ValueType(StrEnum):
    """EdgeX v3 ``valueType`` (all 26 values), plus 4.0's ``ObjectArray``."""

    BOOL = "Bool"
    STRING = "String"
    UINT8 = "Uint8"
    UINT16 = "Uint16"
    UINT32 = "Uint32"
    UINT64 = "Uint64"
    INT8 = "Int8"
    INT16 = "Int16"
    INT32 = "Int32"
    INT64 = "Int64"
    FLOAT32 = "Float32"
    FLOAT64 = "Float64"
    BINARY = "Binary"
    BOOL_ARRAY = "BoolArray"
    STRING_ARRAY = "StringArray"
    UINT8_ARRAY = "Uint8Array"
    UINT16_ARRAY = "Uint16Array"
    UINT32_ARRAY = "Uint32Array"
    UINT64_ARRAY = "Uint64Array"
    INT8_ARRAY = "Int8Array"
    INT16_ARRAY = "Int16Array"
    INT32_ARRAY = "Int32Array"
    INT64_ARRAY = "Int64Array"
    FLOAT32_ARRAY = "Float32Array"
    FLOAT64_ARRAY = "Float64Array"
    OBJECT = "Object"
    OBJECT_ARRAY = "ObjectArray"

    @classmethod
    def parse(cls, text: str) -> ValueType:
        """Parse a value type name, case-insensitively (profiles in the wild write ``float32``)."""
        found = _BY_LOWER.get(text.strip().lower())
        if found is None:
            raise ValueFormatError(f"unknown valueType {text!r}; expected one of {', '.join(cls)}")
        return found

    @property
    def is_array(self) -> bool:
        return self.value.endswith("Array")

    @property
    def element(self) -> ValueType:
        """The element type of an array type; a scalar type is its own element."""
        return ValueType(self.value[: -len("Array")]) if self.is_array else self

    @property
    def is_integer(self) -> bool:
        return self in _INT_RANGES

    @property
    def is_float(self) -> bool:
        return self in (ValueType.FLOAT32, ValueType.FLOAT64)

    @property
    def is_numeric(self) -> bool:
        """Integers and floats: the types EdgeX transforms and deadbands apply to."""
        return self.is_integer or self.is_float

    @property
    def int_range(self) -> tuple[int, int]:
        """Inclusive range of an integer type."""
        try:
            return _INT_RANGES[self]
        except KeyError:
            raise ValueFormatError(f"{self.value} is not an integer type") from None


_BY_LOWER: Final = {vt.value.lower(): vt for vt in ValueType}
_INT_RANGES: Final[dict[ValueType, tuple[int, int]]] = {
    ValueType.UINT8: (0, 2**8 - 1),
    ValueType.UINT16: (0, 2**16 - 1),
    ValueType.UINT32: (0, 2**32 - 1),
    ValueType.UINT64: (0, 2**64 - 1),
    ValueType.INT8: (-(2**7), 2**7 - 1),
    ValueType.INT16: (-(2**15), 2**15 - 1),
    ValueType.INT32: (-(2**31), 2**31 - 1),
    ValueType.INT64: (-(2**63), 2**63 - 1),
}


# --------------------------------------------------------------------------------------------------
# EdgeX value strings
# --------------------------------------------------------------------------------------------------


def _format_float(v: float) -> str:
    """Go's ``%e``: six digits after the point; ``NaN``, ``+Inf``, ``-Inf`` spelt as Go does."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return format(v, "e")


def _format_scalar(vt: ValueType, value: Any) -> str:
    if vt is ValueType.BOOL:
        if not isinstance(value, bool | np.bool_):
            raise ValueFormatError(f"Bool value must be a bool, not {type(value).__name__}")
        return "true" if value else "false"
    if vt.is_float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueFormatError(f"{vt.value} value must be a number, not {type(value).__name__}")
        f = float(value)
        if vt is ValueType.FLOAT32 and math.isfinite(f) and abs(f) > 3.4028234663852886e38:
            raise ValueFormatError(f"{value!r} overflows Float32")
        return _format_float(f)
    if vt.is_integer:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            if isinstance(value, float | np.floating) and float(value).is_integer():
                value = int(value)
            else:
                raise ValueFormatError(f"{vt.value} value must be an integer, not {value!r}")
        lo, hi = vt.int_range
        if not lo <= int(value) <= hi:
            raise ValueFormatError(f"{value!r} is out of range for {vt.value} [{lo}, {hi}]")
        return str(int(value))
    if vt is ValueType.STRING:
        if not isinstance(value, str):
            raise ValueFormatError(f"String value must be a str, not {type(value).__name__}")
        return value
    raise ValueFormatError(f"{vt.value} has no string form")  # pragma: no cover - guarded by callers


def format_value(vt: ValueType, value: Any) -> str:
    """Format ``value`` as EdgeX writes the ``value`` field of a reading of type ``vt``.

    Floats as Go ``%e`` (``1.5`` → ``"1.500000e+00"``), integers and bools as ``%v``, arrays as
    ``"[1, 2, 3]"`` with element-wise formatting. Binary and Object readings have no string value.
    """
    if vt in (ValueType.BINARY, ValueType.OBJECT, ValueType.OBJECT_ARRAY):
        raise ValueFormatError(f"{vt.value} readings carry no string value")
    if vt.is_array:
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ValueFormatError(f"{vt.value} value must be a sequence, not {type(value).__name__}")
        el = vt.element
        return "[" + ", ".join(_format_scalar(el, v) for v in value) + "]"
    return _format_scalar(vt, value)


_GO_INT: Final = re.compile(r"[+-]?[0-9]+")
_FLOAT_WORDS: Final = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}


def _parse_scalar(vt: ValueType, text: str) -> Any:
    t = text.strip()
    if vt is ValueType.BOOL:
        low = t.lower()
        if low in ("true", "1", "t"):
            return True
        if low in ("false", "0", "f"):
            return False
        raise ValueFormatError(f"{text!r} is not a Bool")
    if vt.is_float:
        word = _FLOAT_WORDS.get(t.lower())
        if word is not None:
            return word
        try:
            f = float(t)
        except ValueError:
            raise ValueFormatError(f"{text!r} is not a {vt.value}") from None
        return f
    if vt.is_integer:
        # strconv.ParseInt: an optional sign and ASCII digits (Python's int() also takes "1_000" and "٣")
        if not _GO_INT.fullmatch(t):
            raise ValueFormatError(f"{text!r} is not an {vt.value}")
        i = int(t, 10)
        lo, hi = vt.int_range
        if not lo <= i <= hi:
            raise ValueFormatError(f"{text!r} is out of range for {vt.value} [{lo}, {hi}]")
        return i
    if vt is ValueType.STRING:
        return text
    raise ValueFormatError(f"{vt.value} has no string form")  # pragma: no cover


def _split_array(text: str) -> list[str]:
    t = text.strip()
    if not (t.startswith("[") and t.endswith("]")):
        raise ValueFormatError(f"{text!r} is not an array value")
    inner = t[1:-1].strip()
    if not inner:
        return []
    if "," in inner:
        return [p.strip() for p in inner.split(",")]
    return inner.split()  # Go's plain %v: "[1 2 3]"


def parse_value(vt: ValueType, text: str) -> Any:
    """Parse an EdgeX value string of type ``vt`` into a Python value (inverse of :func:`format_value`).

    Array strings may use EdgeX's ``", "`` separators, Go's bare ``%v`` spaces, or be JSON.
    """
    if vt in (ValueType.BINARY, ValueType.OBJECT, ValueType.OBJECT_ARRAY):
        raise ValueFormatError(f"{vt.value} readings carry no string value")
    if vt.is_array:
        el = vt.element
        if el is ValueType.STRING:
            try:
                parsed = orjson.loads(text)
                if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
                    return parsed
            except orjson.JSONDecodeError:
                pass
        return [_parse_scalar(el, p) for p in _split_array(text)]
    return _parse_scalar(vt, text)


def normalize_origin(origin: int | float) -> int:
    """Bring an origin to nanoseconds since the epoch.

    EdgeX origins are nanoseconds, but published EdgeX output mixes in milliseconds (a 13-digit reading
    origin inside an event in ns). By magnitude: < 10¹¹ seconds, < 10¹⁴ milliseconds, < 10¹⁷
    microseconds, otherwise nanoseconds.
    """
    if isinstance(origin, bool) or not isinstance(origin, int | float):
        raise ValueFormatError(f"origin must be a number, not {type(origin).__name__}")
    o = abs(origin)
    if o < 1e11:
        return round(origin * 1_000_000_000)
    if o < 1e14:
        return round(origin * 1_000_000)
    if o < 1e17:
        return round(origin * 1_000)
    return int(origin)


# --------------------------------------------------------------------------------------------------
# Reading and Event
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Reading:
    """One EdgeX reading. ``value`` is the typed Python value (``float``, ``int``, ``bool``, ``str``,
    ``list``, ``bytes`` for Binary, any JSON value for Object); :meth:`to_dict` renders it as EdgeX does."""

    device_name: str
    resource_name: str
    profile_name: str
    value_type: ValueType
    value: Any
    origin: int
    units: str = ""
    media_type: str = ""
    tags: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def to_dict(self, *, with_id: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if with_id:
            d["id"] = self.id or str(uuid.uuid4())
        d["origin"] = self.origin
        d["deviceName"] = self.device_name
        d["resourceName"] = self.resource_name
        d["profileName"] = self.profile_name
        d["valueType"] = self.value_type.value
        if self.units:
            d["units"] = self.units
        if self.tags:
            d["tags"] = self.tags
        vt = self.value_type
        if vt is ValueType.BINARY:
            raw = bytes(self.value)
            # Go's encoding/json writes []byte as base64.
            d["binaryValue"] = base64.b64encode(raw).decode("ascii")
            d["mediaType"] = self.media_type
        elif vt in (ValueType.OBJECT, ValueType.OBJECT_ARRAY):
            d["objectValue"] = self.value
        else:
            d["value"] = format_value(vt, self.value)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, event: Mapping[str, Any] | None = None) -> Reading:
        """Parse an EdgeX reading. Names missing from the reading (EdgeX 4.1 strips them) come from
        ``event``; an origin in milliseconds is brought to nanoseconds."""
        ev = event or {}
        try:
            vt = ValueType.parse(str(d["valueType"]))
            origin_raw = d.get("origin", ev.get("origin"))
            if origin_raw is None:
                raise ValueFormatError("reading has no origin")
            value: Any
            if vt is ValueType.BINARY:
                bv = d.get("binaryValue")
                if isinstance(bv, str):
                    value = base64.b64decode(bv, validate=True)
                elif isinstance(bv, list):
                    value = bytes(bv)
                else:
                    raise ValueFormatError("Binary reading has no binaryValue")
            elif vt in (ValueType.OBJECT, ValueType.OBJECT_ARRAY):
                value = d.get("objectValue")
            else:
                raw = d.get("value")
                if not isinstance(raw, str):
                    raise ValueFormatError(f"reading value must be a string, not {raw!r}")
                value = parse_value(vt, raw)
            resource = d.get("resourceName", ev.get("sourceName"))
            return cls(
                device_name=str(d.get("deviceName", ev.get("deviceName", ""))),
                resource_name=str(resource or ""),
                profile_name=str(d.get("profileName", ev.get("profileName", ""))),
                value_type=vt,
                value=value,
                origin=normalize_origin(origin_raw),
                units=str(d.get("units", "")),
                media_type=str(d.get("mediaType", "")),
                tags=dict(d.get("tags") or {}),
                id=str(d.get("id", "")),
            )
        except KeyError as exc:
            raise ValueFormatError(f"reading lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ValueFormatError):
                raise
            raise ValueFormatError(f"malformed reading: {exc}") from exc


@dataclass(slots=True)
class Event:
    """One EdgeX event: the readings of one device source taken at one moment."""

    device_name: str
    profile_name: str
    source_name: str
    origin: int
    readings: list[Reading]
    tags: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __len__(self) -> int:
        return len(self.readings)

    def to_dict(self, *, with_ids: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"apiVersion": API_VERSION}
        if with_ids:
            d["id"] = self.id or str(uuid.uuid4())
        d["deviceName"] = self.device_name
        d["profileName"] = self.profile_name
        d["sourceName"] = self.source_name
        d["origin"] = self.origin
        d["readings"] = [r.to_dict(with_id=with_ids) for r in self.readings]
        if self.tags:
            d["tags"] = self.tags
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        try:
            readings_raw = d["readings"]
            if not isinstance(readings_raw, list) or not readings_raw:
                raise ValueFormatError("event must have at least one reading")
            origin = normalize_origin(d["origin"])
            ev = dict(d)
            ev["origin"] = origin
            return cls(
                device_name=str(d["deviceName"]),
                profile_name=str(d.get("profileName", "")),
                source_name=str(d["sourceName"]),
                origin=origin,
                readings=[Reading.from_dict(r, event=ev) for r in readings_raw],
                tags=dict(d.get("tags") or {}),
                id=str(d.get("id", "")),
            )
        except KeyError as exc:
            raise ValueFormatError(f"event lacks {exc.args[0]!r}") from None
        except (TypeError, AttributeError) as exc:
            raise ValueFormatError(f"malformed event: {exc}") from exc


def encode_add_event_request(event: Event, *, request_id: str | None = None) -> bytes:
    """The EdgeX v3 ``AddEventRequest`` JSON for ``event``, as a device service publishes it."""
    body = {
        "apiVersion": API_VERSION,
        "requestId": request_id or str(uuid.uuid4()),
        "event": event.to_dict(),
    }
    return orjson.dumps(body)


def decode_event(data: bytes | str | Mapping[str, Any]) -> Event:
    """Parse an event from what EdgeX puts on the wire.

    Accepts an ``AddEventRequest`` (``{"apiVersion","requestId","event"}``), a bare event, a core-command
    response (``{"event": …, "statusCode": 200}``), or an EdgeX message-bus envelope whose ``payload`` holds
    one of those (as an object or base64 text).
    """
    obj: Any
    if isinstance(data, bytes | str):
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueFormatError(f"not JSON: {exc}") from exc
    else:
        obj = data
    for _ in range(3):
        if not isinstance(obj, Mapping):
            raise ValueFormatError("an event must be a JSON object")
        if "payload" in obj and "readings" not in obj:
            payload = obj["payload"]
            if isinstance(payload, str):
                try:
                    obj = orjson.loads(base64.b64decode(payload, validate=True))
                except (ValueError, orjson.JSONDecodeError) as exc:
                    raise ValueFormatError(f"envelope payload is not an event: {exc}") from exc
            else:
                obj = payload
            continue
        if "event" in obj and "readings" not in obj:
            obj = obj["event"]
            continue
        break
    if not isinstance(obj, Mapping):
        raise ValueFormatError("an event must be a JSON object")
    return Event.from_dict(obj)


# --------------------------------------------------------------------------------------------------
# Columnar form
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """What names one series: a device resource. ``source`` is the source name of the event that
    first carried it (the resource itself, or the device command that read it)."""

    device: str
    resource: str
    profile: str
    value_type: ValueType
    units: str = ""
    source: str = ""


class SeriesTable:
    """Append-only table of series; a series id is its index. One table is shared by a process, so
    ids are stable for its lifetime and batches from different sources can be concatenated."""

    __slots__ = ("_by_key", "_infos", "_numeric")

    def __init__(self) -> None:
        self._infos: list[SeriesInfo] = []
        self._by_key: dict[tuple[str, str], int] = {}
        self._numeric = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return len(self._infos)

    def __iter__(self) -> Iterator[SeriesInfo]:
        return iter(self._infos)

    def intern(
        self,
        device: str,
        resource: str,
        profile: str = "",
        value_type: ValueType = ValueType.FLOAT64,
        units: str = "",
        source: str = "",
    ) -> int:
        """The id of (device, resource), adding it the first time it is seen."""
        key = (device, resource)
        sid = self._by_key.get(key)
        if sid is None:
            sid = len(self._infos)
            self._infos.append(SeriesInfo(device, resource, profile, value_type, units, source or resource))
            self._by_key[key] = sid
        return sid

    def lookup(self, device: str, resource: str) -> int | None:
        return self._by_key.get((device, resource))

    def info(self, sid: int) -> SeriesInfo:
        return self._infos[sid]

    def numeric_series(self) -> npt.NDArray[np.bool_]:
        """One flag per series id: is its value type numeric (:attr:`ValueType.is_numeric`; Bool is not)."""
        have = len(self._numeric)
        if have < len(self._infos):
            new = [info.value_type.is_numeric for info in self._infos[have:]]
            self._numeric = np.concatenate([self._numeric, np.asarray(new, dtype=bool)])
        return self._numeric


def is_numeric_value(vt: ValueType, value: Any) -> bool:
    """Whether a typed value of a series of type ``vt`` rides in :attr:`ReadingBatch.values` (else it sits
    in ``objects``, exactly as given). The one answer for every builder of batches:

    * a Bool series: ``bool`` and ``np.bool_`` alike, as 0.0/1.0 (``value_at`` gives ``True``/``False``
      back), so a Bool has one form whichever library produced it, and encoders pack it as a number;
    * a float series: any real number (Python or numpy; not a bool);
    * an integer series: an integer (Python or numpy; not a bool) while it is exact in a float64
      (|v| <= 2**53); a larger one, or a float, stays an object, never rounded;
    * any other type: never.

    Where it rides is not what it means: a Bool in the numeric column is still a state, not a number,
    for the numeric rules (see :meth:`ReadingBatch.numeric_mask`).
    """
    if isinstance(value, bool | np.bool_):
        return vt is ValueType.BOOL
    if vt.is_float:
        return isinstance(value, int | float | np.integer | np.floating)
    if vt.is_integer:
        return isinstance(value, int | np.integer) and abs(int(value)) <= EXACT_INT
    return False


class ReadingBatch:
    """Many readings as columns: ``origins`` (int64 ns), ``values`` (float64), ``series`` (int32 ids into
    ``table``). Numeric values (floats, bools, integers exact in a float64) ride in ``values``; any other
    value (strings, arrays, binary, objects, huge integers) sits in ``objects`` at the same index, with
    ``values`` NaN there. ``objects`` is ``None`` when the batch is all numeric, the common case.

    ``starts`` is set only on aggregates (window results): the start of the window each reading
    summarises, with ``origins`` holding its end. ``None`` otherwise.
    """

    __slots__ = ("objects", "origins", "series", "starts", "table", "values")

    def __init__(
        self,
        table: SeriesTable,
        origins: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
        series: npt.NDArray[np.int32],
        objects: npt.NDArray[np.object_] | None = None,
        starts: npt.NDArray[np.int64] | None = None,
    ) -> None:
        n = len(origins)
        if (
            len(values) != n
            or len(series) != n
            or (objects is not None and len(objects) != n)
            or (starts is not None and len(starts) != n)
        ):
            raise ValueError("ReadingBatch columns must have the same length")
        self.table = table
        self.origins = origins
        self.values = values
        self.series = series
        self.objects = objects
        self.starts = starts

    def __len__(self) -> int:
        return len(self.origins)

    def __repr__(self) -> str:
        return f"ReadingBatch({len(self)} readings, {len(np.unique(self.series))} series)"

    @classmethod
    def empty(cls, table: SeriesTable) -> ReadingBatch:
        return cls(
            table,
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.int32),
        )

    @classmethod
    def from_columns(
        cls,
        table: SeriesTable,
        origins: Sequence[int] | npt.ArrayLike,
        values: Sequence[float] | npt.ArrayLike,
        series: Sequence[int] | npt.ArrayLike,
        objects: Sequence[Any] | None = None,
        starts: Sequence[int] | npt.ArrayLike | None = None,
    ) -> ReadingBatch:
        """A batch from column values in plain sequences or arrays, converted to the columns' dtypes.

        ``values`` are numbers as the numeric column holds them; ``objects``, if given, holds the other
        values at their index and ``None`` elsewhere (``values`` NaN there), and is kept only if it holds
        any. Typed values (a Bool as ``True``, a string) go through :func:`batch_from_values` instead."""
        obj: npt.NDArray[np.object_] | None = None
        if objects is not None and any(o is not None for o in objects):
            obj = np.empty(len(objects), dtype=object)
            obj[:] = objects
        return cls(
            table,
            np.asarray(origins, dtype=np.int64),
            np.asarray(values, dtype=np.float64),
            np.asarray(series, dtype=np.int32),
            obj,
            None if starts is None else np.asarray(starts, dtype=np.int64),
        )

    @classmethod
    def concat(cls, table: SeriesTable, batches: Sequence[ReadingBatch]) -> ReadingBatch:
        if not batches:
            return cls.empty(table)
        if len(batches) == 1:
            return batches[0]
        objects: npt.NDArray[np.object_] | None = None
        if any(b.objects is not None for b in batches):
            objects = np.concatenate(
                [b.objects if b.objects is not None else np.full(len(b), None, object) for b in batches]
            )
        starts: npt.NDArray[np.int64] | None = None
        if any(b.starts is not None for b in batches):
            starts = np.concatenate([b.starts if b.starts is not None else b.origins for b in batches])
        return cls(
            table,
            np.concatenate([b.origins for b in batches]),
            np.concatenate([b.values for b in batches]),
            np.concatenate([b.series for b in batches]),
            objects,
            starts,
        )

    def take(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> ReadingBatch:
        """The readings selected by a boolean mask or an index array, as a new batch."""
        return ReadingBatch(
            self.table,
            self.origins[index],
            self.values[index],
            self.series[index],
            None if self.objects is None else self.objects[index],
            None if self.starts is None else self.starts[index],
        )

    def object_mask(self) -> npt.NDArray[np.bool_]:
        """One flag per reading: does its value sit in ``objects`` (not in the numeric column)."""
        if self.objects is None:
            return np.zeros(len(self), dtype=bool)
        return np.fromiter((o is not None for o in self.objects), dtype=bool, count=len(self))

    def numeric_mask(self) -> npt.NDArray[np.bool_]:
        """One flag per reading: is it a number the numeric rules (deadband, swing, windows, range, alarm)
        compute with, i.e. in the numeric column *and* of a numeric value type. A Bool rides in the numeric
        column as 0/1, but it is a state, not a quantity (EdgeX applies deadbands and transforms to
        integers and floats only), so it is not numeric here. NaN is numeric; rules judge it apart."""
        flags = self.table.numeric_series()
        mask = np.ones(len(self), dtype=bool) if flags.all() else flags[self.series]
        if self.objects is not None:
            mask &= ~self.object_mask()
        return mask

    def value_at(self, i: int) -> Any:
        """The typed Python value of reading ``i``."""
        if self.objects is not None and self.objects[i] is not None:
            return self.objects[i]
        info = self.table.info(int(self.series[i]))
        if not (info.value_type.is_numeric or info.value_type is ValueType.BOOL):
            return None  # a non-numeric reading whose value is null (objectValue: null)
        v = float(self.values[i])
        if info.value_type is ValueType.BOOL:
            return v != 0.0
        if info.value_type.is_integer:
            return int(v)
        return v

    def iter_readings(self) -> Iterator[Reading]:
        """Each reading as a :class:`Reading` (the cold path: allocation per reading)."""
        table = self.table
        for i in range(len(self)):
            info = table.info(int(self.series[i]))
            yield Reading(
                device_name=info.device,
                resource_name=info.resource,
                profile_name=info.profile,
                value_type=info.value_type,
                value=self.value_at(i),
                origin=int(self.origins[i]),
                units=info.units,
            )

    def to_events(self) -> list[Event]:
        """Group the readings into EdgeX events: consecutive readings of one device, one source and one
        origin form one event (the way a device service emits a multi-resource command)."""
        events: list[Event] = []
        current: Event | None = None
        table = self.table
        for reading, sid in zip(self.iter_readings(), self.series.tolist(), strict=True):
            info = table.info(sid)
            if (
                current is not None
                and current.device_name == reading.device_name
                and current.origin == reading.origin
                and current.source_name == info.source
            ):
                current.readings.append(reading)
                continue
            current = Event(
                device_name=reading.device_name,
                profile_name=reading.profile_name,
                source_name=info.source,
                origin=reading.origin,
                readings=[reading],
            )
            events.append(current)
        return events


def batch_from_values(
    table: SeriesTable,
    origins: Sequence[int],
    values: Sequence[Any],
    series: Sequence[int],
) -> ReadingBatch:
    """A batch from typed Python values, as connectors and users hold them (``True``, ``21.5``, ``"on"``,
    ``[1, 2]``): each goes to the numeric column when :func:`is_numeric_value` says so for its series'
    value type in ``table``, else to ``objects`` unchanged."""
    n = len(values)
    if len(origins) != n or len(series) != n:
        raise ValueError("origins, values and series must have the same length")
    nums: list[float] = []
    objects: list[Any] = []
    any_object = False
    types: dict[int, ValueType] = {}
    for sid, v in zip(series, values, strict=True):
        vt = types.get(sid)
        if vt is None:
            vt = types[sid] = table.info(sid).value_type
        if is_numeric_value(vt, v):
            nums.append(float(v))
            objects.append(None)
        else:
            nums.append(math.nan)
            objects.append(v)
            any_object = True
    return ReadingBatch.from_columns(table, origins, nums, series, objects if any_object else None)


def batch_from_readings(table: SeriesTable, readings: Iterable[Reading], *, source: str = "") -> ReadingBatch:
    """Columnar form of ``readings``; series are interned in ``table``."""
    origins: list[int] = []
    values: list[Any] = []
    series: list[int] = []
    for r in readings:
        series.append(
            table.intern(r.device_name, r.resource_name, r.profile_name, r.value_type, r.units, source)
        )
        origins.append(r.origin)
        values.append(r.value)
    return batch_from_values(table, origins, values, series)


def batch_from_events(table: SeriesTable, events: Iterable[Event]) -> ReadingBatch:
    """Columnar form of ``events``; each series remembers the source name of its event."""
    parts = [batch_from_readings(table, ev.readings, source=ev.source_name) for ev in events]
    return ReadingBatch.concat(table, parts)
