"""What the cloud rebuilds from shipped points: the decoder side of every reducing rule.

:func:`reconstruct` takes the points one rule emitted for **one series**, in the order they were shipped,
and returns the value the receiver sees at each requested time:

* ``hold``: the value of the last point at or before the time (deadband, on-change, PMC-MR). Before the
  first point: NaN.
* ``linear``: the straight line between the points on either side (swing, swinging door); exactly the
  point's value at a point's time. Before the first or after the last point: NaN (a compressor ships the
  open segment at flush).

Rules with ``backwards: reset`` restart a series when its time goes backwards, so the shipped points
form *runs* of increasing time, split where time strictly decreases; the requested times (the finite
readings the rule accepted, in arrival order) split the same way, and run *k* of times is rebuilt from
run *k* of points. When the points form one run, every time is looked up in it (``late`` and ``drop``
policies keep the points in one run).

NaN points (NaN readings a rule passed through) say "NaN at exactly this time": they take no part in the
interpolation, and a requested time equal to one gets NaN. Consecutive identical points (heartbeats
re-send the last point with its original origin) count once. Time differences are taken in int64
nanoseconds, so epoch-sized origins lose no precision.
"""

from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
import numpy.typing as npt

from edgeflow.model import ReadingBatch

__all__ = ["reconstruct", "series_points"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def series_points(batch: ReadingBatch, sid: int) -> tuple[I64, F64]:
    """The origins and numeric values of series ``sid`` in ``batch``, in batch order."""
    m = batch.series == sid
    return batch.origins[m], batch.values[m]


def _runs(t: I64) -> list[slice]:
    if len(t) == 0:
        return []
    cuts = (np.flatnonzero(t[1:] < t[:-1]) + 1).tolist()
    bounds = [0, *cuts, len(t)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def _one_run(times: I64, pt: I64, pv: F64, mode: str) -> F64:
    out = np.full(len(times), np.nan)
    if len(pt) == 0 or len(times) == 0:
        return out
    j = np.searchsorted(pt, times, side="right") - 1
    ok = j >= 0
    if mode == "hold":
        out[ok] = pv[j[ok]]
        return out
    jj = np.where(ok, j, 0)
    exact = ok & (pt[jj] == times)
    out[exact] = pv[jj[exact]]
    inner = ok & ~exact & (jj < len(pt) - 1)
    a = jj[inner]
    t0 = pt[a]
    dt = (pt[a + 1] - t0).astype(np.float64)
    frac = (times[inner] - t0).astype(np.float64) / dt
    out[inner] = pv[a] + (pv[a + 1] - pv[a]) * frac
    return out


def reconstruct(
    times: npt.ArrayLike,
    points_t: npt.ArrayLike,
    points_v: npt.ArrayLike,
    mode: Literal["hold", "linear"],
) -> F64:
    """The values the receiver rebuilds at ``times`` from one series' shipped points (see module doc)."""
    if mode not in ("hold", "linear"):
        raise ValueError(f"interpolation mode must be 'hold' or 'linear', not {mode!r}")
    tq = np.asarray(times, dtype=np.int64)
    pt = np.asarray(points_t, dtype=np.int64)
    pv = np.asarray(points_v, dtype=np.float64)
    if len(pt) != len(pv):
        raise ValueError("points_t and points_v must have the same length")
    nan_pts = np.isnan(pv)
    nan_times = pt[nan_pts]
    pt, pv = pt[~nan_pts], pv[~nan_pts]
    if len(pt) > 1:
        dup = np.zeros(len(pt), dtype=bool)
        dup[1:] = (pt[1:] == pt[:-1]) & (pv[1:] == pv[:-1])
        pt, pv = pt[~dup], pv[~dup]
    p_runs = _runs(pt)
    q_runs = _runs(tq)
    out = np.full(len(tq), np.nan)
    if len(p_runs) == 1:
        out = _one_run(tq, pt, pv, mode)
    elif len(p_runs) == len(q_runs):
        for pr, qr in zip(p_runs, q_runs, strict=True):
            out[qr] = _one_run(tq[qr], pt[pr], pv[pr], mode)
    elif p_runs:
        raise ValueError(
            f"the points form {len(p_runs)} runs of increasing time but the times form {len(q_runs)}: "
            "pass the times of the readings the rule accepted, in arrival order"
        )
    if len(nan_times):
        out[np.isin(tq, nan_times)] = np.nan
    return out
