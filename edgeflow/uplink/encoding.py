"""From readings to outbox items for one uplink: split by topic, chunk, encode, wrap.

::

    batch ─► split by the topic template's fields (device, profile, source) ─► chunks of at most
             max_readings / about max_bytes ─► codec encoder (stream id, seq) ─► envelope ─► OutboxItem

:class:`UplinkEncoder` is the :class:`~edgeflow.commitlog.BatchEncoder` the committer drives: the
committer is its one user, so its sequence numbers have one owner.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from typing import cast

import numpy as np

from edgeflow.codec import Encoder, Interpolation
from edgeflow.commitlog import OutboxItem
from edgeflow.errors import UplinkError
from edgeflow.model import ReadingBatch
from edgeflow.mqtt.topics import escape_level
from edgeflow.uplink.spec import template_fields

__all__ = ["UplinkEncoder", "check_interpolation", "envelope"]


def envelope(payload: bytes, kind: str) -> bytes:
    """EdgeX's message-bus ``MessageEnvelope`` around an AddEventRequest (3.x: base64 payload; 4.x:
    the payload as an object); ``none`` leaves the payload bare."""
    if kind == "none":
        return payload
    head = (
        b'{"apiVersion":"v3","receivedTopic":"","correlationID":"'
        + str(uuid.uuid4()).encode()
        + b'","requestID":"","errorCode":0,"payload":'
    )
    body = b'"' + base64.b64encode(payload) + b'"' if kind == "edgex-v3" else payload
    return head + body + b',"contentType":"application/json"}'


def check_interpolation(interpolation: Mapping[int, str] | None) -> dict[int, Interpolation] | None:
    """Check the per-series interpolation modes the rules declared (``hold`` or ``linear``)."""
    if not interpolation:
        return None
    for sid, mode in interpolation.items():
        if mode not in ("hold", "linear"):
            raise UplinkError(f"interpolation of series {sid} is {mode!r}; expected 'hold' or 'linear'")
    return cast(dict[int, Interpolation], dict(interpolation))


class UplinkEncoder:
    """Encodes for one uplink: its codec encoder, topic template, envelope and message size limits."""

    def __init__(
        self,
        encoder: Encoder,
        *,
        stream_key: str,
        service: str,
        topic: str = "",
        envelope: str = "none",
        max_readings: int = 5000,
        max_bytes: int = 256 * 1024,
    ) -> None:
        self.codec = encoder
        self._stream_key = stream_key
        self.service = service
        self.template = topic
        self.envelope = envelope
        self.max_readings = max_readings
        self.max_bytes = max_bytes
        self._fields = template_fields(topic) - {"service"} if topic else frozenset()
        self._group_keys: dict[int, tuple[str, ...]] = {}  # by series id, of the table below
        self._keys_table: int | None = None
        self._bytes_per_reading = 16.0

    @property
    def stream_key(self) -> str:
        return self._stream_key

    @property
    def stream_id(self) -> str:
        return self.codec.stream_id

    @property
    def next_seq(self) -> int:
        return self.codec.next_seq

    @next_seq.setter
    def next_seq(self, value: int) -> None:
        self.codec.next_seq = value

    def encode(
        self, batch: ReadingBatch, interpolation: Mapping[int, str] | None, *, alarm: bool
    ) -> list[OutboxItem]:
        interp = check_interpolation(interpolation)
        items: list[OutboxItem] = []
        encoding = self.codec.name
        prepare = getattr(self.codec, "prepare", None)
        if prepare is not None and (self._fields or len(batch) > self._per_message()):
            prepare(batch)  # split per device or cut in several messages: the series table grows once
        for fields, part in self._split(batch):
            for chunk in self._chunks(part):
                encoded = self.codec.encode(chunk, interp, alarm=alarm)
                size = 0
                for e in encoded:
                    topic_values = {
                        **fields,
                        **{k: v for k, v in e.topic_fields.items() if k in self._fields},
                    }
                    items.append(
                        OutboxItem(
                            stream_id=e.stream_id,
                            seq=e.seq,
                            topic=self._render_topic(topic_values),
                            payload=envelope(e.payload, self.envelope),
                            alarm=alarm,
                            readings=e.readings,
                            encoding=encoding,
                        )
                    )
                    size += len(e.payload)
                if len(chunk):
                    self._bytes_per_reading = 0.5 * self._bytes_per_reading + 0.5 * (size / len(chunk))
        return items

    def _per_message(self) -> int:
        """Readings a message takes at most: ``max_readings``, and about ``max_bytes`` encoded."""
        return max(1, min(self.max_readings, int(self.max_bytes / max(self._bytes_per_reading, 1e-3))))

    def _chunks(self, batch: ReadingBatch) -> list[ReadingBatch]:
        """Slices of at most ``max_readings`` readings, and about ``max_bytes`` encoded."""
        per = self._per_message()
        n = len(batch)
        if n <= per:
            return [batch]
        return [batch.take(np.arange(i, min(i + per, n))) for i in range(0, n, per)]

    def _split(self, batch: ReadingBatch) -> list[tuple[dict[str, str], ReadingBatch]]:
        """Group readings by the topic fields the template uses (device, profile, source)."""
        if not self._fields:
            return [({}, batch)]
        table = batch.table
        if id(table) != self._keys_table:  # readings read back after a restart may bring their own
            self._keys_table = id(table)
            self._group_keys = {}
        names = sorted(self._fields)
        by_key: dict[tuple[str, ...], list[int]] = {}
        for sid in np.unique(batch.series).tolist():
            key = self._group_keys.get(sid)
            if key is None:
                info = table.info(sid)
                values = {
                    "device": info.device,
                    "profile": info.profile,
                    "source": info.source or info.resource,
                }
                key = tuple(values[n] for n in names)
                self._group_keys[sid] = key
            by_key.setdefault(key, []).append(sid)
        if len(by_key) == 1:
            ((key, _),) = by_key.items()
            return [(dict(zip(names, key, strict=True)), batch)]
        return [
            (
                dict(zip(names, key, strict=True)),
                batch.take(np.isin(batch.series, np.asarray(sids, np.int32))),
            )
            for key, sids in by_key.items()
        ]

    def _render_topic(self, values: Mapping[str, str]) -> str:
        if not self.template:
            return ""
        safe = {k: escape_level(str(v)) or "_" for k, v in values.items()}
        safe["service"] = escape_level(self.service)
        for f in self._fields:
            safe.setdefault(f, "_")
        return self.template.format_map(safe)
