"""EdgeCore's DeviceTwin wire rules, mirrored exactly (``reference/kubeedge.md`` §4-§10).

Topics in both device-id forms, the key and value regexes (``re.fullmatch``: Python's ``$`` would also
accept a trailing newline, Go's does not), the lowercase twin types, and the payloads a mapper sends.
Nothing here does I/O; the twin (:mod:`edgeflow.twin.eventbus`) and the EdgeCore test double both use it.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from edgeflow.errors import EdgeflowError
from edgeflow.model import ValueType

__all__ = [
    "KEY_RE",
    "STATES",
    "TWIN_TYPES",
    "VALUE_RE",
    "DeviceId",
    "TopicInfo",
    "TwinValueError",
    "check_namespace",
    "device_topic",
    "event_id",
    "format_twin_value",
    "parse_topic",
    "twin_type_for",
    "twin_update",
    "valid_key",
    "valid_typed_value",
    "valid_value",
    "validate_twin_update",
]

#: ``edge/pkg/devicetwin/dtcommon/util.go:54-64``, byte for byte.
KEY_RE: Final = re.compile(r"^[a-zA-Z0-9-_.,:/@#]{1,128}$")
VALUE_RE: Final = re.compile(r"^[a-zA-Z0-9-_.,:/@#]{1,512}$")
#: ``metadata.type`` EdgeCore accepts (``ValidateValue``); absent means string.
TWIN_TYPES: Final = frozenset({"int", "integer", "float", "boolean", "string"})
#: ``state/update`` values KubeEdge v1.18+ accepts (others are dropped silently).
STATES: Final = frozenset({"online", "offline", "ok", "unknown", "unhealthy"})
PREFIX: Final = "$hw/events/device/"
NODE_PREFIX: Final = "$hw/events/node/"

DeviceIdForm = Literal["namespaced", "name"]


class TwinValueError(EdgeflowError):
    """A value that EdgeCore would refuse (it names the device, the twin and the value)."""


_KEY_BODY: Final = re.compile(KEY_RE.pattern[1:-1])
_VALUE_BODY: Final = re.compile(VALUE_RE.pattern[1:-1])


def _full(rx: re.Pattern[str], text: str) -> bool:
    # fullmatch of the class without ^/$: Python's $ also matches before a trailing newline, Go's does not
    return rx.fullmatch(text) is not None


def valid_key(text: str) -> bool:
    return _full(_KEY_BODY, text)


def valid_value(text: str) -> bool:
    return _full(_VALUE_BODY, text)


_INT_RE: Final = re.compile(r"[+-]?[0-9]+")  # strconv.ParseInt base 10 (no underscores at base 10)
_FLOAT_RE: Final = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.I
)


def valid_typed_value(twin_type: str, value: str) -> bool:
    """EdgeCore's ``ValidateValue`` for one value of ``twin_type``."""
    t = twin_type or "string"
    if t == "string":
        return True
    if t in ("int", "integer"):
        if _INT_RE.fullmatch(value) is None:
            return False
        return -(2**63) <= int(value) < 2**63
    if t == "float":
        return _FLOAT_RE.fullmatch(value) is not None
    if t == "boolean":
        return value in ("true", "false")
    return t == "deleted"


@dataclass(frozen=True, slots=True)
class DeviceId:
    """A device as EdgeCore names it: ``<namespace>/<name>`` (v1.16.2+) or ``<name>`` (<= v1.15)."""

    namespace: str
    name: str

    def topic_id(self, form: DeviceIdForm) -> str:
        return f"{self.namespace}/{self.name}" if form == "namespaced" else self.name


def check_namespace(namespace: str) -> str | None:
    """Why EdgeCore would mis-route this namespace's topics (it is a substring of ``$hw/events/device/``,
    so its prefix/suffix split goes wrong and messages are dropped), or None."""
    if namespace and namespace in PREFIX:
        return f"namespace {namespace!r} occurs in {PREFIX!r}: EdgeCore would drop this device's messages"
    return None


def device_topic(dev: DeviceId, form: DeviceIdForm, suffix: str) -> str:
    return f"{PREFIX}{dev.topic_id(form)}/{suffix}"


@dataclass(frozen=True, slots=True)
class TopicInfo:
    kind: Literal["device", "node"]
    ident: str  # "<ns>/<name>", "<name>", or the node name ("" for the malformed-reply topic)
    suffix: str  # "twin/update/result", "membership/updated", ...


_DEVICE_SUFFIXES: Final = (
    "twin/update/result",
    "twin/update/delta",
    "twin/update/document",
    "twin/update",
    "twin/get/result",
    "twin/get",
    "twin/cloud_updated",
    "state/update/result",
    "state/update",
    "updated",
)


def parse_topic(topic: str, form: DeviceIdForm) -> TopicInfo | None:
    """Split an eventbus topic into device (or node) and action; None for anything else."""
    if topic.startswith(NODE_PREFIX):
        node, _, suffix = topic[len(NODE_PREFIX) :].partition("/")
        return TopicInfo("node", node, suffix) if suffix.startswith("membership/") else None
    if not topic.startswith(PREFIX):
        return None
    rest = topic[len(PREFIX) :]
    for suffix in _DEVICE_SUFFIXES:
        if rest.endswith("/" + suffix):
            ident = rest[: -len(suffix) - 1]
            parts = ident.split("/") if ident else []
            want = 2 if form == "namespaced" else 1
            if ident and len(parts) != want:
                return None
            return TopicInfo("device", ident, suffix)
    return None


# -- values ------------------------------------------------------------------------------------------

