"""Sim-Piece and Mix-Piece: disconnected line segments whose start values sit on a grid, merged into groups
that share their representation.

Sim-Piece (Kitsios, Liakos, Papakonstantinopoulou, Kotidis, PVLDB 16(8), 2023). A segment starts at a
reading (t0, v0) with the quantised start value ``b``: ``v0`` rounded down to the grid of step ``g`` (the
bound E rounded down to two significant digits, so ``b`` is a short decimal and ``|v0 - b| < g <= E``).
While it grows it keeps the slopes a line from (t0, b) may take and pass within E of every reading:
``hi = min (v + E - b) / (t - t0)``, ``lo = max (v - E - b) / (t - t0)`` (slopes per second); the reading
that makes ``lo > hi`` starts the next segment. Segments with the same ``b`` whose slope intervals
intersect form a group; one slope in the intersection serves every segment of the group, so a group is
shipped as ``b``, one slope ``a`` and the list of its segments' start times.

Mix-Piece (Kitsios et al., VLDB Journal 2024) also groups across different ``b``: the Sim-Piece groups
are pooled, sorted by their lower slope, and those whose slope intervals intersect share one slope, so
the wire form's table of slopes holds one entry for all of them.

Segment ``i`` covers ``[t0_i, t0_(i+1))``: the cloud sees ``b + a · (t - t0) / 1e9`` there
(:func:`segment_value`). The rule emits each segment as two points, its start ``(t0, b)`` and its end
``(t0_(i+1) - 1 ns, segment_value(b, a, t0_(i+1) - 1 - t0))`` (the last segment of a series, at a flush
or a reset, ends at its last reading), so linear interpolation between consecutive points is the
segment's line at every reading (up to float rounding), and nothing outside the rules needs to know the
segments (``interpolation: linear``). The compact encoding recognises the pairs and ships them in the
grouped form (:mod:`edgeflow.codec._segments`); the edgex-json encoding ships the points.

Streaming: a series holds its closed segments until it holds ``horizon`` of them (or, with ``max_hold``, a
reading comes that long after the first one held, or :meth:`~edgeflow.rules.base.Rule.advance` passes
that), then groups and emits them all, in one message; the open segment stays. :meth:`~edgeflow.rules.base.Rule.flush` and a ``reset`` hand out everything. The more segments a
hand-out holds, the more share a group.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from edgeflow.errors import RuleError
from edgeflow.model import SeriesTable
from edgeflow.rules.base import Interpolation, RuleOutput
from edgeflow.rules.bounded import Emit, ErrorBoundedRule
from edgeflow.rules.knots import shortest_decimal

__all__ = ["MixPieceRule", "SimPieceRule", "grid_step", "segment_value"]

_NS: float = 1e9
_EXACT: float = 2.0**52  # beyond, v / g has no fraction to floor


def segment_value(b: float, a: float, dt_ns: int) -> float:
    """A segment's value ``dt_ns`` after its start: ``b + a · dt_ns / 1e9`` (``a`` per second). The rule
    and the decoder compute a segment's end point with this one expression, so they agree to the bit."""
    return b + a * (dt_ns / _NS)


def grid_step(e: float) -> tuple[float, int]:
    """The quantisation grid of bound ``e``: ``e`` rounded down to two significant digits, and its digits
    after the decimal point. ``(0.0, 0)`` (no grid: a segment starts at its value) for ``e == 0`` or a
    bound too small for a decimal grid."""
    if not 1e-14 <= e < math.inf:
        return 0.0, 0
    m = math.floor(math.log10(e))
    unit = 10.0 ** (m - 1)
    digits = max(0, 1 - m)
    k = math.floor(e / unit)
    g = round(k * unit, digits)
    while g > e and k > 1:
        k -= 1
        g = round(k * unit, digits)
    if not 0 < g <= e:
        return e, 0
    return g, digits


class _Piece:
    """One series: the open segment and the closed ones not yet handed out."""

    __slots__ = ("b", "closed", "first", "has", "held", "hi", "lo", "t0", "tl")

    def __init__(self) -> None:
        self.has = False
        self.t0 = 0
        self.b = 0.0
        self.lo = -math.inf
        self.hi = math.inf
        self.tl = 0  # origin of the open segment's last reading
        self.closed: list[_Seg] = []  # (t0, b, lo, hi, tl)
        self.held = 0  # readings accepted since the last hand-out (0: none held, ``first`` unset)
        self.first = 0  # origin of the first of them


