"""edgeflow.model: EdgeX value strings, Reading/Event JSON, wire wrappers, and the columnar batch."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeflow.errors import ValueFormatError
from edgeflow.model import (
    API_VERSION,
    Event,
    Reading,
    ReadingBatch,
    SeriesTable,
    ValueType,
    batch_from_events,
    batch_from_readings,
    batch_from_values,
    decode_event,
    encode_add_event_request,
    format_value,
    is_numeric_value,
    normalize_origin,
    parse_value,
)

# --------------------------------------------------------------------------------------------------
# Value strings
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vt", "value", "text"),
    [
        (ValueType.FLOAT64, 1.5, "1.500000e+00"),
        (ValueType.FLOAT64, 73.96732207, "7.396732e+01"),  # 7 significant digits, even for Float64
        (ValueType.FLOAT32, -0.001, "-1.000000e-03"),
        (ValueType.FLOAT64, math.nan, "NaN"),
        (ValueType.FLOAT64, -math.inf, "-Inf"),
        (ValueType.INT16, -42, "-42"),
        (ValueType.UINT64, 2**64 - 1, "18446744073709551615"),
        (ValueType.BOOL, True, "true"),
        (ValueType.STRING, "Hi World", "Hi World"),
        (ValueType.FLOAT64_ARRAY, [1.0, 2.0], "[1.000000e+00, 2.000000e+00]"),
        (ValueType.UINT8_ARRAY, [0, 1, 2], "[0, 1, 2]"),
        (ValueType.BOOL_ARRAY, [], "[]"),
    ],
)
def test_format_value(vt: ValueType, value: Any, text: str) -> None:
    assert format_value(vt, value) == text


@pytest.mark.parametrize(
    ("vt", "value"),
    [
        (ValueType.INT8, 128),
        (ValueType.UINT8, -1),
        (ValueType.INT32, 1.5),
        (ValueType.BOOL, 1),
        (ValueType.FLOAT64, "1.0"),
        (ValueType.FLOAT32, 1e39),
        (ValueType.STRING, 5),
        (ValueType.INT8_ARRAY, "1, 2"),
        (ValueType.BINARY, b"x"),
        (ValueType.OBJECT, {}),
    ],
)
def test_format_value_rejects(vt: ValueType, value: Any) -> None:
    with pytest.raises(ValueFormatError):
        format_value(vt, value)


@pytest.mark.parametrize(
    ("vt", "text", "value"),
    [
        (ValueType.UINT8_ARRAY, "[0 1 2]", [0, 1, 2]),  # Go's plain %v
        (ValueType.STRING_ARRAY, '["a, b", "c"]', ["a, b", "c"]),  # JSON form
        (ValueType.BOOL, "T", True),
        (ValueType.FLOAT64, "+Inf", math.inf),
        (ValueType.INT64, " 7 ", 7),
    ],
)
def test_parse_value_forms(vt: ValueType, text: str, value: Any) -> None:
    assert parse_value(vt, text) == value


@pytest.mark.parametrize(
    ("vt", "text"),
    [
        (ValueType.INT8, "200"),
        (ValueType.BOOL, "yes"),
        (ValueType.FLOAT32, "abc"),
        (ValueType.INT16_ARRAY, "1, 2"),
    ],
)
def test_parse_value_rejects(vt: ValueType, text: str) -> None:
    with pytest.raises(ValueFormatError):
        parse_value(vt, text)


def test_value_type_parse_and_properties() -> None:
    assert ValueType.parse("float32") is ValueType.FLOAT32
    assert ValueType.parse(" Uint16Array ") is ValueType.UINT16_ARRAY
    assert ValueType.UINT16_ARRAY.element is ValueType.UINT16
    assert ValueType.INT8.int_range == (-128, 127)
    assert not ValueType.BOOL.is_numeric
    with pytest.raises(ValueFormatError, match="unknown valueType"):
        ValueType.parse("Float128")
    with pytest.raises(ValueFormatError):
        _ = ValueType.FLOAT64.int_range


def _close7(a: float, b: float) -> bool:
    """Equal to EdgeX's 7 significant digits (``%e``: relative error at most 5e-7)."""
    if math.isnan(a):
        return math.isnan(b)
    if math.isinf(a) or a == 0:
        return a == b
    return abs(a - b) <= 5.000001e-7 * abs(a)


