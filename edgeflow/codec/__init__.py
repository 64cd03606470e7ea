"""Wire encodings, their decoders, byte accounting, and the reconstruction the cloud sees.

Two encodings (see ``README``, "Encodings"):

* ``edgex-json`` — one EdgeX v3 ``AddEventRequest`` per event, exactly as EdgeX writes it, with
  edgeflow's stream id and sequence number in event ``tags`` (:mod:`edgeflow.codec._edgex_json`).
* ``compact`` — batched, columnar, delta-coded, zstd-compressed (:mod:`edgeflow.codec._compact`);
  version 2 (:mod:`edgeflow.codec._fleet`) codes each column for the whole message at once, and a
  message of many series refers to the stream's series table by hash instead of naming them (a
  message whose table has not been seen raises :class:`MissingTable`; the receiver holds it until
  the table comes round). Version 1 messages still decode; a series of segment pairs (Sim-Piece,
  Mix-Piece) travels in version 1's segment form (:mod:`edgeflow.codec._segments`).

The path of a batch::

    enc = make_encoder("compact")                   # one encoder = one stream (random stream id)
    for eb in enc.encode(batch, interpolation):     # EncodedBatch: payload, stream_id, seq, ...
        outbox.put(eb)
    ...
    decoded = decode(payload)                       # either encoding, detected from the bytes
    series = merge_points([decoded, ...])           # per (device, resource), in shipping order
    s = series[("boiler", "temperature")]
    y = reconstruct(s.origins, s.values, times_ns, s.interpolation)  # what the cloud sees at times_ns

Every malformed payload raises :class:`~edgeflow.errors.CodecError`, and nothing else.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from edgeflow.codec._compact import (
    MAGIC,
    TABLES,
    CompactEncoder,
    MissingTable,
    SeriesTables,
    batch_table,
    decode_compact,
)
from edgeflow.codec._edgex_json import EdgexJsonEncoder, decode_edgex_json
from edgeflow.codec._types import (
    DecodedBatch,
    DecodedSeries,
    EncodedBatch,
    Encoder,
    EncoderStats,
    EncodingName,
    Interpolation,
)
from edgeflow.errors import CodecError
from edgeflow.rules.reconstruct import reconstruct as _rules_reconstruct

__all__ = [
    "ENCODINGS",
    "TABLES",
    "DecodedBatch",
    "DecodedSeries",
    "EncodedBatch",
    "Encoder",
    "EncoderStats",
    "EncodingName",
    "Interpolation",
    "MissingTable",
    "SeriesTables",
    "batch_table",
    "decode",
    "detect_encoding",
    "make_encoder",
    "merge_points",
    "new_stream_id",
    "reconstruct",
]

_MALFORMED: Final = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
    UnicodeError,
)

ENCODINGS: Final[tuple[EncodingName, ...]] = ("edgex-json", "compact")


def new_stream_id() -> str:
    """A fresh random stream id, 12 URL-safe characters (72 random bits); a restarted edge starts a new
    stream unless it resumes one."""
    return secrets.token_urlsafe(9)


def make_encoder(name: str, *, stream_id: str | None = None, first_seq: int = 0, **options: Any) -> Encoder:
    """An encoder for ``name`` (``"edgex-json"`` or ``"compact"``).

    ``stream_id`` defaults to :func:`new_stream_id`; ``first_seq`` resumes a stream after a restart.
    Options of ``compact``: ``level`` (zstd level, default 9), ``max_readings`` (per message, default
    100,000), ``series_table`` (default False here, True in the MQTT uplink; True: messages of at least
    ``table_min_series`` series, default 32, or of few points per series, refer to the stream's series
    table by hash instead of naming every series, re-sent every ``table_interval`` seconds, default 30 —
    a decoder holds what refers to a table it has not seen; receivers of a group share tables through
    the PostgreSQL sink, see the README).
    ``edgex-json`` takes none.
    """
    sid = stream_id or new_stream_id()
    try:
        if name == "compact":
            return CompactEncoder(sid, first_seq=first_seq, **options)
        if name == "edgex-json":
            return EdgexJsonEncoder(sid, first_seq=first_seq, **options)
    except TypeError as exc:
        raise CodecError(f"bad option for encoding {name!r}: {exc}") from None
    raise CodecError(f"unknown encoding {name!r}; expected one of {', '.join(ENCODINGS)}")


def detect_encoding(payload: bytes) -> EncodingName:
    """Which encoding ``payload`` is in, from its first bytes."""
    if payload[:3] == MAGIC:
        return "compact"
    if payload.lstrip()[:1] == b"{":
        return "edgex-json"
    raise CodecError(f"unknown encoding (payload starts {bytes(payload[:8])!r})")


def decode(payload: bytes) -> DecodedBatch:
    """Decode one message of either encoding. Raises :class:`CodecError` on anything malformed, and
    :class:`MissingTable` (a ``CodecError``) for a compact message whose series table this process has
    not decoded yet."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise CodecError(f"payload must be bytes, not {type(payload).__name__}")
    data = bytes(payload)
    try:
        if detect_encoding(data) == "compact":
            return decode_compact(data)
        return decode_edgex_json(data)
    except CodecError:
        raise
    except _MALFORMED as exc:  # a defect the format checks above did not name; still the caller's input
        raise CodecError(f"malformed {detect_encoding(data)} payload: {exc!r}") from exc


