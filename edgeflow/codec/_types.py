"""The data types shared by every encoding: what an encoder hands the outbox, and what a decoder hands
the cloud. Public through :mod:`edgeflow.codec`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from edgeflow.errors import CodecError
from edgeflow.model import Interpolation, ReadingBatch, SeriesInfo, SeriesTable

__all__ = [
    "DecodedBatch",
    "DecodedSeries",
    "EncodedBatch",
    "Encoder",
    "EncoderStats",
    "EncodingName",
    "Interpolation",
    "StreamEncoder",
]

EncodingName = Literal["edgex-json", "compact"]


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """One message for the outbox: the payload plus what the outbox and uplink need without decoding it.

    ``first_origin`` / ``last_origin`` are the smallest and largest origin (ns) of its readings;
    ``topic_fields`` holds ``device``, ``profile``, ``source`` when every reading shares them (always for
    ``edgex-json``, which carries one event per message), so the uplink can fill an EdgeX-style topic.
    """

    payload: bytes
    stream_id: str
    seq: int
    readings: int
    first_origin: int
    last_origin: int
    alarm: bool
    topic_fields: Mapping[str, str]
    encoding: EncodingName

    def __len__(self) -> int:
        return len(self.payload)


@dataclass(slots=True)
class EncoderStats:
    """Running byte accounting of one encoder."""

    batches: int = 0
    readings: int = 0
    bytes: int = 0
    alarms: int = 0

    def add(self, eb: EncodedBatch) -> None:
        self.batches += 1
        self.readings += eb.readings
        self.bytes += len(eb.payload)
        if eb.alarm:
            self.alarms += 1

    def as_dict(self) -> dict[str, int]:
        return {
            "batches": self.batches,
            "readings": self.readings,
            "bytes": self.bytes,
            "alarms": self.alarms,
        }


class StreamEncoder:
    """What every encoder shares: one stream id, sequence numbers from ``first_seq``, byte accounting.
    ``max_stream_id_bytes`` is how long a stream id the wire format can carry (``None``: no limit)."""

    max_stream_id_bytes: int | None = None

    def __init__(self, stream_id: str, *, first_seq: int = 0) -> None:
        limit = self.max_stream_id_bytes
        if not stream_id or (limit is not None and len(stream_id.encode("utf-8")) > limit):
            raise CodecError(
                "stream id must not be empty"
                if limit is None
                else f"stream id must be 1 to {limit} bytes of UTF-8"
            )
        if first_seq < 0:
            raise CodecError("first_seq must be >= 0")
        self._stream_id = stream_id
        self._seq = first_seq
        self._stats = EncoderStats()

    @property
    def stream_id(self) -> str:
        return self._stream_id

    @property
    def next_seq(self) -> int:
        """The sequence number the next message will carry (persist it to resume a stream). Set it
        back only to a number whose messages were never stored (a commit that failed)."""
        return self._seq

    @next_seq.setter
    def next_seq(self, value: int) -> None:
        if value < 0:
            raise CodecError("next_seq must be >= 0")
        self._seq = value

    @property
    def stats(self) -> EncoderStats:
        return self._stats


class Encoder(Protocol):
    """Turns reading batches into messages. One encoder is one stream: it numbers its messages
    ``first_seq, first_seq + 1, ...`` under one ``stream_id``."""

    @property
    def name(self) -> EncodingName: ...

    @property
    def stream_id(self) -> str: ...

    @property
    def next_seq(self) -> int:
        """The sequence number the next message will carry (persist it to resume a stream)."""
        ...

    @next_seq.setter
    def next_seq(self, value: int) -> None: ...

    @property
    def stats(self) -> EncoderStats: ...

    def encode(
        self,
        batch: ReadingBatch,
        interpolation: Mapping[int, Interpolation] | None = None,
        *,
        alarm: bool = False,
    ) -> list[EncodedBatch]:
        """Encode ``batch`` (series ids resolve in ``batch.table``); ``interpolation`` maps series ids to
        their mode, absent ids mean ``hold``. An empty batch gives no message."""
        ...


@dataclass(frozen=True, slots=True)
class DecodedSeries:
    """The points of one series in one decoded message, in the order they were shipped.

    ``values`` holds the numeric values (NaN where the reading is non-numeric); ``objects`` holds the
    non-numeric values at the same index (``None`` elsewhere), or is ``None`` when there are none;
    ``starts`` holds window starts for aggregates, else ``None``.
    """

    info: SeriesInfo
    interpolation: Interpolation
    origins: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    objects: npt.NDArray[np.object_] | None = None
    starts: npt.NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return len(self.origins)

    @property
    def key(self) -> tuple[str, str]:
        """(device, resource): what names a series across messages and streams."""
        return (self.info.device, self.info.resource)


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """One decoded message."""

    stream_id: str
    seq: int
    encoding: EncodingName
    alarm: bool
    series: tuple[DecodedSeries, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def readings(self) -> int:
        return sum(len(s) for s in self.series)

    def to_batch(self, table: SeriesTable) -> ReadingBatch:
        """The readings as a columnar batch, series interned in ``table`` (grouped by series)."""
        parts: list[ReadingBatch] = []
        for s in self.series:
            sid = table.intern(
                s.info.device, s.info.resource, s.info.profile, s.info.value_type, s.info.units, s.info.source
            )
            parts.append(
                ReadingBatch(
                    table,
                    s.origins,
                    s.values,
                    np.full(len(s), sid, dtype=np.int32),
                    s.objects,
                    s.starts,
                )
            )
        return ReadingBatch.concat(table, parts)