_TWIN_TYPE: Final[dict[ValueType, str]] = {
    ValueType.BOOL: "boolean",
    ValueType.STRING: "string",
    ValueType.FLOAT32: "float",
    ValueType.FLOAT64: "float",
    **{
        vt: "int"
        for vt in (
            ValueType.INT8,
            ValueType.INT16,
            ValueType.INT32,
            ValueType.INT64,
            ValueType.UINT8,
            ValueType.UINT16,
            ValueType.UINT32,
            ValueType.UINT64,
        )
    },
}


def twin_type_for(vt: ValueType) -> str:
    """The twin ``metadata.type`` for an EdgeX value type (anything without one is a string)."""
    return _TWIN_TYPE.get(vt, "string")


def _float_text(value: float, vt: ValueType) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value} is not finite")
    text = str(np.float32(value)) if vt is ValueType.FLOAT32 else repr(float(value))
    # Go's ParseFloat reads "1e20"; the value regex refuses the "+" of Python's "1e+20".
    return text.replace("e+", "e")


def format_twin_value(device: str, twin: str, twin_type: str, value: Any, vt: ValueType) -> str:
    """``value`` (as a reading holds it) as the string EdgeCore accepts for a twin of ``twin_type``.
    Raises :class:`TwinValueError` naming device, twin and value when no such string exists."""
    try:
        if twin_type in ("int", "integer"):
            if isinstance(value, bool | np.bool_):
                text = "1" if value else "0"
            elif isinstance(value, float | np.floating):
                f = float(value)
                if not math.isfinite(f) or f != int(f):
                    raise ValueError(f"{f!r} is not an integer")
                text = str(int(f))
            else:
                text = str(int(value))
        elif twin_type == "float":
            if isinstance(value, bool | np.bool_):
                text = "1" if value else "0"
            else:
                text = _float_text(float(value), vt)
        elif twin_type == "boolean":
            if isinstance(value, (bool | np.bool_, int | float | np.integer | np.floating)):
                text = "true" if value else "false"
            elif str(value).lower() in ("true", "false"):
                text = str(value).lower()
            else:
                raise ValueError("not a boolean")
        else:
            if isinstance(value, bool | np.bool_):
                text = "true" if value else "false"
            elif isinstance(value, float | np.floating):
                text = _float_text(float(value), vt)
            elif isinstance(value, bytes | bytearray):
                raise ValueError("binary values have no twin string")
            else:
                text = str(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise TwinValueError(
            f"device {device}, twin {twin}: value {value!r} cannot be a {twin_type} twin: {exc}"
        ) from None
    if not valid_value(text):
        raise TwinValueError(
            f"device {device}, twin {twin}: value {text!r} does not match EdgeCore's {VALUE_RE.pattern}"
        )
    if not valid_typed_value(twin_type, text):
        raise TwinValueError(f"device {device}, twin {twin}: value {text!r} is not a valid {twin_type}")
    return text


# -- payloads ------------------------------------------------------------------------------------------


def event_id() -> str:
    return str(uuid.uuid4())


def twin_update(
    twins: Mapping[str, tuple[str, str]],
    *,
    timestamp_ms: int,
    expected: Mapping[str, str] | None = None,
    eid: str = "",
) -> dict[str, Any]:
    """A ``twin/update`` body: ``twins`` maps name -> (value, type); ``expected`` adds desired values."""
    body: dict[str, Any] = {}
    for name, (value, ttype) in twins.items():
        entry: dict[str, Any] = {"actual": {"value": value}, "metadata": {"type": ttype}}
        if expected and name in expected:
            entry["expected"] = {"value": expected[name]}
        body[name] = entry
    return {"event_id": eid, "timestamp": timestamp_ms, "twin": body}


def validate_twin_update(doc: object, known_types: Mapping[str, str] | None = None) -> list[str]:
    """Every reason EdgeCore would answer 400 to this ``twin/update`` body (empty: accepted).
    ``known_types``: types of twins that already exist (their type cannot change)."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        return ["body is not a JSON object"]
    if "timestamp" in doc and (not isinstance(doc["timestamp"], int) or isinstance(doc["timestamp"], bool)):
        problems.append("timestamp is not an integer")
    if "event_id" in doc and not isinstance(doc["event_id"], str):
        problems.append("event_id is not a string")
    twin = doc.get("twin")
    if not isinstance(twin, dict):
        return [*problems, "Update twin error, key:twin does not exist"]
    for key, msg in twin.items():
        if not valid_key(key):
            problems.append(f"twin key {key!r} does not match the key regex")
        if msg is None:
            continue
        if not isinstance(msg, dict):
            problems.append(f"twin {key}: not an object")
            continue
        meta = msg.get("metadata")
        ttype = ""
        if meta is not None:
            if not isinstance(meta, dict) or not isinstance(meta.get("type", ""), str):
                problems.append(f"twin {key}: metadata.type is not a string")
            else:
                ttype = meta.get("type", "")
                if ttype and ttype not in TWIN_TYPES:
                    problems.append(f"twin {key}: the value type {ttype!r} is not allowed")
        if known_types and key in known_types and known_types[key]:
            ttype = known_types[key]
        for side in ("expected", "actual"):
            if side not in msg:
                continue
            tv = msg[side]
            if not isinstance(tv, dict):
                problems.append(f"twin {key}: {side} is not an object")
                continue
            if "value" not in tv or tv["value"] is None:
                problems.append(f"twin {key}: {side} has no value (EdgeCore dereferences a nil value)")
                continue
            v = tv["value"]
            if not isinstance(v, str):
                problems.append(f"twin {key}: {side}.value is a JSON {type(v).__name__}, not a string")
                continue
            if v and not valid_value(v):
                problems.append(f"twin {key}: {side}.value {v!r} does not match the value regex")
            elif v and not valid_typed_value(ttype, v):
                problems.append(f"twin {key}: {side}.value {v!r} is not a valid {ttype or 'string'}")
    return problems
