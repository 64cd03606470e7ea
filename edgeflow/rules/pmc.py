"""PMC-MR, Poor Man's Compression - MidRange (Lazaridis & Mehrotra, ICDE 2003): constant segments.

A segment grows while max - min of its values stays within 2E; the reading that would break that starts
the next segment. A closed segment is emitted as one point at its first reading's origin; any value in
[max - E, min + E] is within E of all its readings. ``knots: middle`` takes the paper's midrange
(max + min) / 2, ``knots: shortest`` (the default) the value of that window with the fewest digits after
the decimal point, nearest the midrange (see :mod:`edgeflow.rules.knots`), which the compact encoding
ships in a byte or two instead of a full float. Holding each point until the next one (``hold``
reconstruction) is within E of every reading of the segment. The decision needs no time arithmetic; time
order only matters for the reconstruction, hence the ``backwards`` policy. On a ``reset`` the closed
segment's constant is also emitted at its last origin, so the cloud sees where the run ended.
"""

from __future__ import annotations

from typing import Any, ClassVar

from edgeflow.errors import RuleError
from edgeflow.rules.base import Interpolation
from edgeflow.rules.bounded import Emit, ErrorBoundedRule
from edgeflow.rules.knots import shortest_decimal

__all__ = ["PmcRule"]


class _Pmc:
    __slots__ = ("has", "mn", "mx", "t0", "tl")

    def __init__(self) -> None:
        self.has = False
        self.t0 = 0  # origin of the segment's first reading
        self.tl = 0  # origin of its last
        self.mn = 0.0
        self.mx = 0.0


class PmcRule(ErrorBoundedRule):
    kind = "pmc_mr"
    interpolation: ClassVar[Interpolation | None] = "hold"

    def _value(self, mn: float, mx: float) -> float:
        mid = (mn + mx) * 0.5
        if self.knots == "middle":
            return mid
        return shortest_decimal(mx - self.max_error, mn + self.max_error, mid)

    def _new_state(self) -> _Pmc:
        return _Pmc()

    def _feed(self, st: _Pmc, ts: list[int], vs: list[float], keys: list[int], out: Emit) -> None:
        width = 2.0 * self.max_error
        k = 0
        if not st.has:
            st.has = True
            st.t0 = ts[0]
            st.mn = st.mx = vs[0]
            k = 1
        t0, mn, mx = st.t0, st.mn, st.mx
        put = out.append
        value = self._value
        for j in range(k, len(ts)):
            v = vs[j]
            nmn = v if v < mn else mn
            nmx = v if v > mx else mx
            if nmx - nmn > width:
                put((keys[j], t0, value(mn, mx)))
                t0 = ts[j]
                mn = mx = v
            else:
                mn = nmn
                mx = nmx
        st.t0, st.mn, st.mx, st.tl = t0, mn, mx, ts[-1]

    def _close(self, st: _Pmc, out: Emit, key: int, *, reset: bool = False) -> None:
        if st.has:
            mid = self._value(st.mn, st.mx)
            out.append((key, st.t0, mid))
            if reset and st.tl > st.t0:
                # the same constant at the segment's last origin marks where the run ends
                out.append((key, st.tl, mid))
            st.has = False

    _row_fields = ("t0", "tl", "mn", "mx")

    def _state_to_json(self, st: _Pmc) -> Any:
        return {"t0": st.t0, "tl": st.tl, "mn": st.mn, "mx": st.mx} if st.has else None

    def _state_from_json(self, d: Any) -> _Pmc:
        st = _Pmc()
        if d is None:
            return st
        try:
            st.has = True
            st.t0, st.tl, st.mn, st.mx = int(d["t0"]), int(d["tl"]), float(d["mn"]), float(d["mx"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleError(f"pmc_mr snapshot state {d!r} is malformed: {exc}") from exc
        return st
