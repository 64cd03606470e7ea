"""What a user writes to declare the uplink: one pydantic model per uplink ``type``. Durations take
seconds or a unit (``"250ms"``, ``"1m30s"``), read by :func:`edgeflow.parsing.parse_duration`."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, field_validator, model_validator

from edgeflow.model import OverflowPolicy
from edgeflow.mqtt import BrokerAddress, MqttAuthSpec, ReconnectSpec, TlsSpec, parse_broker_url
from edgeflow.parsing import NS_PER_SECOND, NonNegativeSeconds, PositiveSeconds, duration_ns

__all__ = ["BatchingSpec", "FileUplinkSpec", "MqttUplinkSpec", "OutboxSpec", "UplinkSpec", "template_fields"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutboxSpec(_Spec):
    """The commit log: encoded batches waiting for the transport, stream positions and rule state, in one
    SQLite file (WAL). ``max_bytes`` bounds the batches; ``overflow`` says what happens when it is full."""

    path: Path = Path("edgeflow-outbox.sqlite")
    max_bytes: ByteSize = Field(default=ByteSize(256 * 1024 * 1024), ge=64 * 1024)
    overflow: OverflowPolicy = "drop-oldest"
    #: ``normal``: a commit survives the process being killed; ``full``: also a power cut (fsync).
    synchronous: Literal["normal", "full"] = "normal"


class FileUplinkSpec(_Spec):
    """Append each shipped event as one EdgeX v3 ``AddEventRequest`` JSON line to ``path``.
    The debugging sink, and what tests read. Events go through the commit log like any uplink's
    (``outbox.path`` defaults to ``<path>.outbox.sqlite``): a line is written, then acknowledged."""

    type: Literal["file"]
    path: Path
    #: fsync the file after each write, before the batches written are acknowledged.
    fsync: bool = False
    outbox: OutboxSpec | None = None

    @property
    def outbox_spec(self) -> OutboxSpec:
        """The commit log's settings, with the default path beside ``path``."""
        if self.outbox is not None:
            return self.outbox
        return OutboxSpec(path=self.path.with_name(self.path.name + ".outbox.sqlite"))


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


#: The default ``batching.max_delay`` of the ``compact`` encoding: a message carries a second of
#: readings (with a per-device topic one poll a message would be 44 bytes a reading for 1,000 devices
#: x 10 resources, against 5 with 1 s; one commit, publish and acknowledgement a poll cost 3x the CPU).
COMPACT_MAX_DELAY = 1.0
#: The default ``batching.commit_delay`` when ``max_delay`` is above it.
COMMIT_DELAY = 0.02


class BatchingSpec(_Spec):
    """How readings are gathered into one MQTT message, and how long a reading waits in memory.

    ``commit_delay``: a group of readings is committed to the commit log (durable) this long after
    its first reading came (alarms and ``max_readings`` at once) — the most a ``kill -9`` can take, and
    what bounds the commits a second. ``max_delay``: the message that carries committed readings is cut
    this long after the oldest of them came (or at ``max_readings``); until then they wait staged in the
    commit log, not in memory. With ``max_delay: 0`` every group is a message. Defaults: ``max_delay``
    1 s for ``compact`` (:data:`COMPACT_MAX_DELAY`), 0 for ``edgex-json``; ``commit_delay`` 20 ms
    (:data:`COMMIT_DELAY`) or ``max_delay`` if that is shorter. With AutoEvents aligned (the default),
    a tick's reads are one group whatever the delay, so a short one costs no extra commits."""

    max_readings: int = Field(default=5000, ge=1)
    max_bytes: ByteSize = Field(default=ByteSize(256 * 1024), ge=1024)
    max_delay: NonNegativeSeconds = Field(default=0.0, le=3600.0, description="0: every group is a message")
    commit_delay: NonNegativeSeconds | None = Field(
        default=None, le=3600.0, description="default: 20 ms, or max_delay if shorter; 0: commit at once"
    )

    @property
    def group_delay(self) -> float:
        """``commit_delay`` as set, or its default for this ``max_delay``."""
        return self.commit_delay if self.commit_delay is not None else min(COMMIT_DELAY, self.max_delay)


class MqttUplinkSpec(_Spec):
    """Ship encoded batches to an MQTT broker with QoS 1, through the durable outbox."""

    type: Literal["mqtt"]
    url: str
    protocol: Literal["3.1.1", "5"] = "5"
    client_id: str | None = None
    #: Whole seconds (MQTT sends the keepalive as a 16-bit count of seconds).
    keepalive: int = Field(default=30, ge=5, le=65535)
    connect_timeout: PositiveSeconds = 10.0
    tls: TlsSpec | None = None
    auth: MqttAuthSpec | None = None
    encoding: Literal["compact", "edgex-json"] = "compact"
    #: Topic template with ``{service}``, ``{device}``, ``{profile}``, ``{source}``; default per encoding.
    topic: str | None = None
    #: ``edgex-json`` only: wrap each event in EdgeX's message-bus envelope, as EdgeX services expect on
    #: the bus — ``edgex-v3`` (``payload`` base64 of the AddEventRequest) or ``edgex-v4`` (``payload``
    #: the object). ``none`` publishes the bare AddEventRequest (eKuiper's MQTT source, external-mqtt triggers).
    envelope: Literal["none", "edgex-v3", "edgex-v4"] = "none"
    #: ``compact`` only: messages of many series (or few points per series) refer to the stream's series
    #: table by an 8-byte hash instead of naming every series; the table travels at stream start, when
    #: it grows, after a rewind and every 30 s. A receiver holds a message until its table comes; the
    #: receivers of a group (``receive --group`` with the PostgreSQL sink) share tables through the
    #: database. ``false``: every message names its series (for receivers without a shared sink that
    #: each see only part of a stream).
    series_table: bool = True
    #: Unacknowledged QoS 1 publishes in flight at once.
    max_inflight: int = Field(default=100, ge=1, le=65535)
    batching: BatchingSpec = BatchingSpec()
    outbox: OutboxSpec = OutboxSpec()
    reconnect: ReconnectSpec = ReconnectSpec()

    @field_validator("keepalive", mode="before")
    @classmethod
    def _keepalive(cls, v: object) -> object:
        ns = duration_ns(v)
        if ns % NS_PER_SECOND:
            raise ValueError(f"must be a whole number of seconds, got {v!r}")
        return ns // NS_PER_SECOND

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
        if self.encoding == "compact" and "max_delay" not in self.batching.model_fields_set:
            object.__setattr__(
                self, "batching", self.batching.model_copy(update={"max_delay": COMPACT_MAX_DELAY})
            )
        return self

    @property
    def broker(self) -> BrokerAddress:
        return parse_broker_url(self.url)

    @property
    def topic_template(self) -> str:
        return self.topic if self.topic is not None else DEFAULT_TOPICS[self.encoding]


UplinkSpec = Annotated[FileUplinkSpec | MqttUplinkSpec, Field(discriminator="type")]
