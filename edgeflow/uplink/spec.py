"""What a user writes to declare the uplink: one pydantic model per uplink ``type``."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ByteSize, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "BatchingSpec",
    "BrokerAddress",
    "FileUplinkSpec",
    "MqttAuthSpec",
    "MqttUplinkSpec",
    "OutboxSpec",
    "ReconnectSpec",
    "TlsSpec",
    "UplinkSpec",
    "parse_broker_url",
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileUplinkSpec(_Spec):
    """Append each shipped event as one EdgeX v3 ``AddEventRequest`` JSON line to ``path``.
    The debugging sink, and what tests read."""

    type: Literal["file"]
    path: Path
    fsync: bool = False


# --------------------------------------------------------------------------------------------------
# MQTT
# --------------------------------------------------------------------------------------------------

#: Fields a topic template may use.
TOPIC_FIELDS = frozenset({"service", "device", "profile", "source"})

#: Default topics per encoding. ``edgex-json`` uses EdgeX's message-bus topic, so an EdgeX app service
#: or eKuiper subscribed to ``edgex/events/device/#`` consumes edgeflow's events.
DEFAULT_TOPICS = {
    "compact": "edgeflow/{service}/batches",
    "edgex-json": "edgex/events/device/{service}/{profile}/{device}/{source}",
}


class BrokerAddress(BaseModel):
    """A parsed broker URL."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]``, ``mqtts://host[:8883]`` (also ``tcp://``, ``ssl://``, ``tls://``).

    >>> parse_broker_url("mqtts://broker.example")
    BrokerAddress(host='broker.example', port=8883, tls=True)
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    scheme = parts.scheme.lower()
    if scheme in ("mqtt", "tcp"):
        tls = False
    elif scheme in ("mqtts", "ssl", "tls"):
        tls = True
    else:
        raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://, not {scheme}://")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r}: only scheme, host and port are allowed")
    if parts.username or parts.password:
        raise ValueError(f"broker URL {url!r}: put credentials under auth, not in the URL")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r}: {exc}") from None
    return BrokerAddress(host=parts.hostname, port=port or (8883 if tls else 1883), tls=tls)


def template_fields(template: str) -> frozenset[str]:
    """The ``{fields}`` a topic template uses; raises ``ValueError`` on unknown or malformed ones."""
    used: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"topic template {template!r}: {exc}") from None
    for literal, name, spec, conv in parsed:
        if "+" in literal or "#" in literal:
            raise ValueError(f"topic template {template!r}: wildcards (+, #) cannot be published to")
        if name is None:
            continue
        if name not in TOPIC_FIELDS or spec or conv:
            raise ValueError(
                f"topic template {template!r}: unknown field {{{name}}}; "
                f"allowed: {', '.join(sorted('{' + f + '}' for f in TOPIC_FIELDS))}"
            )
        used.add(name)
    if not template or template.startswith("$"):
        raise ValueError(f"topic template {template!r}: must be non-empty and not start with $")
    return frozenset(used)


class TlsSpec(_Spec):
    """TLS to the broker. On whenever the URL is ``mqtts://``. The broker's certificate is always
    verified against ``ca_file`` (or the system's CAs) and its name checked; a failure is an error,
    never a fallback to plaintext."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None
    #: Name sent as SNI and checked against the certificate; default: the URL's host.
    server_hostname: str | None = None
    #: Turning this off still verifies the chain; only the name check is skipped.
    check_hostname: bool = True
    min_version: Literal["1.2", "1.3"] = "1.2"

    @model_validator(mode="after")
    def _pair(self) -> TlsSpec:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (mutual TLS takes a client certificate and its key)")
        return self


class MqttAuthSpec(_Spec):
    username: str = Field(min_length=1)
    password: SecretStr | None = None


class BatchingSpec(_Spec):
    """How readings are gathered into one MQTT message. With ``max_delay: 0`` (the default) each
    :meth:`send` is encoded and committed to the outbox at once (split at ``max_readings``); with a
    delay, readings wait in memory up to that long (a crash loses at most that window)."""

    max_readings: int = Field(default=5000, ge=1)
    max_bytes: ByteSize = Field(default=ByteSize(256 * 1024), ge=1024)
    max_delay: float = Field(default=0.0, ge=0.0, le=3600.0)


class OutboxSpec(_Spec):
    """The durable store-and-forward queue (SQLite, WAL)."""

    path: Path = Path("edgeflow-outbox.sqlite")
    max_bytes: ByteSize = Field(default=ByteSize(256 * 1024 * 1024), ge=64 * 1024)
    overflow: Literal["drop-oldest", "drop-newest", "block"] = "drop-oldest"
    #: ``normal``: a commit survives the process being killed; ``full``: also a power cut (fsync).
    synchronous: Literal["normal", "full"] = "normal"


class ReconnectSpec(_Spec):
    """Capped, jittered exponential backoff between connection attempts."""

    initial_delay: float = Field(default=0.5, gt=0.0)
    max_delay: float = Field(default=30.0, gt=0.0)
    multiplier: float = Field(default=2.0, ge=1.0)

    @model_validator(mode="after")
    def _order(self) -> ReconnectSpec:
        if self.max_delay < self.initial_delay:
            raise ValueError("max_delay must be >= initial_delay")
        return self


class MqttUplinkSpec(_Spec):
    """Ship encoded batches to an MQTT broker with QoS 1, through the durable outbox."""

    type: Literal["mqtt"]
    url: str
    protocol: Literal["3.1.1", "5"] = "5"
    client_id: str | None = None
    keepalive: int = Field(default=30, ge=5, le=65535)
    connect_timeout: float = Field(default=10.0, gt=0.0)
    tls: TlsSpec | None = None
    auth: MqttAuthSpec | None = None
    encoding: Literal["compact", "edgex-json"] = "compact"
    #: Topic template with ``{service}``, ``{device}``, ``{profile}``, ``{source}``; default per encoding.
    topic: str | None = None
    #: ``edgex-json`` only: wrap each event in EdgeX's message-bus envelope, as EdgeX services expect on
    #: the bus — ``edgex-v3`` (``payload`` base64 of the AddEventRequest) or ``edgex-v4`` (``payload``
    #: the object). ``none`` publishes the bare AddEventRequest (eKuiper's MQTT source, external-mqtt triggers).
    envelope: Literal["none", "edgex-v3", "edgex-v4"] = "none"
    #: Unacknowledged QoS 1 publishes in flight at once.
    max_inflight: int = Field(default=100, ge=1, le=65535)
    batching: BatchingSpec = BatchingSpec()
    outbox: OutboxSpec = OutboxSpec()
    reconnect: ReconnectSpec = ReconnectSpec()

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_broker_url(v)
        return v

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        if v is not None:
            template_fields(v)
        return v

    @model_validator(mode="after")
    def _tls_matches_scheme(self) -> MqttUplinkSpec:
        if self.tls is not None and not self.broker.tls:
            raise ValueError("tls is set but url is not mqtts://; use mqtts:// for TLS")
        if self.envelope != "none" and self.encoding != "edgex-json":
            raise ValueError(f"envelope {self.envelope} needs encoding edgex-json, not {self.encoding}")
        return self

    @property
    def broker(self) -> BrokerAddress:
        return parse_broker_url(self.url)

    @property
    def topic_template(self) -> str:
        return self.topic if self.topic is not None else DEFAULT_TOPICS[self.encoding]


UplinkSpec = Annotated[FileUplinkSpec | MqttUplinkSpec, Field(discriminator="type")]
