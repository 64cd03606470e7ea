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

The ``nan``, ``non_numeric`` (deadband modes only: on-change, minimum interval and heartbeat take any
value) and ``backwards`` policies are the shared frame's (:mod:`edgeflow.rules.frame`); the engine sees
clean per-series runs. Speed: a plain absolute deadband (``out``, no intervals) runs a tight loop over
Python floats; everything else takes the general loop.
"""

from __future__ import annotations

import logging
import math
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
    restore_series,
    snapshot_series,
)
from edgeflow.rules.frame import SeriesFrame, policies
from edgeflow.rules.spec import DeadbandSpec, HeartbeatSpec, MinIntervalSpec, OnChangeSpec

__all__ = ["DeadbandRule", "ExceptionRule", "HeartbeatRule", "MinIntervalRule", "OnChangeRule"]

log = logging.getLogger(__name__)

_NUMERIC_TESTS = ("deadband", "deadbandEq", "narrowband", "narrowbandEq")


Beat = tuple[float, int, int, Any]
"""A reading re-sent: (sort key among the batch positions, series, origin, value)."""


class _State:
    __slots__ = ("beat_t", "has", "ref", "sent", "sent_t", "sent_v")

    def __init__(self) -> None:
        self.has = False  # a reference value exists
        self.ref: Any = None
        self.sent = False  # something was sent (heartbeats need it)
        self.sent_t = 0
        self.sent_v: Any = None
        self.beat_t = 0

    def to_json(self, last_t: int | None) -> dict[str, Any]:
        return {
            "has": self.has,
            "ref": encode_value(self.ref) if self.has else None,
            "sent": self.sent,
            "sent_t": self.sent_t,
            "sent_v": encode_value(self.sent_v) if self.sent else None,
            "beat_t": self.beat_t,
            "last_t": last_t,
        }

    @classmethod
    def from_json(cls, d: Any) -> tuple[_State, int | None]:
        """The state and the series' last accepted origin."""
        st = cls()
        try:
            st.has = bool(d["has"])
            st.ref = decode_value(d["ref"]) if st.has else None
            st.sent = bool(d["sent"])
            st.sent_t = int(d["sent_t"])
            st.sent_v = decode_value(d["sent_v"]) if st.sent else None
            st.beat_t = int(d["beat_t"])
            last_t = None if d["last_t"] is None else int(d["last_t"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleError(f"exception-rule snapshot state {d!r} is malformed: {exc}") from exc
        return st, last_t


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
        # NaN alone goes by the nan policy: ±inf is a value a deadband or on-change can judge
        self.frame = SeriesFrame(
            self.stats,
            nan=nan,
            non_numeric=non_numeric,
            backwards=backwards,
            numeric_only=test in _NUMERIC_TESTS,
            finite=False,
        )
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
        kept: list[int] = []
        beats: list[Beat] = []
        states = self._states
        loop = self._fast_loop if self._fast else self._general_loop

        def feed(sid: int, ts: list[int], vs: list[Any], pos: list[int]) -> None:
            st = states.get(sid)
            if st is None:
                st = states[sid] = _State()
            loop(sid, st, ts, vs, pos, kept, beats)

        def reset(sid: int, pos: int, last_t: int) -> None:
            st = states.get(sid)
            if st is not None and st.sent and last_t > st.sent_t:
                # the held value at the last accepted origin marks where the run ends
                beats.append((pos - 0.5, sid, last_t, st.sent_v))
            states[sid] = _State()

        routed = self.frame.route(batch, feed, reset)
        kept.extend(routed.passed)
        return RuleOutput(self._assemble(batch, kept, beats), late=routed.late_batch(batch))

    def _fast_loop(
        self,
        sid: int,
        st: _State,
        ts: list[int],
        vs: list[float],
        pos: list[int],
        kept: list[int],
        beats: list[Beat],
    ) -> None:
        gap = self.gap
        put = kept.append
        k0 = 0
        last = -1  # the last reading sent
        if st.has:
            s = st.ref
        else:
            s = vs[0]
            put(pos[0])
            last = 0
            k0 = 1  # sent: not tested against itself (deadbandEq with gap 0 would send it twice)
        if self.test == "deadband":
            for k in range(k0, len(vs)):
                x = vs[k]
                if x - s > gap or s - x > gap:
                    s = x
                    put(pos[k])
                    last = k
        else:
            for k in range(k0, len(vs)):
                x = vs[k]
                if x - s >= gap or s - x >= gap:
                    s = x
                    put(pos[k])
                    last = k
        if last >= 0:
            st.sent = True
            st.sent_t = ts[last]
            st.sent_v = vs[last]
            st.beat_t = ts[last]
        st.has = True
        st.ref = s

    def _general_loop(
        self,
        sid: int,
        st: _State,
        ts: list[int],
        vs: list[Any],
        pos: list[int],
        kept: list[int],
        beats: list[Beat],
    ) -> None:
        stats = self.stats
        test = self.test
        for k, x in enumerate(vs):
            t = ts[k]
            i = pos[k]
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
                kept.append(i)
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

    def _assemble(self, batch: ReadingBatch, out_pos: list[int], beats: list[Beat]) -> ReadingBatch:
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

    def _beats_batch(self, beats: list[Beat]) -> ReadingBatch:
        # a value from the numeric column is a float; anything else came from the objects column
        nums = [b[3] if isinstance(b[3], float) else math.nan for b in beats]
        objects = [None if isinstance(b[3], float) else b[3] for b in beats]
        return ReadingBatch.from_columns(
            self.table, [b[2] for b in beats], nums, [b[1] for b in beats], objects
        )

    def _advance(self, now_ns: int) -> RuleOutput:
        if self.heartbeat is None:
            return RuleOutput(self.empty())
        beats: list[Beat] = []
        for sid, st in self._states.items():
            if st.sent and now_ns - st.beat_t >= self.heartbeat:
                beats.append((0.0, sid, st.sent_t, st.sent_v))
                st.beat_t = now_ns
        self.stats.heartbeats += len(beats)
        return RuleOutput(self._beats_batch(beats) if beats else self.empty())

    # -- state --------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        last = self.frame.last_t
        states = {sid: st.to_json(last.get(sid)) for sid, st in self._states.items()}
        return {"series": snapshot_series(self.table, states)}

    def restore(self, snap: Mapping[str, Any]) -> None:
        states: dict[int, _State] = {}
        last: dict[int, int] = {}
        for sid, d in restore_series(self.table, snap, self.kind).items():
            states[sid], last_t = _State.from_json(d)
            if last_t is not None:
                last[sid] = last_t
        self._states = states
        self.frame.last_t = last


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
            **policies(spec),
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
            **policies(spec),
        )


class MinIntervalRule(ExceptionRule):
    kind = "min_interval"
    interpolation: ClassVar[Interpolation | None] = None

    @classmethod
    def from_spec(cls, spec: MinIntervalSpec, table: SeriesTable, index: int = 0) -> MinIntervalRule:
        return cls(table, index, test="none", min_interval=spec.interval, **policies(spec))


class HeartbeatRule(ExceptionRule):
    kind = "heartbeat"
    interpolation: ClassVar[Interpolation | None] = None

    @classmethod
    def from_spec(cls, spec: HeartbeatSpec, table: SeriesTable, index: int = 0) -> HeartbeatRule:
        return cls(table, index, test="none", heartbeat=spec.interval, **policies(spec))
