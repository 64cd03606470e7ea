"""The ``edgex-json`` encoding: one EdgeX v3 ``AddEventRequest`` per event, exactly as a device service
publishes it (the interoperable baseline).

edgeflow's own fields ride in ``tags``, which EdgeX defines as a free ``map[string]any`` on both the
event and the reading, so core-data, app services and eKuiper accept the message unchanged:

* event tags ``edgeflowStream`` (stream id), ``edgeflowSeq`` (sequence number), and ``edgeflowAlarm``
  (``true``) on alarms;
* reading tags ``edgeflowInterpolation`` (``"linear"``; absent means hold) and ``edgeflowWindowStart``
  (ns) on window aggregates.

Values are strings in EdgeX's format, so floats travel with Go ``%e``'s 7 significant digits: EdgeX
itself rounds them, and this encoding does the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import orjson

from edgeflow.codec._types import (
    DecodedBatch,
    DecodedSeries,
    EncodedBatch,
    EncodingName,
    Interpolation,
    StreamEncoder,
)
from edgeflow.errors import CodecError, ValueFormatError
from edgeflow.model import Event, ReadingBatch, SeriesTable, batch_from_readings, decode_event

__all__ = ["TAG_ALARM", "TAG_INTERPOLATION", "TAG_SEQ", "TAG_STREAM", "TAG_WINDOW_START", "EdgexJsonEncoder"]

TAG_STREAM: Final = "edgeflowStream"
TAG_SEQ: Final = "edgeflowSeq"
TAG_ALARM: Final = "edgeflowAlarm"
TAG_INTERPOLATION: Final = "edgeflowInterpolation"
TAG_WINDOW_START: Final = "edgeflowWindowStart"


class EdgexJsonEncoder(StreamEncoder):
    """One message per EdgeX event (consecutive readings of one device, source and origin)."""

    @property
    def name(self) -> EncodingName:
        return "edgex-json"

    def encode(
        self,
        batch: ReadingBatch,
        interpolation: Mapping[int, Interpolation] | None = None,
        *,
        alarm: bool = False,
    ) -> list[EncodedBatch]:
        interp = interpolation or {}
        try:
            events = batch.to_events()
        except (ValueError, TypeError, OverflowError) as exc:
            raise CodecError(f"cannot encode as EdgeX JSON: {exc}") from exc
        sids = batch.series.tolist()
        starts = None if batch.starts is None else batch.starts.tolist()
        out: list[EncodedBatch] = []
        i = 0
        for ev in events:
            for r in ev.readings:
                if interp.get(sids[i], "hold") == "linear":
                    r.tags[TAG_INTERPOLATION] = "linear"
                if starts is not None:
                    r.tags[TAG_WINDOW_START] = starts[i]
                i += 1
            out.append(self._encode_event(ev, alarm))
        return out

    def _encode_event(self, ev: Event, alarm: bool) -> EncodedBatch:
        ev.tags[TAG_STREAM] = self._stream_id
        ev.tags[TAG_SEQ] = self._seq
        if alarm:
            ev.tags[TAG_ALARM] = True
        try:
            body = {"apiVersion": "v3", "requestId": str(uuid.uuid4()), "event": ev.to_dict()}
            payload = orjson.dumps(body)
        except (ValueError, TypeError, OverflowError) as exc:
            raise CodecError(f"cannot encode as EdgeX JSON: {exc}") from exc
        origins = [r.origin for r in ev.readings]
        eb = EncodedBatch(
            payload=payload,
            stream_id=self._stream_id,
            seq=self._seq,
            readings=len(ev.readings),
            first_origin=min(origins),
            last_origin=max(origins),
            alarm=alarm,
            topic_fields={"device": ev.device_name, "profile": ev.profile_name, "source": ev.source_name},
            encoding="edgex-json",
        )
        self._seq += 1
        self._stats.add(eb)
        return eb


def decode_edgex_json(payload: bytes) -> DecodedBatch:
    """Decode an EdgeX event message (``AddEventRequest``, bare event, or message-bus envelope).
    Events from plain EdgeX, without edgeflow's tags, decode with ``stream_id ""`` and ``seq -1``."""
    try:
        ev = decode_event(payload)
    except ValueFormatError as exc:
        raise CodecError(f"not an EdgeX event: {exc}") from exc
    tags = ev.tags
    stream_id = tags.get(TAG_STREAM, "")
    seq = tags.get(TAG_SEQ, -1)
    if not isinstance(stream_id, str) or isinstance(seq, bool) or not isinstance(seq, int):
        raise CodecError(f"bad {TAG_STREAM}/{TAG_SEQ} tags: {stream_id!r}, {seq!r}")
    alarm = tags.get(TAG_ALARM) is True
    table = SeriesTable()
    try:
        batch = batch_from_readings(table, ev.readings, source=ev.source_name)
    except (ValueFormatError, TypeError, ValueError) as exc:
        raise CodecError(f"bad reading in EdgeX event: {exc}") from exc
    series: list[DecodedSeries] = []
    sids = batch.series
    for sid in range(len(table)):
        idx = np.flatnonzero(sids == sid)
        readings = [ev.readings[i] for i in idx.tolist()]
        interp: Interpolation = (
            "linear" if any(r.tags.get(TAG_INTERPOLATION) == "linear" for r in readings) else "hold"
        )
        starts = None
        if any(TAG_WINDOW_START in r.tags for r in readings):
            starts = np.array([_start(r.tags, r.origin) for r in readings], dtype=np.int64)
        objs = None if batch.objects is None else batch.objects[idx]
        if objs is not None and all(o is None for o in objs):
            objs = None
        series.append(
            DecodedSeries(table.info(sid), interp, batch.origins[idx], batch.values[idx], objs, starts)
        )
    extra: dict[str, Any] = {"event_tags": {k: v for k, v in tags.items() if not k.startswith("edgeflow")}}
    return DecodedBatch(stream_id, seq, "edgex-json", alarm, tuple(series), extra)


def _start(tags: Mapping[str, Any], origin: int) -> int:
    v = tags.get(TAG_WINDOW_START, origin)
    if isinstance(v, bool) or not isinstance(v, int):
        raise CodecError(f"bad {TAG_WINDOW_START} tag {v!r}")
    return v
