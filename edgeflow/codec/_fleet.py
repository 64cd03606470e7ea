"""Version 2 of the ``compact`` encoding: a per-stream series table referenced by hash, and every column
coded for the whole message at once (no per-series Python work), for fleets of many small series.

Wire layout (version 2)::

    magic    b"EFC" + version byte 0x02
    flags    1 byte: bit 0 alarm, bit 1 body is a zstd frame, bit 2 the body starts with the stream's
             table, bit 3 the body starts with a table of just this message's series (no hash), bit 4
             first values chained per digit count (see values), bit 5 the table's string indexes are
             written column by column (both always set by this encoder), bit 6 the table positions
             ascend (see index)
    stream   varint length + UTF-8 stream id
    seq      varint sequence number
    table    8 bytes (not with bit 3): BLAKE2b-64 of the stream's series table's bytes (below)
    body     (zstd frame of):
             [table]   varint string count, strings (varint length + UTF-8); varint series count; the
                       five string indexes of every series (device, resource, profile, units, source) —
                       with flag bit 5 column by column, each column as zigzag varint deltas; without
                       it row by row, plain varints —; then a value-type byte per series. Series are sorted by (device, resource), so the table of a given
                       set of series is the same bytes, and has the same hash, in every process.
             m         varint: series in this message
             index     m varints: table positions, delta-coded (series in the order of their ids); with
                       flag bit 6 (positions ascend) the first as is and every further delta minus 1,
                       else zigzag
             flags     m bytes: bit 0 linear
             counts    m varints: points per series
             digits    m bytes: decimal digits k of the series' values (0..15), or 255: raw float64
             times     varint unit, zigzag varint base, then one zigzag varint per point, series by
                       series: the first point's (origin - base) / unit, the second's delta, then
                       delta-of-deltas
             values    zigzag varints, one per point of a decimal series: the first ``v · 10^k`` (as the
                       delta from the previous decimal series' first value with the same k — flag bit 4;
                       without it, from the previous decimal series' first value), then deltas; then 8
                       bytes per point of a raw series

**Which table.** A message of many series (at least ``table_min_series``, a fleet's) or of series with
few points each (fewer than 4 on average: a per-device topic's message) refers to the stream's table,
where the names would cost more than the values. Any other message names its own series (bit 3): it
decodes on its own, like version 1.

**The stream table.** The encoder keeps every series it has shipped; a message names its series by position in
that table and carries the table's hash. The table itself travels inside a message (flag bit 2) when the
stream starts, when a series new to the table appears, and at least every ``table_interval`` seconds.
A receiver keeps tables by hash (:class:`SeriesTables`), so a message decodes if *any* message with that
table reached it, earlier or later: when the outbox dropped the message that carried the table, the
receiver holds what refers to it (bounded, counted) until the table comes round again; when the edge
restarts, the sorted table of the same devices has the same hash, so messages committed before the
restart decode with the table sent after it.

Batches this version does not cover (non-numeric readings, window starts, a lossy ``quantum``, origins
more than 2^61 ns apart) are written in version 1, which names its series in every message.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt

from edgeflow.codec._types import DecodedBatch, DecodedSeries, Interpolation
from edgeflow.codec._varint import Reader, Writer
from edgeflow.errors import CodecError
from edgeflow.model import ReadingBatch, SeriesInfo, ValueType

__all__ = ["SeriesTables", "TableEncoder", "decode_body_v2", "encode_body_v2"]

_VALUE_TYPES: Final = list(ValueType)
_VT_CODE: Final = {vt: i for i, vt in enumerate(_VALUE_TYPES)}
_RAW: Final = 255
_MAX_DIGITS: Final = 15
_EXACT: Final = float(2**53)
_SAFE: Final = 2**61
_POW10: Final = 10.0 ** np.arange(_MAX_DIGITS + 1)

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]


def _key(info: SeriesInfo) -> tuple[str, str]:
    return (info.device, info.resource)


def table_bytes(infos: list[SeriesInfo]) -> bytes:
    """The canonical bytes of a table of ``infos`` (already sorted by device, resource): the string
    indexes column by column, each column delta-coded (zigzag varints), so the device column of a sorted
    table is runs of 0 and 1 and the resource column repeats — a fifth of the row-by-row layout's size
    after zstd."""
    strings: dict[str, int] = {}
    rows = np.empty((len(infos), 5), dtype=np.int64)
    codes = bytearray()
    for i, info in enumerate(infos):
        for j, name in enumerate((info.device, info.resource, info.profile, info.units, info.source)):
            rows[i, j] = strings.setdefault(name, len(strings))
        codes.append(_VT_CODE[info.value_type])
    w = Writer()
    w.uint(len(strings))
    for s in strings:
        w.text(s)
    w.uint(len(infos))
    cols = rows.T.copy()
    cols[:, 1:] -= rows.T[:, :-1]
    w.uints(_zz(cols.ravel()))
    w.raw(bytes(codes))
    return w.getvalue()


def read_table(r: Reader, *, by_columns: bool = True) -> list[SeriesInfo]:
    """A table as :func:`table_bytes` writes it; ``by_columns=False``: the row-by-row layout of version 2
    messages without flag bit 5 (earlier edges)."""
    n_str = r.count(r.remaining)
    strings = [r.text() for _ in range(n_str)]
    n = r.count(r.remaining // 6)
    rows: npt.NDArray[np.int64] | npt.NDArray[np.uint64]
    if by_columns:
        with np.errstate(over="ignore"):
            rows = np.cumsum(r.sints(5 * n).reshape(5, n), axis=1).T if n else np.empty((0, 5), np.int64)
        if n and int(rows.min()) < 0:
            raise CodecError("series table string index out of range")
    else:
        rows = r.uints(5 * n).reshape(n, 5) if n else np.empty((0, 5), dtype=np.uint64)
    if n and int(rows.max()) >= n_str:
        raise CodecError("series table string index out of range")
    codes = r.take(n)
    out: list[SeriesInfo] = []
    for row, code in zip(rows.tolist(), codes, strict=True):
        if code >= len(_VALUE_TYPES):
            raise CodecError(f"unknown value type code {code}")
        d, res, prof, units, src = (strings[i] for i in row)
        out.append(SeriesInfo(d, res, prof, _VALUE_TYPES[code], units, src))
    return out


def table_hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


class TableEncoder:
    """The encoder side of the series table: table positions of the series of a batch, the table's
    bytes and hash, and when the table must travel."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._infos: dict[tuple[str, str], SeriesInfo] = {}
        self._where: dict[tuple[str, str], int] = {}  # table position of each series
        self._pos_of_sid = np.full(0, -1, dtype=np.int64)
        self._bytes = b""
        self._hash = b""
        self._sent_at: float | None = None
        self._table_id: int | None = None

    def positions(self, batch: ReadingBatch, sids: _I64) -> _I64:
        """Table positions of the (distinct) series ids ``sids``; adds new series to the table."""
        table = batch.table
        if id(table) != self._table_id:
            self._table_id = id(table)
            self._pos_of_sid = np.full(0, -1, dtype=np.int64)
        lut = self._pos_of_sid
        if len(lut) <= int(sids.max()):
            lut = np.concatenate([lut, np.full(len(table) - len(lut), -1, dtype=np.int64)])
            self._pos_of_sid = lut
        pos = lut[sids]
        missing = sids[pos < 0]
        if len(missing):
            grew = False
            for sid in missing.tolist():
                info = table.info(sid)
                if _key(info) not in self._infos:
                    self._infos[_key(info)] = info
                    grew = True
            if grew or not self._bytes:
                ordered = sorted(self._infos)
                self._bytes = table_bytes([self._infos[k] for k in ordered])
                self._hash = table_hash(self._bytes)
                self._sent_at = None
                where = self._where = {k: i for i, k in enumerate(ordered)}
                lut[:] = -1
                for sid in range(len(lut)):
                    if sid < len(table):
                        i = where.get(_key(table.info(sid)))
                        if i is not None:
                            lut[sid] = i
            else:
                for sid in missing.tolist():
                    lut[sid] = self._where[_key(table.info(sid))]
            pos = lut[sids]
        return pos

    def take(self) -> tuple[bytes, bytes | None]:
        """(hash, table bytes if this message must carry the table else None)."""
        now = time.monotonic()
        if self._sent_at is None or now - self._sent_at >= self.interval:
            self._sent_at = now
            return self._hash, self._bytes
        return self._hash, None

    def resend(self) -> None:
        """The next message carries the table (a commit failed and the one that carried it is gone)."""
        self._sent_at = None


