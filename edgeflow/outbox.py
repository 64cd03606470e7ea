"""Durable store-and-forward queue for encoded batches: SQLite in WAL mode.

A batch is committed here before anything is sent, and leaves only when the broker has confirmed
it (:meth:`Outbox.ack` after a QoS 1 PUBACK). The queue is bounded by bytes with a declared overflow
policy, and every drop is counted:

* ``drop-oldest`` — make room by deleting the oldest unsent batches (plain batches before alarms);
* ``drop-newest`` — refuse the batch being added;
* ``block`` — :meth:`Outbox.put` waits until acknowledgements make room.

Replay order is alarms first, then insertion order (so order within a stream is kept). After a crash,
everything committed is still here; whatever was in flight is sent again, and the receiver drops
those duplicates by ``(stream_id, seq)``.

Each operation is one small transaction on the calling thread (tens of microseconds in WAL mode with
``synchronous=NORMAL``); with ``synchronous="full"`` the fsync of :meth:`put` runs in a worker thread
so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from edgeflow.errors import OutboxError
from edgeflow.model import OverflowPolicy

__all__ = ["Outbox", "OutboxItem", "OutboxRecord", "OverflowPolicy", "StreamState"]

log = logging.getLogger(__name__)


#: Bytes counted per row on top of payload, topic and stream id (SQLite row and index overhead).
ROW_OVERHEAD: Final = 64
#: Freed bytes in an empty outbox past which the file is shrunk.
_SHRINK_AT: Final = 1 << 20
_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm     INTEGER NOT NULL,
    stream_id TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    topic     TEXT    NOT NULL,
    encoding  TEXT    NOT NULL,
    readings  INTEGER NOT NULL,
    size      INTEGER NOT NULL,
    payload   BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_lane ON outbox (alarm, id);
CREATE TABLE IF NOT EXISTS streams (
    key       TEXT    PRIMARY KEY,
    stream_id TEXT    NOT NULL,
    next_seq  INTEGER NOT NULL
);
"""

