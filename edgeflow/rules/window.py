"""Windows over each series: tumbling, hopping, sliding and count; event time with allowed lateness.

Results go to **derived series** of the same device in the same :class:`~edgeflow.model.SeriesTable`:
resource ``<resource>.<aggregate>`` (``temp.mean``, ``temp.p95``; ``count`` as Int64, the rest Float64),
one reading per window and aggregate, with ``origins`` = window end and ``starts`` = window start.
Aggregates: ``min max mean sum count first last stddev`` (population, ddof 0) and ``pNN`` (percentile,
linear interpolation; ``p50`` is the median). ``first``/``last`` are by origin, not arrival.

Time windows are aligned to the epoch (``[k*hop, k*hop + size)``). A series' watermark is its newest
origin minus ``allowed_lateness`` (or what :meth:`advance` says, whichever is later); a window closes, and
is emitted, once the watermark reaches its end. A reading whose every window has closed is late: counted
and routed to the ``late`` output, never silently dropped. Sliding windows emit one result per reading,
over the ``size`` before it (``(t - size, t]``); a reading older than the newest of its series is late.
Count windows emit every ``count`` readings of a series (arrival order), stepping by ``hop_count``.
Sliding windows are incremental (:mod:`edgeflow.rules.incremental`): O(1) amortised per reading for
count, sum, mean, min, max, stddev, first and last; percentiles are exact (O(window) per reading) unless
``percentile_accuracy`` is set, then they come from a relative-error sketch. A sliding window holds at most
``max_readings`` readings per series, and an open tumbling or hopping window as many; beyond that the
oldest leave early, counted (``evicted``).
NaN and ±inf (``nan``, dropped by default) and non-numeric readings, Bools included (``non_numeric``,
passed on by default), go by the shared frame's policies (:mod:`edgeflow.rules.frame`).
:meth:`flush` emits the open windows as they are (partial). Averages are a bandwidth knob, not an error
bound: report min/max beside a mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edgeflow.errors import RuleError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
from edgeflow.rules.base import Interpolation, Rule, RuleOutput, restore_series, snapshot_series
from edgeflow.rules.frame import SeriesFrame
from edgeflow.rules.incremental import SlidingAggregate, slide_many
from edgeflow.rules.spec import WindowSpec

__all__ = ["WindowRule", "aggregate"]

#: Readings of one series in one call from which a sliding window goes vectorised.
_VECTOR_MIN = 32


def aggregate(name: str, ts: npt.NDArray[np.int64], vs: npt.NDArray[np.float64]) -> float:
    """One aggregate of the values ``vs`` taken at ``ts`` (non-empty)."""
    if name == "count":
        return float(len(vs))
    if name == "min":
        return float(vs.min())
    if name == "max":
        return float(vs.max())
    if name == "mean":
        return float(vs.mean())
    if name == "sum":
        return float(vs.sum())
    if name == "stddev":
        return float(vs.std())
    if name == "first":
        return float(vs[int(np.argmin(ts))])
    if name == "last":
        return float(vs[len(ts) - 1 - int(np.argmax(ts[::-1]))])
    if name.startswith("p"):
        return float(np.percentile(vs, float(name[1:])))
    raise RuleError(f"unknown aggregate {name!r}")


class _Series:
    __slots__ = ("buf_t", "buf_v", "max_t", "open", "slide", "wm")

    def __init__(self) -> None:
        self.wm: int | None = None  # watermark: windows ending at or before it are closed
        self.max_t: int | None = None
        self.open: dict[int, tuple[list[int], list[float]]] = {}  # time windows by start
        self.buf_t: list[int] = []  # count windows
        self.buf_v: list[float] = []
        self.slide: SlidingAggregate | None = None  # sliding windows


class WindowRule(Rule):
    kind = "window"
    interpolation: ClassVar[Interpolation | None] = "hold"

    def __init__(self, spec: WindowSpec, table: SeriesTable, index: int = 0, *, label: str = "") -> None:
        super().__init__(table, index)
        self.spec = spec
        #: Results go to ``<resource>.<label>.<aggregate>`` (``<resource>.<aggregate>`` without one).
        self.label = spec.name or label
        self.window_kind = spec.kind
        self.size = spec.size or 0
        self.hop = spec.hop or self.size
        self.count = spec.count or 0
        self.hop_count = spec.hop_count or self.count
        self.lateness = spec.allowed_lateness
        self.aggs = list(spec.aggregates)
        self.max_readings = spec.max_readings
        self.sketch_alpha = spec.percentile_accuracy
        self._pcts = {a: float(a[1:]) / 100 for a in self.aggs if a.startswith("p")}
        # many readings of a series in one call go through numpy at once (percentiles excepted)
        self._vector = self.window_kind == "sliding" and not self._pcts
        # windows judge time themselves (event time, allowed lateness): the frame applies nan/non_numeric
        self.frame = SeriesFrame(self.stats, nan=spec.nan, non_numeric=spec.non_numeric, backwards=None)
        self._states: dict[int, _Series] = {}
        self._derived: dict[tuple[int, str], int] = {}
        # results of the current call: origin (end), start, value, derived series
        self._r_end: list[int] = []
        self._r_start: list[int] = []
        self._r_val: list[float] = []
        self._r_sid: list[int] = []
        self._r_chunks: list[
            tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64], int]
        ] = []

    @classmethod
    def from_spec(
        cls, spec: WindowSpec, table: SeriesTable, index: int = 0, *, label: str = ""
    ) -> WindowRule:
        return cls(spec, table, index, label=label)

    def derived_series(self, sid: int, agg: str) -> int:
        """The id of the derived series ``<resource>.<label>.<agg>`` of series ``sid``."""
        key = (sid, agg)
        d = self._derived.get(key)
        if d is None:
            info = self.table.info(sid)
            vt = ValueType.INT64 if agg == "count" else ValueType.FLOAT64
            units = "" if agg == "count" else info.units
            name = f"{info.resource}.{self.label}.{agg}" if self.label else f"{info.resource}.{agg}"
            d = self.table.intern(info.device, name, info.profile, vt, units, info.source)
            self._derived[key] = d
        return d

    def _emit(self, sid: int, start: int, end: int, ts: list[int], vs: list[float]) -> None:
        ta = np.asarray(ts, dtype=np.int64)
        va = np.asarray(vs, dtype=np.float64)
        for agg in self.aggs:
            self._r_end.append(end)
            self._r_start.append(start)
            self._r_val.append(aggregate(agg, ta, va))
            self._r_sid.append(self.derived_series(sid, agg))

    def _slide_vector(
        self,
        sid: int,
        st: _Series,
        ts: list[int],
        vs: list[float],
        pos: list[int],
        kept: list[int] | None,
        late: list[int],
    ) -> None:
        """Many readings of one series into a sliding window at once (:func:`slide_many`)."""
        ta = np.asarray(ts, dtype=np.int64)
        va = np.asarray(vs, dtype=np.float64)
        run = np.maximum.accumulate(ta)
        before = np.empty(len(ta), dtype=np.int64)
        before[0] = st.max_t if st.max_t is not None else ta[0]
        before[1:] = np.maximum(run[:-1], before[0])
        ok = ta >= before
        pa = np.asarray(pos, dtype=np.int64)
        if not ok.all():
            late.extend(pa[~ok].tolist())
            ta, va, pa = ta[ok], va[ok], pa[ok]
        if len(ta) == 0:
            return
        st.max_t = int(ta[-1])
        if kept is not None:
            kept.extend(pa.tolist())
        sl = st.slide
        if sl is None:
            sl = st.slide = SlidingAggregate()
        results, evicted = slide_many(sl, ta, va, self.size, self.max_readings, self.aggs)
        self.stats.evicted += evicted
        starts = ta - self.size
        for agg in self.aggs:
            self._r_chunks.append((ta, starts, results[agg], self.derived_series(sid, agg)))

    def _emit_sliding(self, sid: int, start: int, end: int, sl: SlidingAggregate) -> None:
        """One result per aggregate from the incremental state: O(1) but for exact percentiles."""
        r_end, r_start, r_val, r_sid = self._r_end, self._r_start, self._r_val, self._r_sid
        derived = self._derived
        for agg in self.aggs:
            q = self._pcts.get(agg)
            if q is None:
                val = sl.value(agg)
            elif sl.sketch is not None:
                val = sl.sketch.quantile(q)
            else:
                val = float(np.percentile(np.fromiter(sl.vs, np.float64, len(sl)), 100 * q))
            r_end.append(end)
            r_start.append(start)
            r_val.append(val)
            d = derived.get((sid, agg))
            r_sid.append(d if d is not None else self.derived_series(sid, agg))

    def _results(self) -> ReadingBatch:
        out = ReadingBatch.from_columns(
            self.table, self._r_end, self._r_val, self._r_sid, starts=self._r_start
        )
        self._r_end, self._r_start, self._r_val, self._r_sid = [], [], [], []
        if not self._r_chunks:
            return out
        chunks, self._r_chunks = self._r_chunks, []
        vec = ReadingBatch(
            self.table,
            np.concatenate([c[0] for c in chunks]),
            np.concatenate([c[2] for c in chunks]),
            np.concatenate([np.full(len(c[0]), c[3], dtype=np.int32) for c in chunks]),
            starts=np.concatenate([c[1] for c in chunks]),
        )
        return vec if len(out) == 0 else ReadingBatch.concat(self.table, [out, vec])

    # -- processing ---------------------------------------------------------------------------------

    def _process(self, batch: ReadingBatch) -> RuleOutput:
        if len(batch) == 0:
            return RuleOutput(batch)
        kept: list[int] = []
        late: list[int] = []
        keep_input = self.spec.keep_input
        states = self._states

        def feed(sid: int, ts: list[int], vs: list[float], pos: list[int]) -> None:
            st = states.get(sid)
            if st is None:
                st = states[sid] = _Series()
            if self._vector and len(ts) >= _VECTOR_MIN:
                self._slide_vector(sid, st, ts, vs, pos, kept if keep_input else None, late)
                return
            for t, v, i in zip(ts, vs, pos, strict=True):
                if self._add(sid, st, t, v):
                    if keep_input:
                        kept.append(i)
                else:
                    late.append(i)
            self._close(sid, st)

        routed = self.frame.route(batch, feed)
        results = self._results()
        raw_pos = routed.passed + kept
        if raw_pos:
            raw = batch.take(np.asarray(sorted(raw_pos), dtype=np.intp))
            results = ReadingBatch.concat(self.table, [raw, results])
        self.stats.late += len(late)
        routed.late.extend(late)
        return RuleOutput(results, late=routed.late_batch(batch))

    def _add(self, sid: int, st: _Series, t: int, v: float) -> bool:
        """Put one reading in its windows; False when it is late."""
        kind = self.window_kind
        if kind == "count":
            st.buf_t.append(t)
            st.buf_v.append(v)
            if len(st.buf_t) >= self.count:
                self._emit(sid, st.buf_t[0], st.buf_t[-1], st.buf_t, st.buf_v)
                del st.buf_t[: self.hop_count]
                del st.buf_v[: self.hop_count]
            return True
        if kind == "sliding":
            if st.max_t is not None and t < st.max_t:
                return False
            st.max_t = t
            sl = st.slide
            if sl is None:
                sl = st.slide = SlidingAggregate(self.sketch_alpha if self._pcts else None)
            sl.add(t, v)
            cut = t - self.size
            ts = sl.ts
            while ts[0] <= cut:
                sl.pop()
            while len(sl) > self.max_readings:
                sl.pop()
                self.stats.evicted += 1
            self._emit_sliding(sid, cut, t, sl)
            return True
        size, hop = self.size, self.hop
        last_start = (t // hop) * hop
        wm = st.wm
        if wm is not None and last_start + size <= wm:
            return False
        s = last_start
        while s + size > t:
            if wm is None or s + size > wm:
                w = st.open.get(s)
                if w is None:
                    w = st.open[s] = ([], [])
                w[0].append(t)
                w[1].append(v)
                if len(w[0]) > self.max_readings:  # the bound: the oldest reading leaves, counted
                    del w[0][0]
                    del w[1][0]
                    self.stats.evicted += 1
            s -= hop
        if st.max_t is None or t > st.max_t:
            st.max_t = t
            new_wm = t - self.lateness
            if wm is None or new_wm > wm:
                st.wm = new_wm
        return True

    def _close(self, sid: int, st: _Series) -> None:
        if not st.open or st.wm is None:
            return
        wm = st.wm
        size = self.size
        for s in sorted(st.open):
            if s + size <= wm:
                ts, vs = st.open.pop(s)
                self._emit(sid, s, s + size, ts, vs)

    def _advance(self, now_ns: int) -> RuleOutput:
        if self.window_kind in ("tumbling", "hopping"):
            new_wm = now_ns - self.lateness
            for sid, st in self._states.items():
                if st.wm is None or new_wm > st.wm:
                    st.wm = new_wm
                self._close(sid, st)
        return RuleOutput(self._results())

    def _flush(self) -> RuleOutput:
        for sid, st in self._states.items():
            for s in sorted(st.open):
                ts, vs = st.open[s]
                self._emit(sid, s, s + self.size, ts, vs)
            st.open.clear()
            if self.window_kind == "count" and st.buf_t:
                self._emit(sid, st.buf_t[0], st.buf_t[-1], st.buf_t, st.buf_v)
                st.buf_t, st.buf_v = [], []
        return RuleOutput(self._results())

    # -- state --------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        states = {
            sid: {
                "wm": st.wm,
                "max_t": st.max_t,
                "open": [[s, w[0], w[1]] for s, w in sorted(st.open.items())],
                "buf": [a.tolist() for a in st.slide.arrays()]
                if st.slide is not None
                else [st.buf_t, st.buf_v],
            }
            for sid, st in self._states.items()
        }
        return {"series": snapshot_series(self.table, states)}

    def restore(self, snap: Mapping[str, Any]) -> None:
        states: dict[int, _Series] = {}
        for sid, d in restore_series(self.table, snap, self.kind).items():
            st = _Series()
            try:
                st.wm = None if d["wm"] is None else int(d["wm"])
                st.max_t = None if d["max_t"] is None else int(d["max_t"])
                st.open = {int(s): ([int(x) for x in ts], [float(x) for x in vs]) for s, ts, vs in d["open"]}
                buf_t = [int(x) for x in d["buf"][0]]
                buf_v = [float(x) for x in d["buf"][1]]
                if self.window_kind == "sliding":
                    st.slide = SlidingAggregate(self.sketch_alpha if self._pcts else None)
                    for t, v in zip(buf_t, buf_v, strict=True):
                        st.slide.add(t, v)
                else:
                    st.buf_t, st.buf_v = buf_t, buf_v
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise RuleError(f"window snapshot state {d!r} is malformed: {exc}") from exc
            states[sid] = st
        self._states = states
