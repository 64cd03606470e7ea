"""MQTT uplink: encode, commit to the outbox, publish with QoS 1, delete on PUBACK.

::

    send(batch) ─► split by topic fields ─► encoder ─► Outbox.put (durable) ─► pump ─► paho (QoS 1)
                                                          ▲                              │
                                                          └──────── ack (PUBACK) ◄───────┘

One task (:meth:`MqttUplink._run`) owns the connection: it connects, pumps batches from the outbox
(alarms first, at most ``max_inflight`` unacknowledged), and when the connection is lost it puts
everything in flight back and reconnects with capped, jittered backoff. paho's own reconnect is
off. A TLS or authentication failure is a :class:`~edgeflow.errors.TransportSecurityError`; at
:meth:`start` it is raised, later it is logged, counted and retried — never with plaintext.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from typing import Protocol, cast

import numpy as np

from edgeflow.codec import Encoder, Interpolation, make_encoder, new_stream_id
from edgeflow.errors import TransportSecurityError, UplinkError
from edgeflow.model import ReadingBatch
from edgeflow.mqtt.connection import Backoff, MqttConnection, connect_params
from edgeflow.outbox import Outbox, OutboxItem, OutboxRecord
from edgeflow.uplink.spec import MqttUplinkSpec, template_fields

__all__ = ["EncoderFactory", "MetricsSink", "MqttUplink"]

log = logging.getLogger(__name__)


EncoderFactory = Callable[..., Encoder]
"""``factory(encoding_name, stream_id=..., first_seq=...)`` → an encoder; default :func:`edgeflow.codec.make_encoder`."""


class MetricsSink(Protocol):
    """Where the uplink reports counters as they change (``name``, increment)."""

    def inc(self, name: str, value: float = 1.0) -> None: ...


def _default_encoder_factory(name: str, *, stream_id: str, first_seq: int = 0) -> Encoder:
    return make_encoder(name, stream_id=stream_id, first_seq=first_seq)


def _interpolation(interpolation: Mapping[int, str] | None) -> dict[int, Interpolation] | None:
    """Check the per-series interpolation modes the rules declared (``hold`` or ``linear``)."""
    if not interpolation:
        return None
    for sid, mode in interpolation.items():
        if mode not in ("hold", "linear"):
            raise UplinkError(f"interpolation of series {sid} is {mode!r}; expected 'hold' or 'linear'")
    return cast(dict[int, Interpolation], dict(interpolation))


def _envelope(payload: bytes, kind: str) -> bytes:
    """EdgeX's message-bus ``MessageEnvelope`` around an AddEventRequest (3.x: base64 payload; 4.x:
    the payload as an object)."""
    if kind == "none":
        return payload
    head = (
        b'{"apiVersion":"v3","receivedTopic":"","correlationID":"'
        + str(uuid.uuid4()).encode()
        + b'","requestID":"","errorCode":0,"payload":'
    )
    body = b'"' + base64.b64encode(payload) + b'"' if kind == "edgex-v3" else payload
    return head + body + b',"contentType":"application/json"}'


_TOPIC_ESCAPES = str.maketrans({"/": "%2F", "+": "%2B", "#": "%23"})


class MqttUplink:
    """Ships readings to an MQTT broker through a durable outbox. See the module docstring."""

    def __init__(
        self,
        spec: MqttUplinkSpec,
        *,
        service: str,
        encoder_factory: EncoderFactory | None = None,
        metrics: MetricsSink | None = None,
    ) -> None:
        self.spec = spec
        self.service = service
        self._encoder_factory = encoder_factory or _default_encoder_factory
        self._metrics = metrics
        self._template = spec.topic_template
        self._fields = template_fields(self._template) - {"service"}
        self._group_keys: dict[int, tuple[str, ...]] = {}
        self._params = connect_params(
            spec.url,
            client_id=spec.client_id or f"edgeflow-{service}-{os.getpid()}",
            tls=spec.tls,
            auth=spec.auth,
            protocol=spec.protocol,
            keepalive=spec.keepalive,
            connect_timeout=spec.connect_timeout,
            max_inflight=spec.max_inflight,
        )
        #: The stream this uplink numbers its batches in. Saved in the outbox with every commit, so a
        #: restart on the same outbox resumes it (no sequence number is ever reused; the receiver's
        #: gaps mean real loss); a new outbox starts a new stream.
        self.stream_id = f"{service}-{new_stream_id()}"
        self._stream_key = f"mqtt:{service}:{spec.encoding}"
        self._encoder: Encoder | None = None
        self._outbox: Outbox | None = None
        self._conn: MqttConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._inflight: dict[int, OutboxRecord] = {}
        self._acked: list[OutboxRecord] = []
        self._ack_scheduled = False
        self._stopping = False
        # batching
        self._acc: list[ReadingBatch] = []
        self._acc_interp: dict[int, Interpolation] = {}
        self._acc_n = 0
        self._acc_timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._bytes_per_reading = 16.0
        # counters
        self.last_error: BaseException | None = None
        self._final_outbox_stats: dict[str, int | float] = {}
        self._c = {
            "readings_in": 0,
            "batches_committed": 0,
            "readings_committed": 0,
            "alarms": 0,
            "published": 0,
            "republished": 0,
            "rejected": 0,
            "reconnects": 0,
            "connect_failures": 0,
            "security_failures": 0,
        }

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            raise UplinkError("uplink not started")
        return self._outbox

    @property
    def next_seq(self) -> int:
        """The sequence number the next committed batch will carry (resumed after a restart)."""
        if self._encoder is None:
            raise UplinkError("uplink not started")
        return self._encoder.next_seq

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed.done()

    async def start(self) -> None:
        """Open the outbox and start shipping. A broker that cannot be reached is retried in the
        background (readings are kept in the outbox meanwhile); a TLS or authentication failure on
        the first attempt is raised as :class:`TransportSecurityError`."""
        ob = self.spec.outbox
        self._outbox = Outbox(
            ob.path, max_bytes=int(ob.max_bytes), overflow=ob.overflow, synchronous=ob.synchronous
        )
        first_seq = 0
        resumed = self._outbox.stream_state(self._stream_key)
        if resumed is not None:
            self.stream_id, first_seq = resumed
            log.info("uplink %s: resuming stream %s at seq %d", self.service, self.stream_id, first_seq)
        self._encoder = self._encoder_factory(
            self.spec.encoding, stream_id=self.stream_id, first_seq=first_seq
        )
        conn: MqttConnection | None = None
        try:
            conn = await self._connect()
        except TransportSecurityError:
            self._outbox.close()
            self._outbox = None
            raise
        except UplinkError as exc:
            log.warning("uplink %s: %s; keeping readings in the outbox and retrying", self.service, exc)
        self._task = asyncio.get_running_loop().create_task(self._run(conn), name=f"uplink {self.service}")

    async def stop(self, *, flush_timeout: float = 5.0) -> None:
        """Commit what is being batched, give the connection up to ``flush_timeout`` seconds to empty
        the outbox, then disconnect. What is not acknowledged stays in the outbox for the next start."""
        if self._outbox is None:
            return
        await self._flush_accumulated()
        if self.connected and flush_timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    while self._outbox.queued_batches and self.connected:
                        self._wake.clear()
                        await self._wake.wait()
        self._stopping = True
        self._wake.set()
        if self._conn is not None:
            await self._conn.disconnect()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._flush_acks()
        self._final_outbox_stats = self._outbox_stats()
        self._outbox.close()
        self._outbox = None
        log.info("uplink %s stopped: %s", self.service, self.stats())

    # -- sending ----------------------------------------------------------------------------------

    async def send(
        self,
        batch: ReadingBatch,
        interpolation: Mapping[int, str] | None = None,
        *,
        alarm: bool = False,
    ) -> None:
        """Encode ``batch`` and commit it to the outbox; durable when this returns (unless batching
        has a ``max_delay``, then within that delay). Alarms skip batching and are sent first."""
        if self._outbox is None or self._encoder is None:
            raise UplinkError("uplink not started")
        n = len(batch)
        if n == 0:
            return
        interp = _interpolation(interpolation)
        self._c["readings_in"] += n
        if alarm:
            self._c["alarms"] += n
            await self._commit(batch, interp, alarm=True)
            return
        if self.spec.batching.max_delay == 0:
            await self._commit(batch, interp, alarm=False)
            return
        self._acc.append(batch)
        self._acc_n += n
        if interp:
            self._acc_interp.update(interp)
        if self._acc_n >= self.spec.batching.max_readings:
            await self._flush_accumulated()
        elif self._acc_timer is None:
            self._acc_timer = asyncio.get_running_loop().call_later(
                self.spec.batching.max_delay, self._timer_flush
            )

    def _timer_flush(self) -> None:
        self._acc_timer = None
        self._flush_task = asyncio.get_running_loop().create_task(self._flush_accumulated())
        self._flush_task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.last_error = task.exception()
            log.error("uplink %s: committing batched readings failed: %s", self.service, task.exception())

    async def _flush_accumulated(self) -> None:
        if self._acc_timer is not None:
            self._acc_timer.cancel()
            self._acc_timer = None
        if not self._acc:
            return
        batches, interp = self._acc, self._acc_interp
        self._acc, self._acc_interp, self._acc_n = [], {}, 0
        await self._commit(ReadingBatch.concat(batches[0].table, batches), interp or None, alarm=False)

    async def _commit(
        self, batch: ReadingBatch, interpolation: Mapping[int, Interpolation] | None, *, alarm: bool
    ) -> None:
        assert self._encoder is not None
        assert self._outbox is not None
        items: list[OutboxItem] = []
        encoding = self.spec.encoding
        for fields, part in self._split(batch):
            for chunk in self._chunks(part):
                encoded = self._encoder.encode(chunk, interpolation, alarm=alarm)
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
                            payload=_envelope(e.payload, self.spec.envelope),
                            alarm=alarm,
                            readings=e.readings,
                            encoding=encoding,
                        )
                    )
                    size += len(e.payload)
                if len(chunk):
                    self._bytes_per_reading = 0.5 * self._bytes_per_reading + 0.5 * (size / len(chunk))
        before = self._outbox.put_readings
        stored = await self._outbox.put(items, (self._stream_key, self.stream_id, self._encoder.next_seq))
        committed = self._outbox.put_readings - before
        self._c["batches_committed"] += stored
        self._c["readings_committed"] += committed
        self._inc("uplink_readings_committed", committed)
        self._wake.set()

    def _chunks(self, batch: ReadingBatch) -> list[ReadingBatch]:
        """Slices of at most ``max_readings`` readings, and about ``max_bytes`` encoded."""
        b = self.spec.batching
        per = max(1, min(b.max_readings, int(b.max_bytes / max(self._bytes_per_reading, 1e-3))))
        n = len(batch)
        if n <= per:
            return [batch]
        return [batch.take(np.arange(i, min(i + per, n))) for i in range(0, n, per)]

    def _split(self, batch: ReadingBatch) -> list[tuple[dict[str, str], ReadingBatch]]:
        """Group readings by the topic fields the template uses (device, profile, source)."""
        if not self._fields:
            return [({}, batch)]
        table = batch.table
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
                key = tuple(values[f] for f in names)
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
        safe = {k: str(v).translate(_TOPIC_ESCAPES) or "_" for k, v in values.items()}
        safe["service"] = self.service.translate(_TOPIC_ESCAPES)
        for f in self._fields:
            safe.setdefault(f, "_")
        return self._template.format_map(safe)

    # -- the connection task ----------------------------------------------------------------------

    async def _connect(self) -> MqttConnection:
        conn = MqttConnection(self._params, on_ack=self._on_ack)
        try:
            await conn.connect()
        except TransportSecurityError as exc:
            self._c["security_failures"] += 1
            self.last_error = exc
            raise
        except UplinkError as exc:
            self._c["connect_failures"] += 1
            self.last_error = exc
            raise
        self._conn = conn
        conn.closed.add_done_callback(lambda _f: self._wake.set())
        return conn

    async def _run(self, conn: MqttConnection | None) -> None:
        rc = self.spec.reconnect
        backoff = Backoff(rc.initial_delay, rc.max_delay, rc.multiplier)
        while not self._stopping:
            if conn is None:
                try:
                    conn = await self._connect()
                except TransportSecurityError as exc:
                    log.error("uplink %s: %s (not falling back to plaintext; retrying)", self.service, exc)
                except UplinkError as exc:
                    log.info("uplink %s: %s", self.service, exc)
                if conn is None:
                    await asyncio.sleep(backoff.next_delay())
                    continue
            backoff.reset()
            try:
                await self._pump(conn)
            except Exception as exc:  # an outbox failure must not end shipping for good
                self.last_error = exc
                log.exception("uplink %s: sending failed; reconnecting", self.service)
            finally:
                self._flush_acks()
                self._inflight.clear()
                resent = self.outbox.release() if self._outbox is not None else 0
                self._c["republished"] += resent
                self._conn = None
                if not conn.closed.done():
                    await conn.disconnect()
                conn = None
            if not self._stopping:
                self._c["reconnects"] += 1
                self._inc("uplink_reconnects")
                await asyncio.sleep(backoff.next_delay())

    async def _pump(self, conn: MqttConnection) -> None:
        outbox = self.outbox
        window = self.spec.max_inflight
        while not conn.closed.done() and not self._stopping:
            room = window - len(self._inflight)
            records = outbox.take(room) if room > 0 else []
            for rec in records:
                try:
                    mid = conn.publish(rec.topic, rec.payload)
                except UplinkError as exc:
                    log.warning("uplink %s: %s", self.service, exc)
                    return
                self._inflight[mid] = rec
            self._c["published"] += len(records)
            if records and len(records) == room:
                await asyncio.sleep(0)  # let the writer and the acks run, then fill the window again
                continue
            self._wake.clear()
            if conn.closed.done():
                return
            await self._wake.wait()

    def _on_ack(self, mid: int, ok: bool) -> None:
        rec = self._inflight.pop(mid, None)
        if rec is None:
            return
        if ok:
            self._acked.append(rec)
            if not self._ack_scheduled:
                self._ack_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_acks)
        else:
            self._c["rejected"] += 1  # stays in the outbox; sent again after the next reconnect
        self._wake.set()

    def _flush_acks(self) -> None:
        self._ack_scheduled = False
        if not self._acked or self._outbox is None:
            return
        recs, self._acked = self._acked, []
        self._outbox.ack(recs)
        self._inc("uplink_batches_acked", len(recs))
        self._inc("uplink_readings_acked", sum(r.readings for r in recs))
        self._inc("uplink_bytes_shipped", sum(len(r.payload) for r in recs))
        self._wake.set()

    def _inc(self, name: str, value: float = 1.0) -> None:
        if self._metrics is not None and value:
            self._metrics.inc(name, value)

    # -- looking ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, int | float]:
        """Counters: ``queued`` (batches in the outbox), ``queued_readings``, ``queued_bytes``,
        ``inflight``, ``sent`` (publishes, including re-sends), ``acked``, ``acked_readings``,
        ``dropped_by_policy`` (batches), ``dropped_readings``, ``bytes_shipped`` (payload bytes
        confirmed), ``reconnects``, ``connected`` (0/1), and more."""
        out: dict[str, int | float] = dict(self._c)
        out.update(self._outbox_stats())
        out["sent"] = self._c["published"]
        out["connected"] = int(self.connected)
        out["batching"] = self._acc_n
        return out

    def _outbox_stats(self) -> dict[str, int | float]:
        ob = self._outbox
        if ob is None:
            return self._final_outbox_stats
        return dict(
            queued=ob.queued_batches,
            queued_readings=ob.queued_readings,
            queued_bytes=ob.queued_bytes,
            inflight=len(self._inflight),
            acked=ob.acked_batches,
            acked_readings=ob.acked_readings,
            dropped_by_policy=ob.dropped_batches,
            dropped_readings=ob.dropped_readings,
            bytes_shipped=ob.acked_bytes,
            outbox_file_bytes=ob.file_bytes(),
            recovered=ob.recovered_batches,
        )
