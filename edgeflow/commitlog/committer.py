"""The single committer: the one place where sequence numbers are assigned and rule state is made durable.

::

    submit(shipment) ─► pending ─► [snapshot states] ─► encode (assigns seq) ─► CommitLog.commit ─► outbox
                                                                                 (batches + next seq +
                                                                                  states, one transaction)

One task commits, one group at a time; the encoding and the transaction run on the commit log's thread
(the committer awaits them, so the encoder still has one user and the event loop never stalls on a
large group). A group is everything submitted since the last commit; the
states (each pipeline's rule snapshot) are taken at the same instant the group is cut, with no await in
between, so the committed states are exactly the states that produced the committed batches. While a
commit runs, new submissions wait for the next group (group commit: the commit rate adapts to the disk).

A failed commit writes nothing: the group goes back in front of what was submitted since, the encoder's
sequence number is rewound to where the group began, and the commit is retried after a capped,
jittered backoff, while :attr:`Committer.healthy` is false with the reason in
:attr:`Committer.last_error`. A shipment that cannot be encoded at all is dropped, logged and counted
(``encode_failed``), never retried forever.

States change without shipping (a swing segment grows, a window fills): after ``state_interval`` seconds
with nothing to commit, and at :meth:`Committer.stop`, the changed states are committed alone, so what
the rules hold after a crash is never older than that.

Groups: a group is committed ``commit_delay`` after its first reading came (at once with 0, for an
alarm, at ``max_readings``): that is how long a reading waits in memory, what a ``kill -9`` can take,
and what the number of commits a second comes to.

Batching: with ``max_delay`` 0 every group is encoded and committed to the outbox at once. With a
delay, every group is still committed, but *staged*: its readings go into the commit log as
they are (with the states that produced them), and the message that carries them is cut later — once
the oldest has waited ``max_delay``, ``max_readings`` are staged, on :meth:`Committer.flush` and at
stop — in one transaction that stores the batch and removes the staged rows it carries. So a reading
is durable as soon as a group takes it, whatever the delay; only the message waits. After a crash the
staged rows are read back (:meth:`Committer.recover`) and cut into a batch first. Alarms never wait:
they are encoded in the group that takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from edgeflow.backoff import Backoff
from edgeflow.commitlog._log import Built, CommitLog
from edgeflow.commitlog._staging import UnstageableError, pack, unpack
from edgeflow.commitlog._store import OutboxItem, Staged
from edgeflow.model import ReadingBatch, SeriesTable

__all__ = ["BatchEncoder", "Committer", "Shipment", "StateSource"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Built:
    """What encoding a group gave: the items, what could not be encoded, and the merged shipment
    staged (with its readings)."""

    items: list[OutboxItem] = field(default_factory=list)
    failed_readings: int = 0
    failures: list[str] = field(default_factory=list)
    staged: Shipment | None = None


@dataclass(frozen=True, slots=True)
class _Held:
    """Readings staged in the commit log (durable) and not yet cut into a batch: the staged row, the
    last ticket it holds (0: read back after a restart) and the shipment."""

    row: int
    ticket: int
    shipment: Shipment


@dataclass(frozen=True, slots=True)
class Shipment:
    """Readings to ship: a batch, how the cloud rebuilds each series (``hold``/``linear``), and whether
    they are alarms (committed at once, sent ahead of batches)."""

    batch: ReadingBatch
    interpolation: Mapping[int, str] | None = None
    alarm: bool = False


class BatchEncoder(Protocol):
    """Turns readings into outbox items, numbering them in one stream. The committer is its only user,
    so sequence numbers have one owner; it rewinds ``next_seq`` when a commit fails."""

    @property
    def stream_key(self) -> str:
        """Under which key the stream's position is saved in the commit log."""
        ...

    @property
    def stream_id(self) -> str: ...

    @property
    def next_seq(self) -> int: ...

    @next_seq.setter
    def next_seq(self, value: int) -> None: ...

    def encode(
        self, batch: ReadingBatch, interpolation: Mapping[int, str] | None, *, alarm: bool
    ) -> list[OutboxItem]: ...


StateSource = Callable[[], Mapping[str, bytes | None]]
"""Called as each group is cut: the states to commit with it (``{key: blob}``, ``None`` deleting one);
it may give only those that changed since it was last called (the committer keeps those of a failed
commit for its retry, later values over earlier ones)."""


