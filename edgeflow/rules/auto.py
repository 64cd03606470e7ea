"""``auto``: per series and per hand-out, the bounded compressor whose output travels smallest.

The rule segments each series as Sim-Piece does (:mod:`edgeflow.rules.simpiece`) and hands out at the
same moments (``horizon`` closed segments, ``max_hold``, a flush, a reset), and it also keeps the series'
readings since the last hand-out. At a hand-out, the readings before the open segment are compressed
four ways at the same bound E:

* swing (:mod:`edgeflow.rules.swing`): connected points;
* PMC-MR (:mod:`edgeflow.rules.pmc`): constant segments, shipped as start/end pairs of slope 0;
* Sim-Piece and Mix-Piece: the held segments, grouped.

Every candidate is ``linear`` points whose interpolation is within E of every reading of the chunk, so
the cloud needs nothing new, whatever was chosen; the compact encoding ships segment pairs in its
segment form (:mod:`edgeflow.codec._segments`) and the rest as columns. The choice is the smallest
**estimate** of the compact encoding's bytes before compression (:func:`points_cost`,
:func:`segments_cost`): the rules know nothing of the codec, so the estimate mirrors its layouts
(delta-coded varints of the times, decimal digits of the values, the segment form's tables).

The chunk boundary joins two candidates without a reading in between: a chunk's last point is at its
last reading or 1 ns before the next chunk's first, so the bound holds across hand-outs too. A series
that holds ``max_readings`` readings (a long segment: a flat line) closes its open segment and hands out
everything, so memory stays bounded. :attr:`AutoRule.chosen` counts the choices.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from typing import Any

from edgeflow.errors import RuleError
from edgeflow.model import SeriesTable
from edgeflow.rules.bounded import Emit, ErrorBoundedRule
from edgeflow.rules.knots import MAX_DIGITS, decimal_digits
from edgeflow.rules.pmc import PmcRule
from edgeflow.rules.simpiece import SimPieceRule, _Piece, _Seg
from edgeflow.rules.swing import SwingRule

__all__ = ["AutoRule", "points_cost", "segments_cost"]

_CANDIDATES = ("swing", "pmc_mr", "sim_piece", "mix_piece")


def _varint(u: int) -> int:
    return max(1, (u.bit_length() + 6) // 7)


def _zz(i: int) -> int:
    return _varint(2 * i if i >= 0 else -2 * i - 1)


def _values_cost(vs: list[float]) -> int:
    """The values column coder: delta-coded integers at the values' decimal digits, else 8 bytes each."""
    if not vs:
        return 0
    k = max(decimal_digits(v) for v in vs)
    if k > MAX_DIGITS:
        return 1 + 8 * len(vs)
    s = 10.0**k
    ints = [round(v * s) for v in vs]
    return 2 + _zz(ints[0]) + sum(_zz(b - a) for a, b in itertools.pairwise(ints))


