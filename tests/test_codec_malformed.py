"""Malformed, truncated, corrupted and foreign payloads raise CodecError, and only CodecError."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeflow.codec import decode, make_encoder
from edgeflow.codec._varint import Writer
from edgeflow.errors import CodecError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
from edgeflow.rules import build_pipeline


def _valid_payloads() -> list[bytes]:
    table = SeriesTable()
    a = table.intern("pump", "flow", "p", ValueType.FLOAT64, "l/min")
    b = table.intern("pump", "state", "p", ValueType.STRING)
    n = 40
    objects = np.full(n, None, dtype=object)
    objects[3] = "running"
    objects[17] = "stopped"
    series = np.full(n, a, dtype=np.int32)
    series[[3, 17]] = b
    values = np.round(np.linspace(0, 10, n), 3)
    values[[3, 17]] = np.nan
    batch = ReadingBatch(
        table,
        10**18 + np.arange(n, dtype=np.int64) * 10**9,
        values,
        series,
        objects,
        10**18 + np.zeros(n, np.int64),
    )
    out = [m.payload for m in make_encoder("compact", stream_id="s").encode(batch, {a: "linear"})]
    out.append(make_encoder("compact", stream_id="s", level=1).encode(batch.take(np.arange(2)))[0].payload)
    out.extend(m.payload for m in make_encoder("edgex-json", stream_id="s").encode(batch.take(np.arange(4))))
    out.append(_segment_payload())
    return out


def _segment_payload() -> bytes:
    """A message with a series in segment form (Sim-Piece's groups)."""
    table = SeriesTable()
    sid = table.intern("pump", "flow", "p")
    t = 10**18 + np.arange(200, dtype=np.int64) * 10**9
    v = np.round(np.sin(np.arange(200) / 7.0) * 10 + (np.arange(200) % 3) * 0.2, 2)
    pipe = build_pipeline([{"type": "sim_piece", "max_error": 0.3}], table)
    out = pipe.process(ReadingBatch.from_columns(table, t, v, np.full(200, sid)))
    rest = pipe.flush()
    points = ReadingBatch.concat(table, [out.batch, rest.batch])
    (msg,) = make_encoder("compact", stream_id="s").encode(points, {sid: "linear"})
    assert msg.payload[3] == 1 and len(points) > 20
    return msg.payload


VALID = _valid_payloads()


def _decode_or_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(data)


@pytest.mark.parametrize("payload", VALID, ids=lambda p: f"{len(p)}B")
def test_every_truncation_is_a_codec_error(payload: bytes) -> None:
    decode(payload)  # the whole payload decodes
    for cut in range(len(payload)):
        with pytest.raises(CodecError):
            decode(payload[:cut])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_corrupted_payloads_decode_or_raise_codec_error(payload: bytes, data: st.DataObject) -> None:
    buf = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    _decode_or_codec_error(bytes(buf))


COMPRESSED = [p for p in VALID if p[:3] == b"EFC" and p[4] & 0x02]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(COMPRESSED), st.data())
def test_corrupted_bodies_decode_or_raise_codec_error(payload: bytes, data: st.DataObject) -> None:
    """Corrupt the columns themselves (inside the zstd frame), not just the frame."""
    head = 5 + 1 + payload[5] + 1  # magic, version, flags, stream id (short), seq (< 128)
    body = bytearray(zstandard.ZstdDecompressor().decompress(payload[head:]))
    for _ in range(data.draw(st.integers(1, 3))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        body = body[: data.draw(st.integers(0, len(body)))]
    _decode_or_codec_error(payload[:head] + zstandard.ZstdCompressor().compress(bytes(body)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_codec_error(data: bytes) -> None:
    _decode_or_codec_error(data)
    _decode_or_codec_error(b"EFC\x01" + data)
    _decode_or_codec_error(b"EFC\x01\x02\x01s\x00" + data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_compressed_bodies_raise_codec_error(body: bytes) -> None:
    frame = zstandard.ZstdCompressor().compress(body)
    _decode_or_codec_error(b"EFC\x01\x02\x01s\x00" + frame)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "unknown encoding"),
        (b"\x00\x01\x02", "unknown encoding"),
        (b"EFC\x03\x00\x01s\x00", "version 3 is not supported"),
        (b"EFC\x01\x80\x01s\x00", "unknown compact flags"),
        (b"{not json", "not an EdgeX event"),
        (b'{"hello": "world"}', "not an EdgeX event"),
        (
            b'{"apiVersion":"v3","event":{"deviceName":"d","sourceName":"s","origin":1,"readings":[]}}',
            "reading",
        ),
        (
            b'{"event":{"deviceName":"d","sourceName":"s","origin":1,"readings":[{"valueType":"Int8",'
            b'"value":"300","resourceName":"r"}]}}',
            "out of range",
        ),
        (
            b'{"event":{"deviceName":"d","sourceName":"s","origin":1,"tags":{"edgeflowSeq":"x"},'
            b'"readings":[{"valueType":"Int8","value":"3","resourceName":"r"}]}}',
            "edgeflowSeq",
        ),
        (
            b'{"event": {"tags": "ab", "deviceName": "d", "sourceName": "s", "origin": 1, "readings": [{}]}}',
            "malformed|not an EdgeX",
        ),
    ],
)
def test_foreign_and_malformed_payloads(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(payload)


def test_decompression_bomb_is_refused() -> None:
    frame = zstandard.ZstdCompressor().compress(b"\x00" * (300 * 1024 * 1024))
    with pytest.raises(CodecError, match="refused"):
        decode(b"EFC\x01\x02\x01s\x00" + frame)


def test_hostile_counts_do_not_allocate() -> None:
    w = Writer()
    w.uint(0)  # no strings
    w.uint(2**40)  # an absurd number of series
    body = w.getvalue()
    with pytest.raises(CodecError, match="exceeds"):
        decode(b"EFC\x01\x00\x01s\x00" + body)


def test_non_bytes_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="bytes"):
        decode("EFC")  # type: ignore[arg-type]
