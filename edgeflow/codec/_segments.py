"""The grouped segment form of the ``compact`` encoding: Sim-Piece and Mix-Piece output, shipped as groups.

The segment rules (:mod:`edgeflow.rules.simpiece`) emit each segment as two ``linear`` points: its start
``(t0, b)`` and its end ``(t0_next - 1 ns, segment_value(b, a, end - t0))``. A series whose points have
that shape travels as its segments instead of its points::

    uint   segments
    uint   g: the greatest common divisor of the gaps between segment starts (ns)
    sint   first start (ns)
    uints  gaps between consecutive starts / g
    uint   last segment's end - its start (ns)
    byte   layout, then either the grouped layout:
      uint   distinct start values, then those values, ascending (the values column coder: short
             decimals on the bound's grid cost a byte or two)
      uint   distinct slopes, then those slopes, ascending (same coder)
      uints  per start value, how many slopes its segments use; then those slopes' indexes (a group:
             one b, one a)
      sints  each segment's start-value index, in time order, as the change from the segment before
      uints  each segment's slope, as an index into its start value's list
    or the column layout, for start values that seldom repeat (PMC-MR's constants as auto ships them):
      uint   distinct slopes, then those slopes, ascending
      values each segment's start value, in time order (the values column coder)
      uints  each segment's slope index

So a start value and a slope shared by many segments are shipped once; a segment costs its start gap,
the step of its start value and its slope's place in a short list, a byte each before compression. The
encoder writes the layout that compresses smaller (Mix-Piece's "cheapest of the forms"). The decoder rebuilds every point with the rule's own
expression (:func:`edgeflow.rules.simpiece.segment_value`), and the encoder uses the form for a series
only after decoding it back gives every point to the bit, and only when it is smaller than the series'
ordinary columns: any other series, or one that does not fit, goes as points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
import zstandard

from edgeflow.codec._columns import read_times, read_values, write_times, write_values
from edgeflow.codec._types import Interpolation
from edgeflow.codec._varint import Reader, Writer
from edgeflow.errors import CodecError
from edgeflow.model import ReadingBatch
from edgeflow.rules.simpiece import segment_value

__all__ = ["read_series", "segment_blocks", "write_series"]

_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]

_NS: Final = 1e9
_MAX_DIGITS: Final = 16
_EXACT: Final = 2.0**53
_RUN_POINTS: Final = 0
_L_GROUPED: Final = 0
_L_COLUMNS: Final = 1
_ZSTD: Final = zstandard.ZstdCompressor(level=3)
_RUN_SEGMENTS: Final = 1


def _slope_for(b: float, e: float, dt: int, used: list[float]) -> float | None:
    """A slope ``a`` with ``segment_value(b, a, dt) == e`` exactly: the shortest decimal that does, else
    one of ``used`` (the slopes of segments with the same start value), else the nearest floats."""
    if dt == 0:
        return 0.0 if e == b else None
    guess = (e - b) / (dt / _NS)
    if not math.isfinite(guess):
        return None
    for k in range(_MAX_DIGITS):
        s = 10.0**k
        if not abs(guess * s) < _EXACT:  # no digits left to round away
            break
        c = round(guess * s) / s
        if segment_value(b, c, dt) == e:
            return c
    for c in reversed(used):
        if segment_value(b, c, dt) == e:
            return c
    c = guess
    for _ in range(4):
        if segment_value(b, c, dt) == e:
            return c
        c = math.nextafter(c, math.inf if segment_value(b, c, dt) < e else -math.inf)
    return None


def _write_pairs(origins: _I64, values: _F64) -> bytes | None:
    """The segment form of segment pairs, or ``None`` if they are not."""
    n = len(origins)
    if n < 2 or n % 2:
        return None
    t = origins[0::2]
    x = origins[1::2]
    if not (bool((x >= t).all()) and bool((x[:-1] == t[1:] - 1).all())):
        return None
    bv = values[0::2]
    ev = values[1::2]
    if not (np.isfinite(bv).all() and np.isfinite(ev).all()):
        return None
    used: dict[float, list[float]] = {}
    slopes: list[float] = []
    for b, e, dt in zip(bv.tolist(), ev.tolist(), (x - t).tolist(), strict=True):
        mine = used.setdefault(b, [])
        a = _slope_for(b, e, dt, mine)
        if a is None:
            return None
        if not mine or mine[-1] != a:
            if a in mine:
                mine.remove(a)
            mine.append(a)
        slopes.append(a)
    ub, bi = np.unique(bv, return_inverse=True)
    ua, ai = np.unique(np.asarray(slopes, dtype=np.float64), return_inverse=True)
    per_b: list[list[int]] = [[] for _ in range(len(ub))]
    local: list[int] = []
    for j, k in zip(bi.tolist(), ai.tolist(), strict=True):
        mine_a = per_b[j]
        if k not in mine_a:
            mine_a.append(k)
        local.append(mine_a.index(k))
    w = Writer()
    m = len(t)
    w.uint(m)
    gaps = np.diff(t)
    g = int(np.gcd.reduce(gaps)) if len(gaps) else 1
    g = g or 1
    w.uint(g)
    w.sint(int(t[0]))
    w.uints((gaps // g).astype(np.uint64))
    w.uint(int(x[-1] - t[-1]))
    grouped = Writer()
    grouped.byte(_L_GROUPED)
    grouped.uint(len(ub))
    write_values(grouped, ub)
    grouped.uint(len(ua))
    write_values(grouped, ua)
    grouped.uints(np.asarray([len(lst) for lst in per_b], dtype=np.uint64))
    grouped.uints(np.asarray([k for lst in per_b for k in lst], dtype=np.uint64))
    grouped.sints(np.diff(bi.astype(np.int64), prepend=0).astype(np.int64))
    grouped.uints(np.asarray(local, dtype=np.uint64))
    columns = Writer()
    columns.byte(_L_COLUMNS)
    columns.uint(len(ua))
    write_values(columns, ua)
    write_values(columns, bv)
    columns.uints(ai.astype(np.uint64))
    # the message is zstd-compressed: judge the layouts by what they compress to
    tail = min(grouped.getvalue(), columns.getvalue(), key=lambda b: len(_ZSTD.compress(b)))
    return w.getvalue() + tail


def _read_pairs(r: Reader, limit: int) -> tuple[_I64, _F64]:
    """Segment pairs in segment form (at most ``limit`` points)."""
    m = r.count(r.remaining + 1)
    n = 2 * m
    if n > limit or m == 0:
        raise CodecError(f"segment form of {m} segments where {limit} points are left")
    g = r.uint()
    first = r.sint()
    gaps = r.uints(m - 1).astype(np.int64)
    end = r.uint()
    try:
        t = first + np.concatenate([[0], np.cumsum(gaps * g)]).astype(np.int64)
    except OverflowError as exc:
        raise CodecError(f"segment start times overflow: {exc}") from None
    if m > 1 and (gaps <= 0).any():
        raise CodecError("segment starts do not increase")
    layout = r.byte()
    if layout == _L_GROUPED:
        b, a = _read_grouped(r, m)
    elif layout == _L_COLUMNS:
        na = r.count(r.remaining + 1)
        ua = read_values(r, na)
        b = read_values(r, m)
        ai = r.uints(m).astype(np.int64)
        if na == 0 or (ai >= na).any():
            raise CodecError("segment slope index out of range")
        a = ua[ai]
    else:
        raise CodecError(f"unknown segment layout {layout}")
    x = np.empty(m, dtype=np.int64)
    x[:-1] = t[1:] - 1
    x[-1] = t[-1] + end
    with np.errstate(over="ignore", invalid="ignore"):  # the encoder checks its blocks; garbage stays garbage
        e = b + a * ((x - t) / _NS)
    origins = np.empty(n, dtype=np.int64)
    origins[0::2] = t
    origins[1::2] = x
    values = np.empty(n, dtype=np.float64)
    values[0::2] = b
    values[1::2] = e
    return origins, values


def _read_grouped(r: Reader, m: int) -> tuple[_F64, _F64]:
    """Start values and slopes of ``m`` segments in the grouped layout."""
    nb = r.count(r.remaining + 1)
    ub = read_values(r, nb)
    na = r.count(r.remaining + 1)
    ua = read_values(r, na)
    counts = r.uints(nb).astype(np.int64)
    if (counts > na).any() or int(counts.sum()) > r.remaining:
        raise CodecError("bad slope lists in segment form")
    flat = r.uints(int(counts.sum())).astype(np.int64)
    bi = np.cumsum(r.sints(m))
    li = r.uints(m).astype(np.int64)
    if (
        (flat >= na).any()
        or (bi < 0).any()
        or (bi >= nb).any()
        or (li >= counts[np.clip(bi, 0, nb - 1)]).any()
    ):
        raise CodecError("segment group index out of range")
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return ub[bi], ua[flat[offsets[bi] + li]]


def _pair_runs(t: _I64) -> list[tuple[int, int, bool]]:
    """The points split into runs ``(start, end, pairs?)``: maximal stretches of at least two pairs whose
    ends sit 1 ns before the next pair's start, and the points between them."""
    tl = t.tolist()
    n = len(tl)
    runs: list[tuple[int, int, bool]] = []
    plain = 0
    i = 0
    while i + 3 < n:
        if tl[i + 1] >= tl[i] and tl[i + 2] == tl[i + 1] + 1 and tl[i + 3] >= tl[i + 2]:
            j = i + 4
            while j + 1 < n and tl[j] == tl[j - 1] + 1 and tl[j + 1] >= tl[j]:
                j += 2
            if plain < i:
                runs.append((plain, i, False))
            runs.append((i, j, True))
            plain = i = j
            continue
        i += 1
    if plain < n:
        runs.append((plain, n, False))
    return runs