_INT_TYPES = [vt for vt in ValueType if vt.is_integer]


@given(st.sampled_from(_INT_TYPES), st.data())
def test_int_round_trip_exact(vt: ValueType, data: st.DataObject) -> None:
    lo, hi = vt.int_range
    v = data.draw(st.integers(lo, hi))
    assert parse_value(vt, format_value(vt, v)) == v
    arr = data.draw(st.lists(st.integers(lo, hi), max_size=8))
    avt = ValueType(vt.value + "Array")
    assert parse_value(avt, format_value(avt, arr)) == arr


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_float64_round_trip_7_digits(v: float) -> None:
    text = format_value(ValueType.FLOAT64, v)
    assert _close7(v, parse_value(ValueType.FLOAT64, text))


@given(st.floats(width=32, allow_nan=True, allow_infinity=True))
def test_float32_round_trip_7_digits(v: float) -> None:
    text = format_value(ValueType.FLOAT32, v)
    assert _close7(v, parse_value(ValueType.FLOAT32, text))


@given(st.sampled_from([32, 64]), st.data())
def test_float_array_round_trip(width: int, data: st.DataObject) -> None:
    vt = ValueType.FLOAT32_ARRAY if width == 32 else ValueType.FLOAT64_ARRAY
    values = data.draw(st.lists(st.floats(allow_nan=False, width=width), max_size=8))  # type: ignore[arg-type]
    back = parse_value(vt, format_value(vt, values))
    assert len(back) == len(values)
    assert all(_close7(a, b) for a, b in zip(values, back, strict=True))


@given(st.booleans(), st.lists(st.booleans(), max_size=8))
def test_bool_round_trip(v: bool, arr: list[bool]) -> None:
    assert parse_value(ValueType.BOOL, format_value(ValueType.BOOL, v)) is v
    assert parse_value(ValueType.BOOL_ARRAY, format_value(ValueType.BOOL_ARRAY, arr)) == arr


@given(st.text())
def test_string_round_trip(s: str) -> None:
    assert parse_value(ValueType.STRING, format_value(ValueType.STRING, s)) == s


# EdgeX writes a StringArray as Go's "%v" with ", " separators, so an element holding a comma, a space,
# a bracket or a quote cannot be told apart on the way back; elements without them round-trip.
_WORD = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Zs", "Cc"], blacklist_characters=',[]"'),
    min_size=1,
)


@given(st.lists(_WORD, max_size=6))
def test_string_array_round_trip(arr: list[str]) -> None:
    assert parse_value(ValueType.STRING_ARRAY, format_value(ValueType.STRING_ARRAY, arr)) == arr


# --------------------------------------------------------------------------------------------------
# Origins
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "ns"),
    [
        (1702613269, 1702613269_000000000),  # seconds
        (1702613269921, 1702613269921_000000),  # milliseconds (docs example A's reading)
        (1702613269921352, 1702613269921352_000),  # microseconds
        (1702613269923352589, 1702613269923352589),  # nanoseconds
        (1702613269.5, 1702613269_500000000),
    ],
)
def test_normalize_origin(origin: float, ns: int) -> None:
    assert normalize_origin(origin) == ns


def test_normalize_origin_rejects() -> None:
    with pytest.raises(ValueFormatError):
        normalize_origin(True)
    with pytest.raises(ValueFormatError):
        normalize_origin("1702613269")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Events on the wire
# --------------------------------------------------------------------------------------------------

# edgex.md §1.6, docs example A: core-command GET against device-opc-ua (EdgeX 4.0 docs), re-flowed.
DOCS_EXAMPLE_A = (
    b'{"apiVersion":"v3","event":{"apiVersion":"v3","deviceName":"SimulationServer1",'
    b'"id":"cc8ea84d-0a5f-4d5b-b4db-9126368f4aa3","origin":1702613269923352589,"profileName":"OPCUA-Server",'
    b'"readings":[{"deviceName":"SimulationServer1","origin":1702613269921,"profileName":"OPCUA-Server",'
    b'"resourceName":"Constant","value":"1.999900e+02","valueType":"Float64"}],"sourceName":"Constant"},'
    b'"statusCode":200}'
)