def merge_points(batches: Iterable[DecodedBatch]) -> dict[tuple[str, str], DecodedSeries]:
    """The points of each series (keyed by device, resource) across ``batches``, in the order given.

    A series' interpolation is that of its last message. Give the batches in shipping order (by stream,
    then sequence number); de-duplication is the receiver's job.
    """
    parts: dict[tuple[str, str], list[DecodedSeries]] = {}
    for b in batches:
        for s in b.series:
            parts.setdefault(s.key, []).append(s)
    out: dict[tuple[str, str], DecodedSeries] = {}
    for key, ss in parts.items():
        last = ss[-1]
        if len(ss) == 1:
            out[key] = last
            continue
        objects = None
        if any(s.objects is not None for s in ss):
            objects = np.concatenate(
                [s.objects if s.objects is not None else np.full(len(s), None) for s in ss]
            )
        starts = None
        if any(s.starts is not None for s in ss):
            starts = np.concatenate([s.starts if s.starts is not None else s.origins for s in ss])
        out[key] = DecodedSeries(
            last.info,
            last.interpolation,
            np.concatenate([s.origins for s in ss]),
            np.concatenate([s.values for s in ss]),
            objects,
            starts,
        )
    return out


# --------------------------------------------------------------------------------------------------
# Reconstruction
# --------------------------------------------------------------------------------------------------


def reconstruct(
    origins: npt.ArrayLike,
    values: npt.ArrayLike,
    at: npt.ArrayLike,
    interpolation: Interpolation = "hold",
) -> npt.NDArray[np.float64]:
    """The value the cloud sees at each time in ``at`` (ns), from the shipped points of one series, in
    shipping order. The rules' own reconstruction (:func:`edgeflow.rules.reconstruct.reconstruct`):

    ``hold``: the value of the last point at or before the time; ``linear``: the line between the points
    on either side (NaN after the last point). Before the first point: NaN. Time that goes backwards:
    points and times are split into runs of increasing time, and run *k* of the times is answered from
    run *k* of the points (a rule with ``backwards: reset`` starts a new run at the step).

    When the runs do not pair up (the times include readings the rule routed aside), the later point wins
    at each time, as in a time-keyed store.
    """
    q = np.asarray(at, dtype=np.int64)
    t = np.asarray(origins, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    try:
        return _rules_reconstruct(q, t, v, interpolation)
    except ValueError:
        if len(t) != len(v) or interpolation not in ("hold", "linear"):
            raise
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    last = np.ones(len(t), dtype=bool)
    last[:-1] = t[1:] != t[:-1]  # of equal times, keep the one shipped last
    return _rules_reconstruct(q, t[last], v[last], interpolation)
