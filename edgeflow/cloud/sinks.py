"""Where the receiver stores what it takes: the :class:`Sink` contract and the JSON-lines file sink.

A sink stores decoded batches **durably** and says, for each, whether it was new or a duplicate. The
receiver acknowledges a message to the broker only after :meth:`Sink.store` has returned for it; a
:class:`SinkError` leaves it unacknowledged, so the broker delivers it again.

Sinks are blocking objects used by one thread at a time (the receiver's store thread): they never run
on the event loop. The PostgreSQL sink is :class:`edgeflow.cloud.postgres.PostgresStore`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import numpy as np
import orjson

from edgeflow.codec import DecodedBatch
from edgeflow.errors import EdgeflowError
from edgeflow.model import ValueType

__all__ = ["JsonLinesSink", "Sink", "SinkError", "StoreItem", "jsonable", "jsonl_lines"]

StoreItem = tuple[DecodedBatch, str]
"""``(batch, topic)``: one decoded message to store."""


class SinkError(EdgeflowError):
    """A sink could not store a batch (disk full, database unreachable, ...): nothing of the call is
    stored, and the receiver leaves its messages unacknowledged.

    ``permanent``: the data itself was refused (a value the database cannot hold), so storing it again
    would fail again. The receiver then stores the group's messages one by one, and a message refused
    on its own is counted as ``unstorable``, logged and acknowledged — never retried forever."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class SinkOpenError(SinkError):
    """The sink could not be opened at start (a path that cannot be written, a database that cannot
    be reached or refuses the login): nothing was received."""


@runtime_checkable
class Sink(Protocol):
    """What the receiver stores into. All methods block; the receiver calls them from one thread."""

    #: Short name for logs and the summary (``jsonl``, ``postgresql``).
    name: str

    def open(self) -> None:
        """Connect / open files, create or migrate what is needed. May raise :class:`SinkError`."""
        ...

    def store(self, items: Sequence[StoreItem]) -> list[bool]:
        """Store ``items`` durably, all or nothing; per item True if stored now, False if it was already
        stored (same ``(stream_id, seq)``; untracked batches, ``seq < 0``, are always stored). Raises
        :class:`SinkError` when nothing could be stored."""
        ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON line per reading appended to ``path`` (see :func:`jsonl_lines`), fsynced before
    :meth:`store` returns. A duplicate ``(stream, seq)`` is skipped; the keys already in the file are
    read back at :meth:`open`, so a restarted receiver does not write a batch twice. One receiver per
    file: a group of receivers de-duplicates across its members only with the PostgreSQL sink."""

    name = "jsonl"

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self._f: IO[bytes] | None = None
        self._seen: set[tuple[str, int]] = set()

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file():  # not a device or a pipe
                self._seen = _keys_in(self.path)
            self._f = self.path.open("ab")
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc}") from exc

    def store(self, items: Sequence[StoreItem]) -> list[bool]:
        f = self._f
        if f is None:
            raise SinkError(f"{self.path} is not open")
        out: list[bool] = []
        new: list[tuple[str, int]] = []
        chunks: list[bytes] = []
        for batch, topic in items:
            key = (batch.stream_id, batch.seq)
            if batch.seq >= 0 and (key in self._seen or key in new):
                out.append(False)
                continue
            if batch.seq >= 0:
                new.append(key)
            chunks.append(jsonl_lines(batch, topic))
            out.append(True)
        if not chunks:
            return out
        pos = f.tell()
        try:
            f.write(b"".join(chunks))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        except OSError as exc:
            # Leave no half-written line behind: the batches are delivered again and written whole.
            with contextlib.suppress(OSError):
                f.truncate(pos)
                f.seek(pos)
            raise SinkError(f"writing {self.path} failed: {exc}") from exc
        self._seen.update(new)
        return out

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _keys_in(path: Path) -> set[tuple[str, int]]:
    keys: set[tuple[str, int]] = set()
    with path.open("rb") as f:
        for line in f:
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a torn last line of a crashed writer: its batch is delivered again
            seq = rec.get("seq", -1)
            if isinstance(seq, int) and seq >= 0:
                keys.add((str(rec.get("stream")), seq))
    return keys


def jsonl_lines(batch: DecodedBatch, topic: str) -> bytes:
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
            lines.append(orjson.dumps(rec, default=jsonable, option=orjson.OPT_APPEND_NEWLINE))
    return b"".join(lines)


def jsonable(v: Any) -> Any:
    """orjson's ``default``: bytes as base64, numpy scalars as Python numbers, mappings as dicts."""
    if isinstance(v, bytes | bytearray):
        import base64

        return base64.b64encode(v).decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Mapping):
        return dict(v)
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")
