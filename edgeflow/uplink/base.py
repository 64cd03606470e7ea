"""An uplink: the commit log, the one committer, and a transport that reads the outbox.

::

    send / submit ─► Committer (states, seq) ─► CommitLog (one transaction, own thread) ─► outbox
                                                                                              │
                                    transport (MQTT QoS 1, file) ◄── take ── ack on delivery ◄┘

:class:`Uplink` is what the runtime (and a user without a runtime) ships through. ``send`` returns
once the readings are durable (with ``max_delay`` batching, staged in the commit log until their
message is cut); ``submit`` only queues them, for callers that apply backpressure with ``room`` instead.
A :class:`Transport` knows nothing of encoding or sequence numbers: it publishes what the outbox
holds and acknowledges it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from edgeflow.codec import Encoder, make_encoder, new_stream_id
from edgeflow.commitlog import CommitLog, Committer, Shipment, StateSource
from edgeflow.errors import UplinkError
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.uplink.encoding import UplinkEncoder, check_interpolation
from edgeflow.uplink.spec import OutboxSpec

__all__ = ["EncoderFactory", "Transport", "Uplink", "commit_log_for"]

log = logging.getLogger(__name__)

EncoderFactory = Callable[..., Encoder]
"""``factory(encoding_name, stream_id=..., first_seq=...)`` → an encoder; default :func:`edgeflow.codec.make_encoder`."""


def commit_log_for(spec: OutboxSpec) -> CommitLog:
    """The commit log an ``outbox:`` section describes (not yet open)."""
    return CommitLog(
        spec.path, max_bytes=int(spec.max_bytes), overflow=spec.overflow, synchronous=spec.synchronous
    )


def _default_encoder_factory(name: str, *, stream_id: str, first_seq: int = 0) -> Encoder:
    return make_encoder(name, stream_id=stream_id, first_seq=first_seq)


class Transport(Protocol):
    """Delivers what the outbox holds, and acknowledges each batch once it is delivered."""

    async def start(self, commit_log: CommitLog) -> None:
        """Begin delivering. A TLS or authentication failure on the first attempt is raised as
        :class:`~edgeflow.errors.TransportSecurityError`; an unreachable target is retried in the
        background."""
        ...

    async def stop(self, *, flush_timeout: float = 5.0) -> None:
        """Deliver for up to ``flush_timeout`` seconds, then stop; what is left stays in the outbox."""
        ...

    def wake(self) -> None:
        """New batches were committed."""
        ...

    def health(self) -> tuple[bool, str]:
        """``(True, "")`` while delivering works, else ``(False, reason)``."""
        ...

    def stats(self) -> dict[str, int | float]: ...


class Uplink:
    """Ships readings through the commit log and a transport. See the module docstring."""

    def __init__(
        self,
        *,
        service: str,
        encoding: str,
        topic: str,
        envelope: str,
        commit_log: CommitLog,
        transport: Transport,
        max_readings: int = 5000,
        max_bytes: int = 256 * 1024,
        max_delay: float = 0.0,
        commit_delay: float = 0.0,
        encoder_factory: EncoderFactory | None = None,
    ) -> None:
        self.service = service
        self.encoding = encoding
        self.topic = topic
        self.envelope = envelope
        self.commit_log = commit_log
        self.transport = transport
        self.max_readings = max_readings
        #: Readings submitted and not yet committed beyond which :meth:`room` waits (backpressure) is the
        #: larger of four messages' worth and this. The runtime makes it twice its bus's capacity: one slow
        #: commit (a big fleet's first, with every new series' keys and table) must not hold the router
        #: while a tick's reads fill the bus and stop the polls; the bus bounds what waits before it.
        self.pending_min = 0
        self.max_bytes = max_bytes
        self.max_delay = max_delay
        self.commit_delay = commit_delay
        self._encoder_factory = encoder_factory or _default_encoder_factory
        self._stream_key = f"uplink:{service}:{encoding}"
        self.stream_id = f"{service}-{new_stream_id()}"
        self._states: StateSource | None = None
        self._table: SeriesTable | None = None
        self._committer: Committer | None = None
        self._final: dict[str, int | float] = {}

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def committer(self) -> Committer:
        if self._committer is None:
            raise UplinkError("uplink not started")
        return self._committer

    @property
    def next_seq(self) -> int:
        """The sequence number the next committed batch will carry (resumed after a restart)."""
        return self.committer.encoder.next_seq

    def set_state_source(self, states: StateSource | None) -> None:
        """What to commit with every group: each pipeline's rule state (the runtime's snapshots)."""
        self._states = states
        if self._committer is not None:
            self._committer.states = states

    def set_series_table(self, table: SeriesTable | None) -> None:
        """The series table readings staged before a restart are read back into (the runtime's), so
        they travel with the readings of this run; without one they get a table of their own."""
        self._table = table

    async def start(self) -> None:
        """Open the commit log, resume the stream it holds (or start a new one), start committing and
        delivering. Raises :class:`~edgeflow.errors.OutboxError` if the log cannot be opened and
        :class:`~edgeflow.errors.TransportSecurityError` on a TLS or login failure."""
        await self.commit_log.open()
        try:
            first_seq = 0
            resumed = await self.commit_log.stream_state(self._stream_key)
            if resumed is not None:
                self.stream_id, first_seq = resumed
                log.info("uplink %s: resuming stream %s at seq %d", self.service, self.stream_id, first_seq)
            codec = self._encoder_factory(self.encoding, stream_id=self.stream_id, first_seq=first_seq)
            encoder = UplinkEncoder(
                codec,
                stream_key=self._stream_key,
                service=self.service,
                topic=self.topic,
                envelope=self.envelope,
                max_readings=self.max_readings,
                max_bytes=self.max_bytes,
            )
            self._committer = Committer(
                self.commit_log,
                encoder,
                max_readings=self.max_readings,
                max_delay=self.max_delay,
                commit_delay=self.commit_delay,
                max_pending=max(4 * self.max_readings, self.pending_min),
                states=self._states,
                on_commit=self.transport.wake,
            )
            await self._committer.recover(self._table)
            self._committer.start()
            await self.transport.start(self.commit_log)
        except BaseException:
            if self._committer is not None:
                await self._committer.stop()
                self._committer = None
            await self.commit_log.close()
            raise

    async def stop(self, *, flush_timeout: float = 5.0) -> None:
        """Commit what is pending, let the transport deliver for up to ``flush_timeout`` seconds, stop.
        What is not delivered stays in the outbox for the next start."""
        if self._committer is None:
            return
        await self._committer.stop(give_up_after=max(flush_timeout, 0.1))
        await self.transport.stop(flush_timeout=flush_timeout)
        self._final = self.stats()
        self._committer = None
        await self.commit_log.close()
        f = self._final
        log.info(
            "uplink %s stopped: %d readings committed, %d shipped (%d bytes), %d left in the outbox",
            self.service,
            int(f.get("readings_committed", 0)),
            int(f.get("acked_readings", 0)),
            int(f.get("bytes_shipped", 0)),
            int(f.get("queued_readings", 0)),
        )

    async def __aenter__(self) -> Uplink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- shipping ---------------------------------------------------------------------------------

    def submit(
        self, batch: ReadingBatch, interpolation: Mapping[int, str] | None = None, *, alarm: bool = False
    ) -> int:
        """Queue readings for the next commit (no waiting); returns a ticket for
        :meth:`~edgeflow.commitlog.Committer.wait_committed`. Raises :class:`UplinkError` on an
        interpolation other than ``hold``/``linear``."""
        committer = self.committer
        return committer.submit(Shipment(batch, check_interpolation(interpolation), alarm))

    async def send(
        self, batch: ReadingBatch, interpolation: Mapping[int, str] | None = None, *, alarm: bool = False
    ) -> None:
        """Ship readings; durable when this returns (with a batching ``max_delay``, staged in the
        commit log: the message that carries them is cut within that delay). ``interpolation`` maps
        series ids to ``hold`` or ``linear``, how the cloud rebuilds them."""
        if len(batch) == 0:
            return
        committer = self.committer
        interp = check_interpolation(interpolation)
        await committer.room()
        ticket = committer.submit(Shipment(batch, interp, alarm))
        await committer.wait_committed(ticket)

    async def room(self) -> None:
        """Wait while too many readings wait to be committed (backpressure)."""
        await self.committer.room()

    async def flush(self) -> None:
        """Commit everything submitted so far, now."""
        await self.committer.flush()

    async def load_state(self, key: str) -> bytes | None:
        return await self.commit_log.load_state(key)

    async def load_state_rows(self, key: str) -> list[tuple[str, bytes]]:
        return await self.commit_log.load_state_rows(key)

    async def set_state_aside(self, key: str) -> None:
        await self.commit_log.set_state_aside(key)

    # -- looking ----------------------------------------------------------------------------------

    def health(self) -> list[tuple[str, bool, str]]:
        """``(part, ok, reason)`` for the commit log and the transport."""
        out: list[tuple[str, bool, str]] = []
        c = self._committer
        if c is not None:
            out.append(("commit log", c.healthy, "" if c.healthy else f"commits failing: {c.last_error}"))
        ok, reason = self.transport.health()
        out.append(("uplink", ok, reason))
        return out

    def stats(self) -> dict[str, int | float]:
        """Counters of the committer (``readings_committed``, ``batching``: readings waiting to be
        committed, ``commit_failures``), the outbox (``queued``, ``queued_readings``, ``queued_bytes``,
        ``acked``, ``acked_readings``, ``dropped_by_policy``, ``dropped_readings``, ``bytes_shipped``,
        ``recovered``, ``outbox_file_bytes``) and the transport."""
        if self._committer is None:
            return dict(self._final)
        c = self._committer
        ob = self.commit_log.stats()
        out: dict[str, int | float] = {
            "readings_in": c.submitted_readings,
            "readings_committed": c.committed_readings,
            "batches_committed": c.batches_committed,
            "refused_readings": c.refused_readings,
            "encode_failed_readings": c.encode_failed_readings,
            "batching": c.pending_readings,  # waiting to be committed, or being committed
            "staged": c.staged_readings,  # committed, waiting to be cut into a message
            "commits": c.commits,
            "commit_failures": c.commit_failures,
            "queued": ob.get("queued_batches", 0),
            "queued_readings": ob.get("queued_readings", 0),
            "queued_bytes": ob.get("queued_bytes", 0),
            "acked": ob.get("acked_batches", 0),
            "acked_readings": ob.get("acked_readings", 0),
            "bytes_shipped": ob.get("acked_bytes", 0),
            "dropped_by_policy": ob.get("dropped_batches", 0),
            "dropped_readings": ob.get("dropped_readings", 0),
            "recovered": ob.get("recovered_batches", 0),
            "recovered_readings": ob.get("recovered_readings", 0),
            "outbox_file_bytes": ob.get("file_bytes", 0),
        }
        out.update(self.transport.stats())
        return out