def test_docs_example_with_ms_reading_origin() -> None:
    ev = decode_event(DOCS_EXAMPLE_A)
    assert ev.device_name == "SimulationServer1"
    assert ev.source_name == "Constant"
    assert ev.id == "cc8ea84d-0a5f-4d5b-b4db-9126368f4aa3"
    assert ev.origin == 1702613269923352589
    (r,) = ev.readings
    assert r.origin == 1702613269921000000  # 13-digit ms brought to ns
    assert r.value == 199.99
    assert r.value_type is ValueType.FLOAT64
    assert r.profile_name == "OPCUA-Server"


def test_event_json_is_edgex_v3() -> None:
    r = Reading("dev1", "Temp", "p1", ValueType.FLOAT64, 23.5, 1702613269923352589, id="r-1")
    ev = Event("dev1", "p1", "Temp", 1702613269923352589, [r], id="e-1")
    d = ev.to_dict()
    assert d == {
        "apiVersion": "v3",
        "id": "e-1",
        "deviceName": "dev1",
        "profileName": "p1",
        "sourceName": "Temp",
        "origin": 1702613269923352589,
        "readings": [
            {
                "id": "r-1",
                "origin": 1702613269923352589,
                "deviceName": "dev1",
                "resourceName": "Temp",
                "profileName": "p1",
                "valueType": "Float64",
                "value": "2.350000e+01",
            }
        ],
    }
    assert Event.from_dict(d) == ev
    no_ids = ev.to_dict(with_ids=False)
    assert "id" not in no_ids
    assert "id" not in no_ids["readings"][0]


def test_ids_are_generated_when_absent() -> None:
    r = Reading("d", "r", "p", ValueType.INT32, 1, 1)
    d = Event("d", "p", "r", 1, [r]).to_dict()
    assert len(d["id"]) == 36
    assert len(d["readings"][0]["id"]) == 36


def test_add_event_request_wrapper() -> None:
    r = Reading(
        "dev1", "Temp", "p1", ValueType.FLOAT64, 23.5, 1702613269923352589, units="°C", tags={"zone": "a"}
    )
    ev = Event("dev1", "p1", "Temp", 1702613269923352589, [r], tags={"site": "x"})
    raw = encode_add_event_request(ev, request_id="req-1")
    body = orjson.loads(raw)
    assert body["apiVersion"] == API_VERSION
    assert body["requestId"] == "req-1"
    assert body["event"]["readings"][0]["units"] == "°C"
    assert body["event"]["readings"][0]["tags"] == {"zone": "a"}
    assert body["event"]["tags"] == {"site": "x"}
    back = decode_event(raw)
    assert back.readings[0].value == 23.5
    assert back.readings[0].units == "°C"
    assert back.tags == {"site": "x"}
    assert back.id == body["event"]["id"]


def test_binary_and_object_readings() -> None:
    img = Reading("cam", "snap", "p", ValueType.BINARY, b"\x00\xff\x10", 5, media_type="image/jpeg")
    d = img.to_dict(with_id=False)
    assert d["binaryValue"] == base64.b64encode(b"\x00\xff\x10").decode()
    assert d["mediaType"] == "image/jpeg"
    assert "value" not in d
    assert Reading.from_dict(d).value == b"\x00\xff\x10"
    # OpenAPI example: binaryValue as a byte list
    listed = Reading.from_dict(
        {
            "origin": 1,
            "deviceName": "d",
            "resourceName": "r",
            "valueType": "Binary",
            "binaryValue": [12, 34],
            "mediaType": "image",
        }
    )
    assert listed.value == bytes([12, 34])
    obj_value = {"Attr1": "yyz", "Attr2": -45, "Attr3": [255, 1, 0]}
    obj = Reading("d", "json", "p", ValueType.OBJECT, obj_value, 7)
    od = obj.to_dict(with_id=False)
    assert od["objectValue"] == obj_value
    assert "value" not in od
    assert Reading.from_dict(od).value == obj_value
    with pytest.raises(ValueFormatError, match="binaryValue"):
        Reading.from_dict({"origin": 1, "valueType": "Binary"})


