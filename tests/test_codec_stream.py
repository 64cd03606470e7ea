"""Streams: every message decodes on its own (after drops, after a restart), sequence numbers show gaps,
the quantum bound holds, and the receiver's reconstruction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeflow.codec import decode, make_encoder, merge_points, reconstruct
from edgeflow.errors import CodecError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType


def _batches(table: SeriesTable, k: int) -> list[ReadingBatch]:
    a = table.intern("boiler", "temperature", "p", ValueType.FLOAT64, "C")
    b = table.intern("boiler", "valve", "p", ValueType.BOOL)
    out = []
    for i in range(k):
        t = 10**18 + (np.arange(10, dtype=np.int64) + 10 * i) * 10**9
        out.append(
            ReadingBatch.from_columns(
                table,
                np.concatenate([t, t]),
                np.concatenate([20 + 0.1 * np.arange(10) + i, np.arange(10) % 2]),
                np.concatenate([np.full(10, a), np.full(10, b)]),
            )
        )
    return out


@pytest.mark.parametrize("encoding", ["compact", "edgex-json"])
def test_messages_decode_after_earlier_ones_were_dropped(encoding: str) -> None:
    table = SeriesTable()
    enc = make_encoder(encoding, stream_id="edge-1")
    sent = [enc.encode(b) for b in _batches(table, 5)]
    # The outbox dropped messages 0, 1 and 3: what is left still names its series and decodes.
    survivors = [m for i, ms in enumerate(sent) if i in (2, 4) for m in ms]
    decoded = [decode(m.payload) for m in survivors]
    assert all(d.stream_id == "edge-1" for d in decoded)
    seqs = [d.seq for d in decoded]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    merged = merge_points(decoded)
    assert set(merged) == {("boiler", "temperature"), ("boiler", "valve")}
    temp = merged[("boiler", "temperature")]
    assert temp.info.units == "C"
    assert temp.origins.tolist() == [10**18 + s * 10**9 for s in [*range(20, 30), *range(40, 50)]]
    assert temp.values[:3].tolist() == pytest.approx([22.0, 22.1, 22.2])
    assert merged[("boiler", "valve")].info.value_type is ValueType.BOOL


def test_compact_sequence_numbers_show_the_gap() -> None:
    table = SeriesTable()
    enc = make_encoder("compact", stream_id="edge-1")
    seqs = [decode(enc.encode(b)[0].payload).seq for b in _batches(table, 4)]
    assert seqs == [0, 1, 2, 3]


def test_a_restarted_edge_starts_a_new_stream_or_resumes_one() -> None:
    table = SeriesTable()
    batches = _batches(table, 3)
    first = make_encoder("compact")
    m0 = first.encode(batches[0])[0]
    restarted = make_encoder("compact")  # a new process: a new random stream id, sequence from 0
    m1 = restarted.encode(batches[1])[0]
    d0, d1 = decode(m0.payload), decode(m1.payload)
    assert d0.stream_id != d1.stream_id
    assert (d0.seq, d1.seq) == (0, 0)
    assert len(d0.stream_id) == 12
    assert d1.readings == 20
    resumed = make_encoder("compact", stream_id=first.stream_id, first_seq=first.next_seq)
    d2 = decode(resumed.encode(batches[2])[0].payload)
    assert (d2.stream_id, d2.seq) == (d0.stream_id, 1)


def test_messages_carry_their_names_and_what_that_costs() -> None:
    """Names ride in every message: a message is self-contained. Their cost in a 1000-reading message."""
    table = SeriesTable()
    a = table.intern("machine_temperature_sensor_17", "temperature", "industrial-machine", ValueType.FLOAT64)
    n = 1000
    vals = np.round(80 + np.cumsum(np.random.default_rng(3).normal(0, 0.3, n)), 2)
    batch = ReadingBatch.from_columns(table, 10**18 + np.arange(n) * 300 * 10**9, vals, [a] * n)
    payload = make_encoder("compact").encode(batch)[0].payload
    assert b"machine_temperature_sensor_17" not in payload  # compressed, but present:
    d = decode(payload)
    assert d.series[0].info.device == "machine_temperature_sensor_17"
    np.testing.assert_array_equal(d.series[0].values, vals)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200),
    st.floats(1e-6, 10.0),
)
def test_quantum_bounds_the_added_error(values: list[float], quantum: float) -> None:
    table = SeriesTable()
    a = table.intern("d", "r")
    n = len(values)
    v = np.array(values)
    specials = [math.nan, math.inf, -math.inf]
    v[: min(3, n - 1)] = specials[: min(3, n - 1)]  # non-finite values travel exactly
    batch = ReadingBatch.from_columns(table, np.arange(n), v, [a] * n)
    (m,) = make_encoder("compact", quantum=quantum).encode(batch)
    got = decode(m.payload).series[0].values
    finite = np.isfinite(v)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(v))
    np.testing.assert_array_equal(got[~finite & ~np.isnan(v)], v[~finite & ~np.isnan(v)])
    assert np.all(np.abs(got[finite] - v[finite]) <= quantum / 2 * (1 + 1e-9) + 1e-9 * np.abs(v[finite]))


def test_bad_quantum_is_refused() -> None:
    with pytest.raises(CodecError, match="quantum"):
        make_encoder("compact", quantum=0.0)
    with pytest.raises(CodecError, match="quantum"):
        make_encoder("compact", quantum={0: math.nan})


# --------------------------------------------------------------------------------------------------
# Reconstruction
# --------------------------------------------------------------------------------------------------


def test_reconstruct_hold_and_linear_by_hand() -> None:
    t = [10, 20, 40]
    v = [1.0, 3.0, 0.0]
    at = [5, 10, 15, 20, 30, 40, 50]
    hold = reconstruct(t, v, at, "hold")
    assert np.isnan(hold[0])
    assert hold[1:].tolist() == [1.0, 1.0, 3.0, 3.0, 0.0, 0.0]
    lin = reconstruct(t, v, at, "linear")
    assert np.isnan(lin[0])
    assert np.isnan(lin[-1])  # after the last point a line has no end
    assert lin[1:-1].tolist() == [1.0, 2.0, 3.0, 1.5, 0.0]


def test_reconstruct_follows_runs_when_time_goes_backwards() -> None:
    # The series revisits 20..40 (like the NAB regression); the rule restarted at the step.
    points_t = [0, 40, 20, 60]
    points_v = [0.0, 4.0, 10.0, 14.0]
    at = [0, 20, 40, 20, 40, 60]
    got = reconstruct(points_t, points_v, at, "linear")
    assert got.tolist() == [0.0, 2.0, 4.0, 10.0, 12.0, 14.0]


def test_reconstruct_falls_back_to_time_keyed_when_runs_do_not_pair() -> None:
    points_t = [0, 40, 20, 60]
    points_v = [0.0, 4.0, 10.0, 14.0]
    at = [0, 10, 20, 30]  # one run of times against two runs of points
    got = reconstruct(points_t, points_v, at, "hold")
    assert got.tolist() == [0.0, 0.0, 10.0, 10.0]


def test_decoded_batch_back_to_a_columnar_batch() -> None:
    src = SeriesTable()
    batches = _batches(src, 1)
    decoded = decode(make_encoder("compact").encode(batches[0])[0].payload)
    table = SeriesTable()
    back = decoded.to_batch(table)
    assert len(back) == 20
    assert [i.resource for i in table] == ["temperature", "valve"]
    assert back.value_at(10) is False
    assert back.value_at(11) is True
    assert back.values[:10].tolist() == batches[0].values[:10].tolist()
