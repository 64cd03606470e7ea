"""Report by exception: deadband, on-change, minimum interval and heartbeat, one engine for all four.

Per series the engine keeps the reference value (last sent, or last received with ``compare: in``), the
last reading sent (for heartbeats), the origin of the last emission and the last accepted origin.

Error bound: with ``mode: deadband`` and ``compare: out`` (and no ``min_interval``), holding each sent
value until the next one is within the gap of every reading in between (``hold`` reconstruction).
``deadbandEq`` is strictly within the gap. Narrowband, ``compare: in`` and ``min_interval`` promise no
bound.

Heartbeats re-send the last reading sent with its original origin and value: an idempotent duplicate for
a receiver that de-duplicates on (series, origin), which learns from its arrival that the series is alive
and whose reconstruction does not change.

Speed: a batch is grouped by series; a series whose readings are numeric, NaN-free, in time order and
run through a plain absolute deadband (``out``, no intervals) takes a tight loop over Python floats;
everything else takes the general loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from edgeflow.errors import RuleError
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.rules.base import (
    Interpolation,
    Rule,
    RuleOutput,
    decode_value,
    encode_value,
    increasing_after_first,
    restore_series,
    snapshot_series,
    split_series,
)
from edgeflow.rules.spec import DeadbandSpec, HeartbeatSpec, MinIntervalSpec, OnChangeSpec

__all__ = ["DeadbandRule", "ExceptionRule", "HeartbeatRule", "MinIntervalRule", "OnChangeRule"]

log = logging.getLogger(__name__)

_NUMERIC_TESTS = ("deadband", "deadbandEq", "narrowband", "narrowbandEq")


class _State:
    __slots__ = ("beat_t", "has", "last_t", "ref", "sent", "sent_t", "sent_v")

    def __init__(self) -> None:
        self.has = False  # a reference value exists
        self.ref: Any = None
        self.sent = False  # something was sent (heartbeats need it)
        self.sent_t = 0
        self.sent_v: Any = None
        self.beat_t = 0
        self.last_t: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "has": self.has,
            "ref": encode_value(self.ref) if self.has else None,
            "sent": self.sent,
            "sent_t": self.sent_t,
            "sent_v": encode_value(self.sent_v) if self.sent else None,
            "beat_t": self.beat_t,
            "last_t": self.last_t,
        }

    @classmethod
    def from_json(cls, d: Any) -> _State:
        st = cls()
        try:
            st.has = bool(d["has"])
            st.ref = decode_value(d["ref"]) if st.has else None
            st.sent = bool(d["sent"])
            st.sent_t = int(d["sent_t"])
            st.sent_v = decode_value(d["sent_v"]) if st.sent else None
            st.beat_t = int(d["beat_t"])
            st.last_t = None if d["last_t"] is None else int(d["last_t"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleError(f"exception-rule snapshot state {d!r} is malformed: {exc}") from exc
        return st


def _same(a: Any, b: Any) -> bool:
    """Equality for on-change: numbers by value, other values by type and value (never coerced)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except (ValueError, TypeError):  # e.g. numpy arrays
        return bool(np.array_equal(a, b))