def test_message_bus_envelope_3x_base64_and_4x_object() -> None:
    r = Reading("dev", "Uint8Array", "prof", ValueType.UINT8_ARRAY, [0, 1, 2], 1755009250244477420)
    ev = Event("dev", "prof", "Uint8Array", 1755009250244477420, [r])
    request = encode_add_event_request(ev)
    env3 = {
        "apiVersion": "v3",
        "receivedTopic": "edgex/events/device/svc/prof/dev/Uint8Array",
        "correlationID": "8ad7fd3f-a7f7-4c38-ac10-f631d3272ae8",
        "errorCode": 0,
        "payload": base64.b64encode(request).decode(),
        "contentType": "application/json",
    }
    got = decode_event(orjson.dumps(env3))
    assert got.readings[0].value == [0, 1, 2]
    assert got.source_name == "Uint8Array"
    # 4.1 optimised payload (edgex.md §4 docs example): object payload, reading stripped of names and origin
    env4 = (
        '{"apiVersion":"v3","receivedTopic":"","correlationID":"8ad7fd3f-a7f7-4c38-ac10-f631d3272ae8",'
        '"requestID":"","errorCode":0,"payload":{"apiVersion":"v3","requestId":"9b9f99aa-5500-482d-89bb-67ff25d86cfd",'
        '"event":{"apiVersion":"v3","id":"e583c6fb-b1d0-4275-a1f5-7ede0858beeb","deviceName":"Random-UnsignedInteger-Device",'
        '"profileName":"Random-UnsignedInteger-Device","sourceName":"Uint8Array","origin":1755009250244477420,'
        '"readings":[{"valueType":"Uint8Array","value":"[0, 1, 2]"}]}},"contentType":"application/json"}'
    )
    ev4 = decode_event(env4)
    (r4,) = ev4.readings
    assert r4.device_name == "Random-UnsignedInteger-Device"
    assert r4.resource_name == "Uint8Array"
    assert r4.origin == 1755009250244477420
    assert r4.value == [0, 1, 2]


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[1, 2]",
        b'{"payload": "%%%"}',
        b'{"deviceName": "d", "sourceName": "s", "origin": 1, "readings": []}',
        b'{"deviceName": "d", "origin": 1, "readings": [{"valueType": "Int8", "value": "1"}]}',
        b'{"deviceName": "d", "sourceName": "s", "origin": 1, "readings": [{"valueType": "Int8", "value": 1}]}',
        b'{"deviceName": "d", "sourceName": "s", "origin": 1, "readings": [{"valueType": "Int8", "value": "300"}]}',
    ],
)
def test_malformed_wire_messages(data: bytes) -> None:
    with pytest.raises(ValueFormatError):
        decode_event(data)


# --------------------------------------------------------------------------------------------------
# Columnar batch
# --------------------------------------------------------------------------------------------------


def _events() -> list[Event]:
    t0 = 1_700_000_000_000_000_000
    return [
        Event(
            "hvac",
            "modbus",
            "HVACValues",
            t0,
            [
                Reading("hvac", "OperationMode", "modbus", ValueType.STRING, "Cool", t0),
                Reading("hvac", "FanSpeed", "modbus", ValueType.INT32, 3, t0),
                Reading("hvac", "Temperature", "modbus", ValueType.FLOAT32, 21.5, t0, units="°C"),
            ],
        ),
        Event(
            "hvac",
            "modbus",
            "SwitchA",
            t0 + 1,
            [Reading("hvac", "SwitchA", "modbus", ValueType.BOOL, True, t0 + 1)],
        ),
        Event(
            "cam",
            "p",
            "snap",
            t0 + 2,
            [
                Reading("cam", "snap", "p", ValueType.UINT64, 2**60 + 1, t0 + 2),
                Reading("cam", "json", "p", ValueType.OBJECT, {"a": [1, 2]}, t0 + 2),
            ],
        ),
    ]


