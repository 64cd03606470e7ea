"""EdgeX device-opc-ua resource ``attributes``: which node (or method) a resource is, parsed and
checked once at start-up.

``nodeId`` in every NodeId form (``ns=3;i=1001``, ``ns=2;s=Boiler.Temp``, ``ns=2;g=<guid>``,
``ns=2;b=<base64>``, ``nsu=<uri>;s=...``) or ``browsePath`` (``2:Boiler/2:Temp`` from the Objects
folder); or ``methodId`` + ``objectId`` (+ ``inputMap``) for a method; per resource ``samplingInterval``,
``queueSize``, ``deadbandType``, ``deadbandValue``. Nothing here imports asyncua.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from connectors.opcua._config import (
    DEADBANDS,
    Deadband,
    DeadbandType,
    checked_deadband,
    choice,
    integer,
    number,
    seconds,
)
from edgeflow.errors import ConfigError
from edgeflow.profiles import DeviceResource

__all__ = ["NodeRef", "Point", "parse_browse_path", "parse_node_id", "parse_point"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A node, as written in a profile: a NodeId (``kind`` i/s/g/b, in namespace index ``ns`` or namespace
    URI ``nsu``) or a browse path from the Objects folder (``kind`` ``path``, ``path`` its names as
    ``(namespace index, name)``)."""

    kind: str
    identifier: int | str | bytes | uuid.UUID | None = None
    ns: int = 0
    nsu: str | None = None
    path: tuple[tuple[int, str], ...] = ()
    text: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Point:
    """One resource's place in the server: a variable node, or a method (``method`` on ``node``, the
    object), with its monitored-item settings."""

    resource: str
    node: NodeRef
    method: NodeRef | None = None
    inputs: tuple[Any, ...] = ()
    sampling_interval: float | None = None
    queue_size: int | None = None
    deadband: Deadband | None = None

    @property
    def is_method(self) -> bool:
        return self.method is not None

    def where(self) -> str:
        if self.method is not None:
            return f"method {self.method} on {self.node}"
        return str(self.node)


# --------------------------------------------------------------------------------------------------
# NodeIds and browse paths
# --------------------------------------------------------------------------------------------------

_NODE_ID = re.compile(r"^(?:(ns|nsu)=([^;]*);)?([isgb])=(.*)$", re.S)


def parse_node_id(text: Any) -> NodeRef:
    """A NodeId in its string form (OPC UA Part 6 §5.3.1.10): ``[ns=<index>;|nsu=<uri>;]<i|s|g|b>=<id>``.
    Raises ValueError saying what is wrong."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"expected a NodeId string like 'ns=2;s=Boiler.Temp', got {text!r}")
    if isinstance(text, int):
        text = f"i={text}"
    m = _NODE_ID.match(text.strip())
    if m is None:
        raise ValueError(
            f"{text!r} is not a NodeId; write ns=<index>;i=<number>, ns=<index>;s=<string>, "
            "ns=<index>;g=<guid>, ns=<index>;b=<base64>, or nsu=<namespace uri>;... "
        )
    prefix, ns_text, kind, ident_text = m.groups()
    ns, nsu = 0, None
    if prefix == "ns":
        if not ns_text.isdigit() or int(ns_text) > 65535:
            raise ValueError(f"{text!r}: namespace index {ns_text!r} is not a number 0..65535")
        ns = int(ns_text)
    elif prefix == "nsu":
        if not ns_text:
            raise ValueError(f"{text!r}: empty namespace URI")
        nsu = ns_text
    ident: int | str | bytes | uuid.UUID
    if kind == "i":
        if not ident_text.isdigit() or int(ident_text) > 0xFFFFFFFF:
            raise ValueError(f"{text!r}: numeric identifier {ident_text!r} is not a number 0..4294967295")
        ident = int(ident_text)
    elif kind == "s":
        if not ident_text:
            raise ValueError(f"{text!r}: empty string identifier")
        ident = ident_text
    elif kind == "g":
        try:
            ident = uuid.UUID(ident_text)
        except ValueError:
            raise ValueError(f"{text!r}: {ident_text!r} is not a GUID") from None
    else:
        try:
            ident = base64.b64decode(ident_text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{text!r}: opaque identifier {ident_text!r} is not base64") from None
        if not ident:
            raise ValueError(f"{text!r}: empty opaque identifier")
    return NodeRef(kind=kind, identifier=ident, ns=ns, nsu=nsu, text=text.strip())


def parse_browse_path(text: Any) -> NodeRef:
    """``2:Boiler/2:Temperature``: browse names from the Objects folder, each ``<ns index>:<name>`` (or a
    bare name in namespace 0), separated by ``/``; a leading ``/`` or ``Objects/`` is allowed."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected a browse path like '2:Boiler/2:Temperature', got {text!r}")
    parts = [p for p in text.strip().split("/")]
    if parts and parts[0] == "":
        parts = parts[1:]
    if parts and parts[0] in ("Objects", "0:Objects"):
        parts = parts[1:]
    if not parts or any(not p for p in parts):
        raise ValueError(f"{text!r}: empty element in browse path")
    names: list[tuple[int, str]] = []
    for p in parts:
        ns_text, sep, name = p.partition(":")
        if sep and ns_text.isdigit():
            if not name:
                raise ValueError(f"{text!r}: element {p!r} has no name")
            names.append((int(ns_text), name))
        else:
            names.append((0, p))
    return NodeRef(kind="path", path=tuple(names), text=text.strip())


