"""Incremental aggregates for windows: O(1) amortised per reading for count, sum, mean, min, max,
stddev, first and last, and percentiles from a mergeable log-bucket sketch with a stated relative error.

:class:`SlidingAggregate` holds the readings of one window in arrival order and supports adding at the
back and removing at the front: sums are kept relative to a reference value (so the variance does not
cancel) and recomputed from the buffer after as many removals as the buffer holds (so rounding does not
drift; amortised O(1)); min and max come from monotonic deques.

:class:`QuantileSketch` is DDSketch (Masson, Rim and Lee, VLDB 2019) with deletions: values fall into
logarithmic buckets ``γ^(i-1) < |v| ≤ γ^i``, ``γ = (1 + α) / (1 - α)``, so any quantile it returns is within
relative error ``α`` of a value of the window at that rank (``|q̂ - q| ≤ α·|q|``); two sketches merge by
adding their counts. Zero (and magnitudes below ``1e-300``) have their own bucket.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = ["QuantileSketch", "SlidingAggregate", "slide_many"]

_TINY: Final = 1e-300
_I64 = npt.NDArray[np.int64]


class QuantileSketch:
    """Relative-error quantiles with add, remove and merge (see the module docstring)."""

    __slots__ = ("_inv_log_gamma", "_neg", "_pos", "_zero", "alpha", "count", "gamma")

    def __init__(self, alpha: float = 0.01) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"relative accuracy must be in (0, 1), not {alpha}")
        self.alpha = alpha
        self.gamma = (1 + alpha) / (1 - alpha)
        self._inv_log_gamma = 1.0 / math.log(self.gamma)
        self._pos: dict[int, int] = {}
        self._neg: dict[int, int] = {}
        self._zero = 0
        self.count = 0

    def _key(self, m: float) -> int:
        return math.ceil(math.log(m) * self._inv_log_gamma)

    def add(self, v: float, n: int = 1) -> None:
        self.count += n
        if v > _TINY:
            k = self._key(v)
            self._pos[k] = self._pos.get(k, 0) + n
        elif v < -_TINY:
            k = self._key(-v)
            self._neg[k] = self._neg.get(k, 0) + n
        else:
            self._zero += n

    def remove(self, v: float) -> None:
        """Take out one value that was added."""
        self.count -= 1
        if v > _TINY:
            b, k = self._pos, self._key(v)
        elif v < -_TINY:
            b, k = self._neg, self._key(-v)
        else:
            self._zero -= 1
            return
        c = b[k] - 1
        if c:
            b[k] = c
        else:
            del b[k]

    def merge(self, other: QuantileSketch) -> None:
        if other.gamma != self.gamma:
            raise ValueError("sketches of different accuracy do not merge")
        for k, c in other._pos.items():
            self._pos[k] = self._pos.get(k, 0) + c
        for k, c in other._neg.items():
            self._neg[k] = self._neg.get(k, 0) + c
        self._zero += other._zero
        self.count += other.count

    def _value(self, k: int) -> float:
        # the point of bucket k whose relative distance to both ends is alpha
        return 2 * self.gamma**k / (self.gamma + 1)

    def quantile(self, q: float) -> float:
        """The value at quantile ``q`` (0..1), rank ``q·(count-1)`` rounded down; NaN when empty."""
        if self.count <= 0:
            return math.nan
        rank = int(q * (self.count - 1))
        seen = 0
        for k in sorted(self._neg, reverse=True):
            seen += self._neg[k]
            if seen > rank:
                return -self._value(k)
        seen += self._zero
        if seen > rank:
            return 0.0
        for k in sorted(self._pos):
            seen += self._pos[k]
            if seen > rank:
                return self._value(k)
        return self._value(max(self._pos)) if self._pos else 0.0


class SlidingAggregate:
    """The readings of one window, added at the back, removed at the front, with O(1) aggregates."""

    __slots__ = (
        "_maxq",
        "_minq",
        "_n_removed",
        "_pending",
        "_ref",
        "_s1",
        "_s2",
        "head",
        "sketch",
        "ts",
        "vs",
    )

    def __init__(self, sketch_alpha: float | None = None) -> None:
        self.ts: deque[int] = deque()
        self.vs: deque[float] = deque()
        self._minq: deque[tuple[int, float]] = deque()  # (serial, value), values increasing
        self._maxq: deque[tuple[int, float]] = deque()  # values decreasing
        self.head = 0  # serial number of the oldest reading held
        self._ref = 0.0
        self._s1 = 0.0  # sum of (v - ref)
        self._s2 = 0.0  # sum of (v - ref)^2
        self._n_removed = 0
        self.sketch = QuantileSketch(sketch_alpha) if sketch_alpha is not None else None
        # what slide_many left, as arrays, until a reading-by-reading call needs the deques
        self._pending: tuple[_I64, npt.NDArray[np.float64], int] | None = None

    def __len__(self) -> int:
        if self._pending is not None:
            return len(self._pending[0])
        return len(self.vs)

    def arrays(self) -> tuple[_I64, npt.NDArray[np.float64]]:
        """The held readings as arrays (times, values)."""
        if self._pending is not None:
            return self._pending[0], self._pending[1]
        n = len(self.vs)
        return np.fromiter(self.ts, np.int64, n), np.fromiter(self.vs, np.float64, n)

    def sync(self) -> None:
        """Make the deques hold what :func:`slide_many` left as arrays."""
        if self._pending is not None:
            ts, vs, head = self._pending
            self._pending = None
            self.reset(ts, vs, head=head)

    def add(self, t: int, v: float) -> None:
        if self._pending is not None:
            self.sync()
        if not self.vs:
            self._ref = v
            self._s1 = self._s2 = 0.0
        serial = self.head + len(self.vs)
        self.ts.append(t)
        self.vs.append(v)
        d = v - self._ref
        self._s1 += d
        self._s2 += d * d
        q = self._minq
        while q and q[-1][1] >= v:
            q.pop()
        q.append((serial, v))
        q = self._maxq
        while q and q[-1][1] <= v:
            q.pop()
        q.append((serial, v))
        if self.sketch is not None:
            self.sketch.add(v)

    def pop(self) -> None:
        """Remove the oldest reading."""
        if self._pending is not None:
            self.sync()
        self.ts.popleft()
        v = self.vs.popleft()
        serial = self.head
        self.head += 1
        if self._minq[0][0] == serial:
            self._minq.popleft()
        if self._maxq[0][0] == serial:
            self._maxq.popleft()
        if self.sketch is not None:
            self.sketch.remove(v)
        d = v - self._ref
        self._s1 -= d
        self._s2 -= d * d
        self._n_removed += 1
        if self._n_removed >= len(self.vs):
            self._resum()

    def reset(self, ts: _I64, vs: npt.NDArray[np.float64], *, head: int) -> None:
        """Hold exactly ``ts``/``vs`` (in order), numbered from ``head``: what adding them one by one and
        removing the older ones would leave. Vectorised (no sketch)."""
        self.ts = deque(ts.tolist())
        self.vs = deque(vs.tolist())
        self.head = head
        self._n_removed = 0
        n = len(vs)
        if n:
            self._ref = float(vs[0])
            d = vs - self._ref
            self._s1 = float(d.sum())
            self._s2 = float((d * d).sum())
            serial = np.arange(head, head + n)
            sm = np.minimum.accumulate(vs[::-1])[::-1]
            keep = np.ones(n, dtype=bool)
            keep[:-1] = vs[:-1] < sm[1:]
            self._minq = deque(zip(serial[keep].tolist(), vs[keep].tolist(), strict=True))
            sx = np.maximum.accumulate(vs[::-1])[::-1]
            keep = np.ones(n, dtype=bool)
            keep[:-1] = vs[:-1] > sx[1:]
            self._maxq = deque(zip(serial[keep].tolist(), vs[keep].tolist(), strict=True))
        else:
            self._s1 = self._s2 = 0.0
            self._minq = deque()
            self._maxq = deque()

    def _resum(self) -> None:
        self._n_removed = 0
        if not self.vs:
            self._s1 = self._s2 = 0.0
            return
        ref = self.vs[0]
        s1 = s2 = 0.0
        for v in self.vs:
            d = v - ref
            s1 += d
            s2 += d * d
        self._ref, self._s1, self._s2 = ref, s1, s2

    def value(self, agg: str) -> float:
        """One aggregate of what is held (non-empty)."""
        if self._pending is not None:
            self.sync()
        n = len(self.vs)
        if agg == "count":
            return float(n)
        if agg == "mean":
            return self._ref + self._s1 / n
        if agg == "min":
            return self._minq[0][1]
        if agg == "max":
            return self._maxq[0][1]
        if agg == "sum":
            return self._ref * n + self._s1
        if agg == "stddev":
            m = self._s1 / n
            return math.sqrt(max(0.0, self._s2 / n - m * m))
        if agg == "first":
            return self.vs[0]
        if agg == "last":
            return self.vs[-1]
        raise ValueError(agg)


def _range_extreme(v: npt.NDArray[np.float64], lo: _I64, hi: _I64, op: Any) -> npt.NDArray[np.float64]:
    """``op`` (np.minimum or np.maximum) of ``v[lo[i]:hi[i] + 1]`` for every i, by a sparse table."""
    n = len(v)
    length = hi - lo + 1
    k = np.zeros(len(lo), dtype=np.int64)
    if len(lo):
        k = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
    levels = [v]
    span = 1
    while span * 2 <= (int(length.max()) if len(length) else 1):
        prev = levels[-1]
        levels.append(op(prev[: n - 2 * span + 1], prev[span : n - span + 1]))
        span *= 2
    out = np.empty(len(lo), dtype=np.float64)
    for lvl in np.unique(k).tolist():
        m = k == lvl
        tab = levels[lvl]
        out[m] = op(tab[lo[m]], tab[hi[m] - (1 << lvl) + 1])
    return out


def slide_many(
    agg: SlidingAggregate,
    ts: _I64,
    vs: npt.NDArray[np.float64],
    size: int,
    max_readings: int,
    aggs: list[str],
) -> tuple[dict[str, npt.NDArray[np.float64]], int]:
    """Add many in-order readings to ``agg`` at once, vectorised: one result per reading per aggregate
    (percentiles excluded), over ``(t - size, t]`` and at most ``max_readings`` readings. Returns the
    results and how many readings left early because of ``max_readings``. Leaves ``agg`` holding the last
    window, as if every reading had been added one by one."""
    w = len(agg)
    if agg.sketch is not None:
        raise ValueError("slide_many does not keep a sketch")
    if w:
        held_t, held_v = agg.arrays()
        T = np.concatenate([held_t, ts])
        V = np.concatenate([held_v, vs])
    else:
        T, V = ts, vs
    b = len(ts)
    idx = np.arange(w, w + b, dtype=np.int64)
    lt = np.searchsorted(T, ts - size, side="right").astype(np.int64)
    lo = np.maximum(lt, idx - max_readings + 1)
    lo = np.maximum.accumulate(np.maximum(lo, 0))
    prev = np.concatenate([[0], lo[:-1]]) if b else lo
    evicted = int(np.maximum(0, lo - np.maximum(prev, lt)).sum())
    ref = float(V[0]) if len(V) else 0.0
    d = V - ref
    p1 = np.concatenate([[0.0], np.cumsum(d)])
    p2 = np.concatenate([[0.0], np.cumsum(d * d)])
    n = (idx - lo + 1).astype(np.float64)
    s1 = p1[idx + 1] - p1[lo]
    out: dict[str, npt.NDArray[np.float64]] = {}
    for a in aggs:
        if a == "count":
            out[a] = n
        elif a == "sum":
            out[a] = ref * n + s1
        elif a == "mean":
            out[a] = ref + s1 / n
        elif a == "stddev":
            s2 = p2[idx + 1] - p2[lo]
            m = s1 / n
            out[a] = np.sqrt(np.maximum(0.0, s2 / n - m * m))
        elif a == "min":
            out[a] = _range_extreme(V, lo, idx, np.minimum)
        elif a == "max":
            out[a] = _range_extreme(V, lo, idx, np.maximum)
        elif a == "first":
            out[a] = V[lo]
        elif a == "last":
            out[a] = V[idx]
        else:
            raise ValueError(a)
    # leave agg holding the last window
    start = int(lo[-1]) if b else 0
    head = agg._pending[2] if agg._pending is not None else agg.head
    agg._pending = (T[start:].copy(), V[start:].copy(), head + start)
    return out, evicted
