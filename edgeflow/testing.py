"""Helpers for testing rule chains in your own tests: a manual clock, an in-memory source that builds
columnar batches from lists, and a sink that collects what a pipeline emits.

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

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from edgeflow.model import ReadingBatch, SeriesTable, ValueType, batch_from_values
from edgeflow.rules.pipeline import Pipeline, PipelineOutput

__all__ = ["CollectingSink", "ListSource", "ManualClock", "run"]


class ManualClock:
    """An event-time clock you move by hand (nanoseconds). Pass ``clock.now_ns`` to
    :meth:`Pipeline.advance` to close windows or send heartbeats in a test."""

    def __init__(self, start_ns: int = 0) -> None:
        self.now_ns = int(start_ns)

    def advance(self, ns: int) -> int:
        if ns < 0:
            raise ValueError("a manual clock does not go backwards")
        self.now_ns += int(ns)
        return self.now_ns

    def set(self, now_ns: int) -> int:
        self.now_ns = int(now_ns)
        return self.now_ns


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
