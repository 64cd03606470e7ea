"""Round trips of both encodings on random batches (hypothesis), and their accounting."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeflow.codec import EncodedBatch, decode, make_encoder, merge_points
from edgeflow.errors import CodecError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType, batch_from_values, encode_add_event_request

# --------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------

_NUMERIC_TYPES = [ValueType.FLOAT64, ValueType.FLOAT32, ValueType.INT64, ValueType.UINT16, ValueType.BOOL]
_OBJECT_TYPES = [
    ValueType.STRING,
    ValueType.BINARY,
    ValueType.OBJECT,
    ValueType.FLOAT64_ARRAY,
    ValueType.STRING_ARRAY,
    ValueType.UINT64,
]

_finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
_decimals = st.builds(lambda i, k: round(i / 10**k, k), st.integers(-(10**9), 10**9), st.integers(0, 8))
_any_float = st.one_of(st.floats(), _decimals, st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0]))
_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=8), _finite32
)
_json = st.recursive(
    _json_leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=5), kids, max_size=4)
    ),
    max_leaves=10,
)


def _value(vt: ValueType, *, edgex: bool) -> st.SearchStrategy[Any]:
    if vt is ValueType.FLOAT64:
        return _any_float
    if vt is ValueType.FLOAT32:
        return st.one_of(_finite32, st.sampled_from([math.nan, math.inf, -math.inf]))
    if vt is ValueType.INT64:
        return st.integers(-(2**53), 2**53)
    if vt is ValueType.UINT16:
        return st.integers(0, 2**16 - 1)
    if vt is ValueType.BOOL:
        return st.booleans()
    if vt is ValueType.STRING:
        return st.text(max_size=20)
    if vt is ValueType.BINARY:
        return st.binary(max_size=30)
    if vt is ValueType.OBJECT:
        return st.dictionaries(st.text(max_size=5), _json, max_size=4)
    if vt is ValueType.FLOAT64_ARRAY:
        elem = _finite32 if edgex else _any_float
        return st.lists(elem, max_size=5)
    if vt is ValueType.STRING_ARRAY:
        if edgex:  # EdgeX's "[a, b]" form cannot carry empty strings, separators or edge spaces
            return st.lists(st.text(alphabet="abcxyz_-", min_size=1, max_size=6), max_size=4)
        return st.lists(st.text(max_size=6), max_size=4)
    if vt is ValueType.UINT64:
        return st.integers(2**53 + 1, 2**64 - 1)  # beyond float64: rides in objects
    raise AssertionError(vt)


@dataclass
class Case:
    table: SeriesTable
    batch: ReadingBatch
    interpolation: dict[int, str]
    raw: list[tuple[int, int, Any]]  # (series id, origin, python value), in batch order


@st.composite
def cases(draw: st.DrawFn, *, edgex: bool = False, wide_time: bool = False) -> Case:
    table = SeriesTable()
    n_series = draw(st.integers(1, 12))
    types = draw(
        st.lists(st.sampled_from(_NUMERIC_TYPES + _OBJECT_TYPES), min_size=n_series, max_size=n_series)
    )
    sids = [
        table.intern(f"dev{i % 3}", f"res {i}", f"prof{i % 2}", vt, "°C" if i % 2 else "", f"src{i % 4}")
        for i, vt in enumerate(types)
    ]
    n = draw(st.integers(0, 120))
    lo, hi = (-(2**63), 2**63 - 1) if wide_time else (1_000_000_000_000_000_000, 2_000_000_000_000_000_000)
    base = draw(st.integers(lo, hi))
    step = draw(st.sampled_from([1, 1_000_000, 1_000_000_000, 300_000_000_000]))
    raw: list[tuple[int, int, Any]] = []
    for _ in range(n):
        i = draw(st.integers(0, n_series - 1))
        # Random over all of int64, or a clock that also steps backwards.
        origin = draw(st.integers(lo, hi)) if wide_time else base + step * draw(st.integers(-50, 500))
        raw.append((sids[i], origin, draw(_value(types[i], edgex=edgex))))
    objects = np.full(n, None, dtype=object)
    values = np.full(n, np.nan)
    for k, (sid, _, v) in enumerate(raw):
        vt = table.info(sid).value_type
        if vt in _NUMERIC_TYPES:
            values[k] = float(v)
        else:
            objects[k] = v
    with_objects = any(o is not None for o in objects)
    starts = None
    if draw(st.booleans()):
        width = 0 if wide_time else 10**12
        starts = np.array([o - draw(st.integers(0, width)) for _, o, _ in raw], dtype=np.int64)
    batch = ReadingBatch(
        table,
        np.array([o for _, o, _ in raw], dtype=np.int64),
        values,
        np.array([s for s, _, _ in raw], dtype=np.int32),
        objects if with_objects else None,
        starts,
    )
    interp = {sid: draw(st.sampled_from(["hold", "linear"])) for sid in sids}
    return Case(table, batch, interp, raw)


def _same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and tuples as lists."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _check_round_trip(case: Case, messages: list[EncodedBatch], value_of: Any) -> None:
    decoded = [decode(m.payload) for m in messages]
    assert sum(d.readings for d in decoded) == len(case.batch)
    merged = merge_points(decoded)
    batch = case.batch
    seen = 0
    for sid in sorted(set(batch.series.tolist())):
        info = case.table.info(sid)
        s = merged[(info.device, info.resource)]
        assert s.info == info
        idx = np.flatnonzero(batch.series == sid)
        seen += len(idx)
        assert s.interpolation == case.interpolation[sid]
        np.testing.assert_array_equal(s.origins, batch.origins[idx])
        if batch.starts is None:
            assert s.starts is None
        else:
            assert s.starts is not None
            np.testing.assert_array_equal(s.starts, batch.starts[idx])
        for j, k in enumerate(idx.tolist()):
            expected = value_of(info.value_type, case.raw[k][2])
            if info.value_type in _NUMERIC_TYPES:
                got = float(s.values[j])
                assert s.objects is None or s.objects[j] is None
                assert _same(got, float(expected)), (info.value_type, expected, got)
            else:
                assert s.objects is not None
                assert math.isnan(s.values[j])
                assert _same(s.objects[j], expected), (info.value_type, expected, s.objects[j])
    assert seen == len(batch)


# --------------------------------------------------------------------------------------------------
# compact
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(cases(), st.integers(1, 50))
def test_compact_round_trip_is_exact(case: Case, max_readings: int) -> None:
    enc = make_encoder("compact", stream_id="s1", first_seq=7, max_readings=max_readings)
    messages = enc.encode(case.batch, case.interpolation)  # type: ignore[arg-type]
    assert [m.seq for m in messages] == list(range(7, 7 + len(messages)))
    assert enc.next_seq == 7 + len(messages)
    assert all(m.stream_id == "s1" and m.encoding == "compact" for m in messages)
    assert enc.stats.readings == len(case.batch)
    assert enc.stats.bytes == sum(len(m.payload) for m in messages)
    assert enc.stats.batches == len(messages)
    for m in messages:
        assert m.readings <= max_readings
        d = decode(m.payload)
        assert (d.stream_id, d.seq, d.encoding) == ("s1", m.seq, "compact")
    _check_round_trip(case, messages, lambda vt, v: v)


@settings(max_examples=50, deadline=None)
@given(cases(wide_time=True))
def test_compact_round_trip_any_int64_origin(case: Case) -> None:
    messages = make_encoder("compact").encode(case.batch, case.interpolation)  # type: ignore[arg-type]
    _check_round_trip(case, messages, lambda vt, v: v)


def test_compact_message_metadata() -> None:
    table = SeriesTable()
    a = table.intern("pump", "flow", "p1", ValueType.FLOAT64, "l/min", "flow")
    batch = ReadingBatch.from_columns(table, [30, 10, 20], [1.5, 2.5, 3.5], [a, a, a])
    enc = make_encoder("compact", stream_id="edge-7")
    (m,) = enc.encode(batch, alarm=True)
    assert (m.first_origin, m.last_origin, m.readings, m.alarm) == (10, 30, 3, True)
    assert dict(m.topic_fields) == {"device": "pump", "profile": "p1", "source": "flow"}
    assert m.payload[:4] == b"EFC\x02"  # version 2: columns for the whole message; names inline (few series)
    d = decode(m.payload)
    assert d.alarm
    assert d.stream_id == "edge-7"
    assert d.seq == 0
    assert enc.stats.alarms == 1
    assert enc.encode(ReadingBatch.empty(table)) == []


def test_compact_picks_scaled_decimals_and_keeps_artefacts_exact() -> None:
    table = SeriesTable()
    a = table.intern("m", "temperature")
    vals = [73.96732207, 74.93588199999998, 76.12416182, 78.14070732, math.nan, -0.0, 1e300]
    batch = ReadingBatch.from_columns(table, range(len(vals)), vals, [a] * len(vals))
    (m,) = make_encoder("compact").encode(batch)
    got = decode(m.payload).series[0].values
    np.testing.assert_array_equal(got.view(np.uint64), np.array(vals).view(np.uint64))


def test_compact_is_smaller_than_raw_on_regular_decimals() -> None:
    table = SeriesTable()
    a = table.intern("m", "t")
    n = 1000
    rng = np.random.default_rng(1)
    vals = np.round(20 + np.cumsum(rng.normal(0, 0.05, n)), 2)
    batch = ReadingBatch.from_columns(table, 10**18 + np.arange(n) * 10**9, vals, [a] * n)
    (m,) = make_encoder("compact").encode(batch)
    # 16 raw bytes per reading; a regular clock and 2-decimal values must code far below that.
    assert len(m.payload) < 2 * n
    np.testing.assert_array_equal(decode(m.payload).series[0].values, vals)


def test_unknown_encoding_and_options() -> None:
    with pytest.raises(CodecError, match="unknown encoding"):
        make_encoder("protobuf")
    with pytest.raises(CodecError, match="bad option"):
        make_encoder("edgex-json", level=3)
    with pytest.raises(CodecError):
        make_encoder("compact", max_readings=0)


# --------------------------------------------------------------------------------------------------
# edgex-json
# --------------------------------------------------------------------------------------------------


def _edgex_value(vt: ValueType, v: Any) -> Any:
    """What survives EdgeX's string formatting: floats with %e's 7 significant digits."""
    if vt.is_float:
        return float(format(float(v), "e"))
    if vt is ValueType.FLOAT64_ARRAY:
        return [float(format(x, "e")) for x in v]
    if vt is ValueType.OBJECT:
        return orjson.loads(orjson.dumps(v))
    return v


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(cases(edgex=True))
def test_edgex_json_round_trip(case: Case) -> None:
    enc = make_encoder("edgex-json", stream_id="s2")
    messages = enc.encode(case.batch, case.interpolation, alarm=True)  # type: ignore[arg-type]
    assert [m.seq for m in messages] == list(range(len(messages)))
    assert sum(m.readings for m in messages) == len(case.batch)
    for m in messages:
        body = orjson.loads(m.payload)
        assert body["apiVersion"] == "v3"
        assert set(body) == {"apiVersion", "requestId", "event"}
        ev = body["event"]
        assert ev["tags"]["edgeflowStream"] == "s2"
        assert ev["tags"]["edgeflowSeq"] == m.seq
        assert ev["tags"]["edgeflowAlarm"] is True
        assert dict(m.topic_fields) == {
            "device": ev["deviceName"],
            "profile": ev["profileName"],
            "source": ev["sourceName"],
        }
        d = decode(m.payload)
        assert (d.stream_id, d.seq, d.encoding, d.alarm) == ("s2", m.seq, "edgex-json", True)
    _check_round_trip(case, messages, _edgex_value)


def test_edgex_json_is_plain_edgex_and_costs_what_edgex_costs() -> None:
    """Without edgeflow's tags the message is byte-for-byte the model's AddEventRequest shape."""
    table = SeriesTable()
    a = table.intern("dev1", "Temp", "p1", ValueType.FLOAT64)
    batch = ReadingBatch.from_columns(table, [1702613269923352589], [23.5], [a])
    (m,) = make_encoder("edgex-json", stream_id="x").encode(batch)
    body = orjson.loads(m.payload)
    reading = body["event"]["readings"][0]
    assert reading["value"] == "2.350000e+01"
    assert reading["valueType"] == "Float64"
    assert body["event"]["origin"] == 1702613269923352589
    tags = body["event"].pop("tags")
    assert tags == {"edgeflowStream": "x", "edgeflowSeq": 0}
    (event,) = batch.to_events()
    plain = encode_add_event_request(event)
    assert len(orjson.dumps(body)) == len(plain)


def test_edgex_json_decodes_foreign_edgex_events() -> None:
    raw = (
        b'{"apiVersion":"v3","event":{"apiVersion":"v3","deviceName":"SimulationServer1","id":"cc8ea84d",'
        b'"origin":1702613269923352589,"profileName":"OPCUA-Server","readings":[{"deviceName":'
        b'"SimulationServer1","origin":1702613269921,"profileName":"OPCUA-Server","resourceName":"Constant",'
        b'"value":"1.999900e+02","valueType":"Float64"}],"sourceName":"Constant"},"statusCode":200}'
    )
    d = decode(raw)
    assert (d.stream_id, d.seq) == ("", -1)
    (s,) = d.series
    assert s.key == ("SimulationServer1", "Constant")
    assert s.origins.tolist() == [1702613269921000000]
    assert s.values.tolist() == [199.99]


@pytest.mark.parametrize("encoding", ["compact", "edgex-json"])
def test_a_bool_ships_as_a_bool_whichever_library_made_it(encoding: str) -> None:
    table = SeriesTable()
    b = table.intern("d", "on", "p", ValueType.BOOL)
    batch = batch_from_values(table, [1, 2, 3], [np.bool_(True), False, True], [b, b, b])
    assert batch.objects is None  # the numeric column: a byte or two a reading in compact
    back_table = SeriesTable()
    decoded = [decode(e.payload) for e in make_encoder(encoding).encode(batch)]
    back = ReadingBatch.concat(back_table, [d.to_batch(back_table) for d in decoded])
    assert [back.value_at(i) for i in range(len(back))] == [True, False, True]
    assert {type(back.value_at(i)) for i in range(len(back))} == {bool}
