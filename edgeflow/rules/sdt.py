"""Swinging-door trending (the PI Data Archive's compression; Apache IoTDB's SDT), with PI's parameters.

From the last archived point (ta, va) two doors pivot at va + CompDev and va - CompDev. Each reading
narrows them: the upper door's slope is the largest (v - va - CompDev) / (t - ta) seen, the lower door's
the smallest (v - va + CompDev) / (t - ta). When the doors open past parallel (upper > lower), the
*previous* reading is archived (emitted as is) and becomes the pivot, and the current reading is tested
again from it. The first reading is archived; the last is archived at :meth:`flush`.

``comp_max``: a reading later than that after the last archived point archives the previous reading
first (PI's CompMax). ``comp_min``: readings sooner than that after the last archived point are skipped,
neither archived nor narrowing the doors (counted in ``dropped``; no bound holds for them).

Bound: linear interpolation between archived points is within **2 x CompDev** of every reading that was
not skipped, not CompDev: every reading lies within CompDev of *some* line through the pivot, and the line
actually drawn to the next archived reading may be off by up to another CompDev. Use the swing filter,
or CompDev = E / 2, where E must hold.
"""

from __future__ import annotations

from typing import Any, ClassVar

from edgeflow.errors import RuleError
from edgeflow.model import SeriesTable
from edgeflow.rules.base import Interpolation
from edgeflow.rules.bounded import Emit, PointRule
from edgeflow.rules.frame import policies
from edgeflow.rules.spec import SdtSpec

__all__ = ["SdtRule"]


class _Sdt:
    __slots__ = ("has", "n", "sl", "su", "ta", "tp", "va", "vp")

    def __init__(self) -> None:
        self.has = False
        self.ta = 0
        self.va = 0.0
        self.tp = 0
        self.vp = 0.0
        self.su = 0.0
        self.sl = 0.0
        self.n = 0  # readings since the pivot that narrowed the doors


class SdtRule(PointRule):
    kind = "sdt"
    interpolation: ClassVar[Interpolation | None] = "linear"

    def __init__(
        self,
        table: SeriesTable,
        index: int = 0,
        *,
        comp_dev: float,
        comp_min: int = 0,
        comp_max: int | None = None,
        **policies: str,
    ) -> None:
        super().__init__(table, index, **policies)
        if not comp_dev >= 0:
            raise RuleError(f"sdt: comp_dev must be >= 0, not {comp_dev}")
        self.comp_dev = float(comp_dev)
        self.comp_min = int(comp_min)
        self.comp_max = comp_max

    @classmethod
    def from_spec(cls, spec: SdtSpec, table: SeriesTable, index: int = 0) -> SdtRule:
        return cls(
            table,
            index,
            comp_dev=spec.deviation,
            comp_min=spec.comp_min,
            comp_max=spec.comp_max,
            **policies(spec),
        )

    def _new_state(self) -> _Sdt:
        return _Sdt()

    def _feed(self, st: _Sdt, ts: list[int], vs: list[float], keys: list[int], out: Emit) -> None:
        e = self.comp_dev
        cmin = self.comp_min
        cmax = self.comp_max
        k = 0
        if not st.has:
            st.has = True
            st.ta = st.tp = ts[0]
            st.va = st.vp = vs[0]
            st.n = 0
            out.append((keys[0], ts[0], vs[0]))
            k = 1
        ta, va, tp, vp, su, sl, n = st.ta, st.va, st.tp, st.vp, st.su, st.sl, st.n
        for j in range(k, len(ts)):
            t = ts[j]
            v = vs[j]
            if cmin and t - ta < cmin:
                self.stats.dropped += 1
                continue
            dt = t - ta
            up = (v - va - e) / dt
            dn = (v - va + e) / dt
            if n == 0:
                su, sl, n = up, dn, 1
            else:
                nsu = up if up > su else su
                nsl = dn if dn < sl else sl
                if nsu > nsl or (cmax is not None and dt > cmax):
                    out.append((keys[j], tp, vp))
                    ta, va = tp, vp
                    dt = t - ta
                    su = (v - va - e) / dt
                    sl = (v - va + e) / dt
                    n = 1
                else:
                    su, sl = nsu, nsl
                    n += 1
            tp, vp = t, v
        st.ta, st.va, st.tp, st.vp, st.su, st.sl, st.n = ta, va, tp, vp, su, sl, n

    def _close(self, st: _Sdt, out: Emit, key: int, *, reset: bool = False) -> None:
        if st.has and st.n > 0:
            out.append((key, st.tp, st.vp))
            st.ta, st.va = st.tp, st.vp
            st.n = 0

    _row_fields = ("ta", "va", "tp", "vp", "su", "sl", "n")

    def _state_to_json(self, st: _Sdt) -> Any:
        if not st.has:
            return None
        return {"ta": st.ta, "va": st.va, "tp": st.tp, "vp": st.vp, "su": st.su, "sl": st.sl, "n": st.n}

    def _state_from_json(self, d: Any) -> _Sdt:
        st = _Sdt()
        if d is None:
            return st
        try:
            st.has = True
            st.ta, st.va, st.tp, st.vp = int(d["ta"]), float(d["va"]), int(d["tp"]), float(d["vp"])
            st.su, st.sl, st.n = float(d["su"]), float(d["sl"]), int(d["n"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleError(f"sdt snapshot state {d!r} is malformed: {exc}") from exc
        return st
