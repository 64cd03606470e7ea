"""The compact encoding's segment form: Sim-Piece / Mix-Piece output round-trips to the bit and travels
smaller than its points; anything shaped like it that does not fit still round-trips as points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeflow.codec import decode, make_encoder, merge_points
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.rules import build_pipeline
from edgeflow.rules.simpiece import segment_value

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000


def _compress(
    kind: str, v: np.ndarray, e: float, step: int = SEC, **opts: object
) -> tuple[SeriesTable, int, ReadingBatch]:
    table = SeriesTable()
    sid = table.intern("plant", "flow", "p")
    t = T0 + np.arange(len(v), dtype=np.int64) * step
    pipe = build_pipeline([{"type": kind, "max_error": e, **opts}], table)
    out = pipe.process(ReadingBatch.from_columns(table, t, v, np.full(len(v), sid)))
    rest = pipe.flush()
    return table, sid, ReadingBatch.concat(table, [out.batch, rest.batch])


def _roundtrip(
    points: ReadingBatch, interp: dict[int, str]
) -> tuple[int, list[tuple[np.ndarray, np.ndarray]]]:
    msgs = make_encoder("compact", stream_id="seg").encode(points, interp)  # type: ignore[arg-type]
    merged = merge_points(decode(m.payload) for m in msgs)
    return sum(len(m.payload) for m in msgs), [(s.origins, s.values) for s in merged.values()]


@pytest.mark.parametrize("kind", ["sim_piece", "mix_piece"])
def test_segments_round_trip_to_the_bit_and_travel_smaller_than_points(kind: str) -> None:
    rng = np.random.default_rng(7)
    v = np.round(np.cumsum(rng.normal(0, 0.3, 3000)) + rng.normal(0, 0.5, 3000), 3)
    _, sid, points = _compress(kind, v, 0.01 * float(v.max() - v.min()), horizon=200)
    size, [(t, y)] = _roundtrip(points, {sid: "linear"})
    assert t.tolist() == points.origins.tolist()
    assert y.view(np.int64).tolist() == points.values.view(np.int64).tolist()
    # the same points with hold cannot take the segment form: they travel as ordinary columns
    plain, [(t2, y2)] = _roundtrip(points, {sid: "hold"})
    assert t2.tolist() == t.tolist()
    assert y2.tolist() == y.tolist()
    assert size < 0.8 * plain, (size, plain)


def test_a_message_mixes_segment_series_and_ordinary_ones() -> None:
    table, sid, points = _compress("sim_piece", np.sin(np.arange(500) / 9.0) * 5, 0.05)
    raw = table.intern("plant", "state", "p")
    other = ReadingBatch.from_columns(table, T0 + np.arange(7) * SEC, np.arange(7) * 1.5, np.full(7, raw))
    both = ReadingBatch.concat(table, [points, other])
    (msg,) = make_encoder("compact", stream_id="seg").encode(both, {sid: "linear", raw: "hold"})
    got = {s.key: s for s in decode(msg.payload).series}
    seg = got[("plant", "flow")]
    assert seg.interpolation == "linear"
    assert seg.origins.tolist() == points.origins.tolist()
    assert seg.values.tolist() == points.values.tolist()
    assert got[("plant", "state")].values.tolist() == [k * 1.5 for k in range(7)]
    assert got[("plant", "state")].interpolation == "hold"


@settings(max_examples=200, deadline=None)
@given(
    starts=st.lists(st.integers(1, 10**6), min_size=1, max_size=40),
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=80, max_size=80),
    last=st.integers(0, 10**6),
    slope=st.one_of(st.floats(-1e3, 1e3), st.floats(allow_nan=False, allow_infinity=False)),
)
def test_anything_shaped_like_segment_pairs_round_trips(
    starts: list[int], values: list[float], last: int, slope: float
) -> None:
    """Pairs whose ends sit 1 ns before the next start, with values that are (half the time) real segment
    ends and otherwise arbitrary floats, NaN and infinities: decoded to the bit either way."""
    table = SeriesTable()
    sid = table.intern("d", "r")
    t = T0 + np.cumsum(np.asarray(starts, dtype=np.int64)) * 1000
    x = np.empty_like(t)
    x[:-1] = t[1:] - 1
    x[-1] = t[-1] + last
    m = len(t)
    b = np.asarray(values[:m])
    e = np.asarray(values[40 : 40 + m])
    if math.isfinite(slope):
        e = np.asarray(
            [
                segment_value(bb, slope, int(xx - tt)) if k % 2 else ee
                for k, (bb, ee, tt, xx) in enumerate(zip(b, e, t, x, strict=True))
            ]
        )
    origins = np.empty(2 * m, np.int64)
    origins[0::2], origins[1::2] = t, x
    vals = np.empty(2 * m)
    vals[0::2], vals[1::2] = b, e
    batch = ReadingBatch.from_columns(table, origins, vals, np.full(2 * m, sid))
    _, [(got_t, got_v)] = _roundtrip(batch, {sid: "linear"})
    assert got_t.tolist() == origins.tolist()
    assert got_v.view(np.int64).tolist() == vals.view(np.int64).tolist()


def test_a_message_that_names_its_series_by_table_stays_version_2_and_round_trips() -> None:
    table = SeriesTable()
    parts = []
    interp: dict[int, str] = {}
    rng = np.random.default_rng(5)
    for k in range(40):
        sid = table.intern(f"dev-{k}", "flow", "p")
        v = np.round(np.cumsum(rng.normal(0, 0.3, 300)), 2)
        pipe = build_pipeline([{"type": "sim_piece", "max_error": 0.2}], table)
        t = T0 + np.arange(300, dtype=np.int64) * SEC
        out = pipe.process(ReadingBatch.from_columns(table, t, v, np.full(300, sid)))
        parts += [out.batch, pipe.flush().batch]
        interp[sid] = "linear"
    batch = ReadingBatch.concat(table, parts)
    (tabled,) = make_encoder("compact", stream_id="t", series_table=True).encode(batch, interp)  # type: ignore[arg-type]
    (named,) = make_encoder("compact", stream_id="n").encode(batch, interp)  # type: ignore[arg-type]
    assert tabled.payload[3] == 2
    assert named.payload[3] == 1  # the segment form compresses smaller than version 2's columns
    for msg in (tabled, named):
        got = merge_points([decode(msg.payload)])
        for sid in interp:
            info = table.info(sid)
            s = got[(info.device, info.resource)]
            m = batch.series == sid
            assert s.origins.tolist() == batch.origins[m].tolist()
            assert s.values.view(np.int64).tolist() == batch.values[m].view(np.int64).tolist()
