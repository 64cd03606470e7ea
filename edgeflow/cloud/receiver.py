"""The cloud end: subscribe, decode, de-duplicate, store, report gaps, reconstruct series.

:class:`Receiver` subscribes to the uplink's topics (an MQTT 5 shared subscription
``$share/<group>/<topic>`` lets several receivers split the load), decodes both encodings, drops
duplicates from at-least-once delivery by ``(stream_id, seq)``, keeps per stream which sequence
numbers it stored, and hands each new batch to a :class:`~edgeflow.cloud.sinks.Sink` (a JSON-lines
file, PostgreSQL), a callback, and/or keeps it in memory.

**Acknowledged after storing.** With a sink, a message is acknowledged to the broker only once the sink
has stored its batch durably (file fsynced, transaction committed), or when it is deliberately
rejected (malformed or foreign; or refused by the sink for its content, ``unstorable``: counted, logged,
acknowledged, never stored). Messages are stored in
groups (whatever arrived while the previous group was being stored), off the event loop on the
receiver's one store thread. When the sink fails, nothing of the group is acknowledged: the failure
is counted and logged, the receiver drops the connection, backs off (:class:`~edgeflow.backoff.Backoff`)
and reconnects with the same client id and its persistent session, and the broker delivers every
unacknowledged message again. Give a stable ``client_id`` for that to hold across restarts.

**Stopping** (:meth:`Receiver.stop`): no more messages are taken, the group being stored is finished
and acknowledged, the rest stays unacknowledged for the broker to deliver again (to the group, or to
this client id when it comes back).

**Series tables.** A compact message that refers to a series table this process has not seen is held
(without a sink in memory, with one unacknowledged) until the table comes. With a sink that keeps tables
(:class:`TableSink`: the PostgreSQL sink), a table that arrives is stored there before the batch that
carried it, and a held message looks for its table there at once and every ``table_check_interval``, so
the receivers of a group share what each of them got.

``edgeflow receive`` (:mod:`edgeflow.cli.receive`) runs one from the command line.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from edgeflow.cloud.sinks import JsonLinesSink, Sink, SinkError, SinkOpenError, StoreItem
from edgeflow.codec import (
    TABLES,
    DecodedBatch,
    DecodedSeries,
    MissingTable,
    batch_table,
    decode,
    detect_encoding,
    merge_points,
)
from edgeflow.errors import CodecError, TransportSecurityError, UplinkError
from edgeflow.mqtt import MqttAuthSpec, TlsSpec
from edgeflow.mqtt.connection import Backoff, Delivery, MqttConnection, connect_params

__all__ = ["BatchHandler", "Receiver", "StreamTracker", "TableSink"]

log = logging.getLogger(__name__)

BatchHandler = Callable[[DecodedBatch, str], None]
"""``(batch, topic)`` for each new (not duplicate) batch."""


@runtime_checkable
class TableSink(Protocol):
    """A sink that also keeps the compact encoding's series tables (the PostgreSQL sink), so every
    receiver of a group (``$share/...``), and a receiver started later, can decode a message whose table
    travelled in a message another receiver took. Both methods block and run on the store thread."""

    def store_tables(self, tables: dict[bytes, bytes]) -> None:
        """Keep ``{hash: table bytes}`` (idempotent). May raise :class:`SinkError`."""

    def load_tables(self, hashes: Sequence[bytes]) -> dict[bytes, bytes]:
        """The tables of ``hashes`` that are kept, ``{hash: table bytes}``. May raise :class:`SinkError`."""
        return {}


@dataclass
class StreamTracker:
    """The sequence numbers seen on one stream, as sorted disjoint ranges ``[lo, hi]``."""

    stream_id: str
    ranges: list[list[int]] = field(default_factory=list)
    received: int = 0
    duplicates: int = 0

    def contains(self, seq: int) -> bool:
        r = self.ranges
        i = bisect.bisect_right(r, seq, key=lambda x: x[0])
        return i > 0 and r[i - 1][0] <= seq <= r[i - 1][1]

    def add(self, seq: int, *, duplicate: bool = False) -> bool:
        """Record ``seq``; False if it was seen before (a duplicate). ``duplicate=True``: the sink had it
        already (stored before a restart, or by another receiver): recorded, counted as a duplicate."""
        r = self.ranges
        i = bisect.bisect_right(r, seq, key=lambda x: x[0])  # first range starting after seq
        if i > 0 and r[i - 1][0] <= seq <= r[i - 1][1]:
            self.duplicates += 1
            return False
        if duplicate:
            self.duplicates += 1
        else:
            self.received += 1
        joins_left = i > 0 and r[i - 1][1] == seq - 1
        joins_right = i < len(r) and r[i][0] == seq + 1
        if joins_left and joins_right:
            r[i - 1][1] = r[i][1]
            del r[i]
        elif joins_left:
            r[i - 1][1] = seq
        elif joins_right:
            r[i][0] = seq
        else:
            r.insert(i, [seq, seq])
        return True

    @property
    def gaps(self) -> list[tuple[int, int]]:
        """Missing sequence numbers between the first and the last seen, as ``(lo, hi)`` ranges."""
        return [(a[1] + 1, b[0] - 1) for a, b in zip(self.ranges, self.ranges[1:], strict=False)]

    @property
    def missing(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.gaps)

    def summary(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "duplicates": self.duplicates,
            "first_seq": self.ranges[0][0] if self.ranges else None,
            "last_seq": self.ranges[-1][1] if self.ranges else None,
            "missing": self.missing,
            "gaps": self.gaps[:20],
        }


class Receiver:
    """Subscribe, decode, store. ``sink`` stores every new batch (acknowledged only once stored);
    ``out`` (a path) is shorthand for ``sink=JsonLinesSink(out)``; ``on_batch`` gets every new batch
    (after the sink stored it); ``keep=True`` keeps the batches for :meth:`series`.

    ``client_id`` should be stable across restarts when a sink is used: the broker keeps the session of
    that id (``session_expiry`` seconds) and delivers what was not acknowledged to it again.
    ``receive_maximum`` (MQTT 5, with a sink): messages the broker may have in flight to this receiver,
    so what waits unacknowledged in memory is bounded (MQTT 3.1.1: the broker's own setting, Mosquitto's
    ``max_inflight_messages``). ``max_group``: messages stored in one transaction at most.
    """

    def __init__(
        self,
        url: str,
        topics: Sequence[str],
        *,
        sink: Sink | None = None,
        on_batch: BatchHandler | None = None,
        out: Path | None = None,
        keep: bool = False,
        protocol: Literal["3.1.1", "5"] = "5",
        client_id: str | None = None,
        group: str | None = None,
        tls: TlsSpec | None = None,
        auth: MqttAuthSpec | None = None,
        session_expiry: int = 3600,
        keepalive: int = 30,
        reconnect: tuple[float, float] = (0.2, 5.0),
        store_backoff: tuple[float, float] = (0.5, 10.0),
        max_group: int = 256,
        receive_maximum: int = 1000,
    ) -> None:
        if out is not None:
            if sink is not None:
                raise ValueError("give out (a JSON-lines file) or sink, not both")
            sink = JsonLinesSink(out)
        self.topics = [f"$share/{group}/{t}" if group else t for t in topics]
        if group and not isinstance(sink, TableSink):
            log.warning(
                "receiver: in group %s without a sink that shares series tables (PostgreSQL), a compact "
                "message whose table another member got waits until its edge sends the table again "
                "(table_interval, 30 s); give those edges series_table: false",
                group,
            )
        self.client_id = client_id or f"edgeflow-rx-{socket.gethostname()}-{os.getpid()}"
        self._params = connect_params(
            url,
            client_id=self.client_id,
            tls=tls,
            auth=auth,
            protocol=protocol,
            keepalive=keepalive,
            clean_start=False,
            session_expiry=session_expiry,
            receive_maximum=receive_maximum if sink is not None else 0,
        )
        self.sink = sink
        self._on_batch = on_batch
        self._keep = keep
        self._kept: dict[tuple[str, int], DecodedBatch] = {}
        self._backoff = Backoff(*reconnect)
        self._store_backoff = Backoff(*store_backoff)
        self._max_group = max_group
        self.streams: dict[str, StreamTracker] = {}
        self.counts = {
            "messages": 0,
            "batches": 0,
            "readings": 0,
            "duplicates": 0,
            "untracked": 0,
            "malformed": 0,
            "foreign": 0,
            "handler_errors": 0,
            "reconnects": 0,
            "store_failures": 0,
            "unstorable": 0,
            "acked": 0,
            "awaiting_table": 0,
            "table_never_came": 0,
        }
        #: Compact messages whose stream series table has not arrived yet, by table hash: without a
        #: sink the payloads, with a sink the deliveries themselves (unacknowledged). At most ``max_held``.
        self._held: dict[bytes, list[tuple[str, bytes]]] = {}
        self._held_count = 0
        self._held_deliveries: dict[bytes, list[tuple[MqttConnection, Delivery]]] = {}
        self.max_held = 10_000
        #: With a :class:`TableSink`: tables this receiver has put into the sink, and how often held
        #: messages look for their table there (another receiver of the group may have stored it).
        self._tables_shared: set[bytes] = set()
        self.table_check_interval = 1.0
        self._conn: MqttConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._store_task: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: deque[tuple[MqttConnection, Delivery]] = deque()
        self._wake = asyncio.Event()
        self._hold_until = 0.0
        self._subscribed = asyncio.Event()
        self._stopping = False
        self.last_error: BaseException | None = None
        #: What the sink reports about gaps at stop (PostgreSQL: every receiver's batches), if it can.
        self.stored_gaps: list[tuple[str, int, int]] | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the sink (raises :class:`SinkError`), connect and subscribe (raises on a TLS/auth
        failure or an unreachable broker), then keep the subscription alive in the background."""
        loop = asyncio.get_running_loop()
        if self.sink is not None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="receiver-store")
            try:
                await loop.run_in_executor(self._executor, self.sink.open)
            except BaseException as exc:
                self._executor.shutdown(wait=False)
                self._executor = None
                if isinstance(exc, SinkError) and not isinstance(exc, SinkOpenError):
                    raise SinkOpenError(str(exc)) from exc
                raise
            self._store_task = loop.create_task(self._store_loop(), name="receiver-store")
        try:
            conn = await self._connect()
        except BaseException:
            if self._store_task is not None:
                self._store_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._store_task
                self._store_task = None
            await self._close_sink()
            raise
        self._task = loop.create_task(self._run(conn), name="receiver")

    async def stop(self) -> None:
        """Take no more messages, finish (store and acknowledge) the group being stored, disconnect.
        Messages received but not yet stored stay unacknowledged: the broker delivers them again."""
        self._stopping = True
        if self._conn is not None:
            self._conn.pause_reading()
        if self._store_task is not None:
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._store_task
            self._store_task = None
        self._pending.clear()
        if self._conn is not None:
            await self._conn.disconnect()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_sink()

    async def _close_sink(self) -> None:
        if self.sink is None or self._executor is None:
            return
        loop = asyncio.get_running_loop()
        gaps = getattr(self.sink, "gaps", None)
        if callable(gaps):
            try:
                self.stored_gaps = await loop.run_in_executor(self._executor, gaps)
            except SinkError as exc:
                log.warning("receiver: cannot read the stored gaps: %s", exc)
        await loop.run_in_executor(self._executor, self.sink.close)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def _connect(self) -> MqttConnection:
        box: list[MqttConnection] = []
        conn = MqttConnection(self._params, on_delivery=lambda d: self._on_delivery(box[0], d))
        box.append(conn)
        await conn.connect()
        try:
            for t in self.topics:
                await conn.subscribe(t, 1)
        except BaseException:
            await conn.disconnect()
            raise
        self._conn = conn
        self._subscribed.set()
        return conn

    async def _run(self, conn: MqttConnection | None) -> None:
        while not self._stopping:
            if conn is None:
                hold = self._hold_until - time.monotonic()
                if hold > 0:  # the sink failed: give it time before taking the messages again
                    await asyncio.sleep(hold)
                try:
                    conn = await self._connect()
                except TransportSecurityError as exc:
                    self.last_error = exc
                    log.error("receiver: %s (not falling back to plaintext; retrying)", exc)
                except UplinkError as exc:
                    self.last_error = exc
                    log.info("receiver: %s", exc)
                if conn is None:
                    await asyncio.sleep(self._backoff.next_delay())
                    continue
                self.counts["reconnects"] += 1
            if self._stopping:  # stop() came while this connection was being made: it is ours to close
                await conn.disconnect()
                return
            self._backoff.reset()
            await asyncio.shield(conn.closed)
            self._subscribed.clear()
            self._conn = None
            conn = None

    # -- messages ---------------------------------------------------------------------------------

    def _on_delivery(self, conn: MqttConnection, delivery: Delivery) -> None:
        self.counts["messages"] += 1
        if self.sink is None:
            self.handle(delivery.topic, delivery.payload)
            if conn.ack(delivery):
                self.counts["acked"] += 1
            return
        self._pending.append((conn, delivery))
        self._wake.set()

    async def _store_loop(self) -> None:
        """Stores what arrived, group by group, on the store thread; acknowledges what was stored."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending and not self._stopping:
                self._wake.clear()
                if self._held_deliveries and isinstance(self.sink, TableSink):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.table_check_interval):
                            await self._wake.wait()
                    if not self._stopping:
                        await self._look_up_held_tables()
                    continue
                await self._wake.wait()
            if self._stopping:
                return
            group = [self._pending.popleft() for _ in range(min(self._max_group, len(self._pending)))]
            try:
                outcomes = await loop.run_in_executor(
                    self._executor, self._store_group, [d for _, d in group]
                )
            except SinkError as exc:
                await self._store_failed(exc, group)
                continue
            except Exception as exc:  # a bug in a sink must not stop storing: same as a failed store
                log.exception("receiver: the sink %s raised", self.sink.name if self.sink else "")
                await self._store_failed(SinkError(f"{type(exc).__name__}: {exc}"), group)
                continue
            self._store_backoff.reset()
            for (conn, delivery), (kind, batch, why) in zip(group, outcomes, strict=True):
                if kind == "awaiting_table":  # not stored, so not acknowledged: held until its table
                    self._hold_delivery(bytes.fromhex(why), conn, delivery)
                    continue
                self._count(kind, batch, why, delivery.topic)
                if conn.ack(delivery):
                    self.counts["acked"] += 1
                if batch is not None and self._held_deliveries:
                    carried = batch_table(delivery.payload)
                    again = self._held_deliveries.pop(carried, None) if carried is not None else None
                    if again:  # their table has come: store them next (the decoder now knows it)
                        self._held_count -= len(again)
                        self._pending.extendleft(reversed(again))
                        self._wake.set()
            if self._held_count > self.max_held:
                await self._too_many_held()

    async def _look_up_held_tables(self) -> None:
        """Held messages whose table another receiver of the group has put into the sink: store them next."""
        assert isinstance(self.sink, TableSink)
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(
                self._executor, self._fetch_tables, list(self._held_deliveries)
            )
        except SinkError as exc:
            log.warning("receiver: cannot look up series tables in the sink: %s", exc)
            return
        for h in found:
            again = self._held_deliveries.pop(h, None)
            if again:
                self._held_count -= len(again)
                self._pending.extendleft(reversed(again))
        if self._pending:
            self._wake.set()

    def _fetch_tables(self, hashes: list[bytes]) -> set[bytes]:
        """On the store thread: the tables of ``hashes`` the sink has, learnt by the decoder."""
        assert isinstance(self.sink, TableSink)
        got: set[bytes] = set()
        for h, data in self.sink.load_tables(hashes).items():
            try:
                if TABLES.add(data) == h:
                    got.add(h)
                    self._tables_shared.add(h)
            except CodecError as exc:
                log.error("receiver: the sink's series table %s is not one: %s", h.hex(), exc)
        return got

    def _hold_delivery(self, table: bytes, conn: MqttConnection, delivery: Delivery) -> None:
        """With a sink: a message whose series table this receiver has not seen (it started after the
        message that carried it, or that message was dropped at the edge). It stays unacknowledged
        until a message carrying the table has been stored here; the edge re-sends the table every
        ``table_interval``."""
        self._held_deliveries.setdefault(table, []).append((conn, delivery))
        self._held_count += 1
        self.counts["awaiting_table"] += 1

    async def _too_many_held(self) -> None:
        """More messages wait for a table than ``max_held``: let the broker have them all back (nothing
        acknowledged is lost) and take them again after a pause."""
        n = self._held_count
        self.counts["table_never_came"] += n
        conns = {id(c): c for held in self._held_deliveries.values() for c, _ in held}
        self._held_deliveries.clear()
        self._held_count = 0
        log.error(
            "receiver: %d messages wait for a series table that has not come; the broker gets them back", n
        )
        self._hold_until = time.monotonic() + self._store_backoff.next_delay()
        for c in conns.values():
            await c.disconnect()

    async def _store_failed(self, exc: SinkError, group: list[tuple[MqttConnection, Delivery]]) -> None:
        self.counts["store_failures"] += 1
        self.last_error = exc
        delay = self._store_backoff.next_delay()
        unacked = len(group) + len(self._pending)
        log.error(
            "receiver: %s; %d messages stay unacknowledged for the broker to deliver again; "
            "reconnecting in %.1f s",
            exc,
            unacked,
            delay,
        )
        self._hold_until = time.monotonic() + delay
        conns = {id(c): c for c, _ in group}
        conns.update({id(c): c for c, _ in self._pending})
        self._pending.clear()
        if self._conn is not None:
            conns[id(self._conn)] = self._conn
        for c in conns.values():
            await c.disconnect()

    def _store_group(self, deliveries: list[Delivery]) -> list[tuple[str, DecodedBatch | None, str]]:
        """On the store thread: decode, drop what this receiver already stored, store the rest."""
        assert self.sink is not None
        outcomes: list[tuple[str, DecodedBatch | None, str]] = []
        items: list[StoreItem] = []
        where: list[int] = []
        classified = [self._classify(d.payload) for d in deliveries]
        if isinstance(self.sink, TableSink):
            self._share_tables(deliveries, classified)
        for d, (kind, batch, why) in zip(deliveries, classified, strict=True):
            if kind == "new" and batch is not None:
                t = self.streams.get(batch.stream_id)
                if batch.seq >= 0 and t is not None and t.contains(batch.seq):
                    kind = "duplicate"
                else:
                    where.append(len(outcomes))
                    items.append((batch, d.topic))
            outcomes.append((kind, batch, why))
        if not items:
            return outcomes
        try:
            results: list[bool | str] = list(self.sink.store(items))
        except SinkError as exc:
            if not exc.permanent:
                raise
            results = []  # one of them cannot be stored: find it, store the others
            for item in items:
                try:
                    results += self.sink.store([item])
                except SinkError as one:
                    if not one.permanent:
                        raise
                    results.append(str(one))
        for i, res in zip(where, results, strict=True):
            if isinstance(res, str):
                outcomes[i] = ("unstorable", outcomes[i][1], res)
            elif not res:
                outcomes[i] = ("stored_before", outcomes[i][1], "")
        return outcomes

    def _share_tables(
        self, deliveries: list[Delivery], classified: list[tuple[str, DecodedBatch | None, str]]
    ) -> None:
        """On the store thread, with a :class:`TableSink`: messages awaiting a table look for it in the
        sink (another receiver of the group may have stored it); tables that came in these messages go
        into the sink before their batches do."""
        assert isinstance(self.sink, TableSink)
        waiting = {bytes.fromhex(why) for kind, _, why in classified if kind == "awaiting_table"}
        if waiting:
            found = self._fetch_tables(sorted(waiting))
            for i, (kind, _, why) in enumerate(classified):
                if kind == "awaiting_table" and bytes.fromhex(why) in found:
                    classified[i] = self._classify(deliveries[i].payload)
        carried: dict[bytes, bytes] = {}
        for d, (kind, _, _) in zip(deliveries, classified, strict=True):
            if kind != "new":
                continue
            h = batch_table(d.payload)
            if h is not None and h not in self._tables_shared:
                data = TABLES.data(h)
                if data:
                    carried[h] = data
        if carried:
            self.sink.store_tables(carried)
            self._tables_shared.update(carried)

    @staticmethod
    def _classify(payload: bytes) -> tuple[str, DecodedBatch | None, str]:
        try:
            detect_encoding(payload)
        except CodecError as exc:
            return "foreign", None, str(exc)
        try:
            return "new", decode(payload), ""
        except MissingTable as exc:
            return "awaiting_table", None, exc.table.hex()
        except CodecError as exc:
            return "malformed", None, str(exc)

    def _count(self, kind: str, batch: DecodedBatch | None, why: str, topic: str) -> None:
        """On the loop: the one owner of the counters and the stream trackers."""
        if kind in ("foreign", "malformed"):
            self.counts[kind] += 1
            log.warning("receiver: skipped a %s message on %s: %s", kind, topic, why)
            return
        assert batch is not None
        if kind == "unstorable":
            self.counts[kind] += 1
            log.error(
                "receiver: the sink refused batch %s/%d from %s: %s", batch.stream_id, batch.seq, topic, why
            )
            return
        tracker = None
        if batch.seq >= 0:
            tracker = self.streams.get(batch.stream_id)
            if tracker is None:
                tracker = self.streams[batch.stream_id] = StreamTracker(batch.stream_id)
        if kind in ("duplicate", "stored_before"):
            self.counts["duplicates"] += 1
            if tracker is not None:
                tracker.add(batch.seq, duplicate=True)
            return
        if tracker is not None:
            tracker.add(batch.seq)
        else:
            self.counts["untracked"] += 1
        self._accept(batch, topic)

    def _accept(self, batch: DecodedBatch, topic: str) -> None:
        self.counts["batches"] += 1
        self.counts["readings"] += batch.readings
        if self._keep:
            # untracked messages keep their arrival order, ahead of any tracked sequence number
            key = (batch.stream_id, batch.seq if batch.seq >= 0 else -(1 << 62) + self.counts["untracked"])
            self._kept[key] = batch
        if self._on_batch is not None:
            try:
                self._on_batch(batch, topic)
            except Exception:
                self.counts["handler_errors"] += 1
                log.exception("receiver: batch handler failed on %s/%d", batch.stream_id, batch.seq)

    def handle(self, topic: str, payload: bytes) -> DecodedBatch | None:
        """Without a sink: decode one message and pass it on; None if it was a duplicate, malformed or
        foreign. (With a sink, messages go through the store thread instead.)"""
        kind, batch, why = self._classify(payload)
        if kind == "awaiting_table":
            self._hold(bytes.fromhex(why), topic, payload)
            return None
        if batch is None:
            self.counts[kind] += 1
            log.warning("receiver: skipped a %s message on %s: %s", kind, topic, why)
            return None
        out = self._handle_decoded(batch, topic)
        carried = batch_table(payload) if self._held else None
        held = self._held.pop(carried, None) if carried is not None else None
        for t, p in held or ():
            self._held_count -= 1
            self.handle(t, p)
        return out

    def _hold(self, table: bytes, topic: str, payload: bytes) -> None:
        """Without a sink: a compact message whose series table has not arrived (the outbox dropped the
        message that carried it): kept until the table comes round again (bounded; the oldest go,
        counted as ``table_never_came``)."""
        self._held.setdefault(table, []).append((topic, payload))
        self._held_count += 1
        self.counts["awaiting_table"] += 1
        while self._held_count > self.max_held:
            oldest = next(iter(self._held))
            self._held[oldest].pop(0)
            if not self._held[oldest]:
                del self._held[oldest]
            self._held_count -= 1
            self.counts["table_never_came"] += 1

    def _handle_decoded(self, batch: DecodedBatch, topic: str) -> DecodedBatch | None:
        if batch.seq < 0:  # plain EdgeX, without edgeflow's stream tags: nothing to de-duplicate by
            self.counts["untracked"] += 1
        else:
            tracker = self.streams.get(batch.stream_id)
            if tracker is None:
                tracker = self.streams[batch.stream_id] = StreamTracker(batch.stream_id)
            if not tracker.add(batch.seq):
                self.counts["duplicates"] += 1
                return None
        self._accept(batch, topic)
        return batch

    # -- results ----------------------------------------------------------------------------------

    async def wait_subscribed(self) -> None:
        """Until the receiver is connected and subscribed (again, after a connection loss)."""
        await self._subscribed.wait()

    def series(self) -> dict[tuple[str, str], DecodedSeries]:
        """Every kept series, keyed by (device, resource), points in shipping order (streams by their
        first origin, batches by sequence number). Needs ``keep=True``."""
        by_stream: dict[str, list[DecodedBatch]] = {}
        for (sid, _seq), b in sorted(self._kept.items(), key=lambda kv: kv[0]):
            by_stream.setdefault(sid, []).append(b)

        def first_origin(bs: list[DecodedBatch]) -> int:
            return min((int(s.origins.min()) for b in bs for s in b.series if len(s)), default=0)

        ordered = [b for bs in sorted(by_stream.values(), key=first_origin) for b in bs]
        return merge_points(ordered)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counts)
        out["sink"] = self.sink.name if self.sink is not None else None
        out["streams"] = {sid: t.summary() for sid, t in self.streams.items()}
        out["missing"] = sum(t.missing for t in self.streams.values())
        if self.stored_gaps is not None:
            out["stored_gaps"] = self.stored_gaps[:20]
            out["stored_missing"] = sum(b - a + 1 for _s, a, b in self.stored_gaps)
        out["connected"] = self._conn is not None and not self._conn.closed.done()
        return out
