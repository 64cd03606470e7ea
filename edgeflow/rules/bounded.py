"""The frame shared by the point-emitting compressors (swing, PMC-MR, swinging door).

Per series it applies the declared policies before the algorithm sees a reading:

* NaN and ±inf: ``pass`` (the reading is emitted unchanged and the algorithm never sees it) or ``drop``.
* non-numeric readings: ``pass`` (emitted unchanged, never coerced) or ``drop``.
* time, judged on the finite numeric readings only (the ones the algorithm sees): a reading whose origin
  is not after the last accepted one in its series is ``late`` (routed to the ``late`` output), ``drop``
  (discarded) or ``reset`` (the open segment is closed and emitted, the series starts again from this
  reading, which the cloud sees as the start of a new run: see
  :func:`edgeflow.rules.reconstruct.reconstruct`). Always counted in ``backwards``.

The algorithm then gets runs of clean, strictly increasing numeric readings as Python lists, which is
what makes its per-reading loop fast, and emits ``(trigger position, origin, value)`` points. Output keeps
each series' emission order; points of one series go out in the order the cloud must apply them.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from edgeflow.errors import RuleError
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.rules.base import (
    Rule,
    RuleOutput,
    increasing_after_first,
    restore_series,
    snapshot_series,
    split_series,
)

__all__ = ["Emit", "PointRule"]

Emit = list[tuple[int, int, float]]
"""Points emitted during one call: (input position that triggered it, origin, value)."""


class PointRule(Rule):
    """Base of the compressors. Subclasses implement the per-series algorithm."""

    def __init__(
        self,
        table: SeriesTable,
        index: int = 0,
        *,
        backwards: str = "late",
        nan: str = "pass",
        non_numeric: str = "pass",
    ) -> None:
        super().__init__(table, index)
        if backwards not in ("late", "drop", "reset"):
            raise RuleError(f"{self.kind}: backwards policy {backwards!r} is not late, drop or reset")
        self.backwards = backwards
        self.nan = nan
        self.non_numeric = non_numeric
        self._states: dict[int, Any] = {}
        self._last_t: dict[int, int] = {}

    # -- what a subclass provides -------------------------------------------------------------------

    @abstractmethod
    def _new_state(self) -> Any: ...

    @abstractmethod
    def _feed(self, st: Any, ts: list[int], vs: list[float], keys: list[int], out: Emit) -> None:
        """Run the algorithm over strictly increasing, finite readings; ``keys[k]`` is reading k's position."""

    @abstractmethod
    def _close(self, st: Any, out: Emit, key: int, *, reset: bool = False) -> None:
        """Emit whatever the series holds open (end of stream, or a reset). On a reset the last point
        emitted must carry the origin of the last reading accepted, so the cloud sees where the run ends."""

    @abstractmethod
    def _state_to_json(self, st: Any) -> Any: ...

    @abstractmethod
    def _state_from_json(self, d: Any) -> Any: ...

    # -- the frame ----------------------------------------------------------------------------------

    def _process(self, batch: ReadingBatch) -> RuleOutput:
        if len(batch) == 0:
            return RuleOutput(batch)
        emitted: Emit = []
        emitted_sid: list[int] = []
        raw_pos: list[int] = []
        late_pos: list[int] = []
        split = split_series(batch.series)
        order = split.order
        ts_a = batch.origins[order]
        vs_a = batch.values[order]
        finite = np.isfinite(vs_a)
        obj_mask: npt.NDArray[np.bool_] | None = None
        if batch.objects is not None:
            obj_mask = np.asarray([o is not None for o in batch.objects[order]], dtype=bool)
            finite &= ~obj_mask
        dirty = split.group_any(~(finite & increasing_after_first(ts_a, split)))
        tl, vl, ol = ts_a.tolist(), vs_a.tolist(), order.tolist()
        bounds = split.bounds
        for g, sid in enumerate(split.sids):
            a, b = bounds[g], bounds[g + 1]
            st = self._states.get(sid)
            if st is None:
                st = self._states[sid] = self._new_state()
            n_before = len(emitted)
            last_t = self._last_t.get(sid)
            if not dirty[g] and (last_t is None or tl[a] > last_t):
                self._feed(st, tl[a:b], vl[a:b], ol[a:b], emitted)
                self._last_t[sid] = tl[b - 1]
            else:
                self._slow(
                    sid,
                    st,
                    order[a:b],
                    ts_a[a:b],
                    vs_a[a:b],
                    finite[a:b],
                    None if obj_mask is None else obj_mask[a:b],
                    emitted,
                    raw_pos,
                    late_pos,
                )
            emitted_sid.extend([sid] * (len(emitted) - n_before))
        out = self._assemble(batch, emitted, emitted_sid, raw_pos)
        self.stats.late += len(late_pos)
        late = batch.take(np.asarray(sorted(late_pos), dtype=np.intp)) if late_pos else None
        return RuleOutput(out, late=late)

    def _slow(
        self,
        sid: int,
        st: Any,
        idx: npt.NDArray[np.intp],
        ts_a: npt.NDArray[np.int64],
        vs_a: npt.NDArray[np.float64],
        finite: npt.NDArray[np.bool_],
        obj_mask: npt.NDArray[np.bool_] | None,
        emitted: Emit,
        raw_pos: list[int],
        late_pos: list[int],
    ) -> None:
        """Readings with backwards time, NaN or non-numeric values: one at a time through the policies,
        clean stretches handed to the algorithm as runs."""
        stats = self.stats
        last_t = self._last_t.get(sid)
        run_t: list[int] = []
        run_v: list[float] = []
        run_k: list[int] = []

        def drain() -> None:
            if run_t:
                self._feed(st, run_t, run_v, run_k, emitted)
                run_t.clear()
                run_v.clear()
                run_k.clear()

        ts = ts_a.tolist()
        vs = vs_a.tolist()
        pos = idx.tolist()
        fin = finite.tolist()
        objm = None if obj_mask is None else obj_mask.tolist()
        for k, i in enumerate(pos):
            if not fin[k]:
                if objm is not None and objm[k]:
                    stats.non_numeric += 1
                    policy = self.non_numeric
                else:
                    stats.nan += 1
                    policy = self.nan
                if policy == "pass":
                    raw_pos.append(i)
                else:
                    stats.dropped += 1
                continue
            t = ts[k]
            if last_t is not None and t <= last_t:
                stats.backwards += 1
                if self.backwards == "late":
                    late_pos.append(i)
                    continue
                if self.backwards == "drop":
                    stats.dropped += 1
                    continue
                drain()
                self._close(st, emitted, i, reset=True)
                st = self._states[sid] = self._new_state()
            last_t = t
            run_t.append(t)
            run_v.append(vs[k])
            run_k.append(i)
        drain()
        if last_t is not None:
            self._last_t[sid] = last_t

    def _assemble(
        self, batch: ReadingBatch, emitted: Emit, emitted_sid: list[int], raw_pos: list[int]
    ) -> ReadingBatch:
        n = len(emitted)
        pts = ReadingBatch(
            self.table,
            np.asarray([e[1] for e in emitted], dtype=np.int64),
            np.asarray([e[2] for e in emitted], dtype=np.float64),
            np.asarray(emitted_sid, dtype=np.int32),
        )
        if not raw_pos:
            return pts
        raw = batch.take(np.asarray(raw_pos, dtype=np.intp))
        both = ReadingBatch.concat(self.table, [pts, raw])
        keys = np.concatenate(
            [np.asarray([e[0] for e in emitted], dtype=np.int64)[:n], np.asarray(raw_pos, dtype=np.int64)]
        )
        return both.take(np.argsort(keys, kind="stable"))

    def _flush(self) -> RuleOutput:
        emitted: Emit = []
        sids: list[int] = []
        for sid, st in self._states.items():
            before = len(emitted)
            self._close(st, emitted, 0)
            sids.extend([sid] * (len(emitted) - before))
        return RuleOutput(self._assemble(self.empty(), emitted, sids, []))

    # -- state --------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        states = {
            sid: {"last_t": self._last_t.get(sid), "algo": self._state_to_json(st)}
            for sid, st in self._states.items()
        }
        return {"series": snapshot_series(self.table, states)}

    def restore(self, snap: Mapping[str, Any]) -> None:
        states: dict[int, Any] = {}
        last: dict[int, int] = {}
        for sid, d in restore_series(self.table, snap, self.kind).items():
            if not isinstance(d, dict) or "algo" not in d:
                raise RuleError(f"{self.kind} snapshot state {d!r} is malformed")
            states[sid] = self._state_from_json(d["algo"])
            if d.get("last_t") is not None:
                last[sid] = int(d["last_t"])
        self._states = states
        self._last_t = last


class ErrorBoundedRule(PointRule):
    """A compressor whose reconstruction stays within ``max_error`` (swing, PMC-MR), with the choice of
    where its knots land (``shortest`` decimal or ``middle`` of the allowed window)."""

    def __init__(
        self,
        table: SeriesTable,
        index: int = 0,
        *,
        max_error: float,
        knots: str = "shortest",
        **policies: str,
    ) -> None:
        super().__init__(table, index, **policies)
        if not max_error >= 0:
            raise RuleError(f"{self.kind}: max_error must be >= 0, not {max_error}")
        if knots not in ("shortest", "middle"):
            raise RuleError(f"{self.kind}: knots must be shortest or middle, not {knots!r}")
        self.max_error = float(max_error)
        self.knots = knots

    @classmethod
    def from_spec(cls, spec: Any, table: SeriesTable, index: int = 0) -> Self:
        return cls(
            table,
            index,
            max_error=spec.bound,
            knots=spec.knots,
            backwards=spec.backwards,
            nan=spec.nan,
            non_numeric=spec.non_numeric,
        )
