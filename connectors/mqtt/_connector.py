"""The MQTT connector: devices that publish, commands over topics, EdgeX device-mqtt compatible.

One broker connection serves every device (:class:`~edgeflow.mqtt.session.MqttSession`). Devices
publish on their own schedule; each message is routed (:mod:`connectors.mqtt._routes`), checked
against the profile and pushed to the device service, which batches readings onto the bus. A
message that cannot be used is counted per device and reason and logged once per interval
(:mod:`connectors.mqtt._rejects`); the connector goes on.

Reads and writes from the device service go out as EdgeX device-mqtt commands, one per resource:
``{CommandTopic}/{resource}/get/{uuid}`` with an empty payload, ``.../set/{uuid}`` with
``{"resource": value}``; the device answers on ``{response_prefix}/{uuid}`` (a get with the value,
keyed by the resource's name). A command that gets no reply within ``commands.timeout`` fails with
:class:`~edgeflow.errors.DeviceTimeoutError`; a reply after that is counted as late and dropped.

Reconnection is owned by the MQTT session (capped, jittered backoff; subscriptions renewed after
every reconnect unless the broker kept a persistent session); paho's own reconnect is off. While the
broker is unreachable, commands fail at once with :class:`~edgeflow.errors.DeviceOfflineError`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson

from connectors.mqtt._commands import Outcome, Pending
from connectors.mqtt._config import DeviceLink, MqttOptions, parse_device, parse_options
from connectors.mqtt._rejects import PayloadError, Reason, Rejects
from connectors.mqtt._routes import Router, SourcePlan, values_by_name
from edgeflow.connector import CommandValue, Connector, ConnectorMetric, DeviceHealth, PushSink
from edgeflow.errors import (
    ConnectorError,
    DeviceOfflineError,
    DeviceProtocolError,
    DeviceTimeoutError,
    UplinkError,
    ValueFormatError,
)
from edgeflow.mqtt.connection import connect_params
from edgeflow.mqtt.session import MqttSession, SubscriptionSpec
from edgeflow.mqtt.topics import escape_level
from edgeflow.profiles import Device, DeviceProfile, DeviceResource

__all__ = ["MqttConnector"]

log = logging.getLogger(__name__)


class MqttConnector(Connector):
    """EdgeX device-mqtt compatible connector (``connector: mqtt``); options are :class:`MqttOptions`."""

    type_name: ClassVar[str] = "mqtt"
    supports_push: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.spec: MqttOptions = parse_options(self.options)
        self._links: dict[str, DeviceLink] = {}
        self._sinks: dict[str, PushSink] = {}
        self._router = Router(self.spec, self.devices, int(self.spec.max_payload))
        self._response_prefix = self.spec.commands.response_prefix + "/"
        self._pending = Pending()
        self.rejects = Rejects(self.spec.log_interval)
        self.counts = {"messages": 0, "accepted": 0, "replies": 0, "late_replies": 0}
        self._session: MqttSession | None = None
        self._seen: dict[str, DeviceHealth] = {}
        self._link_up = False
        self._bugs: set[type[BaseException]] = set()

    # -- devices ------------------------------------------------------------------------------------

    def validate_device(self, device: Device, profile: DeviceProfile) -> None:
        parse_device(device, self.spec.commands)

    def add_device(self, device: Device, profile: DeviceProfile) -> None:
        super().add_device(device, profile)
        self._links[device.name] = parse_device(device, self.spec.commands)

    def remove_device(self, name: str) -> None:
        """Forget the device: its messages are then counted as from an unknown device."""
        super().remove_device(name)
        self._links.pop(name, None)
        self._sinks.pop(name, None)
        self._seen.pop(name, None)
        self._router.forget(name)

    async def subscribe(self, device: str, sink: PushSink) -> None:
        self.device(device)
        self._sinks[device] = sink

    def health(self, device: str) -> DeviceHealth:
        if self._session is not None and not self._link_up:
            return DeviceHealth.DOWN
        return self._seen.get(device, DeviceHealth.UNKNOWN)

    # -- connection ---------------------------------------------------------------------------------

    def subscriptions(self) -> list[SubscriptionSpec]:
        """The topic filters this connector subscribes to, with their QoS."""
        subs: list[SubscriptionSpec] = list(self._router.filters)
        if any(link.command_topic for link in self._links.values()):
            c = self.spec.commands
            subs.append((f"{c.response_prefix}/#", c.response_qos))
        return subs

    async def open(self) -> None:
        """Connect and subscribe. A broker that is down is retried in the background; a TLS or login
        failure raises :class:`~edgeflow.errors.TransportSecurityError` (never a plaintext fallback)."""
        if self._session is not None:
            return
        s = self.spec
        params = connect_params(
            s.url,
            client_id=s.effective_client_id,
            tls=s.tls,
            auth=s.auth,
            protocol=s.protocol,
            keepalive=s.keepalive,
            connect_timeout=s.connect_timeout,
            clean_start=s.clean_start,
            session_expiry=s.session_expiry if not s.clean_start else 0,
        )
        session = MqttSession(
            params,
            self.subscriptions(),
            self._on_message,
            reconnect=s.reconnect,
            on_link=self._on_link,
            name=f"mqtt connector {params.client_id}",
        )
        await session.start()
        self._session = session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.stop()
        self._link_up = False
        self.rejects.flush()

    async def wait_connected(self) -> None:
        """Until the broker connection is up and subscribed (tests, start-up checks)."""
        if self._session is None:
            raise ConnectorError("the MQTT connector is not open")
        await self._session.wait_connected()

    def _on_link(self, up: bool) -> None:
        self._link_up = up

    # -- incoming -----------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.counts["messages"] += 1
        try:
            if topic.startswith(self._response_prefix):
                self._reply(topic, payload)
                return
            delivery = self._router.route(topic, payload)
            if delivery is None:
                raise PayloadError(Reason.BAD_TOPIC, "no route takes this topic")
            sink = self._sinks.get(delivery.device)
            if sink is None:
                raise PayloadError(
                    Reason.NOT_SUBSCRIBED, "the device is not subscribed (LOCKED?)", device=delivery.device
                )
            try:
                sink(delivery.device, delivery.source, delivery.values)
            except (ConnectorError, ValueFormatError) as exc:
                raise PayloadError(Reason.REJECTED, str(exc), device=delivery.device) from exc
        except PayloadError as exc:
            self.rejects.add(exc.device or "", exc.reason, exc.message, topic)
            return
        except Exception as exc:  # a bug must not stop the connector; say so once per kind
            if type(exc) not in self._bugs:
                self._bugs.add(type(exc))
                log.exception("mqtt: unexpected error on a message on %r", topic[:200])
            self.rejects.add("", Reason.ERROR, f"{type(exc).__name__}: {exc}", topic)
            return
        self.counts["accepted"] += 1
        self._seen[delivery.device] = DeviceHealth.UP

    def _reply(self, topic: str, payload: bytes) -> None:
        cid = topic.rsplit("/", 1)[-1]
        outcome, device = self._pending.resolve(cid, payload)
        if outcome is Outcome.ANSWERED:
            self.counts["replies"] += 1
            self._seen[device] = DeviceHealth.UP
        elif outcome is Outcome.LATE:
            self.counts["late_replies"] += 1
            log.debug("mqtt: late reply from %s on %r dropped", device, topic)
        else:
            raise PayloadError(Reason.UNKNOWN_REPLY, f"no command {cid[:64]!r} is waiting for a reply")

    # -- commands -----------------------------------------------------------------------------------

    def _command_topic(self, device: str) -> str:
        self.device(device)
        topic = self._links[device].command_topic
        if topic is None:
            raise ConnectorError(
                "device takes no commands: give it protocols.mqtt.CommandTopic (or Commands: true)",
                device=device,
            )
        return topic

    async def _exchange(
        self, device: str, base: str, res: DeviceResource, method: str, payload: bytes
    ) -> bytes:
        session = self._session
        if session is None:
            raise ConnectorError("the MQTT connector is not open", device=device, resource=res.name)
        c = self.spec.commands
        cid, fut = self._pending.open(device)
        topic = f"{base}/{escape_level(res.name)}/{method}/{cid}"
        timed_out = True
        try:
            try:
                session.publish(topic, payload, c.qos)
            except UplinkError as exc:
                timed_out = False
                raise DeviceOfflineError(
                    f"cannot send the {method} command: {exc}", device=device, resource=res.name
                ) from exc
            try:
                async with asyncio.timeout(c.timeout):
                    reply = await fut
            except TimeoutError:
                raise DeviceTimeoutError(
                    f"no reply to {method} within {c.timeout:g} s",
                    device=device,
                    resource=res.name,
                    address=topic,
                ) from None
            timed_out = False
            return reply
        finally:
            self._pending.close(cid, timed_out=timed_out)

    async def _get(self, device: str, base: str, res: DeviceResource) -> CommandValue:
        reply = await self._exchange(device, base, res, "get", b"")
        try:
            (value,) = values_by_name(device, SourcePlan.of((res,)), reply)
        except PayloadError as exc:
            raise DeviceProtocolError(
                f"reply to get is not usable ({exc.reason.value}): {exc.message}",
                device=device,
                resource=res.name,
            ) from None
        return value

    async def read(self, device: str, resources: Sequence[DeviceResource]) -> list[CommandValue]:
        base = self._command_topic(device)
        results = await asyncio.gather(
            *(self._get(device, base, r) for r in resources), return_exceptions=True
        )
        return [_raise_first(results, r) for r in results]

    async def write(self, device: str, values: Sequence[tuple[DeviceResource, Any]]) -> None:
        base = self._command_topic(device)
        sends = []
        for res, value in values:
            body = base64.b64encode(value).decode() if isinstance(value, bytes | bytearray) else value
            try:
                payload = orjson.dumps({res.name: body})
            except TypeError as exc:
                raise ConnectorError(
                    f"value {value!r} cannot be sent as JSON", device=device, resource=res.name
                ) from exc
            sends.append(self._exchange(device, base, res, "set", payload))
        results = await asyncio.gather(*sends, return_exceptions=True)
        for r in results:
            _raise_first(results, r)

    # -- looking ------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        rejected: dict[str, dict[str, int]] = {}
        for (device, reason), n in self.rejects.counts().items():
            rejected.setdefault(device, {})[reason] = n
        session = self._session
        return {
            **self.counts,
            "rejected": rejected,
            "rejected_total": self.rejects.total,
            "commands_answered": self._pending.answered,
            "commands_timed_out": self._pending.timed_out,
            "commands_waiting": len(self._pending),
            "late_replies_by_device": dict(self._pending.late),
            "connected": int(self._link_up),
            "subscriptions": dict(session.granted) if session is not None else {},
            **({f"link_{k}": v for k, v in session.counts.items()} if session is not None else {}),
        }

    def metrics(self) -> list[ConnectorMetric]:
        out = [ConnectorMetric(f"mqtt_{k}_total", float(v)) for k, v in self.counts.items()]
        out += [
            ConnectorMetric("mqtt_rejected_total", float(n), (("device", d), ("reason", r)))
            for (d, r), n in self.rejects.counts().items()
        ]
        out += [
            ConnectorMetric("mqtt_commands_timed_out_total", float(self._pending.timed_out)),
            ConnectorMetric("mqtt_connected", float(self._link_up), kind="gauge"),
        ]
        return out


def _raise_first(results: Sequence[Any], item: Any) -> Any:
    """``item``, unless some result is an exception: then the first one is raised."""
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return item