_Seg = tuple[int, float, float, float, int]
"""A closed segment: start origin, start value, lowest and highest slope, origin of its last reading."""
_Group = tuple[float, float, list[int]]
"""Segments that share a slope: the intersection of their slope intervals, their indexes."""


def _sweep(items: list[_Group]) -> list[_Group]:
    """Sorted by lower slope, consecutive items whose slope intervals still intersect merge."""
    out: list[_Group] = []
    lo, hi = -math.inf, math.inf
    cur: list[int] = []
    for ilo, ihi, members in sorted(items, key=lambda g: g[0]):
        if cur and (ilo > hi or ihi < lo):
            out.append((lo, hi, cur))
            lo, hi, cur = -math.inf, math.inf, []
        cur.extend(members)
        lo = max(lo, ilo)
        hi = min(hi, ihi)
    if cur:
        out.append((lo, hi, cur))
    return out


def _f(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _unf(x: Any, inf: float) -> float:
    return inf if x is None else float(x)


class SimPieceRule(ErrorBoundedRule):
    """Sim-Piece: segments grouped by quantised start value and intersecting slope intervals."""

    kind = "sim_piece"
    interpolation: ClassVar[Interpolation | None] = "linear"
    #: Also share slopes across different start values (Mix-Piece).
    mix: ClassVar[bool] = False

    def __init__(
        self,
        table: SeriesTable,
        index: int = 0,
        *,
        max_error: float,
        knots: str = "shortest",
        horizon: int = 100,
        max_hold: int | None = None,
        **policies: str,
    ) -> None:
        super().__init__(table, index, max_error=max_error, knots=knots, **policies)
        if horizon < 1:
            raise RuleError(f"{self.kind}: horizon must be >= 1, not {horizon}")
        if max_hold is not None and max_hold <= 0:
            raise RuleError(f"{self.kind}: max_hold must be positive, not {max_hold}")
        self.horizon = int(horizon)
        self.max_hold = max_hold
        self.grid, self.grid_digits = grid_step(self.max_error)

    @classmethod
    def _options(cls, spec: Any) -> dict[str, Any]:
        return {"horizon": spec.horizon, "max_hold": spec.max_hold}

    # -- the algorithm --------------------------------------------------------------------------------

    def quantise(self, v: float) -> float:
        """The start value of a segment that starts at value ``v``: on the grid, within the bound."""
        g = self.grid
        if g <= 0:
            return v
        q = v / g
        if not -_EXACT < q < _EXACT:
            return v
        b = round(math.floor(q) * g, self.grid_digits)
        return b if abs(v - b) <= self.max_error else v

    def _new_state(self) -> _Piece:
        return _Piece()

    def _feed(self, st: _Piece, ts: list[int], vs: list[float], keys: list[int], out: Emit) -> None:
        e = self.max_error
        horizon = self.horizon
        hold = self.max_hold
        quantise = self.quantise
        closed = st.closed
        has, t0, b, lo, hi, tl, held, first = st.has, st.t0, st.b, st.lo, st.hi, st.tl, st.held, st.first
        for j in range(len(ts)):
            t = ts[j]
            v = vs[j]
            if held == 0:
                first = t
            if not has:
                has = True
                t0 = tl = t
                b = quantise(v)
                lo, hi = -math.inf, math.inf
            else:
                dt = (t - t0) / _NS
                nh = (v + e - b) / dt
                nl = (v - e - b) / dt
                if nh > hi:
                    nh = hi
                if nl < lo:
                    nl = lo
                if nl > nh:
                    closed.append((t0, b, lo, hi, tl))
                    t0 = tl = t
                    b = quantise(v)
                    lo, hi = -math.inf, math.inf
                else:
                    lo, hi, tl = nl, nh, t
            held += 1
            if closed and (len(closed) >= horizon or (hold is not None and t - first >= hold)):
                self._hand_out(st, closed, t0, keys[j], out)
                closed = st.closed = []
                held = 0
        st.has, st.t0, st.b, st.lo, st.hi, st.tl, st.held, st.first = has, t0, b, lo, hi, tl, held, first

    def _slope(self, lo: float, hi: float) -> float:
        if not math.isfinite(lo) or not math.isfinite(hi):
            return 0.0  # only segments of one reading: any slope keeps the bound
        mid = (lo + hi) * 0.5
        if self.knots == "middle":
            return mid
        return shortest_decimal(lo, hi, mid)

    def _slopes(self, segs: list[_Seg], mix: bool) -> list[float]:
        """The slope of every segment: Sim-Piece's groups (per start value, the runs of segments sorted by
        lower slope whose slope intervals intersect); with ``mix``, those groups pooled across start
        values the same way, each pool one slope."""
        by_b: dict[float, list[_Group]] = {}
        for i, (_t0, b, lo, hi, _tl) in enumerate(segs):
            by_b.setdefault(b, []).append((lo, hi, [i]))
        groups = [g for items in by_b.values() for g in _sweep(items)]
        if mix:
            groups = _sweep(groups)
        slope = [0.0] * len(segs)
        for lo, hi, members in groups:
            a = self._slope(lo, hi)
            for i in members:
                slope[i] = a
        return slope

    def _hand_out(self, st: _Piece, segs: list[_Seg], next_t0: int | None, key: int, out: Emit) -> None:
        """Emit the closed segments ``segs`` (in time order) as point pairs; ``next_t0``: where the open
        segment starts (``None``: the last segment ends at its last reading)."""
        self._emit_pairs(segs, self._slopes(segs, self.mix), next_t0, key, out)

    @staticmethod
    def _emit_pairs(segs: list[_Seg], slopes: list[float], next_t0: int | None, key: int, out: Emit) -> None:
        """Each segment as its start point and its end point (1 ns before the next segment starts)."""
        put = out.append
        n = len(segs)
        for i, (t0, b, _lo, _hi, tl) in enumerate(segs):
            if i + 1 < n:
                end = segs[i + 1][0] - 1
            elif next_t0 is not None:
                end = next_t0 - 1
            else:
                end = tl
            put((key, t0, b))
            put((key, end, segment_value(b, slopes[i], end - t0)))

    def _close(self, st: _Piece, out: Emit, key: int, *, reset: bool = False) -> None:
        if st.has:
            st.closed.append((st.t0, st.b, st.lo, st.hi, st.tl))
            st.has = False
        if st.closed:
            self._hand_out(st, st.closed, None, key, out)
        st.closed = []
        st.held = 0

    def _advance(self, now_ns: int) -> RuleOutput:
        if self.max_hold is None:
            return RuleOutput(self.empty())
        emitted: Emit = []
        sids: list[int] = []
        for sid, st in self._states.items():
            if st.closed and now_ns - st.first >= self.max_hold:
                before = len(emitted)
                self._hand_out(st, st.closed, st.t0 if st.has else None, 0, emitted)
                st.closed = []
                st.held = 0
                sids.extend([sid] * (len(emitted) - before))
                self._touch(sid)
        return RuleOutput(self._assemble(self.empty(), emitted, sids, []))

    # -- state ----------------------------------------------------------------------------------------

    def _state_to_json(self, st: _Piece) -> Any:
        if not st.has and not st.closed:
            return None
        return {
            "open": [st.t0, st.b, _f(st.lo), _f(st.hi), st.tl] if st.has else None,
            "closed": [[t0, b, _f(lo), _f(hi), tl] for t0, b, lo, hi, tl in st.closed],
            "held": st.held,
            "first": st.first,
        }

    def _state_from_json(self, d: Any) -> _Piece:
        st = _Piece()
        if d is None:
            return st
        try:
            if d["open"] is not None:
                t0, b, lo, hi, tl = d["open"]
                st.has = True
                st.t0, st.b, st.lo, st.hi, st.tl = (
                    int(t0),
                    float(b),
                    _unf(lo, -math.inf),
                    _unf(hi, math.inf),
                    int(tl),
                )
            st.closed = [
                (int(t0), float(b), _unf(lo, -math.inf), _unf(hi, math.inf), int(tl))
                for t0, b, lo, hi, tl in d["closed"]
            ]
            st.held, st.first = int(d["held"]), int(d["first"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleError(f"{self.kind} snapshot state {d!r} is malformed: {exc}") from exc
        return st


class MixPieceRule(SimPieceRule):
    """Mix-Piece: Sim-Piece's groups, sharing slopes across start values too."""

    kind = "mix_piece"
    mix: ClassVar[bool] = True
