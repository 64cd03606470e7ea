"""The cloud end: subscribe, decode, de-duplicate, report gaps, reconstruct series.

:class:`Receiver` subscribes to the uplink's topics (an MQTT 5 shared subscription
``$share/<group>/<topic>`` lets several receivers split the load), decodes both encodings, drops
duplicates from at-least-once delivery by ``(stream_id, seq)``, keeps per stream which sequence
numbers are missing, and hands each new batch to a callback and/or writes its readings as JSON
lines. A malformed or foreign message is counted, logged and skipped. A message is acknowledged to
the broker only after it has been handled, and the session is kept across broker restarts, so
nothing the broker accepted is lost on the way to the receiver.

``edgeflow receive`` (:mod:`edgeflow.cli.receive`) runs one from the command line.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import orjson

from edgeflow.codec import (
    DecodedBatch,
    DecodedSeries,
    MissingTable,
    batch_table,
    decode,
    detect_encoding,
    merge_points,
)
from edgeflow.errors import CodecError, TransportSecurityError, UplinkError
from edgeflow.model import ValueType
from edgeflow.mqtt import MqttAuthSpec, TlsSpec
from edgeflow.mqtt.connection import Backoff, MqttConnection, connect_params

__all__ = ["BatchHandler", "Receiver", "StreamTracker"]

log = logging.getLogger(__name__)

BatchHandler = Callable[[DecodedBatch, str], None]
"""``(batch, topic)`` for each new (not duplicate) batch."""


@dataclass
class StreamTracker:
    """The sequence numbers seen on one stream, as sorted disjoint ranges ``[lo, hi]``."""

    stream_id: str
    ranges: list[list[int]] = field(default_factory=list)
    received: int = 0
    duplicates: int = 0

    def add(self, seq: int) -> bool:
        """Record ``seq``; False if it was seen before (a duplicate)."""
        r = self.ranges
        i = bisect.bisect_right(r, seq, key=lambda x: x[0])  # first range starting after seq
        if i > 0 and r[i - 1][0] <= seq <= r[i - 1][1]:
            self.duplicates += 1
            return False
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
    """Subscribe and decode. ``on_batch`` gets every new batch; ``out`` (a path) gets one JSON line
    per reading; ``keep=True`` keeps the batches for :meth:`series`."""

    def __init__(
        self,
        url: str,
        topics: Sequence[str],
        *,
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
    ) -> None:
        self.topics = [f"$share/{group}/{t}" if group else t for t in topics]
        self._params = connect_params(
            url,
            client_id=client_id or f"edgeflow-rx-{socket.gethostname()}-{os.getpid()}",
            tls=tls,
            auth=auth,
            protocol=protocol,
            keepalive=keepalive,
            clean_start=False,
            session_expiry=session_expiry,
        )
        self._on_batch = on_batch
        self._out_path = out
        self._out: IO[bytes] | None = None
        self._keep = keep
        self._kept: dict[tuple[str, int], DecodedBatch] = {}
        self._backoff = Backoff(*reconnect)
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
            "awaiting_table": 0,
            "table_never_came": 0,
        }
        #: Compact messages held until their series table arrives, by table hash (at most ``max_held``).
        self._held: dict[bytes, list[tuple[str, bytes]]] = {}
        self._held_count = 0
        self.max_held = 10_000
        self._conn: MqttConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._stopping = False
        self.last_error: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and subscribe (raises on a TLS/auth failure or an unreachable broker), then keep
        the subscription alive across connection losses in the background."""
        if self._out_path is not None:
            self._out_path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self._out_path.open("ab")
        try:
            conn = await self._connect()
        except BaseException:
            self._close_out()
            raise
        self._task = asyncio.get_running_loop().create_task(self._run(conn), name="receiver")

    async def stop(self) -> None:
        self._stopping = True
        if self._conn is not None:
            await self._conn.disconnect()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._close_out()

    def _close_out(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    async def _connect(self) -> MqttConnection:
        conn = MqttConnection(self._params, on_message=self._on_message)
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
            self._backoff.reset()
            await asyncio.shield(conn.closed)
            self._subscribed.clear()
            self._conn = None
            conn = None

    # -- messages ---------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.counts["messages"] += 1
        self.handle(topic, payload)

    def handle(self, topic: str, payload: bytes) -> DecodedBatch | None:
        """Decode one message and pass it on; None if it was a duplicate, malformed or foreign."""
        try:
            detect_encoding(payload)
        except CodecError as exc:
            self.counts["foreign"] += 1
            log.warning("receiver: skipped a foreign message on %s: %s", topic, exc)
            return None
        try:
            batch = decode(payload)
        except MissingTable as exc:
            self._hold(exc.table, topic, payload)
            return None
        except CodecError as exc:
            self.counts["malformed"] += 1
            log.warning("receiver: skipped a malformed message on %s: %s", topic, exc)
            return None
        carried = batch_table(payload) if self._held else None
        held = self._held.pop(carried, None) if carried is not None else None
        out = self._accept(batch, topic)
        for t, p in held or ():
            self._held_count -= 1
            self.handle(t, p)
        return out

    def _hold(self, table: bytes, topic: str, payload: bytes) -> None:
        """A compact message whose series table has not arrived (the outbox dropped the message that
        carried it): keep it until the table comes round again (bounded; the oldest go, counted)."""
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

    def _accept(self, batch: DecodedBatch, topic: str) -> DecodedBatch | None:
        if batch.seq < 0:  # plain EdgeX, without edgeflow's stream tags: nothing to de-duplicate by
            self.counts["untracked"] += 1
        else:
            tracker = self.streams.get(batch.stream_id)
            if tracker is None:
                tracker = self.streams[batch.stream_id] = StreamTracker(batch.stream_id)
            if not tracker.add(batch.seq):
                self.counts["duplicates"] += 1
                return None
        self.counts["batches"] += 1
        self.counts["readings"] += batch.readings
        if self._keep:
            # untracked messages keep their arrival order, ahead of any tracked sequence number
            key = (batch.stream_id, batch.seq if batch.seq >= 0 else -(1 << 62) + self.counts["untracked"])
            self._kept[key] = batch
        if self._out is not None:
            self._out.write(_jsonl(batch, topic))
            self._out.flush()
        if self._on_batch is not None:
            try:
                self._on_batch(batch, topic)
            except Exception:
                self.counts["handler_errors"] += 1
                log.exception("receiver: batch handler failed on %s/%d", batch.stream_id, batch.seq)
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
        out["streams"] = {sid: t.summary() for sid, t in self.streams.items()}
        out["missing"] = sum(t.missing for t in self.streams.values())
        out["connected"] = self._conn is not None and not self._conn.closed.done()
        return out


def _jsonl(batch: DecodedBatch, topic: str) -> bytes:
    """One JSON line per reading: stream, seq, device, resource, origin, value (+ start for windows)."""
    lines: list[bytes] = []
    for s in batch.series:
        base = {
            "stream": batch.stream_id,
            "seq": batch.seq,
            "topic": topic,
            "device": s.info.device,
            "resource": s.info.resource,
            "profile": s.info.profile,
            "valueType": s.info.value_type.value,
            "interpolation": s.interpolation,
        }
        origins = s.origins.tolist()
        values = s.values.tolist()
        vt = s.info.value_type
        cast_value: Callable[[float], Any] = bool if vt is ValueType.BOOL else int if vt.is_integer else float
        for i, origin in enumerate(origins):
            rec = dict(base, origin=origin)
            obj = s.objects[i] if s.objects is not None else None
            v = values[i]
            rec["value"] = obj if obj is not None else (None if np.isnan(v) else cast_value(v))
            if s.starts is not None:
                rec["start"] = int(s.starts[i])
            if batch.alarm:
                rec["alarm"] = True
            lines.append(orjson.dumps(rec, default=_jsonable, option=orjson.OPT_APPEND_NEWLINE))
    return b"".join(lines)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes | bytearray):
        import base64

        return base64.b64encode(v).decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Mapping):
        return dict(v)
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")