# --------------------------------------------------------------------------------------------------
# resource attributes
# --------------------------------------------------------------------------------------------------

_KNOWN_ATTRIBUTES = {
    "nodeId",
    "browsePath",
    "methodId",
    "objectId",
    "inputMap",
    "samplingInterval",
    "queueSize",
    "deadbandType",
    "deadbandValue",
}


def parse_point(device: str, resource: DeviceResource, profile: str) -> Point:
    """The resource's node (or method); ConfigError names the profile, resource and attribute."""
    path = f"profiles.{profile}.deviceResources.{resource.name}.attributes"
    attrs = resource.attributes
    problems: list[tuple[str, str]] = []
    for key in attrs:
        if key not in _KNOWN_ATTRIBUTES:
            log.warning(
                "%s.%s: unknown attribute, ignored; known: %s",
                path,
                key,
                ", ".join(sorted(_KNOWN_ATTRIBUTES)),
            )

    def fail() -> ConfigError:
        return ConfigError(
            f"device {device!r}: resource {resource.name!r} has invalid OPC-UA attributes", problems=problems
        )

    def node(key: str, conv: Any) -> NodeRef | None:
        if key not in attrs:
            return None
        try:
            ref: NodeRef = conv(attrs[key])
        except ValueError as exc:
            problems.append((f"{path}.{key}", str(exc)))
            return None
        return ref

    node_id = node("nodeId", parse_node_id)
    browse = node("browsePath", parse_browse_path)
    method = node("methodId", parse_node_id)
    obj = node("objectId", parse_node_id)
    if problems:
        raise fail()
    inputs: tuple[Any, ...] = ()
    if method is not None or obj is not None:
        if method is None or obj is None:
            problems.append(
                (
                    f"{path}.{'methodId' if method is None else 'objectId'}",
                    "methodId and objectId go together",
                )
            )
        if node_id is not None or browse is not None:
            problems.append((path, "a method resource has methodId and objectId, not nodeId or browsePath"))
        raw_inputs = attrs.get("inputMap", [])
        if raw_inputs is None:
            raw_inputs = []
        if not isinstance(raw_inputs, list):
            problems.append((f"{path}.inputMap", f"expected a list of input values, got {raw_inputs!r}"))
        else:
            inputs = tuple(raw_inputs)
        target = obj
    else:
        if node_id is not None and browse is not None:
            problems.append((path, "give nodeId or browsePath, not both"))
        target = node_id or browse
        if target is None:
            problems.append((f"{path}.nodeId", "is required (or browsePath, or methodId and objectId)"))
        if "inputMap" in attrs:
            problems.append((f"{path}.inputMap", "is only for methods (methodId and objectId)"))
    values: dict[str, Any] = {}
    for key, conv in (
        ("samplingInterval", lambda v: seconds(v, positive=False)),
        ("queueSize", lambda v: integer(v, 1, 100_000)),
        ("deadbandType", choice(DEADBANDS, "deadband type")),
        ("deadbandValue", number),
    ):
        if attrs.get(key) not in (None, ""):
            try:
                values[key] = conv(attrs[key])
            except ValueError as exc:
                problems.append((f"{path}.{key}", str(exc)))
    deadband: Deadband | None = None
    kind = values.get("deadbandType")
    if kind is not None and kind is not DeadbandType.NONE:
        if "deadbandValue" not in values:
            problems.append((f"{path}.deadbandValue", f"is required with deadbandType {kind}"))
        else:
            deadband = checked_deadband(kind, values["deadbandValue"], f"{path}.deadbandValue", problems)
    elif kind is DeadbandType.NONE:
        deadband = Deadband()
    elif "deadbandValue" in values:
        problems.append((f"{path}.deadbandType", "is required with deadbandValue (Absolute or Percent)"))
    if deadband is not None and deadband.type is not DeadbandType.NONE:
        vt = resource.properties.value_type
        if not vt.is_numeric:
            problems.append((f"{path}.deadbandType", f"a deadband needs a numeric valueType, not {vt.value}"))
    if problems or target is None:
        raise fail()
    return Point(
        resource=resource.name,
        node=target,
        method=method,
        inputs=inputs,
        sampling_interval=values.get("samplingInterval"),
        queue_size=values.get("queueSize"),
        deadband=deadband,
    )
