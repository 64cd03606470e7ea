"""MQTT uplink: publish what the outbox holds with QoS 1, acknowledge it on PUBACK.

::

    outbox ─► take (alarms first, at most max_inflight) ─► paho publish (QoS 1) ─► PUBACK ─► ack (delete)
                                                                                    │ rejected
                                                                                    ▼
                                                            hold, back off, send again (counted, 503)

One task (:meth:`MqttTransport._run`) owns the connection: it connects, pumps batches from the outbox
and, when the connection is lost, puts everything in flight back and reconnects with capped, jittered
backoff (paho's own reconnect is off). A publish the broker rejects (an MQTT 5 PUBACK with a failure
reason, e.g. not authorized) is not lost: sending pauses, the batches in flight go back to the outbox,
and after a backoff they are sent again; while that lasts the transport reports itself unhealthy with
the broker's reason. A TLS or authentication failure is a
:class:`~edgeflow.errors.TransportSecurityError`: raised at :meth:`MqttTransport.start`, later logged,
counted and retried — never with plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Protocol

from edgeflow.backoff import Backoff
from edgeflow.codec import Encoder, make_encoder
from edgeflow.commitlog import CommitLog, OutboxRecord
from edgeflow.errors import OutboxError, TransportSecurityError, UplinkError
from edgeflow.mqtt.connection import MqttConnection, connect_params
from edgeflow.uplink.base import EncoderFactory, Uplink, commit_log_for
from edgeflow.uplink.spec import MqttUplinkSpec

__all__ = ["MetricsSink", "MqttTransport", "MqttUplink"]

log = logging.getLogger(__name__)


class MetricsSink(Protocol):
    """Where the transport reports counters as they change (``name``, increment)."""

    def inc(self, name: str, value: float = 1.0) -> None: ...


class MqttTransport:
    """Delivers the outbox to an MQTT broker. See the module docstring."""

    def __init__(self, spec: MqttUplinkSpec, *, service: str, metrics: MetricsSink | None = None) -> None:
        self.spec = spec
        self.service = service
        self._metrics = metrics
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
        self._log: CommitLog | None = None
        self._conn: MqttConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._acker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._acks_ready = asyncio.Event()
        self._inflight: dict[int, OutboxRecord] = {}
        self._acked: list[OutboxRecord] = []
        self._rejection: str | None = None  # the broker's reason, until a publish is accepted again
        self._hold = False  # sending paused after a rejection
        self._stopping = False
        self.last_error: BaseException | None = None
        self._c = {
            "published": 0,
            "republished": 0,
            "rejected": 0,
            "reconnects": 0,
            "connect_failures": 0,
            "security_failures": 0,
        }

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed.done()

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self, commit_log: CommitLog) -> None:
        self._log = commit_log
        self._stopping = False
        conn: MqttConnection | None = None
        try:
            conn = await self._connect()
        except TransportSecurityError:
            raise
        except UplinkError as exc:
            log.warning("uplink %s: %s; keeping readings in the outbox and retrying", self.service, exc)
        loop = asyncio.get_running_loop()
        self._acker = loop.create_task(self._ack_loop(), name=f"uplink acks {self.service}")
        self._task = loop.create_task(self._run(conn), name=f"uplink {self.service}")

    async def stop(self, *, flush_timeout: float = 5.0) -> None:
        log_ = self._log
        if log_ is None:
            return
        if self.connected and flush_timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    while (log_.queued_batches or self._inflight) and self.connected:
                        self._wake.clear()
                        await self._wake.wait()
        self._stopping = True
        self._wake.set()
        if self._conn is not None:
            await self._conn.disconnect()
        for task in (self._task, self._acker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._acker = None
        await self._flush_acks()
        self._log = None

    def wake(self) -> None:
        self._wake.set()

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
                await self._pump(conn, backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outbox failure must not end shipping for good
                self.last_error = exc
                log.exception("uplink %s: sending failed; reconnecting", self.service)
            finally:
                await self._settle()
                self._conn = None
                if not conn.closed.done():
                    await conn.disconnect()
                conn = None
            if not self._stopping:
                self._c["reconnects"] += 1
                self._inc("uplink_reconnects")
                await asyncio.sleep(backoff.next_delay())

    async def _settle(self) -> None:
        """Acknowledge what was confirmed, then put everything else in flight back in the outbox."""
        with contextlib.suppress(OutboxError):  # what is not acknowledged now is sent again: a duplicate
            await self._flush_acks()
        self._inflight.clear()
        self._acked.clear()
        if self._log is not None and self._log.is_open:
            self._c["republished"] += await self._log.release()

    async def _pump(self, conn: MqttConnection, backoff: Backoff) -> None:
        commit_log = self._log
        assert commit_log is not None
        window = self.spec.max_inflight
        while not conn.closed.done() and not self._stopping:
            if self._hold:
                await self._hold_after_rejection(conn, backoff)
                continue
            room = window - len(self._inflight)
            try:
                records = await commit_log.take(room) if room > 0 else []
            except OutboxError as exc:  # the database hiccups: pause, the connection can stay
                self.last_error = exc
                log.warning("uplink %s: reading the outbox failed (%s); trying again", self.service, exc)
                await asyncio.sleep(backoff.next_delay())
                continue
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
            if conn.closed.done() or self._hold:
                continue
            if room > 0 and not records and commit_log.queued_batches > len(self._inflight):
                continue  # committed while we were taking: take again
            await self._wake.wait()

    async def _hold_after_rejection(self, conn: MqttConnection, backoff: Backoff) -> None:
        """The broker refused a publish: stop sending, let what is in flight settle, put it all back,
        wait, try again. The reason stays visible in :meth:`health` until a publish is accepted."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.spec.connect_timeout):
                while self._inflight and not conn.closed.done():
                    self._wake.clear()
                    await self._wake.wait()
        await self._settle()
        delay = backoff.next_delay()
        log.warning(
            "uplink %s: broker rejected publishes (%s); sending again in %.1f s",
            self.service,
            self._rejection,
            delay,
        )
        await asyncio.sleep(delay)
        self._hold = False

    def _on_ack(self, mid: int, ok: bool, reason: str = "") -> None:
        rec = self._inflight.pop(mid, None)
        if rec is None:
            return
        if ok:
            self._acked.append(rec)
            self._acks_ready.set()
            if self._rejection is not None and not self._hold:
                log.info("uplink %s: the broker accepts publishes again", self.service)
                self._rejection = None
        else:
            self._c["rejected"] += 1  # stays in the outbox; sent again after a backoff
            self._rejection = reason or "rejected"
            self._hold = True
        self._wake.set()

    async def _ack_loop(self) -> None:
        backoff = Backoff(0.05, 2.0)
        while True:
            await self._acks_ready.wait()
            self._acks_ready.clear()
            try:
                await self._flush_acks()
            except OutboxError as exc:  # the records stay pending: acknowledged again after a pause
                self.last_error = exc
                self._acks_ready.set()
                await asyncio.sleep(backoff.next_delay())
            else:
                backoff.reset()

    async def _flush_acks(self) -> None:
        """Delete what the broker confirmed. On failure the records stay queued for the next try."""
        if not self._acked or self._log is None or not self._log.is_open:
            return
        recs, self._acked = self._acked, []
        try:
            await self._log.ack(recs)
        except BaseException:
            self._acked = recs + self._acked
            raise
        self._inc("uplink_batches_acked", len(recs))
        self._inc("uplink_readings_acked", sum(r.readings for r in recs))
        self._inc("uplink_bytes_shipped", sum(len(r.payload) for r in recs))
        self._wake.set()

    def _inc(self, name: str, value: float = 1.0) -> None:
        if self._metrics is not None and value:
            self._metrics.inc(name, value)

    # -- looking ----------------------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        if self._rejection is not None:
            return False, f"broker {self._params.where} rejects publishes: {self._rejection}"
        if not self.connected:
            why = f": {self.last_error}" if self.last_error is not None else ""
            return False, f"not connected to {self._params.where}{why}"
        return True, ""

    def stats(self) -> dict[str, int | float]:
        out: dict[str, int | float] = dict(self._c)
        out["sent"] = self._c["published"]
        out["inflight"] = len(self._inflight)
        out["connected"] = int(self.connected)
        return out