class Committer:
    """See the module docstring. ``start()`` the task, ``submit()`` shipments, ``stop()`` at the end."""

    def __init__(
        self,
        commit_log: CommitLog,
        encoder: BatchEncoder,
        *,
        max_readings: int = 5000,
        max_delay: float = 0.0,
        commit_delay: float = 0.0,
        max_pending: int = 200_000,
        states: StateSource | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        state_interval: float = 2.0,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.log = commit_log
        self.encoder = encoder
        self.max_readings = max_readings
        self.max_delay = max_delay
        self.commit_delay = commit_delay
        self.max_pending = max_pending
        self.states = states
        self.state_interval = state_interval
        self.on_commit = on_commit
        self._backoff = Backoff(retry_initial, retry_max)
        self._pending: list[tuple[int, Shipment]] = []
        self._unsaved_states: dict[str, bytes | None] = {}
        self._pending_readings = 0
        self._committing = 0
        self._first_pending_at = 0.0
        self._held: list[_Held] = []  # staged, waiting to be cut into a batch
        self._held_readings = 0
        self._held_since = 0.0  # when the oldest reading held was submitted
        self._ticket = 0  # last ticket handed out
        self._done = 0  # every ticket up to this one is committed: staged or in the outbox (or dropped)
        self._out = 0  # every ticket up to this one is in the outbox (or dropped)
        self._flush_upto = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.healthy = True
        self.last_error: BaseException | None = None
        # counters (this object is their one owner)
        self.submitted_readings = 0
        self.committed_readings = 0
        self.refused_readings = 0
        self.encode_failed_readings = 0
        self.commits = 0
        self.commit_failures = 0
        self.batches_committed = 0
        self.unreadable_staged = 0

    # -- lifecycle --------------------------------------------------------------------------------

    async def recover(self, table: SeriesTable | None = None) -> int:
        """Read back the readings staged before a restart (their series interned in ``table``, or a
        table of their own), to be cut into a batch at the first commit. Call once, before
        :meth:`start`; returns how many readings were recovered. A row that cannot be read is logged,
        counted (``unreadable_staged``) and removed at that commit."""
        rows = await self.log.load_staged()
        if not rows:
            return 0
        table = table if table is not None else SeriesTable()
        for row, blob in rows:
            try:
                batch, interp = unpack(blob, table)
            except Exception as exc:
                log.error("staged row %d cannot be read and is dropped: %s", row, exc)
                self.unreadable_staged += 1
                batch, interp = ReadingBatch.empty(table), None
            self._held.append(_Held(row, 0, Shipment(batch, interp)))
            self._held_readings += len(batch)
        self._held_since = time.monotonic() - self.max_delay  # due at once
        log.info("%d readings staged before the restart will be sent", self._held_readings)
        return self._held_readings

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="committer")

    async def stop(self, *, give_up_after: float = 10.0) -> None:
        """Commit what is pending and the states that changed, then end the task. While commits fail
        it keeps trying for at most ``give_up_after`` seconds; what could not be committed is logged
        and stays in :meth:`stats` as pending."""
        task = self._task
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            async with asyncio.timeout(give_up_after):
                await asyncio.shield(task)
        except TimeoutError:
            log.error(
                "%d readings and the rule states could not be committed before stopping: %s",
                self._pending_readings,
                self.last_error,
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None

    # -- submitting -------------------------------------------------------------------------------

    def submit(self, shipment: Shipment) -> int:
        """Queue ``shipment`` for the next commit; returns its ticket (see :meth:`wait_committed`)."""
        n = len(shipment.batch)
        if n == 0:
            return 0  # nothing to wait for
        self._ticket += 1
        if not self._pending:
            self._first_pending_at = time.monotonic()
        self._pending.append((self._ticket, shipment))
        self._pending_readings += n
        self.submitted_readings += n
        self._wake.set()
        return self._ticket

    @property
    def pending_readings(self) -> int:
        """Readings submitted and not yet committed: waiting for the next group, or in the one being
        committed (a commit waiting for room under ``block`` holds its group here)."""
        return self._pending_readings + self._committing

    async def room(self) -> None:
        """Wait while more than ``max_pending`` readings wait to be committed (backpressure)."""
        if self.pending_readings <= self.max_pending:
            return
        async with self._progress:
            await self._progress.wait_for(lambda: self.pending_readings <= self.max_pending)

    async def wait_committed(self, ticket: int) -> None:
        """Return once the shipment with ``ticket`` is committed (durable) or dropped and counted."""
        if self._done >= ticket:
            return
        async with self._progress:
            await self._progress.wait_for(lambda: self._done >= ticket)

    @property
    def staged_readings(self) -> int:
        """Readings committed and staged, waiting to be cut into a batch (``max_delay``)."""
        return self._held_readings

    async def flush(self) -> None:
        """Cut everything submitted so far into batches in the outbox now, without waiting for
        ``max_delay``; return when they are there."""
        target = self._ticket
        rows = {h.row for h in self._held}  # with those read back after a restart (ticket 0)
        self._flush_upto = max(self._flush_upto, target)
        self._wake.set()

        def done() -> bool:
            return self._out >= target and not any(h.row in rows for h in self._held)

        if not done():
            async with self._progress:
                await self._progress.wait_for(done)

    # -- the task ---------------------------------------------------------------------------------

    def _cut_in(self) -> float:
        """Seconds until what is staged and pending should be cut into a batch (0: now)."""
        if (
            self.max_delay <= 0
            or self._stopping
            or self._flush_upto > self._out
            or self._held_readings + self._pending_readings >= self.max_readings
        ):
            return 0.0
        oldest = min(
            self._held_since if self._held else float("inf"),
            self._first_pending_at if self._pending else float("inf"),
        )
        return max(0.0, oldest + self.max_delay - time.monotonic())

    def _commit_in(self) -> float:
        """Seconds until the pending group should be committed (0: now): ``commit_delay`` after its
        first reading came, at once for an alarm, at ``max_readings``, when stopping or flushing."""
        if (
            self.commit_delay <= 0
            or self._stopping
            or self._flush_upto > self._done
            or self._pending_readings >= self.max_readings
            or any(s.alarm for _, s in self._pending)
        ):
            return 0.0
        return max(0.0, self._first_pending_at + self.commit_delay - time.monotonic())

    async def _run(self) -> None:
        while True:
            wait = self._commit_in() if self._pending else 0.0
            if wait > 0 and self._held:
                wait = min(wait, self._cut_in())  # what is staged is due first: cut it with these
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            if not self._pending:
                if self._held and self._cut_in() <= 0:
                    ok = await self._commit_group(cut=True)
                elif self._stopping:
                    # Last, the states that changed without shipping anything (a segment growing).
                    if await self._commit_group(cut=True):
                        return
                    ok = False
                else:
                    self._wake.clear()
                    wait = self.state_interval
                    if self._held:
                        wait = min(wait, self._cut_in())
                    try:
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
                        continue
                    except TimeoutError:
                        if self._held and self._cut_in() <= 0:
                            continue
                    # Quiet for a while: commit the states that changed without shipping anything, so
                    # what the rules hold is never older than this after a crash.
                    ok = await self._commit_group(cut=False)
            else:
                ok = await self._commit_group(cut=self._cut_in() <= 0)
            if ok:
                self._backoff.reset()
            else:
                await asyncio.sleep(self._backoff.next_delay())

    def _encode(self, parts: list[tuple[int, Shipment]], alarm: bool, built: _Built) -> None:
        """Encode the shipments of one lane into ``built``, those of one series table together; a
        batch that cannot be encoded is dropped and counted there. Runs on the commit log's thread
        (the committer is suspended meanwhile)."""
        parts = [(t, s) for t, s in parts if s.alarm == alarm]
        by_table: dict[int, list[tuple[int, Shipment]]] = {}
        for t, s in parts:
            by_table.setdefault(id(s.batch.table), []).append((t, s))
        for same in by_table.values():
            self._encode_lane(same, alarm, built)

    def _encode_lane(self, parts: list[tuple[int, Shipment]], alarm: bool, built: _Built) -> None:
        if not parts:
            return
        enc = self.encoder
        merged = _merge(parts)
        seq = enc.next_seq
        try:
            built.items.extend(enc.encode(merged.batch, merged.interpolation or None, alarm=alarm))
            return
        except Exception:
            enc.next_seq = seq
        for _, s in parts:  # find the shipment that cannot be encoded
            seq = enc.next_seq
            try:
                built.items.extend(enc.encode(s.batch, s.interpolation, alarm=alarm))
            except Exception as exc:
                enc.next_seq = seq
                built.failed_readings += len(s.batch)
                built.failures.append(f"{type(exc).__name__}: {exc}")

    def _build(self, group: list[tuple[int, Shipment]], held: list[_Held], cut: bool) -> Built[_Built]:
        """On the commit log's thread: the alarms of ``group`` encoded; the rest, with what is
        ``held``, cut into batches (``cut``) or merged into one staged row."""
        built = _Built()
        self._encode(group, True, built)
        plain = [(t, s) for t, s in group if not s.alarm]
        stage: list[Staged] = []
        if plain and not cut and len({id(s.batch.table) for _, s in plain}) > 1:
            cut = True  # batches of two series tables (a library user's): no one row holds them
        if plain and not cut:
            merged = _merge(plain)
            try:
                stage.append((len(merged.batch), pack(merged.batch, merged.interpolation)))
                built.staged = merged
            except UnstageableError:
                cut = True  # a value staging cannot hold: these readings go into a batch now
        if cut:
            self._encode([(h.ticket, h.shipment) for h in held] + plain, False, built)
        enc = self.encoder
        streams = [(enc.stream_key, enc.stream_id, enc.next_seq)] if built.items else []
        return built.items, streams, stage, built

    async def _commit_group(self, *, cut: bool) -> bool:
        """Commit what is pending with the states — cut into batches with what is staged (``cut``),
        or staged — and return True on success. With nothing pending or staged and no state changed,
        there is nothing to write. Encoding and the transaction run on the commit log's thread, so a
        large group does not stall the event loop."""
        group, self._pending = self._pending, []
        readings = self._pending_readings
        self._pending_readings = 0
        since = self._first_pending_at
        # The states are taken now, with the group cut: nothing runs between the two. A source may give
        # only what changed since it was last asked, so states of a failed attempt are kept for the next.
        states = {**self._unsaved_states, **(self.states() if self.states is not None else {})}
        held = list(self._held) if cut else []
        if not group and not states and not held:
            return True
        enc = self.encoder
        seq0 = enc.next_seq
        self._committing = readings
        try:
            built, result = await self.log.commit_built(
                partial(self._build, group, held, cut), states, [h.row for h in held]
            )
        except Exception as exc:
            self._committing = 0
            enc.next_seq = seq0
            self._unsaved_states = states
            self._pending = group + self._pending
            self._pending_readings += readings
            if group:
                self._first_pending_at = since
            self.commit_failures += 1
            self.last_error = exc
            if self.healthy:
                log.error("commit of %d readings failed, will retry: %s", readings, exc)
            self.healthy = False
            return False
        self._committing = 0
        if built.failed_readings:
            self.encode_failed_readings += built.failed_readings
            log.error(
                "%d readings cannot be encoded and were dropped: %s",
                built.failed_readings,
                "; ".join(built.failures[:3]),
            )
        self._unsaved_states = {}
        if not self.healthy:
            log.info("commits succeed again")
        self.healthy = True
        self.commits += 1
        self.batches_committed += result.stored_batches
        self.committed_readings += result.stored_readings
        self.refused_readings += result.refused_readings
        if held:
            del self._held[: len(held)]
            self._held_readings -= sum(len(h.shipment.batch) for h in held)
        if built.staged is not None:
            if not self._held:
                self._held_since = since
            self._held.append(_Held(result.staged_ids[0], group[-1][0], built.staged))
            self._held_readings += len(built.staged.batch)
        if group:
            self._done = group[-1][0]
        if not self._held:
            self._out = self._done
        async with self._progress:
            self._progress.notify_all()
        if self.on_commit is not None and result.stored_batches:
            self.on_commit()
        return True

    # -- looking ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        return {
            "submitted_readings": self.submitted_readings,
            "committed_readings": self.committed_readings,
            "refused_readings": self.refused_readings,
            "encode_failed_readings": self.encode_failed_readings,
            "pending_readings": self.pending_readings,
            "commits": self.commits,
            "commit_failures": self.commit_failures,
            "batches_committed": self.batches_committed,
            "staged_readings": self.staged_readings,
            "unreadable_staged": self.unreadable_staged,
        }


def _merge(parts: list[tuple[int, Shipment]]) -> Shipment:
    """Shipments of one lane and one series table as one: their readings in order, their
    interpolations together (what is encoded as one message, or staged as one row)."""
    first = parts[0][1]
    if len(parts) == 1:
        return first
    batch = ReadingBatch.concat(first.batch.table, [s.batch for _, s in parts])
    interp: dict[int, str] = {}
    for _, s in parts:
        if s.interpolation:
            interp.update(s.interpolation)
    return Shipment(batch, interp or None, first.alarm)
