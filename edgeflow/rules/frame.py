"""The per-series frame the stateful rules stand on (report by exception, the compressors, windows).

A rule keeps state per series and must see each series' readings in arrival order, with its declared
policies applied first. The frame does that once for all of them: it splits a batch by series, applies
the policies, counts what they did in the rule's :class:`~edgeflow.rules.base.RuleStats`, and hands the
rule only clean per-series runs.

Policies, in the order they are judged (the spec fields of :mod:`edgeflow.rules.spec`):

* ``non_numeric`` (rules that compute with numbers, ``numeric_only``): a reading that is not a number
  (:meth:`~edgeflow.model.ReadingBatch.numeric_mask`: strings, arrays, binary, objects, and Bools, which
  are states) is passed on unchanged, never coerced (``pass``), or discarded (``drop``). A rule that takes
  any value (on-change, minimum interval, heartbeat) gets such a reading in its run, as its Python value.
* ``nan``: NaN, and ±inf for rules that need ``finite`` values, is passed on unchanged or discarded; it
  takes no part in the rule's state either way.
* ``backwards``, judged on what is left, against the series' last accepted origin: a reading whose origin
  is not after it is ``late`` (routed to the late output), ``drop`` (discarded), ``reset`` (the rule ends
  the series' run, forgets its state and starts again from this reading) or ``accept`` (handed on in
  arrival order; the last accepted origin stays the newest). Always counted in ``backwards``. ``None``:
  the rule judges time itself (windows and their allowed lateness).

The rule gets ``feed(series id, origins, values, positions)`` for each run, in arrival order within the
series (``positions`` are the readings' indexes in the batch), and ``reset(series id, position, last
origin)`` between the run before a reset and the run it starts. A series whose readings are all clean
and in time order is one run sliced from the batch's sorted columns, with no Python work per reading:
that is what keeps the rules' own per-reading loops the only ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from edgeflow.errors import RuleError
from edgeflow.model import ReadingBatch
from edgeflow.rules.base import RuleStats

__all__ = [
    "Feed",
    "Policies",
    "Reset",
    "Routed",
    "SeriesFrame",
    "SeriesSplit",
    "increasing_after_first",
    "policies",
    "split_series",
]

Feed = Callable[[int, list[int], list[Any], list[int]], None]
"""``feed(series id, origins, values, batch positions)``: one clean run of one series."""

Reset = Callable[[int, int, int], None]
"""``reset(series id, batch position of the reading that resets, last accepted origin before it)``."""

_PASS_DROP = ("pass", "drop")
_BACKWARDS = ("late", "drop", "reset", "accept", None)


@dataclass
class SeriesSplit:
    """A batch's readings sorted by series (stable: arrival order within a series). Group ``g`` is
    ``sids[g]`` over sorted positions ``bounds[g]:bounds[g + 1]``; ``order`` maps them to batch positions."""

    order: npt.NDArray[np.intp]
    bounds: list[int]
    sids: list[int]

    @property
    def starts(self) -> npt.NDArray[np.intp]:
        return np.asarray(self.bounds[:-1], dtype=np.intp)

    def group_any(self, mask: npt.NDArray[np.bool_]) -> list[bool]:
        """For a mask over sorted positions: does each group have a True."""
        if len(mask) == 0:
            return []
        found: list[bool] = (np.add.reduceat(mask.astype(np.int32), self.starts) > 0).tolist()
        return found

    def positions(self, g: int) -> npt.NDArray[np.intp]:
        """Batch positions of group ``g``, in arrival order."""
        return self.order[self.bounds[g] : self.bounds[g + 1]]


def split_series(series: npt.NDArray[np.int32]) -> SeriesSplit:
    """Sort a batch's series column once, so per-series loops pay no numpy call per series."""
    n = len(series)
    if n == 0:
        return SeriesSplit(np.empty(0, dtype=np.intp), [0], [])
    first = int(series[0])
    if (series == first).all():
        return SeriesSplit(np.arange(n, dtype=np.intp), [0, n], [first])
    order = np.argsort(series, kind="stable")
    ss = series[order]
    cuts = np.flatnonzero(ss[1:] != ss[:-1]) + 1
    bounds = [0, *cuts.tolist(), n]
    return SeriesSplit(order, bounds, ss[bounds[:-1]].tolist())


def increasing_after_first(ts: npt.NDArray[np.int64], split: SeriesSplit) -> npt.NDArray[np.bool_]:
    """Over sorted positions: False where an origin is not after the one before it in the same series."""
    ok = np.ones(len(ts), dtype=bool)
    if len(ts) > 1:
        ok[1:] = ts[1:] > ts[:-1]
    ok[split.starts] = True
    return ok


class Policies(TypedDict, total=False):
    """The frame's policies as a rule's keyword arguments."""

    backwards: str
    nan: str
    non_numeric: str


def policies(spec: Any) -> Policies:
    """The frame policies a rule spec declares (``backwards``, ``nan``, ``non_numeric``; those it leaves
    out keep the rule's defaults), as keyword arguments for the rule."""
    out = Policies()
    if hasattr(spec, "backwards"):
        out["backwards"] = spec.backwards
    if hasattr(spec, "nan"):
        out["nan"] = spec.nan
    if hasattr(spec, "non_numeric"):
        out["non_numeric"] = spec.non_numeric
    return out