def encodable_v2(batch: ReadingBatch, quantum: object) -> bool:
    if quantum is not None or batch.starts is not None or len(batch) == 0:
        return False
    if batch.objects is not None and batch.object_mask().any():
        return False
    o = batch.origins
    return int(o.max()) - int(o.min()) < _SAFE


def _zz(a: _I64) -> npt.NDArray[np.uint64]:
    return ((a << np.int64(1)) ^ (a >> np.int64(63))).view(np.uint64)


def encode_body_v2(
    batch: ReadingBatch, tables: TableEncoder | None, interp: Mapping[int, Interpolation]
) -> tuple[bytes, bytes, bool, bool]:
    """(table hash, body, whether the body carries the table, whether the table positions ascend: flag
    bit 6). ``tables`` None: the message names its own series (a table of just them, inline, no hash)."""
    order = np.argsort(batch.series, kind="stable")
    ser = batch.series[order].astype(np.int64)
    n = len(ser)
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(ser[1:], ser[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    sids = ser[starts]
    counts = np.diff(np.append(starts, n))
    w = Writer()
    if tables is None:
        infos = [batch.table.info(sid) for sid in sids.tolist()]
        ordered = sorted(range(len(infos)), key=lambda i: _key(infos[i]))
        pos = np.empty(len(infos), dtype=np.int64)
        pos[np.asarray(ordered, dtype=np.int64)] = np.arange(len(infos))
        w.raw(table_bytes([infos[i] for i in ordered]))
        thash, tbytes = b"", None
    else:
        pos = tables.positions(batch, sids)
        thash, tbytes = tables.take()
        if tbytes is not None:
            w.raw(tbytes)
    seg = np.repeat(np.arange(len(starts)), counts)  # series number of every point
    origins = batch.origins[order]
    values = batch.values[order]

    m = len(sids)
    w.uint(m)
    dpos = _delta(pos)
    ascending = m > 1 and int(dpos[1:].min()) >= 1  # series ids in table order (a fleet polled by name)
    if ascending:
        dpos[1:] -= 1
        w.uints(dpos.astype(np.uint64))
    else:
        w.uints(_zz(dpos))
    flags = np.zeros(m, dtype=np.uint8)
    if interp:
        for i, sid in enumerate(sids.tolist()):
            if interp.get(sid, "hold") == "linear":
                flags[i] = 1
    w.raw(flags.tobytes())
    w.uints(counts.astype(np.uint64))

    # -- values: per-series decimal digits, all series at once
    v = values
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(v) & ~((v == 0) & np.signbit(v))
        digits = np.full(m, _RAW, dtype=np.uint8)
        undecided = np.ones(m, dtype=bool)
        bad_series = np.logical_and.reduceat(finite, starts) if n else undecided
        undecided &= bad_series
        ints = np.zeros(n, dtype=np.float64)
        for k in range(_MAX_DIGITS + 1):
            if not undecided.any():
                break
            pts = undecided[seg]
            vk = v[pts]
            scale = _POW10[k]
            ik = np.rint(vk * scale)
            ok = (np.abs(ik) < _EXACT) & (ik / scale == vk)
            okfull = np.ones(n, dtype=bool)
            okfull[pts] = ok
            all_ok = np.logical_and.reduceat(okfull, starts) & undecided
            if all_ok.any():
                digits[all_ok] = k
                sel = all_ok[seg]
                ints[sel] = np.rint(v[sel] * scale)
                undecided &= ~all_ok
    w.raw(digits.tobytes())

    # -- times
    base = int(origins.min())
    rel = origins - base
    unit = int(np.gcd.reduce(rel)) or 1
    s = rel // unit
    d = np.empty(n, dtype=np.int64)
    d[0] = s[0]
    d[1:] = s[1:] - s[:-1]
    d[first] = s[first]
    col = d.copy()
    second = np.zeros(n, dtype=bool)
    second[1:] = first[:-1] & ~first[1:]
    rest = ~first & ~second
    rest_idx = np.flatnonzero(rest)
    col[rest_idx] = d[rest_idx] - d[rest_idx - 1]
    # first points: delta from the previous series' first point (a fleet's devices are polled in the
    # order of their names, so neighbours in the table have neighbouring origins)
    col[starts] = _delta(s[starts])
    w.uint(unit)
    w.sint(base)
    w.uints(_zz(col))

    # -- values
    dec = digits[seg] != _RAW
    if dec.any():
        iv = ints[dec].astype(np.int64)
        fd = first[dec]
        dv = np.empty(len(iv), dtype=np.int64)
        dv[0] = iv[0]
        dv[1:] = iv[1:] - iv[:-1]
        fi = np.flatnonzero(fd)
        dv[fi] = _chain_by_digits(iv[fi], digits[digits != _RAW])
        w.uints(_zz(dv))
    raw = ~dec
    if raw.any():
        w.raw(v[raw].astype("<f8").tobytes())
    return thash, w.getvalue(), tbytes is not None, ascending


def _delta(x: _I64) -> _I64:
    """``x[0]``, then the differences of neighbours (``np.diff`` with ``prepend=0``, without its copies)."""
    d = np.empty_like(x)
    if len(x):
        d[0] = x[0]
        np.subtract(x[1:], x[:-1], out=d[1:])
    return d


def _chain_by_digits(firsts: _I64, k: npt.NDArray[np.uint8]) -> _I64:
    """The first values of the decimal series (``v · 10^k`` as integers, in series order), each coded as
    the delta from the previous first value *with the same k*: series of one digit count are neighbours in
    scale, where a delta across digit counts (52 next to 49.8 as 498) is as large as the values."""
    if len(k) == 0 or int(k.min()) == int(k.max()):  # one digit count (a small message's usual case)
        return _delta(firsts)
    order = np.argsort(k, kind="stable")
    x = firsts[order]
    d = _delta(x)
    kk = k[order]
    new = np.ones(len(kk), dtype=bool)
    new[1:] = kk[1:] != kk[:-1]
    d[new] = x[new]
    out = np.empty_like(d)
    out[order] = d
    return out


def _unchain_by_digits(d: _I64, k: npt.NDArray[np.uint8]) -> _I64:
    """Inverse of :func:`_chain_by_digits`."""
    order = np.argsort(k, kind="stable")
    kk = k[order]
    starts = np.flatnonzero(np.concatenate([[True], kk[1:] != kk[:-1]])) if len(kk) else np.empty(0, np.int64)
    with np.errstate(over="ignore"):
        x = _segmented_cumsum(d[order], starts.astype(np.int64), first_is_value=False)
    out = np.empty_like(x)
    out[order] = x
    return out


class SeriesTables:
    """Series tables a decoder has seen, by hash (the ``max_tables`` most recently used: one or a few per
    edge node, so a receiver of many nodes keeps each node's)."""

    def __init__(self, max_tables: int = 1024) -> None:
        self.max_tables = max_tables
        self._tables: OrderedDict[bytes, tuple[list[SeriesInfo], bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, h: bytes) -> list[SeriesInfo] | None:
        with self._lock:
            t = self._tables.get(h)
            if t is not None:
                self._tables.move_to_end(h)
            return None if t is None else t[0]

    def data(self, h: bytes) -> bytes | None:
        """The table as it travelled, behind a layout byte (1: row by row, 2: by columns) — what a
        receiver shares with its group through its sink, and :meth:`add` takes back."""
        with self._lock:
            t = self._tables.get(h)
            return None if t is None or not t[1] else t[1]

    def put(self, h: bytes, infos: list[SeriesInfo], data: bytes = b"") -> None:
        with self._lock:
            self._tables[h] = (infos, data)
            self._tables.move_to_end(h)
            while len(self._tables) > self.max_tables:
                self._tables.popitem(last=False)

    def add(self, data: bytes) -> bytes:
        """Learn a table from what :meth:`data` gave (e.g. read back from a shared store); returns its
        hash. Raises :class:`CodecError` if it is not a table."""
        if not data or data[0] not in (1, 2):
            raise CodecError("not a series table (unknown layout byte)")
        r = Reader(data[1:])
        infos = read_table(r, by_columns=data[0] == 2)
        if not r.at_end():
            raise CodecError(f"{r.remaining} trailing bytes after a series table")
        h = table_hash(data[1:])
        self.put(h, infos, data)
        return h

    def __contains__(self, h: bytes) -> bool:
        with self._lock:
            return h in self._tables


class MissingTable(CodecError):
    """A version-2 message names a series table this decoder has not seen (yet)."""

    def __init__(self, table: bytes) -> None:
        super().__init__(f"compact message refers to series table {table.hex()}, not seen yet")
        self.table = table


def decode_body_v2(
    r: Reader,
    stream_id: str,
    seq: int,
    alarm: bool,
    thash: bytes,
    has_table: bool,
    tables: SeriesTables,
    *,
    local: bool = False,
    chained: bool = False,
    by_columns: bool = False,
    ascending: bool = False,
) -> DecodedBatch:
    if local:
        infos = read_table(r, by_columns=by_columns)
    elif has_table:
        start = r.pos
        infos = read_table(r, by_columns=by_columns)
        data = r.span(start, r.pos)
        if table_hash(data) != thash:
            raise CodecError("series table does not match its hash")
        tables.put(thash, infos, bytes((2 if by_columns else 1,)) + data)
    else:
        got = tables.get(thash)
        if got is None:
            raise MissingTable(thash)
        infos = got
    m = r.count(r.remaining // 4)
    if ascending:
        with np.errstate(over="ignore"):
            dpos = r.uints(m).astype(np.int64)
            dpos[1:] += 1
            pos = np.cumsum(dpos)
    else:
        pos = np.cumsum(r.sints(m))
    if m and (int(pos.max()) >= len(infos) or int(pos.min()) < 0 or len(np.unique(pos)) != m):
        raise CodecError("series table position out of range")
    flags = np.frombuffer(r.take(m), dtype=np.uint8)
    if (flags & ~np.uint8(1)).any():
        raise CodecError("unknown series flags")
    counts = r.uints(m).astype(np.int64)
    if m and int(counts.min()) < 1:
        raise CodecError("a series without points")
    n = int(counts.sum())
    if n > r.remaining:
        raise CodecError("more points than bytes")
    digits = np.frombuffer(r.take(m), dtype=np.uint8)
    if ((digits > _MAX_DIGITS) & (digits != _RAW)).any():
        raise CodecError("bad decimal digit count")
    unit = r.uint()
    if unit == 0 or unit >= 2**63:
        raise CodecError(f"bad timestamp unit {unit}")
    base = r.sint()
    col = r.sints(n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    with np.errstate(over="ignore"):
        col[starts] = np.cumsum(col[starts])
    seg = np.repeat(np.arange(m), counts)
    with np.errstate(over="ignore"):
        # per series: s0, d1, dod2.. → cumulative sums restarted at every series start
        d = _segmented_cumsum(col, starts, first_is_value=True)
        s = _segmented_cumsum(d, starts, first_is_value=False)
        origins = base + s * np.int64(unit)
    pdig = digits[seg]
    dec = pdig != _RAW
    values = np.empty(n, dtype=np.float64)
    if dec.any():
        nd = int(dec.sum())
        dv = r.sints(nd)
        dstarts = np.flatnonzero(np.isin(np.flatnonzero(dec), starts))
        with np.errstate(over="ignore"):
            if chained:
                dv[dstarts] = _unchain_by_digits(dv[dstarts], digits[digits != _RAW])
            else:  # written before the chains (version 2 without flag bit 4): one chain
                dv[dstarts] = np.cumsum(dv[dstarts])
            iv = _segmented_cumsum(dv, dstarts, first_is_value=False)
        values[dec] = iv.astype(np.float64) / _POW10[pdig[dec]]
    nr = n - int(dec.sum())
    if nr:
        values[~dec] = np.frombuffer(r.take(8 * nr), dtype="<f8")
    if not r.at_end():
        raise CodecError(f"{r.remaining} trailing bytes after the columns")
    ends = starts + counts
    series = tuple(
        DecodedSeries(
            infos[p],
            "linear" if f & 1 else "hold",
            origins[a:b],
            values[a:b],
        )
        for p, f, a, b in zip(pos.tolist(), flags.tolist(), starts.tolist(), ends.tolist(), strict=True)
    )
    return DecodedBatch(stream_id, seq, "compact", alarm, series)


def _segmented_cumsum(a: _I64, starts: _I64, *, first_is_value: bool) -> _I64:
    """Cumulative sum of ``a`` restarted at every index in ``starts``.

    ``first_is_value=True`` (times, level 1): the element at a start is a value on its own, the one after
    it a first delta, the rest delta-of-deltas — so the running sum restarts *after* the start, and the
    start keeps its element. ``False``: a plain cumulative sum restarted at each start.
    """
    n = len(a)
    if n == 0:
        return a.copy()
    if first_is_value:
        # d[start] = s0 (kept), d[start+1] = delta1, d[k] = d[k-1] + dod[k] for the rest
        b = a.copy()
        b[starts] = 0
        c = np.cumsum(b)
        mark = np.zeros(n, dtype=bool)
        mark[starts] = True
        seg_off = np.maximum.accumulate(np.where(mark, np.arange(n), 0))
        out = c - c[seg_off]
        out[starts] = a[starts]
        return out
    c = np.cumsum(a)
    before = np.zeros(len(starts), dtype=np.int64)
    nz = starts > 0
    before[nz] = c[starts[nz] - 1]
    counts = np.diff(np.append(starts, n))
    return c - np.repeat(before, counts)