class ExceptionRule(Rule):
    """The report-by-exception engine; build it through one of the spec-specific subclasses."""

    interpolation: ClassVar[Interpolation | None] = "hold"

    def __init__(
        self,
        table: SeriesTable,
        index: int = 0,
        *,
        test: str,
        gap: float = 0.0,
        gap_percent_previous: float | None = None,
        compare: str = "out",
        start: float | None = None,
        ignore_first: bool = False,
        min_interval: int | None = None,
        heartbeat: int | None = None,
        backwards: str = "late",
        nan: str = "pass",
        non_numeric: str = "pass",
    ) -> None:
        super().__init__(table, index)
        self.test = test
        self.gap = gap
        self.gap_pct = gap_percent_previous
        self.compare = compare
        self.start = start
        self.ignore_first = ignore_first
        self.min_interval = min_interval or None
        self.heartbeat = heartbeat or None
        self.backwards = backwards
        self.nan = nan
        self.non_numeric = non_numeric
        self._states: dict[int, _State] = {}
        self._fast = (
            test in ("deadband", "deadbandEq")
            and compare == "out"
            and gap_percent_previous is None
            and self.min_interval is None
            and self.heartbeat is None
        )

    # -- processing ---------------------------------------------------------------------------------

    def _process(self, batch: ReadingBatch) -> RuleOutput:
        if len(batch) == 0:
            return RuleOutput(batch)
        out_pos: list[int] = []
        beats: list[tuple[float, int, int, Any]] = []  # (sort key, series, origin, value)
        late_pos: list[int] = []
        split = split_series(batch.series)
        order = split.order
        ts_a = batch.origins[order]
        vs_a = batch.values[order]
        objs = None if batch.objects is None else batch.objects[order].tolist()
        if self._fast:
            clean = ~np.isnan(vs_a) & increasing_after_first(ts_a, split)
            if objs is not None:
                clean &= np.asarray([o is None for o in objs], dtype=bool)
            dirty = split.group_any(~clean)
        tl, vl, ol = ts_a.tolist(), vs_a.tolist(), order.tolist()
        bounds = split.bounds
        for g, sid in enumerate(split.sids):
            a, b = bounds[g], bounds[g + 1]
            st = self._states.get(sid)
            if st is None:
                st = self._states[sid] = _State()
            if self._fast and not dirty[g] and (st.last_t is None or tl[a] > st.last_t):
                keep = self._fast_loop(st, tl[a:b], vl[a:b])
                out_pos.extend([ol[a + k] for k in keep])
            else:
                self._general_loop(
                    sid,
                    st,
                    ol[a:b],
                    tl[a:b],
                    vl[a:b],
                    None if objs is None else objs[a:b],
                    out_pos,
                    beats,
                    late_pos,
                )
        out = self._assemble(batch, out_pos, beats)
        late = batch.take(np.asarray(sorted(late_pos), dtype=np.intp)) if late_pos else None
        self.stats.late += len(late_pos)
        return RuleOutput(out, late=late)

    def _fast_loop(self, st: _State, ts: list[int], vs: list[float]) -> list[int]:
        gap = self.gap
        keep: list[int] = []
        put = keep.append
        k0 = 0
        if st.has:
            s = st.ref
        else:
            s = vs[0]
            put(0)
            k0 = 1
        if self.test == "deadband":
            for k in range(k0, len(vs)):
                x = vs[k]
                if x - s > gap or s - x > gap:
                    s = x
                    put(k)
        else:
            for k in range(k0, len(vs)):
                x = vs[k]
                if x - s >= gap or s - x >= gap:
                    s = x
                    put(k)
        if keep:
            last = keep[-1]
            st.sent = True
            st.sent_t = ts[last]
            st.sent_v = vs[last]
            st.beat_t = ts[last]
        st.has = True
        st.ref = s
        st.last_t = ts[-1]
        return keep

    def _general_loop(
        self,
        sid: int,
        st: _State,
        idx: list[int],
        ts: list[int],
        vs: list[float],
        objs: list[Any] | None,
        out_pos: list[int],
        beats: list[tuple[float, int, int, Any]],
        late_pos: list[int],
    ) -> None:
        stats = self.stats
        test = self.test
        numeric_only = test in _NUMERIC_TESTS
        for k, i in enumerate(idx):
            # NaN, and non-numeric values under a numeric test, pass or drop by policy before time is
            # judged: they take no part in the state, and the time policy covers what the test sees.
            obj = None if objs is None else objs[k]
            if obj is None:
                x: Any = vs[k]
                if x != x:
                    stats.nan += 1
                    if self.nan == "pass":
                        out_pos.append(i)
                    else:
                        stats.dropped += 1
                    continue
            elif numeric_only:
                stats.non_numeric += 1
                if self.non_numeric == "pass":
                    out_pos.append(i)
                else:
                    stats.dropped += 1
                continue
            else:
                x = obj
            t = ts[k]
            if st.last_t is not None and t <= st.last_t:
                stats.backwards += 1
                if self.backwards == "late":
                    late_pos.append(i)
                    continue
                if self.backwards == "drop":
                    stats.dropped += 1
                    continue
                if self.backwards == "reset":
                    if st.sent and st.last_t is not None and st.last_t > st.sent_t:
                        # the held value at the last accepted origin marks where the run ends
                        beats.append((i - 0.5, sid, st.last_t, st.sent_v))
                    st = self._states[sid] = _State()
            if st.last_t is None or t > st.last_t:
                st.last_t = t
            if test == "none":
                passed = True
            elif test == "change":
                if not st.has:
                    passed = not self.ignore_first
                    if not passed:
                        st.has = True
                        st.ref = x
                else:
                    passed = not _same(x, st.ref)
            else:
                if not st.has and test.startswith("narrowband"):
                    st.has = True
                    st.ref = x if self.start is None else self.start
                if not st.has:
                    passed = True
                else:
                    d = abs(x - st.ref)
                    gap = self.gap if self.gap_pct is None else abs(st.ref * self.gap_pct / 100.0)
                    if test == "deadband":
                        passed = d > gap
                    elif test == "deadbandEq":
                        passed = d >= gap
                    elif test == "narrowband":
                        passed = d <= gap
                    else:
                        passed = d < gap
            if passed and self.min_interval is not None and st.sent and t - st.sent_t < self.min_interval:
                passed = False
                stats.dropped += 1
            if passed:
                out_pos.append(i)
                st.sent = True
                st.sent_t = t
                st.sent_v = x
                st.beat_t = t
                st.has = True
                st.ref = x
            elif self.heartbeat is not None and st.sent and t - st.beat_t >= self.heartbeat:
                beats.append((i + 0.5, sid, st.sent_t, st.sent_v))
                st.beat_t = t
                stats.heartbeats += 1
            if self.compare == "in":
                st.has = True
                st.ref = x

    def _assemble(
        self, batch: ReadingBatch, out_pos: list[int], beats: list[tuple[float, int, int, Any]]
    ) -> ReadingBatch:
        if not beats:
            if len(out_pos) == len(batch):
                return batch
            return batch.take(np.sort(np.asarray(out_pos, dtype=np.intp)))
        kept = batch.take(np.asarray(out_pos, dtype=np.intp))
        hb = self._beats_batch(beats)
        both = ReadingBatch.concat(self.table, [kept, hb])
        # a heartbeat goes right after the reading that triggered it, a reset's closing point right before
        keys = np.asarray([float(p) for p in out_pos] + [b[0] for b in beats], dtype=np.float64)
        return both.take(np.argsort(keys, kind="stable"))

    def _beats_batch(self, beats: list[tuple[float, int, int, Any]]) -> ReadingBatch:
        n = len(beats)
        origins = np.asarray([b[2] for b in beats], dtype=np.int64)
        series = np.asarray([b[1] for b in beats], dtype=np.int32)
        values = np.full(n, np.nan)
        objects = None
        for j, b in enumerate(beats):
            if isinstance(b[3], float):
                values[j] = b[3]
            else:
                if objects is None:
                    objects = np.full(n, None, dtype=object)
                objects[j] = b[3]
        return ReadingBatch(self.table, origins, values, series, objects)

    def _advance(self, now_ns: int) -> RuleOutput:
        if self.heartbeat is None:
            return RuleOutput(self.empty())
        beats: list[tuple[float, int, int, Any]] = []
        for sid, st in self._states.items():
            if st.sent and now_ns - st.beat_t >= self.heartbeat:
                beats.append((0.0, sid, st.sent_t, st.sent_v))
                st.beat_t = now_ns
        self.stats.heartbeats += len(beats)
        return RuleOutput(self._beats_batch(beats) if beats else self.empty())

    # -- state --------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {"series": snapshot_series(self.table, {s: st.to_json() for s, st in self._states.items()})}

    def restore(self, snap: Mapping[str, Any]) -> None:
        self._states = {
            sid: _State.from_json(d) for sid, d in restore_series(self.table, snap, self.kind).items()
        }


