"""The OPC-UA connector: EdgeX device-opc-ua devices and profiles, subscriptions with server-side
deadband, reads, typed writes, method calls, security, recovery.

One client (one session) per server endpoint, shared by the devices on it; each endpoint's connection,
reconnection and subscriptions are :mod:`connectors.opcua._endpoint`'s (which owns reconnection: asyncua's
auto-reconnect is off). While an endpoint is down, reads fail at once with DeviceOfflineError.

**Subscriptions serve onChange AutoEvents** (EdgeX's meaning: an event when a value changes): each
resource of the AutoEvent's source becomes a monitored item, sampled at the AutoEvent's interval,
published at that interval, with the ``onChangeThreshold`` as an absolute DataChangeFilter deadband,
so the server drops what the AutoEvent would drop. Settings in ``protocols.opcua`` and in resource
attributes override these. A notification message goes to the service whole, one call per (device,
source), with the server's source timestamps as origins. Where the server refuses a subscription or
an item, that AutoEvent is polled instead (and counted, and logged); other AutoEvents are polled as
EdgeX polls them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from connectors.opcua._asyncua import LinkError, LinkSecurity, LinkStatus, LinkTimeout, Sample, UaLink
from connectors.opcua._config import Deadband, DeadbandType, DeviceTuning, EndpointSpec, parse_endpoint
from connectors.opcua._endpoint import Endpoint, Group, Item, LinkState
from connectors.opcua._nodes import Point, parse_point
from connectors.opcua._trust import TrustError, check_key_pair, load_certificates
from connectors.opcua._types import from_edgex, to_edgex
from edgeflow.connector import CommandValue, Connector, DeviceHealth, PushSink, Quality, QualityAction
from edgeflow.errors import (
    ConfigError,
    ConnectorError,
    DeviceOfflineError,
    DeviceProtocolError,
    DeviceTimeoutError,
    ValueFormatError,
    WriteRejectedError,
)
from edgeflow.parsing import did_you_mean
from edgeflow.profiles import AutoEvent, Device, DeviceProfile, DeviceResource

__all__ = ["OPTION_DEFAULTS", "OpcUaConnector", "OpcUaSecurityError"]

log = logging.getLogger(__name__)

#: Connector options (``connectors: {opcua: {...}}``) and their defaults.
OPTION_DEFAULTS: dict[str, Any] = {
    "reconnect_min": 0.5,
    "reconnect_max": 30.0,
    "watchdog_interval": 5.0,
    "max_nodes_per_request": 1000,
}

#: Bad statuses of a read that mean the request was wrong (the node, the attribute, the access), not
#: the value: they fail the read instead of flagging a reading.
_REQUEST_ERRORS = {
    "BadNodeIdUnknown",
    "BadNodeIdInvalid",
    "BadNoMatch",
    "BadAttributeIdInvalid",
    "BadNotReadable",
    "BadUserAccessDenied",
    "BadIndexRangeInvalid",
    "BadDataEncodingInvalid",
    "BadDataEncodingUnsupported",
    "BadSecurityModeInsufficient",
    "BadNotSupported",
}
#: Bad statuses of a write that mean the write itself was refused.
_WRITE_REFUSED = {
    "BadNotWritable",
    "BadUserAccessDenied",
    "BadTypeMismatch",
    "BadOutOfRange",
    "BadWriteNotSupported",
}
_TEXT_BUILTINS = {
    "String",
    "XmlElement",
    "LocalizedText",
    "QualifiedName",
    "NodeId",
    "ExpandedNodeId",
    "Guid",
    "DateTime",
}


class OpcUaSecurityError(ConnectorError):
    """The secure connection could not be made as configured (untrusted or invalid server certificate,
    no endpoint with the configured policy and mode, edgeflow's certificate or identity refused)."""


@dataclass(eq=False)
class _DeviceState:
    name: str
    profile: DeviceProfile
    spec: EndpointSpec
    tuning: DeviceTuning
    endpoint: Endpoint
    points: dict[str, Point]
    sink: PushSink | None = None
    groups: list[Group] = field(default_factory=list)
    polled_fallbacks: int = 0
    notifications: int = 0  # monitored-item notifications received from the server
    notifications_dropped: int = 0  # received but not convertible to the resource's value type


class OpcUaConnector(Connector):
    """EdgeX device-opc-ua compatible connector over asyncua: subscriptions, reads, writes, methods."""

    type_name: ClassVar[str] = "opcua"
    supports_push: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        opts = _parse_options(self.options)
        self._reconnect_min: float = opts["reconnect_min"]
        self._reconnect_max: float = opts["reconnect_max"]
        self._watchdog: float = opts["watchdog_interval"]
        self._max_nodes: int = opts["max_nodes_per_request"]
        self._states: dict[str, _DeviceState] = {}
        self._endpoints: dict[tuple[Any, ...], Endpoint] = {}
        self._validated: dict[str, tuple[EndpointSpec, DeviceTuning, dict[str, Point]]] = {}
        self._handles = itertools.count(1)
        self._closing: set[asyncio.Task[None]] = set()  # endpoints of removed devices, closing

    # ------------------------------------------------------------------ devices

    def validate_device(self, device: Device, profile: DeviceProfile) -> None:
        spec, tuning = parse_endpoint(device)
        points = {r.name: parse_point(device.name, r, profile.name) for r in profile.device_resources}
        path = f"devices.{device.name}.protocols.opcua"
        try:
            if spec.cert_file is not None and spec.key_file is not None:
                check_key_pair(spec.cert_file, spec.key_file, spec.key_password)
            if spec.user_cert_file is not None and spec.user_key_file is not None:
                check_key_pair(spec.user_cert_file, spec.user_key_file, None)
            if spec.trusted_certs:
                load_certificates(spec.trusted_certs)
        except TrustError as exc:
            raise ConfigError(
                f"device {device.name!r}: unusable certificate files", problems=[(path, str(exc))]
            ) from None
        self._validated[device.name] = (spec, tuning, points)

    def add_device(self, device: Device, profile: DeviceProfile) -> None:
        super().add_device(device, profile)  # calls validate_device
        spec, tuning, points = self._validated.pop(device.name)
        ep = self._endpoints.get(spec.key)
        if ep is None:
            ep = Endpoint(
                spec,
                reconnect_min=self._reconnect_min,
                reconnect_max=self._reconnect_max,
                watchdog=self._watchdog,
                max_nodes=self._max_nodes,
                on_state=self._notify,
                on_data=self._on_data,
                on_refused=self._refused,
            )
            self._endpoints[spec.key] = ep
        ep.devices.append(device.name)
        self._states[device.name] = _DeviceState(device.name, profile, spec, tuning, ep, points)

    def remove_device(self, name: str) -> None:
        """Forget the device: its monitored items' data is dropped from now on, and its endpoint closes
        (in the background; :meth:`close` waits for it) when no other device uses it. Items of the device
        on a subscription shared with other devices stay on the server until the next reconnection."""
        super().remove_device(name)
        self._validated.pop(name, None)
        state = self._states.pop(name, None)
        if state is None:
            return
        ep = state.endpoint
        for g in state.groups:
            g.live = g.pending = False
            if g in ep.groups:
                ep.groups.remove(g)
            for it in g.items:
                ep.handles.pop(it.handle, None)
        if name in ep.devices:
            ep.devices.remove(name)
        if not ep.devices and self._endpoints.get(ep.spec.key) is ep:
            del self._endpoints[ep.spec.key]
            task = asyncio.get_running_loop().create_task(ep.close(), name=f"opcua close {ep.spec.url}")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _state(self, device: str) -> _DeviceState:
        state = self._states.get(device)
        if state is None:
            raise ConnectorError("unknown device", device=device)
        return state

    def health(self, device: str) -> DeviceHealth:
        ep = self._state(device).endpoint
        if ep.state is LinkState.UP:
            return DeviceHealth.UP
        if ep.state is LinkState.DOWN or ep.failures or ep.losses:
            return DeviceHealth.DOWN  # down, or reconnecting after a failure or a loss
        return DeviceHealth.UNKNOWN  # the first connect attempt is under way

    def pushes(self, device: str, auto_event: AutoEvent) -> bool:
        state = self._states.get(device)
        if state is None or state.endpoint.state is not LinkState.UP:
            return False
        return any(g.auto_event is auto_event and g.live for g in state.groups)

    def quality_action(self, device: str, quality: Quality) -> QualityAction:
        tuning = self._state(device).tuning
        return tuning.uncertain if quality is Quality.UNCERTAIN else tuning.bad

    def stats(self) -> dict[str, Any]:
        """Per device: its endpoint and subscriptions (:meth:`device_stats`)."""
        return {name: self.device_stats(name) for name in self.devices}

    def device_stats(self, device: str) -> dict[str, Any]:
        """What the connector knows of ``device``'s endpoint and subscriptions."""
        state = self._state(device)
        ep = state.endpoint
        return {
            "endpoint": ep.spec.url,
            "link": ep.state.value,
            "connects": ep.connects,
            "losses": ep.losses,
            "last_error": ep.last_error,
            "subscribed": [g.auto_event.source_name for g in state.groups if g.live],
            "notifications": state.notifications,
            "notifications_dropped": state.notifications_dropped,
            "polled_fallbacks": state.polled_fallbacks,
            "refused": {g.auto_event.source_name: g.refused for g in state.groups if g.refused},
        }

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Start each endpoint's connection task; connections come up in the background."""
        for ep in self._endpoints.values():
            ep.start()

    async def close(self) -> None:
        for ep in self._endpoints.values():
            await ep.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _notify(self, ep: Endpoint) -> None:
        for device in ep.devices:
            self.state_changed(device)

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(self, device: str, sink: PushSink) -> None:
        """Monitor ``device``'s onChange AutoEvents (when ``Subscriptions`` is on); the rest are polled."""
        state = self._state(device)
        state.sink = sink
        if state.groups:
            return
        dev, profile = self.device(device)
        for ae in dev.auto_events:
            if not ae.on_change or not state.tuning.subscriptions:
                continue
            group = self._plan(state, profile, ae)
            if group is not None:
                state.groups.append(group)
                state.endpoint.groups.append(group)
        ep = state.endpoint
        ep.start()
        if ep.state is LinkState.UP and state.groups:
            await ep.subscribe(state.groups)
            self.state_changed(device)

    def _plan(self, state: _DeviceState, profile: DeviceProfile, ae: AutoEvent) -> Group | None:
        tuning = state.tuning
        interval = ae.interval_seconds
        try:
            resources = [r for r in profile.source_resources(ae.source_name) if r.properties.readable]
        except KeyError:
            return None
        if not resources or any(state.points[r.name].is_method for r in resources):
            return None  # methods are called, not monitored: polled
        publishing_ms = 1000.0 * (tuning.publishing_interval or interval)
        group = Group(state.name, ae, publishing_ms, [])
        for res in resources:
            point = state.points[res.name]
            sampling = point.sampling_interval
            if sampling is None:
                sampling = tuning.sampling_interval if tuning.sampling_interval is not None else interval
            sampling_ms = 1000.0 * sampling
            queue = point.queue_size or tuning.queue_size
            if queue is None:
                queue = 10 if sampling_ms <= 0 else max(1, math.ceil(publishing_ms / sampling_ms))
            deadband = point.deadband
            if deadband is None and ae.on_change_threshold is not None:
                deadband = Deadband(DeadbandType.ABSOLUTE, ae.on_change_threshold)
            if deadband is None:
                deadband = tuning.deadband
            if deadband.type is DeadbandType.NONE or not res.properties.value_type.is_numeric:
                deadband = None
            item = Item(next(self._handles), res, point, sampling_ms, queue, deadband, group)
            group.items.append(item)
        return group

    def _refused(self, group: Group, why: str) -> None:
        state = self._states.get(group.device)
        if state is None:  # removed while its subscription was being made
            return
        state.polled_fallbacks += 1
        log.warning(
            "device %s: %s; AutoEvent %s is polled every %s instead",
            group.device,
            why,
            group.auto_event.source_name,
            group.auto_event.interval,
        )

    def _on_data(self, items: list[tuple[Item, Sample]]) -> None:
        """One notification message: values grouped by (device, source) and handed to each sink once."""
        out: dict[tuple[str, str], list[CommandValue]] = {}
        for it, s in items:
            g = it.group
            assert g is not None
            state = self._states.get(g.device)
            if state is None:  # removed while its items' data was on the way
                continue
            state.notifications += 1
            try:
                cv = _command_value(it.resource, s)
            except ValueError as exc:
                state.notifications_dropped += 1
                log.warning(
                    "device %s: notification for %s (%s) dropped: %s",
                    g.device,
                    it.resource.name,
                    it.point.node,
                    exc,
                )
                continue
            out.setdefault((g.device, g.auto_event.source_name), []).append(cv)
        for (device, source), values in out.items():
            state = self._states[device]
            if state.sink is None:
                continue
            try:
                state.sink(device, source, values)
            except (ConnectorError, ValueFormatError) as exc:  # the values do not fit the profile
                state.notifications_dropped += len(values)
                log.warning("device %s: notification for %s dropped: %s", device, source, exc)

    # ------------------------------------------------------------------ requests

    async def _link(self, state: _DeviceState, resource: str | None = None) -> UaLink:
        ep = state.endpoint
        ep.start()
        await ep.wait_attempt()  # at start-up, or after a loss: give a connect under way its time
        link = ep.link
        if link is None or not link.connected or ep.state is not LinkState.UP:
            wait = max(0.0, ep.retry_at - asyncio.get_running_loop().time())
            cls = OpcUaSecurityError if ep.insecure else DeviceOfflineError
            raise cls(
                f"{ep.spec.url} is down ({ep.last_error or 'not connected yet'}); next connect attempt in {wait:.1f} s",
                device=state.name,
                resource=resource,
            )
        return link

    def _mapped(
        self, exc: LinkError, state: _DeviceState, resource: str | None, address: str | None
    ) -> ConnectorError:
        where: dict[str, Any] = {"device": state.name, "resource": resource, "address": address}
        if isinstance(exc, LinkTimeout):
            return DeviceTimeoutError(str(exc), **where)
        if isinstance(exc, LinkStatus):
            return DeviceProtocolError(str(exc), **where)
        if isinstance(exc, LinkSecurity):
            return OpcUaSecurityError(str(exc), **where)
        return ConnectorError(str(exc), **where)

    async def read(self, device: str, resources: Sequence[DeviceResource]) -> list[CommandValue]:
        state = self._state(device)
        points = [self._point(state, r) for r in resources]
        link = await self._link(state, resources[0].name if resources else None)
        out: list[CommandValue | None] = [None] * len(resources)
        variables = [i for i, p in enumerate(points) if not p.is_method]
        if variables:
            try:
                samples = await link.read([points[i].node for i in variables])
            except LinkError as exc:
                names = ",".join(resources[i].name for i in variables)
                raise self._mapped(exc, state, names, None) from None
            for i, s in zip(variables, samples, strict=True):
                res, point = resources[i], points[i]
                if s.quality is Quality.BAD and s.status in _REQUEST_ERRORS:
                    raise DeviceProtocolError(
                        f"reading {point.node}: {s.status}",
                        device=device,
                        resource=res.name,
                        address=str(point.node),
                    )
                try:
                    out[i] = _command_value(res, s)
                except ValueError as exc:
                    raise DeviceProtocolError(
                        f"node {point.node} holds {s.builtin}{'[]' if s.array else ''}: {exc}",
                        device=device,
                        resource=res.name,
                        address=str(point.node),
                    ) from None
        for i, p in enumerate(points):
            if p.is_method:
                res, where = resources[i], p.where()
                outputs = await self._call(state, link, res, p, ())
                if not outputs:
                    raise DeviceProtocolError(
                        f"{where} returned no output argument",
                        device=device,
                        resource=res.name,
                        address=where,
                    )
                try:
                    out[i] = CommandValue(res.name, to_edgex(res.properties.value_type, outputs[0]))
                except ValueError as exc:
                    raise DeviceProtocolError(
                        f"{where} returned {outputs[0]!r}: {exc}",
                        device=device,
                        resource=res.name,
                        address=where,
                    ) from None
        return [cv for cv in out if cv is not None]

    def _point(self, state: _DeviceState, resource: DeviceResource) -> Point:
        point = state.points.get(resource.name)
        if point is None:
            raise ConnectorError(
                "resource is not in the device's profile", device=state.name, resource=resource.name
            )
        return point

    async def _call(
        self, state: _DeviceState, link: UaLink, res: DeviceResource, point: Point, extra: Sequence[Any]
    ) -> list[Any]:
        """Call the resource's method with its ``inputMap`` (and ``extra``), typed as the method declares."""
        assert point.method is not None
        where = point.where()
        args = [*point.inputs, *extra]
        try:
            declared = await link.method_inputs(point.method)
        except LinkError as exc:
            raise self._mapped(exc, state, res.name, where) from None
        if len(declared) != len(args):
            raise WriteRejectedError(
                f"{where} takes {len(declared)} input(s); inputMap and the value give {len(args)}",
                device=state.name,
                resource=res.name,
                address=where,
            )
        typed = []
        for k, ((builtin, rank), value) in enumerate(zip(declared, args, strict=True)):
            array = rank >= 1 or (rank in (0, -2, -3) and isinstance(value, list))
            try:
                typed.append((builtin, array, from_edgex(builtin, array, _coerce(builtin, value))))
            except ValueError as exc:
                raise WriteRejectedError(
                    f"{where} input {k}: {exc}", device=state.name, resource=res.name, address=where
                ) from None
        try:
            return await link.call(point.node, point.method, typed)
        except LinkError as exc:
            raise self._mapped(exc, state, res.name, where) from None

    async def write(self, device: str, values: Sequence[tuple[DeviceResource, Any]]) -> None:
        state = self._state(device)
        link = await self._link(state, values[0][0].name if values else None)
        variables = [
            (res, self._point(state, res), v) for res, v in values if not self._point(state, res).is_method
        ]
        if variables:
            try:
                types = await link.node_types([p.node for _, p, _ in variables])
            except LinkError as exc:
                raise self._mapped(exc, state, variables[0][0].name, None) from None
            items = []
            for res, point, value in variables:
                t = types[point.node]
                if isinstance(t, LinkStatus):
                    raise DeviceProtocolError(
                        str(t), device=device, resource=res.name, address=str(point.node)
                    )
                builtin, rank = t
                array = rank >= 1 or (rank in (0, -2, -3) and isinstance(value, list))
                try:
                    items.append((point.node, builtin, array, from_edgex(builtin, array, value)))
                except ValueError as exc:
                    raise WriteRejectedError(
                        f"node {point.node} ({builtin}{'[]' if array else ''}): {exc}",
                        device=device,
                        resource=res.name,
                        address=str(point.node),
                    ) from None
            try:
                statuses = await link.write(items)
            except LinkError as exc:
                raise self._mapped(exc, state, ",".join(r.name for r, _, _ in variables), None) from None
            for (res, point, _), status in zip(variables, statuses, strict=True):
                if status != "Good":
                    cls = WriteRejectedError if status in _WRITE_REFUSED else DeviceProtocolError
                    raise cls(
                        f"the server refused the write: {status}",
                        device=device,
                        resource=res.name,
                        address=str(point.node),
                    )
        for res, value in values:
            point = self._point(state, res)
            if point.is_method:
                await self._call(state, link, res, point, (value,))


def _command_value(res: DeviceResource, s: Sample) -> CommandValue:
    """A sample as the resource's raw value (before the profile's transforms, which the service applies)."""
    vt = res.properties.value_type
    origin = s.source_ns or s.server_ns
    if s.quality is Quality.GOOD:
        return CommandValue(res.name, to_edgex(vt, s.value), origin)
    try:
        value = None if s.value is None else to_edgex(vt, s.value)
    except ValueError:
        value = None
    return CommandValue(res.name, value, origin, s.quality, s.status)


def _coerce(builtin: str, value: Any) -> Any:
    """EdgeX ``inputMap`` entries are strings; parse them for non-text inputs."""
    if not isinstance(value, str) or builtin in _TEXT_BUILTINS or builtin == "ByteString":
        return value
    text = value.strip()
    if builtin == "Boolean":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return value
    try:
        return int(text, 0) if builtin not in ("Float", "Double") else float(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return value


def _parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    path = "connectors.opcua"
    problems: list[tuple[str, str]] = []
    out = dict(OPTION_DEFAULTS)
    for key, value in options.items():
        if key not in OPTION_DEFAULTS:
            problems.append(
                (
                    f"{path}.{key}",
                    f"unknown option{did_you_mean(key, OPTION_DEFAULTS)}; expected {', '.join(OPTION_DEFAULTS)}",
                )
            )
            continue
        default = OPTION_DEFAULTS[key]
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append((f"{path}.{key}", f"expected a positive integer, got {value!r}"))
                continue
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            problems.append((f"{path}.{key}", f"expected a positive number of seconds, got {value!r}"))
            continue
        out[key] = value
    if out["reconnect_max"] < out["reconnect_min"]:
        problems.append((f"{path}.reconnect_max", "must not be less than reconnect_min"))
    if problems:
        raise ConfigError("invalid OPC-UA connector options", problems=problems)
    return out
