"""Swing filter (Elmeleegy, Elmagarmid, Cecchet, Aref, Zwaenepoel, PVLDB 2(1), 2009): connected segments.

From an anchor (t0, y0) the filter keeps the slopes a line through the anchor may take and still pass
within E of every reading since: u = min (v + E - y0) / (t - t0), l = max (v - E - y0) / (t - t0). When a
reading makes l > u, the segment ends at the previous reading tp: any end value in [y0 + l·(tp - t0),
y0 + u·(tp - t0)] keeps every reading of the segment within E. ``knots: middle`` takes the paper's middle
slope (u + l) / 2; ``knots: shortest`` (the default) the value of that window with the fewest digits after
the decimal point, nearest the middle (see :mod:`edgeflow.rules.knots`), which the compact encoding ships
in a byte or two instead of a full float. The end value is emitted as a point and becomes the next anchor
(segments are connected). The first reading of a series is emitted as is with ``knots: middle``; with
``shortest`` as the shortest decimal within E of it (a walk's first reading has 15 digits: 8 bytes). Linear interpolation between
consecutive points is within E of every reading (up to float rounding), which the property tests check.

Points are emitted when a segment closes; :meth:`~edgeflow.rules.base.Rule.flush` emits the open one.

A fleet's step gives each of many series one reading (every device polled once per tick). The rule keeps
its states as numpy columns by the series' place in the state rows, and steps the series of a batch whose
readings are all clean (finite, numeric, each after the one before, the first after the series' last
origin) all at once, in numpy: one round per reading a series has in the batch (one for a tick), with the
float operations of the one-by-one loop in the same order, so the points and states are bit for bit the
same (the tests check it). The other series of a batch, and every batch with fewer than :data:`STEP_MIN`
such readings, go one by one through the shared frame, on per-series state objects loaded from the
columns and stored back.
"""

from __future__ import annotations

from itertools import repeat
from operator import attrgetter
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from edgeflow.errors import RuleError
from edgeflow.model import ReadingBatch
from edgeflow.rules.base import STATE_ROW_SERIES, Interpolation, RuleOutput
from edgeflow.rules.bounded import Emit, ErrorBoundedRule
from edgeflow.rules.knots import shortest_decimal, shortest_decimals

__all__ = ["STEP_MIN", "SwingRule"]

#: Clean readings in a batch from which their series are stepped as columns, at once.
STEP_MIN: Final = 64

_NO_ORIGIN: Final = -(2**63)


class _Swing:
    __slots__ = ("has", "l", "n", "t0", "tp", "u", "y0")

    def __init__(self) -> None:
        self.has = False
        self.t0 = 0
        self.y0 = 0.0
        self.u = 0.0
        self.l = 0.0
        self.n = 0  # readings in the open segment after the anchor
        self.tp = 0  # origin of the last reading


_FIELDS = ("has", "t0", "y0", "u", "l", "n", "tp")
_get_fields = attrgetter(*_FIELDS)


class _Columns:
    """Every placed series' swing state, by place: the rule's state (a :class:`_Swing` is a copy)."""

    def __init__(self) -> None:
        self.has = np.zeros(0, dtype=bool)
        self.t0 = np.zeros(0, dtype=np.int64)
        self.y0 = np.zeros(0, dtype=np.float64)
        self.u = np.zeros(0, dtype=np.float64)
        self.l = np.zeros(0, dtype=np.float64)
        self.n = np.zeros(0, dtype=np.int64)
        self.tp = np.zeros(0, dtype=np.int64)
        self.stale = np.zeros(0, dtype=bool)  # the place's _Swing is behind its columns

    def grow(self, places: int) -> None:
        have = len(self.has)
        if places <= have:
            return
        size = max(places, 2 * have, 64)
        for name in (*_FIELDS, "stale"):
            old = getattr(self, name)
            new = np.zeros(size, dtype=old.dtype)
            new[:have] = old
            setattr(self, name, new)