class DeadbandRule(ExceptionRule):
    kind = "deadband"

    @classmethod
    def from_spec(cls, spec: DeadbandSpec, table: SeriesTable, index: int = 0) -> DeadbandRule:
        pct_prev = spec.percent if spec.percent is not None and spec.percent_of == "previous" else None
        if spec.absolute is not None:
            gap = spec.absolute
        elif pct_prev is None:
            assert spec.percent is not None
            assert spec.span is not None
            gap = spec.percent * spec.span / 100.0
        else:
            gap = 0.0
        return cls(
            table,
            index,
            test=spec.mode,
            gap=gap,
            gap_percent_previous=pct_prev,
            compare=spec.compare,
            start=spec.start,
            min_interval=spec.min_interval,
            heartbeat=spec.heartbeat,
            backwards=spec.backwards,
            nan=spec.nan,
            non_numeric=spec.non_numeric,
        )


class OnChangeRule(ExceptionRule):
    kind = "on_change"

    @classmethod
    def from_spec(cls, spec: OnChangeSpec, table: SeriesTable, index: int = 0) -> OnChangeRule:
        return cls(
            table,
            index,
            test="change",
            ignore_first=spec.mode == "rbei",
            min_interval=spec.min_interval,
            heartbeat=spec.heartbeat,
            backwards=spec.backwards,
            nan=spec.nan,
        )


class MinIntervalRule(ExceptionRule):
    kind = "min_interval"
    interpolation: ClassVar[Interpolation | None] = None

    @classmethod
    def from_spec(cls, spec: MinIntervalSpec, table: SeriesTable, index: int = 0) -> MinIntervalRule:
        return cls(table, index, test="none", min_interval=spec.interval, backwards=spec.backwards)


class HeartbeatRule(ExceptionRule):
    kind = "heartbeat"
    interpolation: ClassVar[Interpolation | None] = None

    @classmethod
    def from_spec(cls, spec: HeartbeatSpec, table: SeriesTable, index: int = 0) -> HeartbeatRule:
        return cls(table, index, test="none", heartbeat=spec.interval, backwards=spec.backwards)
