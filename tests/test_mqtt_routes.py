"""From MQTT messages to values, without a broker: EdgeX device-mqtt's payloads, free topic mappings,
type checks against the profile, every reason a message is dropped, and fuzzing (nothing but a
delivery, nothing, or a counted reason ever comes out)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.mqtt import JsonPath, PayloadError, Reason, parse_options
from connectors.mqtt._routes import Delivery, Router, parse_origin
from edgeflow.profiles import Device, DeviceProfile, load_profile

SENSOR = DeviceProfile.model_validate(
    {
        "name": "Sensor",
        "deviceResources": [
            {"name": "temp", "properties": {"valueType": "Float64", "readWrite": "R", "units": "degC"}},
            {"name": "level", "properties": {"valueType": "Int16", "readWrite": "R"}},
            {"name": "on", "properties": {"valueType": "Bool", "readWrite": "RW"}},
            {"name": "small", "properties": {"valueType": "Uint8", "readWrite": "R"}},
            {"name": "f32", "properties": {"valueType": "Float32", "readWrite": "R"}},
            {
                "name": "image",
                "properties": {"valueType": "Binary", "readWrite": "R", "mediaType": "image/png"},
            },
            {"name": "vec", "properties": {"valueType": "Int32Array", "readWrite": "R"}},
            {"name": "label", "properties": {"valueType": "String", "readWrite": "R"}},
            {"name": "setpoint", "properties": {"valueType": "Float64", "readWrite": "W"}},
        ],
        "deviceCommands": [
            {
                "name": "both",
                "readWrite": "R",
                "resourceOperations": [{"deviceResource": "temp"}, {"deviceResource": "level"}],
            },
            {"name": "writeOnly", "readWrite": "W", "resourceOperations": [{"deviceResource": "on"}]},
        ],
    }
)


def router(
    profile: DeviceProfile = SENSOR, names: tuple[str, ...] = ("s1", "a/b", "+"), **opts: Any
) -> Router:
    devices = {n: (Device(name=n, profile_name=profile.name), profile) for n in names}
    options = parse_options(opts)
    return Router(options, devices, int(options.max_payload))


def values(d: Delivery | None) -> dict[str, Any]:
    assert d is not None
    return {v.resource: v.value for v in d.values}


def reason(r: Router, topic: str, payload: bytes) -> tuple[Reason, str | None]:
    with pytest.raises(PayloadError) as info:
        r.route(topic, payload)
    return info.value.reason, info.value.device


# --------------------------------------------------------------------------------------------------
# EdgeX device-mqtt payloads
# --------------------------------------------------------------------------------------------------


def test_edgex_test_profile_payloads(shared_data: Path) -> None:
    profile = load_profile(shared_data / "edgex" / "mqtt.test.device.profile.yml")
    r = router(profile, ("MQTT-test-device",))
    d = r.route(
        "incoming/data/MQTT-test-device/allValues",
        b'{"randfloat32":3.32,"randfloat64":5.54,"message":"Hi World"}',
    )
    assert d is not None and (d.device, d.source) == ("MQTT-test-device", "allValues")
    assert values(d) == {"randfloat32": 3.32, "randfloat64": 5.54, "message": "Hi World"}
    assert values(r.route("incoming/data/MQTT-test-device/randfloat32", b"5.67")) == {"randfloat32": 5.67}
    assert values(r.route("incoming/data/MQTT-test-device/randfloat32", b'{"randfloat32":5.67}')) == {
        "randfloat32": 5.67
    }
    assert values(r.route("incoming/data/MQTT-test-device/message", b"plain text")) == {
        "message": "plain text"
    }
    assert values(r.route("incoming/data/MQTT-test-device/message", b'"quoted"')) == {"message": "quoted"}
    assert values(r.route("incoming/data/MQTT-test-device/json", b'{"a":{"b":[1,2]}}')) == {
        "json": {"a": {"b": [1, 2]}}
    }
    assert values(r.route("incoming/data/MQTT-test-device/json", b'{"json":{"x":1}}')) == {"json": {"x": 1}}
    assert values(r.route("incoming/data/MQTT-test-device/ping", b"pong")) == {"ping": "pong"}
    # the command lacks "message": dropped whole, as device-mqtt does
    assert reason(r, "incoming/data/MQTT-test-device/allValues", b'{"randfloat32":1,"randfloat64":2}') == (
        Reason.MISSING_VALUE,
        "MQTT-test-device",
    )


def test_values_are_checked_against_the_value_type() -> None:
    r = router()
    assert values(r.route("incoming/data/s1/level", b"-300")) == {"level": -300}
    assert values(r.route("incoming/data/s1/level", b"7.0")) == {"level": 7}
    assert values(r.route("incoming/data/s1/level", b'"12"')) == {"level": 12}
    assert values(r.route("incoming/data/s1/on", b"true")) == {"on": True}
    assert values(r.route("incoming/data/s1/on", b'"false"')) == {"on": False}
    assert values(r.route("incoming/data/s1/temp", b'"1.500000e+00"')) == {"temp": 1.5}
    assert values(r.route("incoming/data/s1/temp", b"21")) == {"temp": 21.0}
    assert values(r.route("incoming/data/s1/vec", b"[1, -2, 3]")) == {"vec": [1, -2, 3]}
    assert values(r.route("incoming/data/s1/vec", b'"[1, 2]"')) == {"vec": [1, 2]}
    assert values(r.route("incoming/data/s1/label", b"42")) == {"label": "42"}
    for topic, payload in [
        ("incoming/data/s1/level", b"3.7"),  # no truncation (spf13/cast would give 3)
        ("incoming/data/s1/level", b"40000"),  # out of Int16
        ("incoming/data/s1/small", b"-1"),
        ("incoming/data/s1/small", b"256"),
        ("incoming/data/s1/on", b"2"),
        ("incoming/data/s1/temp", b"true"),
        ("incoming/data/s1/temp", b"null"),
        ("incoming/data/s1/temp", b"[1]"),
        ("incoming/data/s1/f32", b"1e39"),  # overflows Float32
        ("incoming/data/s1/vec", b'[1, "x"]'),
        ("incoming/data/s1/label", b"[1]"),
        ("incoming/data/s1/both", b"[1, 2]"),  # a command's payload must be an object
    ]:
        assert reason(r, topic, payload) == (Reason.WRONG_TYPE, "s1"), (topic, payload)


def test_binary_resources_take_the_raw_payload() -> None:
    r = router()
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    assert values(r.route("incoming/data/s1/image", png)) == {"image": png}
    assert values(r.route("incoming/data/s1/image", b"[1,2]")) == {"image": b"[1,2]"}  # bytes, not JSON


def test_every_reason_a_message_is_dropped() -> None:
    r = router(max_payload=64)
    assert reason(r, "incoming/data/s1/temp", b"x" * 65) == (Reason.OVERSIZE, "s1")
    assert reason(r, "incoming/data/ghost/temp", b"1") == (Reason.UNKNOWN_DEVICE, None)
    assert reason(r, "incoming/data/s1/nope", b"1") == (Reason.UNKNOWN_RESOURCE, "s1")
    assert reason(r, "incoming/data/s1/setpoint", b"1") == (Reason.UNKNOWN_RESOURCE, "s1")  # write-only
    assert reason(r, "incoming/data/s1/writeOnly", b"{}") == (Reason.UNKNOWN_RESOURCE, "s1")
    assert reason(r, "incoming/data/s1", b"1") == (Reason.BAD_TOPIC, None)
    assert reason(r, "incoming/data/s1/temp/extra", b"1") == (Reason.BAD_TOPIC, None)
    assert reason(r, "incoming/data/s%zz/temp", b"1") == (Reason.BAD_TOPIC, None)
    assert reason(r, "incoming/data/s1/temp", b"not a number") == (Reason.WRONG_TYPE, "s1")
    assert reason(r, "incoming/data/s1/both", b"{not json") == (Reason.NOT_JSON, "s1")
    assert reason(r, "incoming/data/s1/temp", b"\xff\xfe") == (Reason.NOT_JSON, "s1")
    assert r.route("elsewhere/s1/temp", b"1") is None


def test_escaped_device_names_in_topics() -> None:
    r = router()
    d = r.route("incoming/data/a%2Fb/temp", b"1.5")
    assert d is not None and d.device == "a/b"
    d = r.route("incoming/data/%2B/temp", b"2.5")
    assert d is not None and d.device == "+"
    # device "a" does not exist; "a/b" unescaped is not reachable through two levels
    assert reason(r, "incoming/data/a/b/temp", b"1") == (Reason.BAD_TOPIC, None)


def test_prefixes_are_configurable_and_edgex_topics_can_be_off() -> None:
    r = router(incoming={"prefix": "plant/in/", "qos": 2})
    assert r.filters == [("plant/in/#", 2)]
    assert values(r.route("plant/in/s1/temp", b"1")) == {"temp": 1.0}
    assert r.route("incoming/data/s1/temp", b"1") is None
    assert router(incoming={"enabled": False}).filters == []


# --------------------------------------------------------------------------------------------------
# Free topic mappings
# --------------------------------------------------------------------------------------------------


def test_mapping_with_device_level_fields_and_origin() -> None:
    r = router(
        topics=[
            {
                "pattern": "sensors/{device}/telemetry",
                "qos": 1,
                "source": "telemetry",
                "fields": {"temp": "$.m.t", "level": "$.m['lvl x']", "on": "flags[0]"},
                "origin": "$.ts",
            }
        ]
    )
    assert ("sensors/+/telemetry", 1) in r.filters
    d = r.route("sensors/a%2Fb/telemetry", b'{"m":{"t":20.5,"lvl x":3},"flags":[true],"ts":1700000000123}')
    assert d is not None and (d.device, d.source) == ("a/b", "telemetry")
    assert values(d) == {"temp": 20.5, "level": 3, "on": True}
    assert {v.origin for v in d.values} == {1_700_000_000_123_000_000}
    # a field this message does not carry is left out; none at all is a missing value
    assert values(r.route("sensors/s1/telemetry", b'{"m":{"t":1},"ts":1700000000}')) == {"temp": 1.0}
    assert reason(r, "sensors/s1/telemetry", b'{"ts":1700000000}') == (Reason.MISSING_VALUE, "s1")
    assert reason(r, "sensors/s1/telemetry", b'{"m":{"t":1}}') == (Reason.BAD_ORIGIN, "s1")
    assert reason(r, "sensors/s1/telemetry", b'{"m":{"t":1},"ts":"yesterday"}') == (Reason.BAD_ORIGIN, "s1")
    assert reason(r, "sensors/s1/telemetry", b'{"m":{"t":"hot"},"ts":1}') == (Reason.WRONG_TYPE, "s1")
    assert reason(r, "sensors/s1/telemetry", b"[]") == (
        Reason.BAD_ORIGIN,
        "s1",
    )  # the origin is looked for first
    assert reason(r, "sensors/nobody/telemetry", b"{}") == (Reason.UNKNOWN_DEVICE, None)


def test_mapping_with_device_from_the_payload_and_edgex_style_values() -> None:
    r = router(topics=[{"pattern": "gw/+/up", "device": "$.id", "source": "both"}])
    d = r.route("gw/7/up", b'{"id":"s1","temp":2.5,"level":4}')
    assert d is not None and (d.device, d.source) == ("s1", "both")
    assert values(d) == {"temp": 2.5, "level": 4}
    assert reason(r, "gw/7/up", b'{"temp":1}') == (Reason.MISSING_VALUE, None)
    assert reason(r, "gw/7/up", b'{"id":5}') == (Reason.BAD_TOPIC, None)
    assert reason(r, "gw/7/up", b'{"id":"s2"}') == (Reason.UNKNOWN_DEVICE, None)
    assert reason(r, "gw/7/up", b"nope") == (Reason.NOT_JSON, None)


def test_mapping_with_a_source_level_and_a_bare_value() -> None:
    r = router(topics=[{"pattern": "raw/{device}/{source}"}])
    assert values(r.route("raw/s1/temp", b"3.25")) == {"temp": 3.25}
    assert values(r.route("raw/s1/image", b"\x00\x01")) == {"image": b"\x00\x01"}
    r = router(topics=[{"pattern": "b64/{device}", "fields": {"image": "$.img"}}])
    d = r.route("b64/s1", orjson.dumps({"img": base64.b64encode(b"\x00\xff").decode()}))
    assert values(d) == {"image": b"\x00\xff"}
    assert d is not None and d.source == "image"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"pattern": "a/b"}, "either by a {device} level"),
        ({"pattern": "a/{device}", "device": "$.id"}, "either by a {device} level"),
        ({"pattern": "a/{device}"}, "name the source"),
        ({"pattern": "a/{device}/{source}", "fields": {"t": "$.t"}}, "not a {source} level"),
        ({"pattern": "a/{device}", "fields": {"t": "$.t", "u": "$.u"}}, "several fields need a source"),
        ({"pattern": "a/{device}", "fields": {"t": "$..t"}}, "expected a key"),
        ({"pattern": "a/{device}", "source": "x", "origin": "$[x]"}, "expected [number]"),
        ({"pattern": "a/{dev}", "source": "x"}, "unknown level"),
    ],
)
def test_bad_mappings_are_config_errors_naming_the_key(spec: dict[str, Any], message: str) -> None:
    from edgeflow.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_options({"topics": [spec]})
    assert info.value.problems[0][0].startswith("connectors.mqtt.topics[0]")
    assert message in info.value.problems[0][1]


def test_json_paths() -> None:
    doc = {"a": {"b c": [10, {"d": 4}]}, "x.y": 1}
    assert JsonPath.parse("$").get(doc) == doc
    assert JsonPath.parse("$.a['b c'][1].d").get(doc) == 4
    assert JsonPath.parse('a["b c"][-2]').get(doc) == 10
    assert JsonPath.parse("$['x.y']").get(doc) == 1
    for missing in ("$.nope", "$.a['b c'][5]", "$.a.b", "$.x.y"):
        with pytest.raises(KeyError):
            JsonPath.parse(missing).get(doc)
    for bad in ("", "$.", "$a", "$.a[", "$.a['b]"):
        with pytest.raises(ValueError, match=r"JSON path|empty"):
            JsonPath.parse(bad)


def test_origins() -> None:
    assert parse_origin(1_700_000_000) == 1_700_000_000_000_000_000
    assert parse_origin(1_700_000_000.5) == 1_700_000_000_500_000_000
    assert parse_origin(1_700_000_000_123) == 1_700_000_000_123_000_000
    assert parse_origin(1_700_000_000_123_456_789) == 1_700_000_000_123_456_789
    assert parse_origin("1700000000123") == 1_700_000_000_123_000_000
    assert parse_origin("2023-11-14T22:13:20.25Z") == 1_700_000_000_250_000_000
    assert parse_origin("2023-11-14T23:13:20+01:00") == 1_700_000_000_000_000_000
    for bad in ("2023-11-14T22:13:20", "soon", True, None, -5, [1], float("inf")):
        with pytest.raises(ValueError, match=r"time|offset|origin|number|finite|float"):
            parse_origin(bad)


# --------------------------------------------------------------------------------------------------
# Fuzz: any topic under a subscription, any payload
# --------------------------------------------------------------------------------------------------

ROUTER = router(
    names=("s1", "a/b"),
    max_payload=256,
    topics=[
        {
            "pattern": "sensors/{device}/t",
            "fields": {"temp": "$.t", "level": "$.l"},
            "source": "x",
            "origin": "$.ts",
        },
        {"pattern": "gw/+/up", "device": "$.id", "source": "both"},
    ],
)
levels = st.one_of(
    st.sampled_from(["s1", "a%2Fb", "temp", "both", "image", "vec", "label", "on", "", "%", "%2F", "ghost"]),
    st.text(max_size=8).filter(lambda s: "/" not in s and "\x00" not in s),
)
topics = st.builds(
    lambda head, rest: "/".join([head, *rest]),
    st.sampled_from(["incoming/data", "sensors", "gw/1", "elsewhere"]),
    st.lists(levels, max_size=4),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["t", "l", "id", "ts", "temp", "level"]) | st.text(max_size=4), inner, max_size=4
        )
    ),
    max_leaves=10,
)
payloads = st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()))


@settings(max_examples=1500, deadline=None)
@given(topics, payloads)
def test_fuzzed_messages_give_a_delivery_nothing_or_a_reason(topic: str, payload: bytes) -> None:
    try:
        d = ROUTER.route(topic, payload)
    except PayloadError as exc:
        failure: PayloadError | None = exc
    else:
        failure = None
        if d is not None:
            assert d.device in ("s1", "a/b") and d.values
    if failure is not None:
        assert isinstance(failure.reason, Reason)
        assert failure.device in (None, "", "s1", "a/b")  # never an invented name: counters stay bounded
