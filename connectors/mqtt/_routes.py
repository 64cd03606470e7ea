"""From an incoming message to ``(device, source, values)``: EdgeX device-mqtt's data topics and the
free topic mappings.

EdgeX (``incoming/data/{device}/{source}``, device-mqtt-go ``onIncomingDataReceived``): the source is
a device command or a device resource of the device's profile, readable. For a command the payload
is a JSON object keyed by its resources' names; for a single resource it may also be the bare value
(``5.67``, ``"text"``, or text that is not JSON at all), and for a Binary resource it is the raw
bytes. One message is one event.

Free mappings (``topics:``) take the device from a topic level or a payload field, and the values
from JSON paths or, without ``fields``, as EdgeX does. Mappings are tried in order, before the EdgeX
topics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from connectors.mqtt._config import MqttOptions, QoS, TopicSpec
from connectors.mqtt._jsonpath import JsonPath
from connectors.mqtt._payload import Coercer, coerce, coercer
from connectors.mqtt._rejects import PayloadError, Reason
from edgeflow.connector import CommandValue
from edgeflow.errors import ValueFormatError
from edgeflow.model import ValueType, normalize_origin
from edgeflow.mqtt.topics import TopicTemplate, unescape_level
from edgeflow.profiles import Device, DeviceProfile, DeviceResource

__all__ = ["Delivery", "Router", "SourcePlan", "parse_origin", "values_by_name"]

Devices = Mapping[str, tuple[Device, DeviceProfile]]


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one message carries: one event's values."""

    device: str
    source: str
    values: list[CommandValue]


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """The readable resources a source name stands for in one profile, with their value checks."""

    resources: tuple[DeviceResource, ...]
    coercers: tuple[Coercer, ...]

    @classmethod
    def of(cls, resources: Sequence[DeviceResource]) -> SourcePlan:
        return cls(tuple(resources), tuple(coercer(r) for r in resources))


@dataclass(frozen=True, slots=True)
class _Mapping:
    spec: TopicSpec
    template: TopicTemplate
    device: JsonPath | None
    fields: tuple[tuple[str, JsonPath], ...]
    origin: JsonPath | None

    @classmethod
    def build(cls, spec: TopicSpec) -> _Mapping:
        return cls(
            spec,
            spec.template,
            JsonPath.parse(spec.device) if spec.device else None,
            tuple((r, JsonPath.parse(p)) for r, p in spec.fields.items()),
            JsonPath.parse(spec.origin) if spec.origin else None,
        )


def _loads(payload: bytes, device: str | None) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(Reason.NOT_JSON, f"payload is not JSON: {exc}", device=device) from None