def write_series(w: Writer, origins: _I64, values: _F64) -> bool:
    """One series' points as runs, each as columns or in segment form (``False``, and nothing written,
    when no run takes the segment form)."""
    parts: list[tuple[int, int, bytes | None]] = []
    for a, b, pairs in _pair_runs(origins):
        block = _write_pairs(origins[a:b], values[a:b]) if pairs else None
        if parts and block is None and parts[-1][2] is None:
            parts[-1] = (parts[-1][0], b, None)
        else:
            parts.append((a, b, block))
    if all(block is None for _, _, block in parts):
        return False
    w.uint(len(parts))
    for a, b, block in parts:
        if block is None:
            w.byte(_RUN_POINTS)
            w.uint(b - a)
            write_times(w, origins[a:b])
            write_values(w, values[a:b])
        else:
            w.byte(_RUN_SEGMENTS)
            w.raw(block)
    return True


def read_series(r: Reader, n: int) -> tuple[_I64, _F64]:
    """The ``n`` points of one series written by :func:`write_series`."""
    runs = r.count(n)
    ts: list[_I64] = []
    vs: list[_F64] = []
    left = n
    for _ in range(runs):
        kind = r.byte()
        if kind == _RUN_POINTS:
            k = r.count(left)
            if k == 0:
                raise CodecError("empty run of points")
            ts.append(read_times(r, k))
            vs.append(read_values(r, k))
        elif kind == _RUN_SEGMENTS:
            t, v = _read_pairs(r, left)
            ts.append(t)
            vs.append(v)
        else:
            raise CodecError(f"unknown run kind {kind}")
        left -= len(ts[-1])
    if left:
        raise CodecError(f"runs hold {n - left} of {n} points")
    return np.concatenate(ts), np.concatenate(vs)


