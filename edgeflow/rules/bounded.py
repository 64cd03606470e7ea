"""What the point-emitting compressors (swing, PMC-MR, swinging door) share.

The shared frame (:mod:`edgeflow.rules.frame`) applies their policies: NaN and ±inf, and non-numeric
readings (Bools included), ``pass`` unchanged or ``drop``; time, judged on the finite numbers only, is
``late``, ``drop`` or ``reset`` (the open segment is closed and emitted, and the series starts again from
the reading, which the cloud sees as the start of a new run: see
:func:`edgeflow.rules.reconstruct.reconstruct`). A compressor needs time in order, so it offers no
``accept``.

The algorithm gets runs of clean, strictly increasing numbers as Python lists, which is what makes its
per-reading loop fast, and emits ``(trigger position, origin, value)`` points. Output keeps each series'
emission order; points of one series go out in the order the cloud must apply them.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from operator import attrgetter
from typing import Any, ClassVar, Self

import numpy as np
import orjson

from edgeflow.errors import RuleError
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.rules.base import (
    STATE_ROW_SERIES,
    Rule,
    RuleOutput,
    SeriesChanges,
    restore_series,
    series_key,
)
from edgeflow.rules.frame import SeriesFrame, policies

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
        self.frame = SeriesFrame(self.stats, nan=nan, non_numeric=non_numeric, backwards=backwards)
        self._states: dict[int, Any] = {}
        # The commit log takes the state at every commit (snapshot_changes), as rows of
        # STATE_ROW_SERIES series each (see SeriesChanges): a series' place is where its state began.
        # Only the rows of series that changed since the last commit are given again.
        self._slots: list[int] = []  # place -> series id
        self._slot_keys: list[list[str]] = []  # place -> series key
        self._slot_of = np.full(0, -1, dtype=np.int64)  # series id -> place (-1: no state)
        self._dirty: set[int] = set()  # chunks (place // STATE_ROW_SERIES) changed since the last call
        self._keyed = 0  # places whose keys the rows hold

    # -- what a subclass provides -------------------------------------------------------------------

    #: The names of the state's attributes, in the order a state row gives them (each as the key of
    #: the same value in ``_state_to_json``), and the state has ``has``; empty: rows hold the JSON state.
    _row_fields: ClassVar[tuple[str, ...]] = ()

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

    # -- processing -------------------------------------------------------------------------------

    def _process(self, batch: ReadingBatch) -> RuleOutput:
        if len(batch) == 0:
            return RuleOutput(batch)
        emitted: Emit = []
        emitted_sid: list[int] = []
        states = self._states

        def feed(sid: int, ts: list[int], vs: list[float], pos: list[int]) -> None:
            st = states.get(sid)
            if st is None:
                st = states[sid] = self._new_state()
                self._place(sid)
            n = len(emitted)
            self._feed(st, ts, vs, pos, emitted)
            emitted_sid.extend([sid] * (len(emitted) - n))

        def reset(sid: int, pos: int, last_t: int) -> None:
            st = states.get(sid)
            if st is not None:
                n = len(emitted)
                self._close(st, emitted, pos, reset=True)
                emitted_sid.extend([sid] * (len(emitted) - n))
            else:
                self._place(sid)
            states[sid] = self._new_state()

        routed = self.frame.route(batch, feed, reset)
        ids = np.unique(batch.series)
        places = self._slot_of[ids[ids < len(self._slot_of)]]
        self._dirty.update(np.unique(places[places >= 0] // STATE_ROW_SERIES).tolist())
        out = self._assemble(batch, emitted, emitted_sid, routed.passed)
        return RuleOutput(out, late=routed.late_batch(batch))

    def _assemble(
        self, batch: ReadingBatch, emitted: Emit, emitted_sid: list[int], raw_pos: list[int]
    ) -> ReadingBatch:
        pts = ReadingBatch.from_columns(
            self.table, [e[1] for e in emitted], [e[2] for e in emitted], emitted_sid
        )
        if not raw_pos:
            return pts
        raw = batch.take(np.asarray(raw_pos, dtype=np.intp))
        both = ReadingBatch.concat(self.table, [pts, raw])
        keys = np.asarray([e[0] for e in emitted] + raw_pos, dtype=np.int64)
        return both.take(np.argsort(keys, kind="stable"))

    def _flush(self) -> RuleOutput:
        emitted: Emit = []
        sids: list[int] = []
        self._dirty.update(range(self._chunks()))
        for sid, st in self._states.items():
            before = len(emitted)
            self._close(st, emitted, 0)
            sids.extend([sid] * (len(emitted) - before))
        return RuleOutput(self._assemble(self.empty(), emitted, sids, []))

    # -- state --------------------------------------------------------------------------------------

    def _entry(self, sid: int) -> Any:
        st = self._states.get(sid)
        if st is None:
            return None
        return {"last_t": self.frame.last_t.get(sid), "algo": self._state_to_json(st)}

    def _place(self, sid: int) -> None:
        """Give a series whose state begins the next place in the state rows."""
        if sid >= len(self._slot_of):
            grown = np.full(max(sid + 1, 2 * len(self._slot_of), 64), -1, dtype=np.int64)
            grown[: len(self._slot_of)] = self._slot_of
            self._slot_of = grown
        if self._slot_of[sid] < 0:
            self._slot_of[sid] = len(self._slots)
            self._slots.append(sid)
            self._slot_keys.append(series_key(self.table, sid))

    def _chunks(self) -> int:
        """How many state rows' worth of series the rule has placed."""
        return -(-len(self._slots) // STATE_ROW_SERIES)

    def _touch(self, sid: int) -> None:
        """Mark a series' state changed outside :meth:`_process` (its row is given at the next call)."""
        if sid < len(self._slot_of) and self._slot_of[sid] >= 0:
            self._dirty.add(int(self._slot_of[sid]) // STATE_ROW_SERIES)

    def snapshot(self) -> dict[str, Any]:
        return {"series": [[series_key(self.table, sid), self._entry(sid)] for sid in self._states]}

    def snapshot_changes(self) -> SeriesChanges:
        # At every commit: kept lean, with no per-series JSON here (a fleet gives 10,000 series a second).
        # A rule that names its state's fields (``_row_fields``) gives each series' state as the list of
        # their values (what restore takes besides the snapshot's form), else as its JSON state.
        per = STATE_ROW_SERIES
        slots = self._slots
        rows: dict[str, bytes] = {}
        dumps = orjson.dumps
        # the chunks that gained a series since the last call: their keys again
        first = self._keyed // per if len(slots) > self._keyed else self._chunks()
        for n in range(first, self._chunks()):
            rows[f"k{n}"] = dumps(self._slot_keys[n * per : (n + 1) * per])
            self._dirty.add(n)
        self._keyed = len(slots)
        last = self.frame.last_t.get
        for n in sorted(self._dirty):
            sids = slots[n * per : (n + 1) * per]
            rows[f"s{n}"] = dumps([list(map(last, sids)), self._row_states(n * per, sids)])
        self._dirty.clear()
        return SeriesChanges({}, rows)

    def _row_states(self, first: int, sids: list[int]) -> list[Any]:
        """The states of ``sids`` (places ``first`` onwards) as a state row gives them."""
        sts = list(map(self._states.__getitem__, sids))
        if not self._row_fields:
            return list(map(self._state_to_json, sts))
        fields = attrgetter(*self._row_fields)
        return [fields(st) if st.has else None for st in sts]

    def _entry_from_json(self, d: Any) -> tuple[Any, int | None]:
        """``(state, last_t)`` of a series entry: a snapshot's ``{"last_t", "algo"}`` or a row's
        ``[last_t, state]`` (the state as ``_row_fields`` values when the rule names them)."""
        if isinstance(d, dict) and "algo" in d:
            algo, last_t = d["algo"], d.get("last_t")
        elif isinstance(d, list) and len(d) == 2:
            last_t, algo = d
            if self._row_fields and algo is not None:
                if not isinstance(algo, list) or len(algo) != len(self._row_fields):
                    raise RuleError(f"{self.kind} snapshot state {d!r} is malformed")
                algo = dict(zip(self._row_fields, algo, strict=True))
        else:
            raise RuleError(f"{self.kind} snapshot state {d!r} is malformed")
        return self._state_from_json(algo), None if last_t is None else int(last_t)

    def restore(self, snap: Mapping[str, Any]) -> None:
        states: dict[int, Any] = {}
        last: dict[int, int] = {}
        for sid, d in restore_series(self.table, snap, self.kind).items():
            st, last_t = self._entry_from_json(d)
            states[sid] = st
            if last_t is not None:
                last[sid] = last_t
        self._states = states
        self.frame.last_t = last
        self._slots, self._slot_keys, self._keyed = [], [], 0
        self._slot_of = np.full(0, -1, dtype=np.int64)
        for sid in states:  # in the order of the snapshot (of the rows read back: the same places)
            self._place(sid)
        self._dirty = set(range(self._chunks()))


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
            table, index, max_error=spec.bound, knots=spec.knots, **cls._options(spec), **policies(spec)
        )

    @classmethod
    def _options(cls, spec: Any) -> dict[str, Any]:
        """What a subclass's spec declares besides the bound, the knots and the policies."""
        return {}
