"""The SQLite side of the commit log: one connection, owned by one thread, and everything it counts.

Every method of :class:`Store` runs on the commit log's own thread (:class:`~edgeflow.commitlog.CommitLog`
calls them there), so the event loop never waits on the disk and every counter has one owner. The
tables:

* ``outbox`` — encoded batches waiting for their transport, alarms in their own lane;
* ``streams`` — each stream's id and next sequence number;
* ``state`` — named blobs: each pipeline's rule snapshot, as a head under the pipeline's key and rows
  under ``<key>`` + :data:`ROW_SEP` + ``<name>`` (see :func:`row_key`; the runtime keeps, per rule, the keys
  and the states of 64 series a row), so a commit rewrites only what changed;
* ``staged`` — readings committed and not yet cut into a message (batching with ``max_delay``: a
  reading is durable as soon as it is read, the message that carries it is made later).

:meth:`Store.commit` writes batches, staged readings (and the removal of those a batch now carries),
stream positions and states in **one** transaction: after a crash the rules resume from exactly the
state that produced the batches and staged readings the log holds, and no sequence number is used twice.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from edgeflow.errors import OutboxError
from edgeflow.model import OverflowPolicy

__all__ = [
    "ROW_OVERHEAD",
    "ROW_SEP",
    "CommitResult",
    "OutboxItem",
    "OutboxRecord",
    "OverflowPolicy",
    "Staged",
    "Store",
    "StreamState",
    "row_key",
]

log = logging.getLogger(__name__)


#: Bytes counted per row on top of payload, topic and stream id (SQLite row and index overhead).
ROW_OVERHEAD: Final = 64
#: Between a state's key and the name of one of its rows (a character no state key holds).
ROW_SEP: Final = "\x1f"
#: The file's size is looked at again (two ``stat`` calls) after this many seconds, or after this many
#: bytes were written or the file was shrunk; in between, :meth:`Store.file_bytes_now` repeats the last.
_SIZE_EVERY_S: Final = 1.0
_SIZE_EVERY_BYTES: Final = 256 * 1024
#: Freed bytes in an empty outbox past which the file is shrunk.
_SHRINK_AT: Final = 1 << 20
_SCHEMA_VERSION: Final = 3
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
CREATE TABLE IF NOT EXISTS state (
    key       TEXT    PRIMARY KEY,
    value     BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS staged (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    readings  INTEGER NOT NULL,
    payload   BLOB    NOT NULL
);
"""
_OUTBOX_COLUMNS: Final = [
    "id",
    "alarm",
    "stream_id",
    "seq",
    "topic",
    "encoding",
    "readings",
    "size",
    "payload",
]


def row_key(key: str, name: str) -> str:
    """The key of row ``name`` of state ``key``: :meth:`Store.load_state_rows` reads them back, and
    :meth:`Store.set_state_aside` moves them with their state. ``row_key(key, "")`` committed as
    ``None`` clears every row of ``key``."""
    return f"{key}{ROW_SEP}{name}"


def _rows_range(key: str) -> tuple[str, str]:
    """Bounds ``lo <= k < hi`` of the keys of ``key``'s rows (text compares as UTF-8 bytes)."""
    return f"{key}{ROW_SEP}", f"{key}{chr(ord(ROW_SEP) + 1)}"


