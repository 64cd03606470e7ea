"""What a user writes for the MQTT connector: the broker, EdgeX device-mqtt's topics, free topic
mappings, and each device's ``protocols.mqtt``. Checked once, at start-up; every error names its
key path (``connectors.mqtt.topics[0].fields.temp``)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.mqtt._jsonpath import JsonPath
from edgeflow.errors import ConfigError
from edgeflow.mqtt import MqttAuthSpec, ReconnectSpec, TlsSpec, parse_broker_url
from edgeflow.mqtt.topics import TopicTemplate, escape_level, validate_topic
from edgeflow.parsing import NonNegativeSeconds, PositiveSeconds, validation_problems
from edgeflow.profiles import Device

__all__ = [
    "CommandsSpec",
    "DeviceLink",
    "IncomingSpec",
    "MqttOptions",
    "TopicSpec",
    "parse_device",
    "parse_options",
]

QoS = Literal[0, 1, 2]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _prefix(v: str) -> str:
    v = v.strip("/")
    validate_topic(v)
    return v


class IncomingSpec(_Spec):
    """EdgeX device-mqtt's data topics: ``{prefix}/{device}/{source}``."""

    enabled: bool = True
    prefix: str = "incoming/data"
    qos: QoS = 0

    _p = field_validator("prefix")(classmethod(lambda cls, v: _prefix(v)))


class CommandsSpec(_Spec):
    """EdgeX device-mqtt's commands: ``{device's CommandTopic}/{resource}/{get|set}/{uuid}``, replies
    on ``{response_prefix}/{uuid}``."""

    #: A device with ``protocols.mqtt.Commands: true`` and no ``CommandTopic`` gets ``{prefix}/{device}``.
    prefix: str = "command"
    response_prefix: str = "command/response"
    qos: Literal[0, 1] = 0
    response_qos: QoS = 0
    timeout: PositiveSeconds = Field(default=5.0, description="seconds, or a duration string")

    _p = field_validator("prefix", "response_prefix")(classmethod(lambda cls, v: _prefix(v)))