def segment_blocks(batch: ReadingBatch, interp: Mapping[int, Interpolation]) -> dict[int, bytes]:
    """The series of ``batch`` that travel smaller with runs in segment form, with their blocks:
    ``linear`` series with runs of segment pairs (a segment's end 1 ns before the next start) that decode
    back to every bit."""
    if len(batch) < 4 or batch.starts is not None or not bool((np.diff(batch.origins) == 1).any()):
        return {}
    objm = None if batch.objects is None else batch.object_mask()
    out: dict[int, bytes] = {}
    for sid in np.unique(batch.series).tolist():
        if interp.get(sid, "hold") != "linear":
            continue
        idx = np.flatnonzero(batch.series == sid)
        if objm is not None and objm[idx].any():
            continue
        t = batch.origins[idx]
        v = batch.values[idx]
        w = Writer()
        try:
            if not write_series(w, t, v):
                continue
            block = w.getvalue()
            back_t, back_v = read_series(Reader(block), len(t))
        except (ArithmeticError, CodecError):  # values the form cannot hold: the series goes as columns
            continue
        if not (np.array_equal(back_t, t) and np.array_equal(back_v.view(np.int64), v.view(np.int64))):
            continue
        plain = Writer()
        write_times(plain, t)
        write_values(plain, v)
        if len(block) < len(plain.getvalue()):
            out[sid] = block
    return out