def parse_origin(raw: Any) -> int:
    """Nanoseconds since the epoch from a payload's time: a number (s, ms, us or ns by magnitude) or a
    string holding one, or an RFC 3339 / ISO 8601 time with an offset."""
    if isinstance(raw, str):
        text = raw.strip()
        try:
            raw = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            try:
                when = dt.datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{raw!r} is not a time") from None
            if when.tzinfo is None:
                raise ValueError(f"{raw!r} has no UTC offset") from None
            delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    try:
        ns = normalize_origin(raw)
    except (ValueFormatError, OverflowError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if not 0 < ns < 2**63:
        raise ValueError(f"{raw!r} is not a time after 1970")
    return ns


class Router:
    """Routes incoming messages of one connector; ``devices`` is the connector's live registry."""

    def __init__(self, options: MqttOptions, devices: Devices, max_payload: int) -> None:
        self._devices = devices
        self._max_payload = max_payload
        inc = options.incoming
        self._edgex_prefix = inc.prefix + "/" if inc.enabled else None
        self._mappings = [_Mapping.build(t) for t in options.topics]
        self._plans: dict[tuple[str, str], SourcePlan] = {}
        self.filters: list[tuple[str, QoS]] = [(m.template.filter, m.spec.qos) for m in self._mappings]
        if inc.enabled:
            self.filters.append((f"{inc.prefix}/#", inc.qos))

    def forget(self, device: str) -> None:
        """Drop what was planned for ``device`` (it was removed; it may come back with another profile)."""
        for key in [k for k in self._plans if k[0] == device]:
            del self._plans[key]

    def route(self, topic: str, payload: bytes) -> Delivery | None:
        """The delivery ``topic`` and ``payload`` make, or None when no route takes the topic. Raises
        :class:`PayloadError` (with the device, if one is known) for a message that cannot be used."""
        for m in self._mappings:
            names = self._match(m.template, topic)
            if names is not None:
                return self._mapped(m, names, payload)
        if self._edgex_prefix is not None and topic.startswith(self._edgex_prefix):
            return self._edgex(topic[len(self._edgex_prefix) :], payload)
        return None

    # -- EdgeX --------------------------------------------------------------------------------------

    def _edgex(self, rest: str, payload: bytes) -> Delivery:
        levels = rest.split("/")
        if len(levels) != 2:
            raise PayloadError(Reason.BAD_TOPIC, "expected <prefix>/<device>/<source>")
        try:
            device, source = unescape_level(levels[0]), unescape_level(levels[1])
        except ValueError as exc:
            raise PayloadError(Reason.BAD_TOPIC, str(exc)) from None
        _, profile = self._device(device)
        self._size(payload, device)
        plan = self._plan(device, profile, source)
        return Delivery(device, source, values_by_name(device, plan, payload))

    # -- free mappings ------------------------------------------------------------------------------

    @staticmethod
    def _match(template: TopicTemplate, topic: str) -> dict[str, str] | None:
        try:
            return template.match(topic)
        except ValueError as exc:
            raise PayloadError(Reason.BAD_TOPIC, str(exc)) from None

    def _mapped(self, m: _Mapping, names: dict[str, str], payload: bytes) -> Delivery:
        doc: Any = None
        if m.device is not None:
            self._size(payload, None)
            doc = _loads(payload, None)
            try:
                device = m.device.get(doc)
            except KeyError:
                raise PayloadError(Reason.MISSING_VALUE, f"no device name at {m.device}") from None
            if not isinstance(device, str) or not device:
                raise PayloadError(Reason.BAD_TOPIC, f"the device name at {m.device} is {device!r}")
        else:
            device = names["device"]
        _, profile = self._device(device)
        self._size(payload, device)
        origin = 0
        if m.origin is not None:
            if doc is None:
                doc = _loads(payload, device)
            try:
                origin = parse_origin(m.origin.get(doc))
            except KeyError:
                raise PayloadError(Reason.BAD_ORIGIN, f"no origin at {m.origin}", device=device) from None
            except ValueError as exc:
                raise PayloadError(Reason.BAD_ORIGIN, f"origin at {m.origin}: {exc}", device=device) from None
        if not m.fields:
            source = names.get("source") or m.spec.source or ""
            plan = self._plan(device, profile, source)
            return Delivery(device, source, values_by_name(device, plan, payload, doc, origin))
        if doc is None:
            doc = _loads(payload, device)
        values: list[CommandValue] = []
        for name, path in m.fields:
            res = self._resource(device, profile, name)
            try:
                raw = path.get(doc)
            except KeyError:
                continue  # a field this message does not carry
            values.append(CommandValue(name, _coerce(device, res, raw), origin))
        if not values:
            raise PayloadError(
                Reason.MISSING_VALUE,
                f"none of the fields {[str(p) for _, p in m.fields]} is there",
                device=device,
            )
        return Delivery(device, m.spec.source or m.fields[0][0], values)

    # -- shared -------------------------------------------------------------------------------------

    def _device(self, device: str) -> tuple[Device, DeviceProfile]:
        entry = self._devices.get(device)
        if entry is None:
            raise PayloadError(Reason.UNKNOWN_DEVICE, f"no device {device[:100]!r} is served here")
        return entry

    def _size(self, payload: bytes, device: str | None) -> None:
        if len(payload) > self._max_payload:
            raise PayloadError(
                Reason.OVERSIZE, f"{len(payload)} bytes > max_payload {self._max_payload}", device=device
            )

    def _plan(self, device: str, profile: DeviceProfile, source: str) -> SourcePlan:
        key = (profile.name, source)
        plan = self._plans.get(key)
        if plan is None:
            found = _make_plan(profile, source)
            if isinstance(found, str):  # not cached: invented source names must not grow memory
                raise PayloadError(Reason.UNKNOWN_RESOURCE, found, device=device)
            plan = self._plans[key] = found
        return plan

    def _resource(self, device: str, profile: DeviceProfile, name: str) -> DeviceResource:
        plan = self._plan(device, profile, name)
        if len(plan.resources) != 1 or plan.resources[0].name != name:
            raise PayloadError(
                Reason.UNKNOWN_RESOURCE, f"{name!r} is a command, not a resource", device=device
            )
        return plan.resources[0]


def _coerce(device: str, res: DeviceResource, raw: Any) -> Any:
    try:
        return coerce(res, raw)
    except PayloadError as exc:
        raise PayloadError(exc.reason, exc.message, device=device) from None


def values_by_name(
    device: str, plan: SourcePlan, payload: bytes, doc: Any = None, origin: int = 0
) -> list[CommandValue]:
    """EdgeX's reading of a payload for a source's resources: a JSON object keyed by resource name,
    or for a single resource the bare value (raw bytes for a Binary one). ``doc`` is the payload
    already decoded, if it was."""
    resources = plan.resources
    single = len(resources) == 1
    if single and doc is None and resources[0].properties.value_type is ValueType.BINARY:
        return [CommandValue(resources[0].name, bytes(payload), origin)]
    if doc is None:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            if not single:
                raise PayloadError(
                    Reason.NOT_JSON, f"payload is not a JSON object: {exc}", device=device
                ) from None
            try:
                doc = payload.decode("utf-8")  # a bare value that is not JSON: 5.67e0, on, text
            except UnicodeDecodeError:
                raise PayloadError(
                    Reason.NOT_JSON, "payload is neither JSON nor UTF-8 text", device=device
                ) from None
    try:
        if type(doc) is dict:
            out = []
            for res, check in zip(resources, plan.coercers, strict=True):
                name = res.name
                if name in doc:
                    raw = doc[name]
                elif single:
                    raw = doc  # the whole object is the value (an Object resource)
                else:
                    raise PayloadError(Reason.MISSING_VALUE, f"payload has no value for {name!r}")
                out.append(CommandValue(name, check(raw), origin))
            return out
        if not single:
            raise PayloadError(
                Reason.WRONG_TYPE,
                f"payload for {len(resources)} resources must be a JSON object keyed by their names",
            )
        return [CommandValue(resources[0].name, plan.coercers[0](doc), origin)]
    except PayloadError as exc:
        raise PayloadError(exc.reason, exc.message, device=device) from None


def _make_plan(profile: DeviceProfile, source: str) -> SourcePlan | str:
    """The plan for ``source``, or why there is none."""
    cmd = profile.command(source)
    if cmd is not None:
        if "R" not in cmd.read_write:
            return f"command {source!r} is not readable"
        resources = []
        for op in cmd.resource_operations:
            try:
                res = profile.resource(op.device_resource)
            except KeyError:
                return f"command {source!r} names no resource {op.device_resource!r}"
            resources.append(res)
        return SourcePlan.of(resources)
    try:
        res = profile.resource(source)
    except KeyError:
        return f"profile {profile.name!r} has no resource or command {source[:100]!r}"
    if not res.properties.readable:
        return f"resource {source!r} is not readable"
    return SourcePlan.of((res,))