Staged = tuple[int, bytes]
"""``(readings, payload)``: readings committed before they are cut into a batch (see :meth:`Store.commit`)."""

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
    """A stored batch, with the row id that acknowledging it takes."""

    id: int
    stream_id: str
    seq: int
    topic: str
    payload: bytes
    alarm: bool
    readings: int
    encoding: str
    size: int


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one commit did: batches and readings stored, and those refused or evicted by the policy."""

    stored_batches: int = 0
    stored_readings: int = 0
    #: New batches not stored: larger than the whole bound, or refused by ``drop-newest``.
    refused_batches: int = 0
    refused_readings: int = 0
    #: Older batches deleted to make room (``drop-oldest``).
    evicted_batches: int = 0
    evicted_readings: int = 0
    #: ``block`` only: nothing was written, the outbox has no room yet (the caller waits and retries).
    full: bool = False
    #: Row ids of the staged readings this commit wrote, in the order given.
    staged_ids: tuple[int, ...] = ()


class Store:
    """The outbox database and its counters. Not thread-safe: the commit log's thread is its one user."""

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
        self._db = self._open()
        self._inflight: set[int] = set()
        self._cursor = {1: 0, 0: 0}  # last id handed out, per lane (1 = alarms)
        self._size = 0
        self._size_at = 0.0  # monotonic time after which the size is looked at again
        self._written = 0  # bytes written since it was last looked at
        self.put_batches = 0
        self.put_readings = 0
        self.acked_batches = 0
        self.acked_readings = 0
        self.acked_bytes = 0
        self.dropped_batches = 0
        self.dropped_readings = 0
        self.dropped_bytes = 0
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(readings), 0) FROM outbox"
        ).fetchone()
        self.queued_batches, self.queued_bytes, self.queued_readings = (int(v) for v in row)
        self.recovered_batches = self.queued_batches
        self.recovered_readings = self.queued_readings
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
            fresh = not self.path.exists()
            db = sqlite3.connect(self.path, isolation_level=None)
            if fresh:
                self.path.chmod(0o600)  # batches and rule state are the operator's data
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"outbox {self.path}: WAL journal mode refused (got {mode!r})")
            db.execute(f"PRAGMA synchronous={'FULL' if self.synchronous == 'full' else 'NORMAL'}")
            db.execute("PRAGMA journal_size_limit=8388608")
            db.execute("PRAGMA busy_timeout=1000")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version not in (0, 1, 2, _SCHEMA_VERSION):
                raise OutboxError(f"outbox {self.path}: schema version {version} is not {_SCHEMA_VERSION}")
            db.executescript(_SCHEMA)  # older files gain the state (version 1) and staged (2) tables
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            cols = [r[1] for r in db.execute("PRAGMA table_info(outbox)")]
            if cols != _OUTBOX_COLUMNS:
                raise OutboxError(f"outbox {self.path}: table has columns {cols}, expected {_OUTBOX_COLUMNS}")
        except sqlite3.Error as exc:
            db.close()
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        except OutboxError:
            db.close()
            raise
        return db

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error as exc:  # pragma: no cover - close of a healthy db does not fail
            raise OutboxError(f"closing outbox {self.path}: {exc}") from exc

    # -- committing -------------------------------------------------------------------------------

    def fits(self, items: Sequence[OutboxItem]) -> bool:
        """Whether ``items`` fit the bound now (``block`` waits until they do)."""
        return self.queued_bytes + sum(i.size for i in self._admissible(items)) <= self.max_bytes

    def _admissible(self, items: Sequence[OutboxItem]) -> list[OutboxItem]:
        return [i for i in items if i.size <= self.max_bytes]

    def commit(
        self,
        items: Sequence[OutboxItem],
        streams: Sequence[StreamState] = (),
        states: Mapping[str, bytes | None] | None = None,
        stage: Sequence[Staged] = (),
        unstage: Sequence[int] = (),
    ) -> CommitResult:
        """Store ``items``, the stream positions and the named states in one transaction (a state of
        ``None`` is deleted; ``row_key(key, "")`` set to ``None`` deletes every row of ``key``, before
        the rows this commit writes), with the readings to ``stage`` (``(readings, payload)``; their
        row ids come back in :attr:`CommitResult.staged_ids`) and the staged rows to ``unstage`` (a
        batch of this commit carries them now). Staged readings do not count against the bound: the
        committer cuts them into batches within its ``max_delay`` or ``max_readings``.

        A batch larger than the whole bound is dropped (counted). Without room, ``drop-oldest`` evicts
        the oldest batches not in flight, ``drop-newest`` refuses the new batches (the stream positions
        and states are still committed: those readings are dropped by policy, counted, and the rules
        go on), and ``block`` writes nothing and reports ``full``."""
        dropped_b = dropped_r = 0
        keep = self._admissible(items)
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
                dropped_b += 1
                dropped_r += item.readings
        need = sum(i.size for i in keep)
        if keep and self.queued_bytes + need > self.max_bytes:
            if self.overflow == "block":
                return CommitResult(full=True)
            if self.overflow == "drop-newest":
                dropped_b += len(keep)
                dropped_r += sum(i.readings for i in keep)
                log.warning(
                    "outbox %s full: dropped %d new batches (drop-newest); %d dropped so far",
                    self.path,
                    len(keep),
                    self.dropped_batches + dropped_b,
                )
                keep, need = [], 0
        db = self._db
        evicted: tuple[list[int], int, int] = ([], 0, 0)
        try:
            db.execute("BEGIN IMMEDIATE")
            if keep and self.queued_bytes + need > self.max_bytes:
                evicted = self._evict_oldest(self.queued_bytes + need - self.max_bytes)
            if streams:
                db.executemany(
                    "INSERT INTO streams (key, stream_id, next_seq) VALUES (?, ?, ?) ON CONFLICT (key)"
                    " DO UPDATE SET stream_id = excluded.stream_id, next_seq = excluded.next_seq",
                    streams,
                )
            if states:
                gone = [k for k, v in states.items() if v is None]
                for k in gone:  # first: clearing every row of a state comes before writing new ones
                    if k.endswith(ROW_SEP):
                        db.execute("DELETE FROM state WHERE key >= ? AND key < ?", _rows_range(k[:-1]))
                db.executemany("DELETE FROM state WHERE key = ?", [(k,) for k in gone])
                db.executemany(
                    "INSERT INTO state (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [(k, v) for k, v in states.items() if v is not None],
                )
            staged_ids: list[int] = []
            for readings, payload in stage:
                cur = db.execute("INSERT INTO staged (readings, payload) VALUES (?, ?)", (readings, payload))
                staged_ids.append(int(cur.lastrowid or 0))
            if unstage:
                db.executemany("DELETE FROM staged WHERE id = ?", [(i,) for i in unstage])
            if keep:
                db.executemany(
                    "INSERT INTO outbox (alarm, stream_id, seq, topic, encoding, readings, size, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (int(i.alarm), i.stream_id, i.seq, i.topic, i.encoding, i.readings, i.size, i.payload)
                        for i in keep
                    ],
                )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise OutboxError(f"outbox {self.path}: committing {len(items)} batches failed: {exc}") from exc
        victims, freed, victim_readings = evicted
        if victims:
            self.queued_batches -= len(victims)
            self.queued_bytes -= freed
            self.queued_readings -= victim_readings
            self._count_drop(len(victims), victim_readings, freed)
            log.warning(
                "outbox %s full: dropped the %d oldest batches (%d readings, drop-oldest); %d dropped so far",
                self.path,
                len(victims),
                victim_readings,
                self.dropped_batches,
            )
        if dropped_b:
            self._count_drop(dropped_b, dropped_r, 0)
        n = sum(i.readings for i in keep)
        self._written += need + sum(len(p) for _, p in stage)
        self.queued_batches += len(keep)
        self.queued_bytes += need
        self.queued_readings += n
        self.put_batches += len(keep)
        self.put_readings += n
        return CommitResult(
            stored_batches=len(keep),
            stored_readings=n,
            refused_batches=dropped_b,
            refused_readings=dropped_r,
            evicted_batches=len(victims),
            evicted_readings=victim_readings,
            staged_ids=tuple(staged_ids),
        )

    def _evict_oldest(self, excess: int) -> tuple[list[int], int, int]:
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
        if victims:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(v,) for v in victims])
        return victims, freed, readings

    def _count_drop(self, batches: int, readings: int, size: int) -> None:
        self.dropped_batches += batches
        self.dropped_readings += readings
        self.dropped_bytes += size

    # -- state ------------------------------------------------------------------------------------

    def load_staged(self) -> list[tuple[int, bytes]]:
        """``(row id, payload)`` of every staged row, oldest first: readings committed before a restart
        and not yet cut into a batch."""
        rows = self._db.execute("SELECT id, payload FROM staged ORDER BY id").fetchall()
        return [(int(i), bytes(p)) for i, p in rows]

    def stream_state(self, key: str) -> tuple[str, int] | None:
        """``(stream_id, next_seq)`` last committed under ``key``, or None."""
        row = self._db.execute("SELECT stream_id, next_seq FROM streams WHERE key = ?", (key,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def load_state(self, key: str) -> bytes | None:
        """The blob last committed under ``key``, or None."""
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def load_state_rows(self, key: str) -> list[tuple[str, bytes]]:
        """``(name, blob)`` of every row of state ``key`` (see :func:`row_key`), in key order."""
        lo, hi = _rows_range(key)
        rows = self._db.execute(
            "SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key", (lo, hi)
        ).fetchall()
        return [(str(k)[len(lo) :], bytes(v)) for k, v in rows]

    def state_keys(self) -> list[str]:
        return [str(r[0]) for r in self._db.execute("SELECT key FROM state ORDER BY key")]

    def set_state_aside(self, key: str) -> None:
        """Move an unreadable state and its rows to ``<key>.unreadable`` (kept for a look, out of the
        way; what was set aside before is replaced)."""
        aside = f"{key}.unreadable"
        lo, hi = _rows_range(key)
        alo, ahi = _rows_range(aside)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM state WHERE key = ? OR (key >= ? AND key < ?)", (aside, alo, ahi))
            self._db.execute(
                "INSERT INTO state (key, value) SELECT ?, value FROM state WHERE key = ?", (aside, key)
            )
            self._db.execute(
                "INSERT INTO state (key, value) SELECT ? || substr(key, ?), value FROM state"
                " WHERE key >= ? AND key < ?",
                (aside, len(key) + 1, lo, hi),
            )
            self._db.execute("DELETE FROM state WHERE key = ? OR (key >= ? AND key < ?)", (key, lo, hi))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise OutboxError(f"outbox {self.path}: setting state {key!r} aside failed: {exc}") from exc

    # -- taking and acknowledging -----------------------------------------------------------------

    def take(self, limit: int) -> list[OutboxRecord]:
        """Up to ``limit`` batches not yet handed out: alarms first, then in insertion order. They are
        in flight until :meth:`ack` (confirmed) or :meth:`release` (connection lost)."""
        out: list[OutboxRecord] = []
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
        """The transport delivered these: delete them (one transaction)."""
        recs = [r for r in records if r.id in self._inflight]
        if not recs:
            return
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

    def _shrink(self) -> None:
        """The outbox is empty: hand freed pages back to the file system once they add up to a
        megabyte or more, so the file does not stay at its outage-time size. With no rows left,
        VACUUM rebuilds next to nothing, so it is cheap exactly when it runs."""
        try:
            free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
            page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            if free * page < _SHRINK_AT:
                return
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._size_at = 0.0
        except sqlite3.Error as exc:  # a missed shrink loses nothing; say so and go on
            log.warning("outbox %s: could not give freed space back: %s", self.path, exc)

    def release(self) -> int:
        """Every batch in flight becomes unsent again (sent again later, in order). Returns how many
        were in flight."""
        n = len(self._inflight)
        self._inflight.clear()
        self._cursor = {1: 0, 0: 0}
        return n

    # -- looking ----------------------------------------------------------------------------------

    def file_bytes(self) -> int:
        """Size of the database and its WAL on disk."""
        total = 0
        for suffix in ("", "-wal"):
            p = Path(f"{self.path}{suffix}")
            if p.exists():
                total += p.stat().st_size
        return total

    def file_bytes_now(self) -> int:
        """:meth:`file_bytes`, looked at again only when it may have moved (a second passed, a
        quarter megabyte written, the file shrunk): every call of the log reports it, most of them
        a take or an acknowledgement that change nothing much."""
        now = time.monotonic()
        if now >= self._size_at or self._written >= _SIZE_EVERY_BYTES:
            self._size = self.file_bytes()
            self._size_at = now + _SIZE_EVERY_S
            self._written = 0
        return self._size

    def counters(self) -> dict[str, int]:
        return {
            "queued_batches": self.queued_batches,
            "queued_readings": self.queued_readings,
            "queued_bytes": self.queued_bytes,
            "inflight": len(self._inflight),
            "put_batches": self.put_batches,
            "put_readings": self.put_readings,
            "acked_batches": self.acked_batches,
            "acked_readings": self.acked_readings,
            "acked_bytes": self.acked_bytes,
            "dropped_batches": self.dropped_batches,
            "dropped_readings": self.dropped_readings,
            "dropped_bytes": self.dropped_bytes,
            "recovered_batches": self.recovered_batches,
            "recovered_readings": self.recovered_readings,
            "max_bytes": self.max_bytes,
        }