@dataclass
class Routed:
    """What the policies did with a batch, besides the runs they handed on: batch positions ``passed``
    on unchanged, and positions routed to the ``late`` output."""

    passed: list[int] = field(default_factory=list)
    late: list[int] = field(default_factory=list)

    def late_batch(self, batch: ReadingBatch) -> ReadingBatch | None:
        """The late readings of ``batch`` in batch order, or ``None``."""
        if not self.late:
            return None
        return batch.take(np.asarray(sorted(self.late), dtype=np.intp))


class SeriesFrame:
    """One rule's policies and its per-series last accepted origin (``last_t``, part of its snapshot)."""

    def __init__(
        self,
        stats: RuleStats,
        *,
        nan: str = "pass",
        non_numeric: str = "pass",
        backwards: str | None = "late",
        numeric_only: bool = True,
        finite: bool = True,
    ) -> None:
        kind = stats.type
        if nan not in _PASS_DROP:
            raise RuleError(f"{kind}: nan policy {nan!r} is not pass or drop")
        if non_numeric not in _PASS_DROP:
            raise RuleError(f"{kind}: non_numeric policy {non_numeric!r} is not pass or drop")
        if backwards not in _BACKWARDS:
            raise RuleError(f"{kind}: backwards policy {backwards!r} is not late, drop, reset or accept")
        self.stats = stats
        self.nan = nan
        self.non_numeric = non_numeric
        self.backwards = backwards
        self.numeric_only = numeric_only
        self.finite = finite
        self.last_t: dict[int, int] = {}

    def route(self, batch: ReadingBatch, feed: Feed, reset: Reset | None = None) -> Routed:
        """Apply the policies to ``batch`` series by series, calling ``feed`` (and ``reset``) as it goes."""
        routed = Routed()
        if len(batch) == 0:
            return routed
        split = split_series(batch.series)
        order = split.order
        ts_a = batch.origins[order]
        vs_a = batch.values[order]
        bad = ~np.isfinite(vs_a) if self.finite else np.isnan(vs_a)  # NaN (±inf) by the nan policy
        objects = batch.objects
        objm: npt.NDArray[np.bool_] | None = None
        if objects is not None:
            objm = batch.object_mask()[order]
            bad &= ~objm  # an object's NaN in the numeric column is no reading's value
        series_numeric = [True] * len(split.sids)
        if self.numeric_only:
            series_numeric = batch.table.numeric_series()[np.asarray(split.sids, dtype=np.intp)].tolist()
        dirty_mask = bad if objm is None or not self.numeric_only else bad | objm
        if self.backwards is not None:
            dirty_mask = dirty_mask | ~increasing_after_first(ts_a, split)
        dirty = split.group_any(dirty_mask)
        tl, vl, ol = ts_a.tolist(), vs_a.tolist(), order.tolist()
        objl: list[bool] | None = None
        if objects is not None and objm is not None:
            objl = objm.tolist()
            if not self.numeric_only:  # the rule takes any value: put the objects in the runs
                objs = objects[order].tolist()
                for k in np.flatnonzero(objm).tolist():
                    vl[k] = objs[k]
        badl: list[bool] | None = None
        bounds = split.bounds
        for g, sid in enumerate(split.sids):
            a, b = bounds[g], bounds[g + 1]
            last = self.last_t.get(sid)
            if (
                not dirty[g]
                and series_numeric[g]
                and (self.backwards is None or last is None or tl[a] > last)
            ):
                feed(sid, tl[a:b], vl[a:b], ol[a:b])
                if self.backwards is not None:
                    self.last_t[sid] = tl[b - 1]
                continue
            if badl is None:
                badl = bad.tolist()
            self._judge(sid, range(a, b), tl, vl, ol, badl, objl, series_numeric[g], routed, feed, reset)
        return routed

    def _judge(
        self,
        sid: int,
        ks: range,
        tl: list[int],
        vl: list[Any],
        ol: list[int],
        badl: list[bool],
        objl: list[bool] | None,
        numeric: bool,
        routed: Routed,
        feed: Feed,
        reset: Reset | None,
    ) -> None:
        """One series that needs the policies reading by reading; clean stretches go on as runs."""
        stats = self.stats
        numeric_only = self.numeric_only
        backwards = self.backwards
        last = self.last_t.get(sid)
        run_t: list[int] = []
        run_v: list[Any] = []
        run_k: list[int] = []
        for k in ks:
            if numeric_only and (not numeric or (objl is not None and objl[k])):
                stats.non_numeric += 1
                policy: str | None = self.non_numeric
            elif badl[k]:
                stats.nan += 1
                policy = self.nan
            else:
                policy = None
            if policy is not None:
                if policy == "pass":
                    routed.passed.append(ol[k])
                else:
                    stats.dropped += 1
                continue
            t = tl[k]
            if backwards is not None:
                if last is not None and t <= last:
                    stats.backwards += 1
                    if backwards == "late":
                        stats.late += 1
                        routed.late.append(ol[k])
                        continue
                    if backwards == "drop":
                        stats.dropped += 1
                        continue
                    if backwards == "reset":
                        if run_t:
                            feed(sid, run_t, run_v, run_k)
                            run_t, run_v, run_k = [], [], []
                        if reset is not None:
                            reset(sid, ol[k], last)
                        last = t
                    # accept: handed on as it is; the last accepted origin stays the newest
                else:
                    last = t
            run_t.append(t)
            run_v.append(vl[k])
            run_k.append(ol[k])
        if run_t:
            feed(sid, run_t, run_v, run_k)
        if backwards is not None and last is not None:
            self.last_t[sid] = last
