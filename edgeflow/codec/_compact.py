"""The ``compact`` encoding: batched, columnar, delta-coded, zstd-compressed.

Wire layout (version 1)::

    magic    b"EFC" + version byte 0x01
    flags    1 byte: bit 0 alarm, bit 1 body is a zstd frame
    stream   varint length + UTF-8 stream id
    seq      varint sequence number
    body     (zstd frame of) the columns below

    body:  strings   varint count, then varint length + UTF-8 each (device, resource, profile, units,
                     source names, each distinct string once)
           series    varint count; per series: five varint string indexes (device, resource, profile,
                     units, source), value type (1 byte), flags (bit 0 linear, bit 1 window starts,
                     bit 2 non-numeric values, bit 3 segment form), varint point count, and with bit 2
                     the varint count of non-numeric readings
           times     per series (not in segment form): timestamp column (see edgeflow.codec._columns)
           values    per series (not in segment form): numeric value column (readings that are not
                     non-numeric)
           objects   per series with non-numeric values: delta-coded positions, then tagged values
           starts    per series with window starts: zigzag varints of origin - start
           segments  per series in segment form: its points as runs, each columns or Sim-Piece groups
                     (see edgeflow.codec._segments); a message with such a series is version 1

Every message names its series itself. A dictionary sent once per stream would save the names, but a
receiver that missed the message carrying it (the outbox dropped it by policy, or the edge restarted and
began a new stream) could not decode what follows; names per message cost a few dozen bytes before
compression, measured by ``benchmarks/savings.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
import zstandard

from edgeflow.codec._columns import read_times, read_values, write_times, write_values
from edgeflow.codec._fleet import (
    MissingTable,
    SeriesTables,
    TableEncoder,
    decode_body_v2,
    encodable_v2,
    encode_body_v2,
)
from edgeflow.codec._segments import read_series, segment_blocks
from edgeflow.codec._types import (
    DecodedBatch,
    DecodedSeries,
    EncodedBatch,
    EncodingName,
    Interpolation,
    StreamEncoder,
)
from edgeflow.codec._valuepack import pack_value, unpack_value
from edgeflow.codec._varint import Reader, Writer
from edgeflow.errors import CodecError
from edgeflow.model import ReadingBatch, SeriesInfo, ValueType

__all__ = [
    "MAGIC",
    "TABLES",
    "CompactEncoder",
    "MissingTable",
    "SeriesTables",
    "batch_table",
    "decode_compact",
]

MAGIC: Final = b"EFC"
VERSION: Final = 1
VERSION_TABLE: Final = 2
_F_TABLE: Final = 0x04
_F_LOCAL: Final = 0x08
_F_CHAINED: Final = 0x10
_F_COLUMNS: Final = 0x20
_F_ASCENDING: Final = 0x40
#: A message whose series have fewer points than this on average refers to the stream's series table.
_FEW_POINTS: Final = 4

#: The series tables this process has decoded (version 2), by hash; :func:`decode_compact`'s default.
TABLES: Final = SeriesTables()

_F_ALARM: Final = 0x01
_F_ZSTD: Final = 0x02
_S_LINEAR: Final = 0x01
_S_STARTS: Final = 0x02
_S_OBJECTS: Final = 0x04
_S_SEGMENTS: Final = 0x08  # the series' points travel in segment form (edgeflow.codec._segments)

_VALUE_TYPES: Final = list(ValueType)
_VT_CODE: Final = {vt: i for i, vt in enumerate(_VALUE_TYPES)}

#: A decoded body larger than this is refused (a guard against decompression bombs).
MAX_BODY: Final = 256 * 1024 * 1024


class CompactEncoder(StreamEncoder):
    """Encoder of the ``compact`` encoding. ``level`` is the zstd level; ``max_readings`` splits a large
    batch into several messages.

    ``quantum`` (lossy, off by default): a float for every numeric series, or a mapping of series id to
    float; the values of those series are rounded to multiples of it, so the cloud sees each within
    ``quantum / 2`` of what was sent. Run a bounded-error rule at ``bound - quantum / 2`` to keep the
    total within ``bound``.
    """

    max_stream_id_bytes = 255

    def __init__(
        self,
        stream_id: str,
        *,
        first_seq: int = 0,
        level: int = 9,
        max_readings: int = 100_000,
        quantum: float | Mapping[int, float] | None = None,
        series_table: bool = False,
        table_interval: float = 30.0,
        table_min_series: int = 32,
    ) -> None:
        super().__init__(stream_id, first_seq=first_seq)
        if max_readings < 1:
            raise CodecError("max_readings must be >= 1")
        self._max = max_readings
        for q in quantum.values() if isinstance(quantum, Mapping) else [quantum]:
            if q is not None and not (math.isfinite(q) and q > 0):
                raise CodecError(f"quantum must be a positive finite number, not {q!r}")
        self._quantum = quantum
        self._zstd = zstandard.ZstdCompressor(level=level)
        if not (math.isfinite(table_interval) and table_interval >= 0):
            raise CodecError(
                f"table_interval must be a non-negative number of seconds, not {table_interval!r}"
            )
        self._tables = TableEncoder(table_interval) if series_table else None
        self._table_min = table_min_series

    @property
    def next_seq(self) -> int:
        return self._seq

    @next_seq.setter
    def next_seq(self, value: int) -> None:
        if value < 0:
            raise CodecError("next_seq must be >= 0")
        if value < self._seq:  # messages were thrown away; one of them may have carried the table
            self.resend_table()
        self._seq = value

    def prepare(self, batch: ReadingBatch) -> None:
        """Put the series of ``batch`` in the stream's table before it is split into several messages,
        so the table grows (and travels) once, not once per part."""
        if self._tables is not None and len(batch):
            self._tables.positions(batch, np.unique(batch.series).astype(np.int64))

    def resend_table(self) -> None:
        """Make the next message carry the series table (after a failed commit lost the one that did)."""
        if self._tables is not None:
            self._tables.resend()

    @property
    def name(self) -> EncodingName:
        return "compact"

    def encode(
        self,
        batch: ReadingBatch,
        interpolation: Mapping[int, Interpolation] | None = None,
        *,
        alarm: bool = False,
    ) -> list[EncodedBatch]:
        out: list[EncodedBatch] = []
        for lo in range(0, len(batch), self._max):
            part = (
                batch
                if len(batch) <= self._max
                else batch.take(np.arange(lo, min(lo + self._max, len(batch))))
            )
            out.append(self._encode_one(part, interpolation or {}, alarm))
        return out

    def _encode_one(
        self, batch: ReadingBatch, interp: Mapping[int, Interpolation], alarm: bool
    ) -> EncodedBatch:
        # series of segment pairs (Sim-Piece) travel in version 1's segment form
        segments = segment_blocks(batch, interp) if self._quantum is None else {}
        if encodable_v2(batch, self._quantum):
            # names dominate a message of many series, or of series with few points each (a per-device
            # topic's message): those refer to the stream's table
            n_series = len(np.unique(batch.series))
            many = self._tables is not None and (
                n_series >= self._table_min or len(batch) < _FEW_POINTS * n_series
            )
            thash, body, has_table, ascending = encode_body_v2(batch, self._tables if many else None, interp)
            flags = ((_F_TABLE if has_table else 0) if many else _F_LOCAL) | _F_CHAINED | _F_COLUMNS
            if ascending:
                flags |= _F_ASCENDING
            if not segments or many:  # a message naming its series by table stays version 2
                return self._finish(batch, body, alarm, VERSION_TABLE, thash, flags)
            # both name their series: the one that compresses smaller goes
            v1 = self._body_v1(batch, interp, segments)
            packed1, packed2 = self._zstd.compress(v1), self._zstd.compress(body)
            if len(packed2) <= len(packed1):
                return self._finish(batch, body, alarm, VERSION_TABLE, thash, flags, packed2)
            return self._finish(batch, v1, alarm, VERSION, b"", 0, packed1)
        return self._finish(batch, self._body_v1(batch, interp, segments), alarm, VERSION, b"", 0)

    def _body_v1(
        self, batch: ReadingBatch, interp: Mapping[int, Interpolation], segments: Mapping[int, bytes]
    ) -> bytes:
        order = np.argsort(batch.series, kind="stable")
        sids, counts = np.unique(batch.series[order], return_counts=True)
        groups = np.split(order, np.cumsum(counts)[:-1])
        infos = [batch.table.info(int(s)) for s in sids]

        strings: dict[str, int] = {}

        def sidx(s: str) -> int:
            return strings.setdefault(s, len(strings))

        objm = None if batch.objects is None else batch.object_mask()
        meta = Writer()
        meta.uint(len(infos))
        for sid, info, idx in zip(sids.tolist(), infos, groups, strict=True):
            for name in (info.device, info.resource, info.profile, info.units, info.source):
                meta.uint(sidx(name))
            meta.byte(_VT_CODE[info.value_type])
            flags = _S_LINEAR if interp.get(sid, "hold") == "linear" else 0
            if batch.starts is not None:
                flags |= _S_STARTS
            n_obj = 0 if objm is None else int(objm[idx].sum())
            if n_obj:
                flags |= _S_OBJECTS
            if sid in segments:
                flags |= _S_SEGMENTS
            meta.byte(flags)
            meta.uint(len(idx))
            if n_obj:
                meta.uint(n_obj)

        cols = Writer()
        for sid, idx in zip(sids.tolist(), groups, strict=True):
            if sid not in segments:
                write_times(cols, batch.origins[idx])
        obj_masks: list[npt.NDArray[np.bool_] | None] = []
        for sid, idx in zip(sids.tolist(), groups, strict=True):
            if sid in segments:
                obj_masks.append(None)
                continue
            quantum = self._quantum.get(sid) if isinstance(self._quantum, Mapping) else self._quantum
            mask = None if objm is None else objm[idx]
            if mask is not None and not mask.any():
                mask = None
            obj_masks.append(mask)
            vals = batch.values[idx]
            write_values(cols, vals if mask is None else vals[~mask], quantum)
        for idx, mask in zip(groups, obj_masks, strict=True):
            if mask is None:
                continue
            assert batch.objects is not None
            pos = np.flatnonzero(mask)
            cols.uints(np.diff(pos, prepend=np.int64(0)).astype(np.uint64))
            for o in batch.objects[idx][pos]:
                pack_value(cols, o)
        if batch.starts is not None:
            for idx in groups:
                cols.sints(batch.origins[idx] - batch.starts[idx])
        for sid in sids.tolist():
            if sid in segments:
                cols.raw(segments[sid])

        head = Writer()
        head.uint(len(strings))
        for s in strings:
            head.text(s)
        return head.getvalue() + meta.getvalue() + cols.getvalue()

    def _finish(
        self,
        batch: ReadingBatch,
        body: bytes,
        alarm: bool,
        version: int,
        thash: bytes,
        flags: int,
        packed: bytes | None = None,
    ) -> EncodedBatch:
        if packed is None:
            packed = self._zstd.compress(body)
        if alarm:
            flags |= _F_ALARM
        if len(packed) < len(body):
            body = packed
            flags |= _F_ZSTD

        hdr = Writer()
        hdr.raw(MAGIC + bytes((version, flags)))
        hdr.text(self._stream_id)
        hdr.uint(self._seq)
        hdr.raw(thash)
        payload = hdr.getvalue() + body

        info = batch.table.info
        infos = [info(s) for s in np.unique(batch.series).tolist()]
        devices = {i.device for i in infos}
        profiles = {i.profile for i in infos}
        sources = {i.source for i in infos}
        topic: dict[str, str] = {}
        if len(devices) == 1:
            topic["device"] = next(iter(devices))
            if len(profiles) == 1:
                topic["profile"] = next(iter(profiles))
            if len(sources) == 1:
                topic["source"] = next(iter(sources))
        eb = EncodedBatch(
            payload=payload,
            stream_id=self._stream_id,
            seq=self._seq,
            readings=len(batch),
            first_origin=int(batch.origins.min()),
            last_origin=int(batch.origins.max()),
            alarm=alarm,
            topic_fields=topic,
            encoding="compact",
        )
        self._seq += 1
        self._stats.add(eb)
        return eb


def batch_table(payload: bytes) -> bytes | None:
    """The hash of the series table a ``compact`` message carries, or None (it carries none)."""
    if len(payload) < 5 or payload[:3] != MAGIC or payload[3] != VERSION_TABLE or not payload[4] & _F_TABLE:
        return None
    try:
        r = Reader(payload[5:])
        r.text()
        r.uint()
        return r.take(8)
    except CodecError:
        return None


def decode_compact(payload: bytes, tables: SeriesTables | None = None) -> DecodedBatch:
    """Decode one ``compact`` message (version 1 or 2). Raises :class:`CodecError` on anything malformed,
    and :class:`MissingTable` (a ``CodecError``) for a version-2 message whose series table ``tables``
    (default: :data:`TABLES`, every table this process decoded) has not seen."""
    if len(payload) < 5 or payload[:3] != MAGIC:
        raise CodecError("not a compact payload (bad magic)")
    version, flags = payload[3], payload[4]
    if version not in (VERSION, VERSION_TABLE):
        raise CodecError(
            f"compact version {version} is not supported (this decoder reads {VERSION} and {VERSION_TABLE})"
        )
    known = (
        _F_ALARM
        | _F_ZSTD
        | (_F_TABLE | _F_LOCAL | _F_CHAINED | _F_COLUMNS | _F_ASCENDING if version == VERSION_TABLE else 0)
    )
    if flags & ~known or (flags & _F_TABLE and flags & _F_LOCAL):
        raise CodecError(f"unknown compact flags {flags:#x}")
    r = Reader(payload[5:])
    stream_id = r.text()
    seq = r.uint()
    thash = r.take(8) if version == VERSION_TABLE and not flags & _F_LOCAL else b""
    body = r.take(r.remaining)
    if flags & _F_ZSTD:
        body = _decompress(body)
    if version == VERSION_TABLE:
        return decode_body_v2(
            Reader(body),
            stream_id,
            seq,
            bool(flags & _F_ALARM),
            thash,
            bool(flags & _F_TABLE),
            TABLES if tables is None else tables,
            local=bool(flags & _F_LOCAL),
            chained=bool(flags & _F_CHAINED),
            by_columns=bool(flags & _F_COLUMNS),
            ascending=bool(flags & _F_ASCENDING),
        )
    return _decode_body(Reader(body), stream_id, seq, bool(flags & _F_ALARM))


def _decompress(data: bytes) -> bytes:
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise CodecError(f"bad zstd frame: {exc}") from None
    if size < 0 or size > MAX_BODY:
        raise CodecError(f"zstd frame declares {size} bytes; refused")
    try:
        out: bytes = zstandard.ZstdDecompressor().decompress(data, max_output_size=MAX_BODY)
    except zstandard.ZstdError as exc:
        raise CodecError(f"bad zstd frame: {exc}") from None
    if len(out) != size:
        raise CodecError("zstd frame size mismatch")
    return out


def _decode_body(r: Reader, stream_id: str, seq: int, alarm: bool) -> DecodedBatch:
    n_str = r.count(r.remaining)
    strings = [r.text() for _ in range(n_str)]
    n_series = r.count(r.remaining // 8)

    def name(i: int) -> str:
        if i >= len(strings):
            raise CodecError(f"string index {i} out of range")
        return strings[i]

    metas: list[tuple[SeriesInfo, int, int, int]] = []
    for _ in range(n_series):
        device, resource, profile, units, source = (name(r.uint()) for _ in range(5))
        code = r.byte()
        if code >= len(_VALUE_TYPES):
            raise CodecError(f"unknown value type code {code}")
        flags = r.byte()
        if flags & ~(_S_LINEAR | _S_STARTS | _S_OBJECTS | _S_SEGMENTS) or (
            flags & _S_SEGMENTS and flags & (_S_STARTS | _S_OBJECTS)
        ):
            raise CodecError(f"unknown series flags {flags:#x}")
        n = r.count(r.remaining + 1)  # every point but the first costs a byte
        n_obj = r.count(n) if flags & _S_OBJECTS else 0
        info = SeriesInfo(device, resource, profile, _VALUE_TYPES[code], units, source)
        metas.append((info, flags, n, n_obj))

    seg = [bool(flags & _S_SEGMENTS) for _, flags, _, _ in metas]
    times = [
        np.empty(0, np.int64) if s else read_times(r, n) for s, (_, _, n, _) in zip(seg, metas, strict=True)
    ]
    numeric = [
        np.empty(0) if s else read_values(r, n - n_obj)
        for s, (_, _, n, n_obj) in zip(seg, metas, strict=True)
    ]
    objects_by: list[tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]] | None] = []
    for _, _, n, n_obj in metas:
        if not n_obj:
            objects_by.append(None)
            continue
        pos = np.cumsum(r.uints(n_obj).astype(np.int64))
        if int(pos[-1]) >= n or (n_obj > 1 and (np.diff(pos) <= 0).any()):
            raise CodecError("bad non-numeric reading positions")
        found = np.full(n, None, dtype=object)
        for p in pos.tolist():
            found[p] = unpack_value(r)
        objects_by.append((found, pos))
    series: list[DecodedSeries] = []
    for (info, flags, n, _), t, got, col in zip(metas, times, objects_by, numeric, strict=True):
        objs: npt.NDArray[np.object_] | None = None
        values = col
        if got is not None:
            objs, pos = got
            values = np.full(n, np.nan)
            numeric_mask = np.ones(n, dtype=bool)
            numeric_mask[pos] = False
            values[numeric_mask] = col
        starts = None
        if flags & _S_STARTS:
            starts = t - r.sints(n)
        series.append(DecodedSeries(info, "linear" if flags & _S_LINEAR else "hold", t, values, objs, starts))
    for k, (_, _, n, _) in enumerate(metas):
        if seg[k]:
            t, values = read_series(r, n)
            series[k] = DecodedSeries(series[k].info, series[k].interpolation, t, values, None, None)
    if not r.at_end():
        raise CodecError(f"{r.remaining} trailing bytes after the columns")
    return DecodedBatch(stream_id, seq, "compact", alarm, tuple(series))