def test_batch_from_events_and_back() -> None:
    table = SeriesTable()
    events = _events()
    batch = batch_from_events(table, events)
    assert len(batch) == 6
    assert len(table) == 6
    assert batch.origins.dtype == np.int64
    assert batch.values.dtype == np.float64
    assert batch.series.dtype == np.int32
    assert batch.objects is not None
    # numeric values ride in the float column; strings, objects and a huge integer in objects
    assert batch.values[1] == 3.0
    assert batch.values[2] == 21.5
    assert batch.values[3] == 1.0
    assert math.isnan(batch.values[0])
    assert batch.objects[0] == "Cool"
    assert batch.objects[4] == 2**60 + 1
    assert batch.objects[5] == {"a": [1, 2]}
    assert batch.objects[1] is None
    assert table.info(int(batch.series[1])).source == "HVACValues"
    assert table.info(int(batch.series[2])).units == "°C"
    back = batch.to_events()
    assert [(e.device_name, e.source_name, e.origin, len(e)) for e in back] == [
        (e.device_name, e.source_name, e.origin, len(e)) for e in events
    ]
    for a, b in zip(back, events, strict=True):
        assert [(r.resource_name, r.value_type, r.value, r.units) for r in a.readings] == [
            (r.resource_name, r.value_type, r.value, r.units) for r in b.readings
        ]
    assert back[1].readings[0].value is True
    assert isinstance(back[0].readings[1].value, int)
    # the EdgeX JSON of the rebuilt events equals the originals'
    assert [e.to_dict(with_ids=False) for e in back] == [e.to_dict(with_ids=False) for e in events]


def test_numeric_batch_has_no_objects_column() -> None:
    table = SeriesTable()
    rs = [Reading("d", "t", "p", ValueType.FLOAT64, float(i), i) for i in range(5)]
    batch = batch_from_readings(table, rs, source="t")
    assert batch.objects is None
    assert batch.starts is None
    assert list(batch.values) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(table) == 1
    assert repr(batch) == "ReadingBatch(5 readings, 1 series)"


def test_starts_column_survives_concat_take_and_to_events() -> None:
    table = SeriesTable()
    sid = table.intern("d", "t_mean", "p", ValueType.FLOAT64, source="t")
    plain = ReadingBatch.from_columns(table, [10, 20], [1.0, 2.0], [sid, sid])
    agg = ReadingBatch(
        table,
        np.array([300, 600], np.int64),
        np.array([1.5, 2.5]),
        np.array([sid, sid], np.int32),
        starts=np.array([0, 300], np.int64),
    )
    both = ReadingBatch.concat(table, [plain, agg])
    assert both.starts is not None
    # readings without a window start count as their own instant
    assert list(both.starts) == [10, 20, 0, 300]
    picked = both.take(np.array([False, True, False, True]))
    assert picked.starts is not None
    assert list(picked.starts) == [20, 300]
    assert list(picked.origins) == [20, 600]
    events = agg.to_events()
    assert [(e.origin, e.readings[0].value) for e in events] == [(300, 1.5), (600, 2.5)]
    assert ReadingBatch.concat(table, []).origins.size == 0
    assert ReadingBatch.concat(table, [plain]) is plain
    with pytest.raises(ValueError, match="same length"):
        ReadingBatch(table, np.zeros(2, np.int64), np.zeros(1), np.zeros(2, np.int32))


def test_series_table_interns_once() -> None:
    table = SeriesTable()
    a = table.intern("d", "r", "p", ValueType.INT16)
    b = table.intern("d", "r", "other", ValueType.FLOAT64)
    assert a == b == 0
    assert table.info(0).value_type is ValueType.INT16
    assert table.lookup("d", "r") == 0
    assert table.lookup("d", "x") is None
    assert [i.resource for i in table] == ["r"]


def test_null_object_value_survives_the_batch() -> None:
    table = SeriesTable()
    rs = [
        Reading("d", "o", "p", ValueType.OBJECT, None, 5),
        Reading("d", "o2", "p", ValueType.OBJECT, {"k": 1}, 5),
    ]
    batch = batch_from_readings(table, rs, source="o")
    assert [batch.value_at(i) for i in range(len(batch))] == [None, {"k": 1}]
    (ev,) = batch.to_events()
    assert ev.readings[0].to_dict(with_id=False)["objectValue"] is None