StreamState = tuple[str, str, int]
"""``(key, stream_id, next_seq)``: where a producer's stream stands, saved with the batches it made, so
after a restart it resumes the same stream without reusing a sequence number."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One encoded batch to store: what the transport needs to publish it, and what it carries."""

    stream_id: str
    seq: int
    topic: str
    payload: bytes
    alarm: bool = False
    readings: int = 0
    encoding: str = ""

    @property
    def size(self) -> int:
        """Bytes this batch counts against the outbox bound."""
        return len(self.payload) + len(self.topic) + len(self.stream_id) + ROW_OVERHEAD


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A stored batch, with the row id that :meth:`Outbox.ack` takes."""

    id: int
    stream_id: str
    seq: int
    topic: str
    payload: bytes
    alarm: bool
    readings: int
    encoding: str
    size: int


class Outbox:
    """The queue. Not thread-safe by itself: use it from one event loop."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int,
        overflow: OverflowPolicy = "drop-oldest",
        synchronous: Literal["normal", "full"] = "normal",
    ) -> None:
        if overflow not in ("drop-oldest", "drop-newest", "block"):
            raise OutboxError(
                f"outbox overflow policy {overflow!r}: expected drop-oldest, drop-newest or block"
            )
        if max_bytes < 1:
            raise OutboxError(f"outbox max_bytes must be positive, not {max_bytes}")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.overflow: OverflowPolicy = overflow
        self.synchronous = synchronous
        self._lock = threading.Lock()
        self._db = self._open()
        self._inflight: set[int] = set()
        self._cursor = {1: 0, 0: 0}  # last id handed out, per lane (1 = alarms)
        self._room = asyncio.Event()
        self._room_waiters = 0
        # counters
        self.put_batches = 0
        self.put_readings = 0
        self.acked_batches = 0
        self.acked_readings = 0
        self.acked_bytes = 0
        self.dropped_batches = 0
        self.dropped_readings = 0
        self.dropped_bytes = 0
        self.recovered_batches = 0
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(readings), 0) FROM outbox"
        ).fetchone()
        self.queued_batches, self.queued_bytes, self.queued_readings = (int(v) for v in row)
        self.recovered_batches = self.queued_batches
        if self.queued_batches:
            log.info(
                "outbox %s: %d batches (%d readings, %d bytes) from before the restart will be sent",
                self.path,
                self.queued_batches,
                self.queued_readings,
                self.queued_bytes,
            )

    # -- opening ----------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"outbox {self.path}: WAL journal mode refused (got {mode!r})")
            db.execute(f"PRAGMA synchronous={'FULL' if self.synchronous == 'full' else 'NORMAL'}")
            db.execute("PRAGMA journal_size_limit=8388608")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version not in (0, _SCHEMA_VERSION):
                raise OutboxError(f"outbox {self.path}: schema version {version} is not {_SCHEMA_VERSION}")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            cols = [r[1] for r in db.execute("PRAGMA table_info(outbox)")]
            expected = ["id", "alarm", "stream_id", "seq", "topic", "encoding", "readings", "size", "payload"]
            if cols != expected:
                raise OutboxError(f"outbox {self.path}: table has columns {cols}, expected {expected}")
        except sqlite3.Error as exc:
            db.close()
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        except OutboxError:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error as exc:  # pragma: no cover - close of a healthy db does not fail
                raise OutboxError(f"closing outbox {self.path}: {exc}") from exc

    # -- putting ----------------------------------------------------------------------------------

    def put_nowait(self, items: Sequence[OutboxItem], stream: StreamState | None = None) -> int:
        """Commit ``items`` (one transaction) under the ``drop-*`` policies; returns how many were
        stored. Under ``block`` a batch without room raises :class:`OutboxError` — use :meth:`put`.
        ``stream`` is saved in the same transaction (see :meth:`stream_state`)."""
        stored = 0
        for group in self._groups(items) or [[]]:
            if self.overflow == "block" and not self._has_room(sum(i.size for i in group)):
                raise OutboxError(
                    f"outbox {self.path} is full ({self.queued_bytes} of {self.max_bytes} bytes)"
                )
            stored += self._put_sync(group, stream)
        return stored

    async def put(self, items: Sequence[OutboxItem], stream: StreamState | None = None) -> int:
        """Commit ``items``; durable when this returns. Under ``block`` waits for room."""
        stored = 0
        for group in self._groups(items) or [[]]:
            if self.overflow == "block":
                need = sum(i.size for i in group)
                while not self._has_room(need):
                    self._room.clear()
                    self._room_waiters += 1
                    try:
                        await self._room.wait()
                    finally:
                        self._room_waiters -= 1
            if self.synchronous == "full":
                stored += await asyncio.to_thread(self._put_sync, group, stream)
            else:
                stored += self._put_sync(group, stream)
        return stored

    def _groups(self, items: Sequence[OutboxItem]) -> list[list[OutboxItem]]:
        """Split so that each group fits the bound on its own; a batch larger than the bound is dropped."""
        groups: list[list[OutboxItem]] = [[]]
        size = 0
        for item in items:
            if item.size > self.max_bytes:
                log.error(
                    "outbox %s: batch %s/%d of %d bytes exceeds the whole bound of %d bytes; dropped",
                    self.path,
                    item.stream_id,
                    item.seq,
                    item.size,
                    self.max_bytes,
                )
                self._count_drop(1, item.readings, item.size)
                continue
            if size + item.size > self.max_bytes:
                groups.append([])
                size = 0
            groups[-1].append(item)
            size += item.size
        return [g for g in groups if g]

    def _has_room(self, need: int) -> bool:
        return self.queued_bytes + need <= self.max_bytes

    def _put_sync(self, items: list[OutboxItem], stream: StreamState | None) -> int:
        need = sum(i.size for i in items)
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                if stream is not None:
                    db.execute(
                        "INSERT INTO streams (key, stream_id, next_seq) VALUES (?, ?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET stream_id = excluded.stream_id, next_seq = excluded.next_seq",
                        stream,
                    )
                if not items:
                    db.execute("COMMIT")
                    return 0
                if not self._has_room(need):
                    if self.overflow == "drop-newest":
                        db.execute("COMMIT")
                        self._count_drop(len(items), sum(i.readings for i in items), need)
                        log.warning(
                            "outbox %s full: dropped %d new batches (drop-newest); %d dropped so far",
                            self.path,
                            len(items),
                            self.dropped_batches,
                        )
                        return 0
                    self._drop_oldest(self.queued_bytes + need - self.max_bytes)
                db.executemany(
                    "INSERT INTO outbox (alarm, stream_id, seq, topic, encoding, readings, size, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (int(i.alarm), i.stream_id, i.seq, i.topic, i.encoding, i.readings, i.size, i.payload)
                        for i in items
                    ],
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise OutboxError(f"outbox {self.path}: storing {len(items)} batches failed: {exc}") from exc
        self.queued_batches += len(items)
        self.queued_bytes += need
        n = sum(i.readings for i in items)
        self.queued_readings += n
        self.put_batches += len(items)
        self.put_readings += n
        return len(items)

    def _drop_oldest(self, excess: int) -> None:
        """Delete the oldest batches not in flight until ``excess`` bytes are freed (inside a transaction)."""
        victims: list[int] = []
        freed = readings = 0
        for lane in (0, 1):
            after = 0
            while freed < excess:
                rows = self._db.execute(
                    "SELECT id, size, readings FROM outbox WHERE alarm = ? AND id > ? ORDER BY id LIMIT 256",
                    (lane, after),
                ).fetchall()
                if not rows:
                    break
                for rid, size, n in rows:
                    after = rid
                    if rid in self._inflight:
                        continue
                    victims.append(rid)
                    freed += size
                    readings += n
                    if freed >= excess:
                        break
        if freed < excess:  # only in-flight batches left: they are on their way out, admit the overshoot
            log.debug(
                "outbox %s: %d bytes over the bound while batches are in flight", self.path, excess - freed
            )
        if not victims:
            return
        self._db.executemany("DELETE FROM outbox WHERE id = ?", [(v,) for v in victims])
        self.queued_batches -= len(victims)
        self.queued_bytes -= freed
        self.queued_readings -= readings
        self._count_drop(len(victims), readings, freed)
        log.warning(
            "outbox %s full: dropped the %d oldest batches (%d readings, drop-oldest); %d dropped so far",
            self.path,
            len(victims),
            readings,
            self.dropped_batches,
        )

    def _count_drop(self, batches: int, readings: int, size: int) -> None:
        self.dropped_batches += batches
        self.dropped_readings += readings
        self.dropped_bytes += size

    def stream_state(self, key: str) -> tuple[str, int] | None:
        """``(stream_id, next_seq)`` last saved under ``key`` with :meth:`put`, or None."""
        with self._lock:
            row = self._db.execute("SELECT stream_id, next_seq FROM streams WHERE key = ?", (key,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    # -- taking and acknowledging -----------------------------------------------------------------

    def take(self, limit: int) -> list[OutboxRecord]:
        """Up to ``limit`` batches not yet handed out: alarms first, then in insertion order. They are
        in flight until :meth:`ack` (confirmed) or :meth:`release` (connection lost)."""
        out: list[OutboxRecord] = []
        with self._lock:
            for lane in (1, 0):
                if len(out) >= limit:
                    break
                try:
                    rows = self._db.execute(
                        "SELECT id, stream_id, seq, topic, payload, alarm, readings, encoding, size"
                        " FROM outbox WHERE alarm = ? AND id > ? ORDER BY id LIMIT ?",
                        (lane, self._cursor[lane], limit - len(out)),
                    ).fetchall()
                except sqlite3.Error as exc:
                    raise OutboxError(f"outbox {self.path}: reading failed: {exc}") from exc
                for r in rows:
                    rec = OutboxRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8])
                    out.append(rec)
                    self._inflight.add(rec.id)
                if rows:
                    self._cursor[lane] = rows[-1][0]
        return out

    def ack(self, records: Iterable[OutboxRecord]) -> None:
        """The broker confirmed these: delete them (one transaction)."""
        recs = [r for r in records if r.id in self._inflight]
        if not recs:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM outbox WHERE id = ?", [(r.id,) for r in recs])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"outbox {self.path}: deleting acknowledged batches failed: {exc}") from exc
        for r in recs:
            self._inflight.discard(r.id)
            self.queued_batches -= 1
            self.queued_bytes -= r.size
            self.queued_readings -= r.readings
            self.acked_batches += 1
            self.acked_readings += r.readings
            self.acked_bytes += len(r.payload)
        if self.queued_batches == 0:
            self._shrink()
        if self._room_waiters:
            self._room.set()

    def _shrink(self) -> None:
        """The outbox is empty: hand freed pages back to the file system once they add up to a
        megabyte or more, so the file does not stay at its outage-time size. With no rows left,
        VACUUM rebuilds next to nothing, so it is cheap exactly when it runs."""
        with self._lock:
            try:
                free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
                page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
                if free * page < _SHRINK_AT:
                    return
                self._db.execute("VACUUM")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # a missed shrink loses nothing; say so and go on
                log.warning("outbox %s: could not give freed space back: %s", self.path, exc)

    def release(self) -> int:
        """The connection was lost: every batch in flight becomes unsent again (sent again later, in
        order). Returns how many were in flight."""
        n = len(self._inflight)
        self._inflight.clear()
        self._cursor = {1: 0, 0: 0}
        return n

    # -- looking ----------------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def file_bytes(self) -> int:
        """Size of the database and its WAL on disk."""
        total = 0
        for suffix in ("", "-wal"):
            p = Path(f"{self.path}{suffix}")
            if p.exists():
                total += p.stat().st_size
        return total

    def stats(self) -> dict[str, int]:
        return {
            "queued_batches": self.queued_batches,
            "queued_readings": self.queued_readings,
            "queued_bytes": self.queued_bytes,
            "inflight": self.inflight,
            "put_batches": self.put_batches,
            "put_readings": self.put_readings,
            "acked_batches": self.acked_batches,
            "acked_readings": self.acked_readings,
            "acked_bytes": self.acked_bytes,
            "dropped_batches": self.dropped_batches,
            "dropped_readings": self.dropped_readings,
            "dropped_bytes": self.dropped_bytes,
            "recovered_batches": self.recovered_batches,
            "max_bytes": self.max_bytes,
            "file_bytes": self.file_bytes(),
        }