def _times_cost(ts: list[int]) -> int:
    """The times column coder: delta-of-delta of the deltas over their common divisor."""
    if len(ts) < 2:
        return 9
    d = [b - a for a, b in itertools.pairwise(ts)]
    g = math.gcd(*d) or 1
    q = [x // g for x in d]
    return 9 + _varint(g) + _zz(q[0]) + sum(_zz(b - a) for a, b in itertools.pairwise(q))


def points_cost(ts: list[int], vs: list[float]) -> int:
    """Estimated bytes of points as the compact encoding's columns."""
    return _times_cost(ts) + _values_cost(vs)


def segments_cost(starts: list[int], bs: list[float], slopes: list[float]) -> int:
    """Estimated bytes of segments in the compact encoding's segment form."""
    if not starts:
        return 0
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    g = math.gcd(*gaps) if gaps else 1
    cost = 20 + sum(_varint(x // (g or 1)) for x in gaps)
    ub = sorted(set(bs))
    ua = sorted(set(slopes))
    slopes_cost = _values_cost(ua)
    # the grouped layout
    grouped = _values_cost(ub) + len(ub)
    b_index = {b: i for i, b in enumerate(ub)}
    lists: dict[float, list[float]] = {}
    prev = 0
    for b, a in zip(bs, slopes, strict=True):
        mine = lists.setdefault(b, [])
        if a not in mine:
            mine.append(a)
            grouped += 1
        grouped += _varint(mine.index(a)) + _zz(b_index[b] - prev)
        prev = b_index[b]
    # the column layout
    a_index = {a: i for i, a in enumerate(ua)}
    columns = _values_cost(bs) + sum(_varint(a_index[a]) for a in slopes)
    return cost + slopes_cost + min(grouped, columns)


class _AutoPiece(_Piece):
    __slots__ = ("raw_t", "raw_v")

    def __init__(self) -> None:
        super().__init__()
        self.raw_t: list[int] = []  # readings since the last hand-out
        self.raw_v: list[float] = []


class AutoRule(SimPieceRule):
    """Swing, PMC-MR, Sim-Piece or Mix-Piece, whichever is smallest, per series and hand-out."""

    kind = "auto"

    def __init__(self, table: SeriesTable, index: int = 0, *, max_readings: int = 10_000, **kw: Any) -> None:
        super().__init__(table, index, **kw)
        if max_readings < 2:
            raise RuleError(f"auto: max_readings must be >= 2, not {max_readings}")
        self.max_readings = int(max_readings)
        self._swing = SwingRule(table, max_error=self.max_error, knots=self.knots)
        self._pmc = PmcRule(table, max_error=self.max_error, knots=self.knots)
        #: How often each compressor was chosen.
        self.chosen: Counter[str] = Counter()

    @classmethod
    def _options(cls, spec: Any) -> dict[str, Any]:
        return {**super()._options(spec), "max_readings": spec.max_readings}

    def _new_state(self) -> _AutoPiece:
        return _AutoPiece()

    def _feed(self, st: Any, ts: list[int], vs: list[float], keys: list[int], out: Emit) -> None:
        st.raw_t.extend(ts)
        st.raw_v.extend(vs)
        super()._feed(st, ts, vs, keys, out)
        if len(st.raw_t) >= self.max_readings:
            self._close(st, out, keys[-1])

    def _hand_out(self, st: Any, segs: list[_Seg], next_t0: int | None, key: int, out: Emit) -> None:
        cut = len(st.raw_t) if next_t0 is None else bisect.bisect_left(st.raw_t, next_t0)
        ct, cv = st.raw_t[:cut], st.raw_v[:cut]
        del st.raw_t[:cut], st.raw_v[:cut]
        best: tuple[int, str, Emit] | None = None
        for name in _CANDIDATES:
            pts: Emit = []
            if name == "swing":
                self._run(self._swing, ct, cv, key, pts)
                cost = points_cost([p[1] for p in pts], [p[2] for p in pts])
            elif name == "pmc_mr":
                const: Emit = []
                self._run(self._pmc, ct, cv, key, const)
                pseg = [(t0, c, 0.0, 0.0, ct[-1]) for _, t0, c in const]
                self._emit_pairs(pseg, [0.0] * len(pseg), next_t0, key, pts)
                cost = segments_cost([s[0] for s in pseg], [s[1] for s in pseg], [0.0] * len(pseg))
            else:
                slopes = self._slopes(segs, name == "mix_piece")
                self._emit_pairs(segs, slopes, next_t0, key, pts)
                cost = segments_cost([s[0] for s in segs], [s[1] for s in segs], slopes)
            if best is None or cost < best[0]:
                best = (cost, name, pts)
        assert best is not None
        self.chosen[best[1]] += 1
        out.extend(best[2])

    @staticmethod
    def _run(rule: ErrorBoundedRule, ts: list[int], vs: list[float], key: int, out: Emit) -> None:
        """``rule``'s algorithm over one chunk, from a fresh state, closed at its end."""
        if not ts:
            return
        st = rule._new_state()
        rule._feed(st, ts, vs, [key] * len(ts), out)
        rule._close(st, out, key)

    def _state_to_json(self, st: Any) -> Any:
        d = super()._state_to_json(st)
        if d is None and not st.raw_t:
            return None
        if d is None:
            d = {"open": None, "closed": [], "held": st.held, "first": st.first}
        return {**d, "raw": [st.raw_t, st.raw_v]}

    def _state_from_json(self, d: Any) -> _AutoPiece:
        st = _AutoPiece()
        if d is None:
            return st
        base = super()._state_from_json(d)
        for name in _Piece.__slots__:
            setattr(st, name, getattr(base, name))
        try:
            raw_t, raw_v = d["raw"]
            st.raw_t = [int(t) for t in raw_t]
            st.raw_v = [float(v) for v in raw_v]
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleError(f"auto snapshot state {d!r} is malformed: {exc}") from exc
        if len(st.raw_t) != len(st.raw_v):
            raise RuleError("auto snapshot state: raw times and values differ in length")
        return st