class TopicSpec(_Spec):
    """A free mapping for devices with their own topics and payloads.

    ``pattern`` is a topic filter whose levels may be ``{device}`` and ``{source}`` (and ``+``/``#``).
    The device is the ``{device}`` level or, without one, the payload value at ``device``. ``fields``
    maps resources to JSON paths in the payload; without ``fields`` the payload is read as EdgeX's is
    (an object keyed by resource names, or a bare value for a single resource) for the source named by
    ``{source}`` or ``source``. ``origin`` is the JSON path of the reading time (epoch s, ms, us or
    ns, or an RFC 3339 string); without it, the time of arrival.
    """

    pattern: str
    qos: QoS = 0
    device: str | None = None
    source: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    origin: str | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        TopicTemplate.parse(v, allowed=frozenset({"device", "source"}))
        return v

    @field_validator("device", "origin")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None:
            JsonPath.parse(v)
        return v

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict[str, str]) -> dict[str, str]:
        for resource, path in v.items():
            try:
                JsonPath.parse(path)
            except ValueError as exc:
                raise ValueError(f"{resource}: {exc}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TopicSpec:
        t = self.template
        if t.has("device") == (self.device is not None):
            raise ValueError("name the device either by a {device} level in pattern or by a device path")
        if self.fields:
            if t.has("source"):
                raise ValueError("with fields, name the source with source, not a {source} level")
            if self.source is None and len(self.fields) > 1:
                raise ValueError("several fields need a source (the event's source name)")
        elif not t.has("source") and self.source is None:
            raise ValueError("without fields, name the source by a {source} level or source")
        elif t.has("source") and self.source is not None:
            raise ValueError("name the source by a {source} level or by source, not both")
        return self

    @property
    def template(self) -> TopicTemplate:
        return TopicTemplate.parse(self.pattern, allowed=frozenset({"device", "source"}))


class MqttOptions(_Spec):
    """``connectors.mqtt``: one broker connection for every MQTT device of the node."""

    url: str = "mqtt://localhost:1883"
    #: 3.1.1 by default: what EdgeX device-mqtt (and most device firmware) speaks, and cheaper to parse
    #: per message than MQTT 5 (no properties). ``"5"`` for a session expiry.
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    client_id: str | None = None
    keepalive: int = Field(default=30, ge=5, le=65535)
    connect_timeout: float = Field(default=10.0, gt=0.0)
    tls: TlsSpec | None = None
    auth: MqttAuthSpec | None = None
    #: False: a persistent session; the broker keeps the subscriptions and queues QoS 1/2 messages.
    clean_start: bool = True
    #: MQTT 5: how long the broker keeps a persistent session after the connection ends (seconds;
    #: with 3.1.1 the broker keeps it until its own limit).
    session_expiry: int = Field(default=3600, ge=0)
    reconnect: ReconnectSpec = ReconnectSpec()
    incoming: IncomingSpec = IncomingSpec()
    commands: CommandsSpec = CommandsSpec()
    topics: list[TopicSpec] = Field(default_factory=list)
    max_payload: ByteSize = Field(default=ByteSize(1024 * 1024), ge=1)
    #: How often the same kind of dropped message (device, reason) is logged at most.
    log_interval: NonNegativeSeconds = 60.0

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_broker_url(v)
        return v

    @model_validator(mode="after")
    def _tls_matches_scheme(self) -> MqttOptions:
        if self.tls is not None and not parse_broker_url(self.url).tls:
            raise ValueError("tls is set but url is not mqtts://; use mqtts:// for TLS")
        return self

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"edgeflow-devices-{socket.gethostname()}-{os.getpid()}"


def parse_options(options: Mapping[str, Any]) -> MqttOptions:
    """The connector's options, or a :class:`ConfigError` naming each bad key."""
    try:
        return MqttOptions.model_validate(dict(options))
    except ValidationError as exc:
        raise ConfigError(
            "MQTT connector options are not valid",
            problems=validation_problems(
                exc, prefix="connectors.mqtt", data=dict(options), model=MqttOptions
            ),
        ) from None


@dataclass(frozen=True, slots=True)
class DeviceLink:
    """A device's ``protocols.mqtt``: where its commands go (None: it takes no commands)."""

    command_topic: str | None


def parse_device(device: Device, commands: CommandsSpec) -> DeviceLink:
    """``protocols.mqtt`` of ``device``: ``CommandTopic`` (EdgeX: ``command/<device>``) or
    ``Commands: true`` (the topic from the connector's command prefix and the escaped name)."""
    where = f"devices.{device.name}.protocols.mqtt"
    props = device.protocols.get("mqtt")
    if props is None:
        return DeviceLink(None)
    problems = [
        (f"{where}.{k}", "unknown key; expected CommandTopic or Commands")
        for k in props
        if k not in ("CommandTopic", "Commands")
    ]
    topic = props.get("CommandTopic")
    enabled = props.get("Commands", topic is not None)
    if not isinstance(enabled, bool):
        problems.append((f"{where}.Commands", f"expected true or false, got {enabled!r}"))
    if topic is not None:
        if not isinstance(topic, str):
            problems.append((f"{where}.CommandTopic", f"expected a topic, got {topic!r}"))
        else:
            try:
                validate_topic(topic.strip("/"))
            except ValueError as exc:
                problems.append((f"{where}.CommandTopic", str(exc)))
    if problems:
        raise ConfigError(
            f"device {device.name!r}: MQTT protocol properties are not valid", problems=problems
        )
    if not enabled:
        return DeviceLink(None)
    if isinstance(topic, str):
        return DeviceLink(topic.strip("/"))
    return DeviceLink(f"{commands.prefix}/{escape_level(device.name)}")
