"""The event loop's face of the commit log: every call runs on the log's own thread.

:class:`CommitLog` owns one :class:`~edgeflow.commitlog._store.Store` (one SQLite connection) and one
worker thread. Each method sends one call to that thread and awaits it, so no disk I/O ever runs on
the event loop, and the store's counters have one owner (the thread): the loop keeps a copy of them,
refreshed with every answer, for :meth:`CommitLog.stats`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

from edgeflow.commitlog._store import (
    CommitResult,
    OutboxItem,
    OutboxRecord,
    OverflowPolicy,
    Staged,
    Store,
    StreamState,
)
from edgeflow.errors import OutboxError

__all__ = ["CommitLog"]

log = logging.getLogger(__name__)

T = TypeVar("T")
B = TypeVar("B")

Built = tuple[Sequence[OutboxItem], Sequence[StreamState], Sequence[Staged], B]
"""What :meth:`CommitLog.commit_built`'s ``build`` returns: items, stream positions, readings to stage,
and anything for the caller."""


class CommitLog:
    """Encoded batches, stream positions and rule states, committed together on one thread.

    ``await open()`` before use and ``await close()`` after. The outbox is its read side: transports
    :meth:`take` batches, and :meth:`ack` them once delivered.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int,
        overflow: OverflowPolicy = "drop-oldest",
        synchronous: Literal["normal", "full"] = "normal",
    ) -> None:
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.overflow: OverflowPolicy = overflow
        self.synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._store: Store | None = None
        self._counters: dict[str, int] = {}
        self._room: asyncio.Event | None = None
        self._blocked = 0

    # -- the thread -------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            raise OutboxError(f"commit log {self.path} is not open")
        loop = asyncio.get_running_loop()

        def job() -> tuple[T, dict[str, int]]:
            result = fn(*args)
            store = self._store
            counters = store.counters() if store is not None else {}
            if store is not None:
                counters["file_bytes"] = store.file_bytes_now()
            return result, counters

        result, counters = await loop.run_in_executor(self._executor, job)
        if counters:
            self._counters = counters
        return result

    def _s(self) -> Store:
        if self._store is None:
            raise OutboxError(f"commit log {self.path} is not open")
        return self._store

    @property
    def is_open(self) -> bool:
        return self._store is not None

    async def open(self) -> None:
        """Open (or create) the database on the log's thread. Raises :class:`OutboxError`."""
        if self._store is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="edgeflow-commitlog")
        self._room = asyncio.Event()

        def make() -> Store:
            store = Store(
                self.path, max_bytes=self.max_bytes, overflow=self.overflow, synchronous=self.synchronous
            )
            self._store = store
            return store

        try:
            await self._call(make)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._store is not None:
            try:
                await self._call(self._store.close)
            finally:
                self._store = None
        self._executor.shutdown(wait=True)
        self._executor = None

    # -- writing ----------------------------------------------------------------------------------

    async def commit(
        self,
        items: Sequence[OutboxItem],
        streams: Sequence[StreamState] = (),
        states: Mapping[str, bytes | None] | None = None,
        stage: Sequence[Staged] = (),
        unstage: Sequence[int] = (),
    ) -> CommitResult:
        """Commit ``items`` with the stream positions and states (``None`` deletes one), the readings to
        ``stage`` and the staged rows to ``unstage`` (see :meth:`Store.commit`), in one transaction;
        durable when this returns. Under ``block`` it waits for acknowledgements to make room. Raises
        :class:`OutboxError` when the database fails (nothing of the call is then committed)."""
        store = self._s()
        while True:
            result = await self._call(store.commit, items, streams, states, stage, unstage)
            if not result.full:
                return result
            assert self._room is not None
            self._room.clear()
            self._blocked += 1
            try:
                await self._room.wait()
            finally:
                self._blocked -= 1

    async def commit_built(
        self,
        build: Callable[[], Built[B]],
        states: Mapping[str, bytes | None] | None = None,
        unstage: Sequence[int] = (),
    ) -> tuple[B, CommitResult]:
        """As :meth:`commit`, with the items and the readings to stage made by ``build()`` on the log's
        thread, just before the transaction (``build`` returns the items, the stream positions, the
        readings to stage and anything for the caller). Under ``block`` the built items wait for room;
        ``build`` runs once."""
        store = self._s()

        def job() -> tuple[Built[B], CommitResult]:
            built = build()
            items, streams, stage, _ = built
            return built, store.commit(items, streams, states, stage, unstage)

        built, result = await self._call(job)
        if result.full:
            items, streams, stage, _ = built
            result = await self.commit(items, streams, states, stage, unstage)
        return built[3], result

    async def load_staged(self) -> list[tuple[int, bytes]]:
        """``(row id, payload)`` of the readings staged before a restart, oldest first."""
        return await self._call(self._s().load_staged)

    async def stream_state(self, key: str) -> tuple[str, int] | None:
        return await self._call(self._s().stream_state, key)

    async def load_state(self, key: str) -> bytes | None:
        return await self._call(self._s().load_state, key)

    async def load_state_rows(self, key: str) -> list[tuple[str, bytes]]:
        """``(name, blob)`` of every row of state ``key`` (see :func:`~edgeflow.commitlog.row_key`)."""
        return await self._call(self._s().load_state_rows, key)

    async def set_state_aside(self, key: str) -> None:
        await self._call(self._s().set_state_aside, key)

    # -- the outbox, its read side ----------------------------------------------------------------

    async def take(self, limit: int) -> list[OutboxRecord]:
        """Up to ``limit`` batches not in flight: alarms first, then in commit order."""
        return await self._call(self._s().take, limit)

    async def ack(self, records: Iterable[OutboxRecord]) -> None:
        """These batches were delivered: delete them (and make room for a blocked commit)."""
        await self._call(self._s().ack, list(records))
        if self._room is not None:
            self._room.set()

    async def release(self) -> int:
        """Every batch in flight becomes unsent again, to be taken again in order."""
        return await self._call(self._s().release)

    # -- looking ----------------------------------------------------------------------------------

    @property
    def queued_batches(self) -> int:
        return self._counters.get("queued_batches", 0)

    @property
    def blocked(self) -> bool:
        """A commit is waiting for room (``block`` policy)."""
        return self._blocked > 0

    def stats(self) -> dict[str, int]:
        """The store's counters as of its last answer (see :meth:`Store.counters`) and ``file_bytes``."""
        return dict(self._counters)
