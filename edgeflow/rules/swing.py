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
"""

from __future__ import annotations

from typing import Any, ClassVar

from edgeflow.errors import RuleError
from edgeflow.rules.base import Interpolation
from edgeflow.rules.bounded import Emit, ErrorBoundedRule
from edgeflow.rules.knots import shortest_decimal

__all__ = ["SwingRule"]


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


class SwingRule(ErrorBoundedRule):
    kind = "swing"
    interpolation: ClassVar[Interpolation | None] = "linear"

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