class SwingRule(ErrorBoundedRule):
    kind = "swing"
    interpolation: ClassVar[Interpolation | None] = "linear"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._cols = _Columns()

    # -- many series, one reading each: as columns ----------------------------------------------------

    def _process(self, batch: ReadingBatch) -> RuleOutput:
        rounds = self._steppable(batch) if len(batch) >= STEP_MIN else None
        if rounds is None:
            return self._one_by_one(batch)
        points = [self._step(batch, pos) for pos in rounds]  # a series' readings in arrival order
        taken = sum(len(pos) for pos in rounds)
        out = points[0] if len(points) == 1 else ReadingBatch.concat(self.table, points)
        if taken == len(batch):
            return RuleOutput(out)
        rest = np.ones(len(batch), dtype=bool)
        for pos in rounds:
            rest[pos] = False
        other = self._one_by_one(batch.take(rest))
        # each series is in one part or the other: its points keep their order
        return RuleOutput(ReadingBatch.concat(self.table, [out, other.batch]), late=other.late)

    def _places(self, series: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
        slot_of = self._slot_of
        if len(series) and int(series.max()) >= len(slot_of):
            grown = np.full(int(series.max()) + 1, -1, dtype=np.int64)
            grown[: len(slot_of)] = slot_of
            slot_of = grown
        return slot_of[series]

    def _steppable(self, batch: ReadingBatch) -> list[npt.NDArray[np.intp]] | None:
        """The readings to step as columns, in rounds of at most one reading per series (round ``r``: each
        series' ``r``-th reading): those of series whose every reading in ``batch`` is finite, numeric and
        after the one before (the first after the series' last origin), and whose state has begun or has
        none yet. ``None`` when fewer than STEP_MIN. A tick gives one round; a loop that fell behind and
        read a device twice before the router stepped, two."""
        series = batch.series
        n = len(series)
        ok = np.isfinite(batch.values)
        if batch.objects is not None:
            ok &= ~batch.object_mask()
        ok &= self.table.numeric_series()[series]
        counts = np.bincount(series)
        if int(counts.max()) == 1:  # one reading per series: no sorting
            order = np.arange(n)
            sids, starts, rank = series, order, None
        else:
            order = np.argsort(series, kind="stable")
            ss = series[order]
            starts = np.flatnonzero(np.concatenate(([True], ss[1:] != ss[:-1])))
            sids = ss[starts]
            ts = batch.origins[order]
            after = np.ones(n, dtype=bool)  # after the reading before it in its series (the first: below)
            after[1:] = ts[1:] > ts[:-1]
            after[starts] = True
            ok = np.logical_and.reduceat(ok[order] & after, starts)  # per series from here on
            rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
        places = self._places(sids)
        known = places >= 0
        if len(self._cols.has):
            ok &= ~known | self._cols.has[np.where(known, places, 0)]
        else:
            ok &= ~known
        if int(ok.sum()) < (STEP_MIN if rank is None else 1):
            return None
        last = np.fromiter(
            map(self.frame.last_t.get, sids.tolist(), repeat(_NO_ORIGIN)), dtype=np.int64, count=len(sids)
        )
        ok &= batch.origins[order[starts]] > last
        if rank is None:
            pos = np.flatnonzero(ok)
            return [pos] if len(pos) >= STEP_MIN else None
        take = np.repeat(ok, np.diff(np.append(starts, n)))  # per reading, in series order
        if int(take.sum()) < STEP_MIN:
            return None
        chosen, ranks = order[take], rank[take]
        return [np.sort(chosen[ranks == r]) for r in range(int(ranks.max()) + 1)]

    def _begin(self, sids: npt.NDArray[np.int32]) -> None:
        """States for series that have none, placed in the order of their ids (as the frame feeds them)."""
        for sid in np.sort(sids).tolist():
            self._states[sid] = _Swing()
            self._place(sid)
        self._cols.grow(len(self._slots))

    def _step(self, batch: ReadingBatch, pos: npt.NDArray[np.intp]) -> ReadingBatch:
        """One reading for each of many series: :meth:`_feed`'s loop body, in numpy."""
        c = self._cols
        e = self.max_error
        short = self.knots == "shortest"
        sids = batch.series[pos]
        places = self._places(sids)
        fresh = places < 0
        if fresh.any():
            self._begin(sids[fresh])
            places = self._places(sids)
        t = batch.origins[pos]
        v = batch.values[pos]
        t0, y0, u, lo, n, tp = c.t0[places], c.y0[places], c.u[places], c.l[places], c.n[places], c.tp[places]
        dt = (t - t0).astype(np.float64)
        dt[fresh] = 1.0  # no anchor yet (what is computed for them here is not used)
        hi = (v + e - y0) / dt
        lw = (v - e - y0) / dt
        first = n == 0
        nu = np.where(hi < u, hi, u)
        nl = np.where(lw > lo, lw, lo)
        close = np.flatnonzero(~fresh & ~first & (nl > nu))
        new_u = np.where(first, hi, nu)
        new_l = np.where(first, lw, nl)
        new_n = np.where(first, 1, n + 1)
        at: list[npt.NDArray[np.intp]] = []  # the points: where in pos, origin, value
        ts: list[npt.NDArray[np.int64]] = []
        vs: list[npt.NDArray[np.float64]] = []
        if len(close):
            yc, uc, lc, tpc = y0[close], u[close], lo[close], tp[close]
            d = (tpc - t0[close]).astype(np.float64)
            mid = yc + (uc + lc) * 0.5 * d
            y1 = shortest_decimals(yc + lc * d, yc + uc * d, mid, yc) if short else mid
            dt1 = (t[close] - tpc).astype(np.float64)
            vc = v[close]
            new_u[close] = (vc + e - y1) / dt1
            new_l[close] = (vc - e - y1) / dt1
            new_n[close] = 1
            c.y0[places[close]] = y1
            c.t0[places[close]] = tpc
            at.append(close)
            ts.append(tpc)
            vs.append(y1)
        if fresh.any():  # the first reading: the anchor, shipped at once
            f = np.flatnonzero(fresh)
            vf = v[f]
            yf = shortest_decimals(vf - e, vf + e, vf, vf) if short else vf
            pf = places[f]
            c.has[pf] = True
            c.t0[pf] = t[f]
            c.y0[pf] = yf
            new_u[f], new_l[f], new_n[f] = 0.0, 0.0, 0
            at.append(f)
            ts.append(t[f])
            vs.append(yf)
        c.u[places] = new_u
        c.l[places] = new_l
        c.n[places] = new_n
        c.tp[places] = t
        c.stale[places] = True
        self.frame.last_t.update(zip(sids.tolist(), t.tolist(), strict=True))
        self._dirty.update(np.unique(places // STATE_ROW_SERIES).tolist())
        if not at:
            return self.empty()
        k = np.concatenate(at)
        order = np.argsort(k, kind="stable")  # in batch order
        return ReadingBatch.from_columns(
            self.table, np.concatenate(ts)[order], np.concatenate(vs)[order], sids[k[order]]
        )

    # -- one by one, on state objects copied from the columns and back --------------------------------

    def _one_by_one(self, batch: ReadingBatch) -> RuleOutput:
        sids = np.unique(batch.series).tolist()
        self._load(sids)
        out = super()._process(batch)
        self._store(sids)
        return out

    def _load(self, sids: list[int]) -> None:
        """Bring the state objects of ``sids`` up to their columns."""
        c = self._cols
        places = self._places(np.asarray(sids, dtype=np.int64)) if sids else np.zeros(0, dtype=np.int64)
        places = places[places >= 0]
        places = places[c.stale[places]]
        if not len(places):
            return
        cols = [getattr(c, f)[places].tolist() for f in _FIELDS]
        slots = self._slots
        for p, has, t0, y0, u, lo, n, tp in zip(places.tolist(), *cols, strict=True):
            st = self._states[slots[p]]
            st.has, st.t0, st.y0, st.u, st.l, st.n, st.tp = has, t0, y0, u, lo, n, tp
        c.stale[places] = False

    def _store(self, sids: list[int]) -> None:
        """Put the state objects of ``sids`` (those that have one) into the columns."""
        states = self._states
        mine = [s for s in sids if s in states]
        if not mine:
            return
        c = self._cols
        c.grow(len(self._slots))
        places = self._slot_of[np.asarray(mine, dtype=np.int64)]
        values = list(zip(*map(_get_fields, map(states.__getitem__, mine)), strict=True))
        for name, col in zip(_FIELDS, values, strict=True):
            getattr(c, name)[places] = col
        c.stale[places] = False

    def _flush(self) -> RuleOutput:
        sids = list(self._states)
        self._load(sids)
        out = super()._flush()
        self._store(sids)
        return out

    def snapshot(self) -> dict[str, Any]:
        self._load(list(self._states))
        return super().snapshot()

    def restore(self, snap: Any) -> None:
        super().restore(snap)
        self._cols = _Columns()
        self._store(list(self._states))

    def _row_states(self, first: int, sids: list[int]) -> list[Any]:
        c = self._cols
        end = first + len(sids)
        rows = zip(*(getattr(c, f)[first:end].tolist() for f in self._row_fields), strict=True)
        return [r if has else None for r, has in zip(rows, c.has[first:end].tolist(), strict=True)]

    # -- the algorithm, one series at a time ----------------------------------------------------------

    def _new_state(self) -> _Swing:
        return _Swing()

    def _feed(self, st: _Swing, ts: list[int], vs: list[float], keys: list[int], out: Emit) -> None:
        e = self.max_error
        short = self.knots == "shortest"
        k = 0
        if not st.has:
            st.has = True
            st.t0 = st.tp = ts[0]
            v0 = vs[0]
            # knots: shortest — the first point too is the shortest decimal within E of the reading
            st.y0 = shortest_decimal(v0 - e, v0 + e, v0, v0) if short else v0
            st.n = 0
            out.append((keys[0], ts[0], st.y0))
            k = 1
        t0, y0, u, lo, n, tp = st.t0, st.y0, st.u, st.l, st.n, st.tp
        put = out.append
        for j in range(k, len(ts)):
            t = ts[j]
            v = vs[j]
            dt = t - t0
            hi = (v + e - y0) / dt
            lw = (v - e - y0) / dt
            if n == 0:
                u = hi
                lo = lw
                n = 1
            else:
                nu = hi if hi < u else u
                nl = lw if lw > lo else lo
                if nl > nu:
                    d = tp - t0
                    if short:
                        y0 = shortest_decimal(y0 + lo * d, y0 + u * d, y0 + (u + lo) * 0.5 * d, y0)
                    else:
                        y0 = y0 + (u + lo) * 0.5 * d
                    t0 = tp
                    put((keys[j], t0, y0))
                    dt = t - t0
                    u = (v + e - y0) / dt
                    lo = (v - e - y0) / dt
                    n = 1
                else:
                    u = nu
                    lo = nl
                    n += 1
            tp = t
        st.t0, st.y0, st.u, st.l, st.n, st.tp = t0, y0, u, lo, n, tp

    def _close(self, st: _Swing, out: Emit, key: int, *, reset: bool = False) -> None:
        if st.has and st.n > 0:
            y0, d = st.y0, st.tp - st.t0
            mid = y0 + (st.u + st.l) * 0.5 * d
            st.y0 = (
                shortest_decimal(y0 + st.l * d, y0 + st.u * d, mid, y0) if self.knots == "shortest" else mid
            )
            st.t0 = st.tp
            st.n = 0
            out.append((key, st.t0, st.y0))

    _row_fields = ("t0", "y0", "u", "l", "n", "tp")

    def _state_to_json(self, st: _Swing) -> Any:
        if not st.has:
            return None
        return {"t0": st.t0, "y0": st.y0, "u": st.u, "l": st.l, "n": st.n, "tp": st.tp}

    def _state_from_json(self, d: Any) -> _Swing:
        st = _Swing()
        if d is None:
            return st
        try:
            st.has = True
            st.t0, st.y0, st.u, st.l = int(d["t0"]), float(d["y0"]), float(d["u"]), float(d["l"])
            st.n, st.tp = int(d["n"]), int(d["tp"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleError(f"swing snapshot state {d!r} is malformed: {exc}") from exc
        return st
