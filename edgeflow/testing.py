"""Helpers for your own tests: a manual clock (for rule chains and for the AutoEvent scheduler), an
in-memory source that builds columnar batches from lists, and a sink that collects what a pipeline emits.

>>> from edgeflow.model import SeriesTable
>>> from edgeflow.rules import build_pipeline
>>> from edgeflow.rules.spec import DeadbandSpec
>>> table = SeriesTable()
>>> source = ListSource(table)
>>> sid = source.add("pump1", "temp", [0, 1, 2, 3], [20.0, 20.2, 21.5, 21.6])
>>> sink = run(build_pipeline([DeadbandSpec(type="deadband", absolute=1.0)], table), source.batches())
>>> sink.values("pump1", "temp")
[20.0, 21.5]
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np

from edgeflow.model import ReadingBatch, SeriesTable, ValueType, batch_from_values
from edgeflow.rules.pipeline import Pipeline, PipelineOutput

__all__ = ["MS", "SECOND", "CollectingSink", "ListSource", "ManualClock", "run"]


class ManualClock:
    """A clock you move by hand, in integer nanoseconds, for rules and for the AutoEvent scheduler.

    Rules: pass ``clock.now_ns`` (or what :meth:`advance` / :meth:`set` return) to
    :meth:`Pipeline.advance` to close windows or send heartbeats.

    Scheduling: it is a :class:`~edgeflow.connector.Clock` (both time lines are :attr:`now_ns`). Give it
    to a ``DeviceService`` (or a ``Runtime``) and drive it with ``await clock.run_for(ns)``: every sleep
    and read timeout due in that span fires in deadline order (ties in the order they were set), with
    the event loop run until idle after each, so polls happen exactly when due and no real time passes::

        clock = ManualClock()
        svc = DeviceService("svc", VirtualConnector(), publish, SeriesTable(), clock=clock)
        ...
        await svc.start()
        await clock.run_for(250 * MS)      # 26 polls of a 10 ms AutoEvent: at 0, 10, ..., 250 ms

    Only work waiting on this clock, or ready to run, is waited for; a task blocked on real I/O is not.
    """

    def __init__(self, start_ns: int = 0) -> None:
        self.now_ns = int(start_ns)
        self._timers: list[_Timer] = []  # a heap, by (deadline, order set)
        self._order = itertools.count()

    # -- moving time by hand (rules) -----------------------------------------------------------------

    def advance(self, ns: int) -> int:
        """Move forward ``ns`` nanoseconds at once (due timers fire, but no task runs before this
        returns; use :meth:`run_for` to drive tasks)."""
        if ns < 0:
            raise ValueError("a manual clock does not go backwards")
        self.now_ns += int(ns)
        self._fire_due()
        return self.now_ns

    def set(self, now_ns: int) -> int:
        """Jump to ``now_ns`` (backwards too, for rules fed out-of-order time)."""
        self.now_ns = int(now_ns)
        self._fire_due()
        return self.now_ns

    # -- the Clock protocol ----------------------------------------------------------------------------

    def monotonic_ns(self) -> int:
        return self.now_ns

    def time_ns(self) -> int:
        return self.now_ns

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now_ns + round(seconds * NS_PER_SECOND))

    async def sleep_until(self, deadline_ns: int) -> None:
        if deadline_ns <= self.now_ns:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        timer = self._call_at(deadline_ns, wake)
        try:
            await fut
        finally:
            timer.cancelled = True

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return _ManualTimeout(self, seconds)

    # -- driving tasks -----------------------------------------------------------------------------

    async def run_until(self, now_ns: int) -> int:
        """Move to ``now_ns``, firing each timer due on the way at its own deadline and letting the
        event loop run until idle after each."""
        if now_ns < self.now_ns:
            raise ValueError("a manual clock does not go backwards")
        await self.settle()
        while True:
            self._drop_cancelled()
            if not self._timers or self._timers[0].deadline > now_ns:
                break
            self.now_ns = max(self.now_ns, self._timers[0].deadline)
            self._fire_due()
            await self.settle()
        self.now_ns = int(now_ns)
        return self.now_ns

    async def run_for(self, ns: int) -> int:
        """:meth:`run_until` ``now_ns + ns``."""
        return await self.run_until(self.now_ns + int(ns))

    @staticmethod
    async def settle() -> None:
        """Let the event loop run until no callback is ready (every task waits on something)."""
        loop = asyncio.get_running_loop()
        # CPython's loops keep ready callbacks in ``_ready``; elsewhere, yield a fixed number of times.
        ready: Sized | None = getattr(loop, "_ready", None)
        for _ in range(_SETTLE_MAX):
            await asyncio.sleep(0)
            if ready is not None and not len(ready):
                return

    @property
    def pending(self) -> int:
        """Timers set and not yet fired or cancelled (sleeping tasks, open timeouts)."""
        return sum(1 for t in self._timers if not t.cancelled)

    # -- timers ----------------------------------------------------------------------------------------

    def _call_at(self, deadline_ns: int, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(int(deadline_ns), next(self._order), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def _drop_cancelled(self) -> None:
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)

    def _fire_due(self) -> None:
        while True:
            self._drop_cancelled()
            if not self._timers or self._timers[0].deadline > self.now_ns:
                return
            timer = heapq.heappop(self._timers)
            timer.cancelled = True
            timer.callback()


_SETTLE_MAX = 1000
NS_PER_SECOND = 10**9
#: Nanoseconds in a millisecond and a second, for moving a :class:`ManualClock` readably.
MS = 10**6
SECOND = NS_PER_SECOND


@dataclass(order=True)
class _Timer:
    deadline: int
    order: int
    callback: Callable[[], object] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class _ManualTimeout:
    """:func:`asyncio.timeout` whose deadline is on a :class:`ManualClock`: asyncio's own ``Timeout``
    does the cancelling and the ``TimeoutError``; the manual clock only says when."""

    def __init__(self, clock: ManualClock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._inner = asyncio.timeout(None)
        self._timer: _Timer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> _ManualTimeout:
        await self._inner.__aenter__()
        self._loop = asyncio.get_running_loop()
        self._timer = self._clock._call_at(
            self._clock.now_ns + max(0, round(self._seconds * NS_PER_SECOND)), self._expire
        )
        return self

    def _expire(self) -> None:
        assert self._loop is not None
        self._inner.reschedule(self._loop.time())  # expire now: asyncio cancels the task

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancelled = True
        await self._inner.__aexit__(exc_type, exc, tb)


class ListSource:
    """Readings from plain lists, in the order added, served as :class:`ReadingBatch` es.

    ``origins`` are integers in nanoseconds. Values are typed, as a connector gives them, and go where a
    connector's would (:func:`~edgeflow.model.batch_from_values`): numbers of a numeric series and bools of
    a Bool series to the numeric column, anything else (a string, list, dict, bytes) to the object column."""

    def __init__(self, table: SeriesTable) -> None:
        self.table = table
        self._rows: list[tuple[int, int, Any]] = []  # (series, origin, value)

    def add(
        self,
        device: str,
        resource: str,
        origins: Sequence[int],
        values: Sequence[Any],
        *,
        profile: str = "",
        value_type: ValueType = ValueType.FLOAT64,
        source: str = "",
    ) -> int:
        """Append readings of one series; returns its series id."""
        if len(origins) != len(values):
            raise ValueError("origins and values must have the same length")
        sid = self.table.intern(device, resource, profile, value_type, "", source)
        self._rows.extend((sid, int(o), v) for o, v in zip(origins, values, strict=True))
        return sid

    def batch(self) -> ReadingBatch:
        """Everything added, as one batch."""
        return _to_batch(self.table, self._rows)

    def batches(self, size: int | None = None) -> Iterator[ReadingBatch]:
        """Everything added, in batches of ``size`` readings (one batch when ``None``)."""
        rows = self._rows
        step = size or max(len(rows), 1)
        for a in range(0, len(rows), step):
            yield _to_batch(self.table, rows[a : a + step])


def _to_batch(table: SeriesTable, rows: Sequence[tuple[int, int, Any]]) -> ReadingBatch:
    return batch_from_values(table, [r[1] for r in rows], [r[2] for r in rows], [r[0] for r in rows])


class CollectingSink:
    """Collects every :class:`PipelineOutput` it is given; read it back per series."""

    def __init__(self, table: SeriesTable) -> None:
        self.table = table
        self.outputs: list[PipelineOutput] = []

    def __call__(self, out: PipelineOutput) -> None:
        self.outputs.append(out)

    def _all(self, which: str) -> ReadingBatch:
        return ReadingBatch.concat(self.table, [getattr(o, which) for o in self.outputs])

    @property
    def batch(self) -> ReadingBatch:
        return self._all("batch")

    @property
    def alarms(self) -> ReadingBatch:
        return self._all("alarms")

    @property
    def late(self) -> ReadingBatch:
        return self._all("late")

    def _series(self, which: str, device: str, resource: str) -> tuple[list[int], list[Any]]:
        b = self._all(which)
        sid = self.table.lookup(device, resource)
        if sid is None:
            return [], []
        idx = np.flatnonzero(b.series == sid).tolist()
        return [int(b.origins[i]) for i in idx], [b.value_at(i) for i in idx]

    def origins(self, device: str, resource: str, which: str = "batch") -> list[int]:
        return self._series(which, device, resource)[0]

    def values(self, device: str, resource: str, which: str = "batch") -> list[Any]:
        return self._series(which, device, resource)[1]

    def points(self, device: str, resource: str, which: str = "batch") -> list[tuple[int, Any]]:
        t, v = self._series(which, device, resource)
        return list(zip(t, v, strict=True))


def run(pipeline: Pipeline, batches: Iterable[ReadingBatch], *, flush: bool = True) -> CollectingSink:
    """Feed ``batches`` through ``pipeline`` (then flush it) and collect everything it emits."""
    sink = CollectingSink(pipeline.table)
    for b in batches:
        sink(pipeline.process(b))
    if flush:
        sink(pipeline.flush())
    return sink