def _with_series_table(name: str, *, stream_id: str, first_seq: int = 0) -> Encoder:
    if name == "compact":
        return make_encoder(name, stream_id=stream_id, first_seq=first_seq, series_table=True)
    return make_encoder(name, stream_id=stream_id, first_seq=first_seq)


class MqttUplink(Uplink):
    """An :class:`~edgeflow.uplink.base.Uplink` to an MQTT broker, from an ``uplink: {type: mqtt}`` spec."""

    def __init__(
        self,
        spec: MqttUplinkSpec,
        *,
        service: str,
        encoder_factory: EncoderFactory | None = None,
        metrics: MetricsSink | None = None,
    ) -> None:
        self.spec = spec
        self.mqtt = MqttTransport(spec, service=service, metrics=metrics)
        b = spec.batching
        super().__init__(
            service=service,
            encoding=spec.encoding,
            topic=spec.topic_template,
            envelope=spec.envelope,
            commit_log=commit_log_for(spec.outbox),
            transport=self.mqtt,
            max_readings=b.max_readings,
            max_bytes=int(b.max_bytes),
            max_delay=b.max_delay,
            commit_delay=b.group_delay,
            encoder_factory=encoder_factory or (_with_series_table if spec.series_table else None),
        )

    @property
    def connected(self) -> bool:
        return self.mqtt.connected