# --------------------------------------------------------------------------------------------------
# The one numeric check and the one builder
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vt", "value", "numeric"),
    [
        # a Bool has one form, whichever library made it
        (ValueType.BOOL, True, True),
        (ValueType.BOOL, np.bool_(False), True),
        (ValueType.BOOL, 1, False),  # an integer is not a Bool: kept as given
        (ValueType.BOOL, 1.0, False),
        # a bool is never a number
        (ValueType.FLOAT64, True, False),
        (ValueType.INT16, np.bool_(True), False),
        (ValueType.FLOAT32, np.float32(1.5), True),
        (ValueType.FLOAT64, 3, True),
        (ValueType.FLOAT64, np.int64(3), True),
        (ValueType.FLOAT64, "1.5", False),
        (ValueType.FLOAT64, 1 + 2j, False),
        (ValueType.INT16, np.int16(-3), True),
        (ValueType.INT64, 2**53, True),
        (ValueType.INT64, 2**53 + 1, False),  # not exact in a float64: an object, never rounded
        (ValueType.UINT64, 2**64 - 1, False),
        (ValueType.INT16, 1.5, False),  # not an integer: an object, never truncated
        (ValueType.STRING, 1.5, False),
        (ValueType.FLOAT64_ARRAY, [1.0], False),
    ],
)
def test_is_numeric_value(vt: ValueType, value: Any, numeric: bool) -> None:
    assert is_numeric_value(vt, value) is numeric


def test_batch_from_values_puts_each_value_where_its_series_type_says() -> None:
    table = SeriesTable()
    f = table.intern("d", "f")
    b = table.intern("d", "b", value_type=ValueType.BOOL)
    i = table.intern("d", "i", value_type=ValueType.INT16)
    big = table.intern("d", "big", value_type=ValueType.UINT64)
    values: list[Any] = [21.5, True, np.bool_(False), 7, 1.5, "fault", 2**64 - 1, math.nan]
    series = [f, b, b, i, i, f, big, f]
    batch = batch_from_values(table, list(range(8)), values, series)
    assert batch.objects is not None
    assert batch.object_mask().tolist() == [False, False, False, False, True, True, True, False]
    assert [batch.value_at(k) for k in range(5)] == [21.5, True, False, 7, 1.5]
    assert type(batch.value_at(2)) is bool
    assert batch.value_at(5) == "fault"
    assert batch.value_at(6) == 2**64 - 1
    assert math.isnan(batch.values[4]) and math.isnan(batch.values[5]) and math.isnan(batch.value_at(7))
    assert batch.origins.dtype == np.int64 and batch.series.dtype == np.int32
    # numbers a numeric rule computes with: not the Bools, not the objects; NaN is still a number
    assert batch.numeric_mask().tolist() == [True, False, False, True, False, False, False, True]
    plain = batch_from_values(table, [1, 2], [True, np.bool_(True)], [b, b])
    assert plain.objects is None
    assert plain.values.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="same length"):
        batch_from_values(table, [1], [1.0, 2.0], [f, f])


def test_from_columns_keeps_objects_only_when_there_are_some() -> None:
    table = SeriesTable()
    s = table.intern("d", "s", value_type=ValueType.STRING)
    none = ReadingBatch.from_columns(table, [1, 2], [math.nan, math.nan], [s, s], [None, None], [0, 1])
    assert none.objects is None
    assert none.starts is not None and none.starts.tolist() == [0, 1]
    some = ReadingBatch.from_columns(table, [1, 2], [math.nan, math.nan], [s, s], [None, ["a", "b"]])
    assert some.objects is not None
    assert some.objects.tolist() == [None, ["a", "b"]]  # a list value stays one value
    assert some.object_mask().tolist() == [False, True]


def test_numeric_series_flags_follow_the_table() -> None:
    table = SeriesTable()
    table.intern("d", "f")
    assert table.numeric_series().tolist() == [True]
    table.intern("d", "b", value_type=ValueType.BOOL)
    table.intern("d", "s", value_type=ValueType.STRING)
    table.intern("d", "u", value_type=ValueType.UINT8)
    assert table.numeric_series().tolist() == [True, False, False, True]
