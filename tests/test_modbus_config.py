"""EdgeX protocol properties and resource attributes: what loads, and clear errors with key paths for
what does not. The coalescing planner and the swap function on their own. No server needed."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.modbus import Limits, ModbusConnector, Point, Table, parse_link, parse_point, plan
from connectors.modbus._codec import swap32
from edgeflow.errors import ConfigError
from edgeflow.model import ValueType
from edgeflow.profiles import Device, DeviceProfile, DeviceResource


def _device(protocols: dict[str, Any]) -> Device:
    return Device(name="dev", profile_name="p", protocols=protocols)


def _resource(attributes: dict[str, Any], value_type: str = "Int16") -> DeviceResource:
    return DeviceResource.model_validate(
        {"name": "r", "attributes": attributes, "properties": {"valueType": value_type, "readWrite": "RW"}}
    )


def test_edgex_tcp_device_loads_as_published() -> None:
    # device-modbus-go cmd/res/devices/modbus.test.devices.yaml (3.x: numbers), and 2.x-style strings
    for props in (
        {"Address": "0.0.0.0", "Port": 1502, "UnitID": 1, "Timeout": 5, "IdleTimeout": 5},
        {"Address": "0.0.0.0", "Port": "1502", "UnitID": "1", "Timeout": "5", "IdleTimeout": "5"},
    ):
        spec = parse_link(_device({"modbus-tcp": props}))
        assert (spec.kind, spec.address, spec.port, spec.unit) == ("modbus-tcp", "0.0.0.0", 1502, 1)
        assert spec.timeout == 5.0
        assert spec.idle_timeout == 5.0
        assert spec.framing == "socket"


def test_durations() -> None:
    base = {"Address": "h", "Port": 502, "UnitID": 0}
    for raw, seconds in ((2, 2.0), ("500ms", 0.5), ("1.5m", 90.0), ("2s", 2.0), (0.25, 0.25), ("1m30s", 90.0)):
        assert parse_link(_device({"modbus-tcp": {**base, "Timeout": raw}})).timeout == seconds
    spec = parse_link(_device({"modbus-tcp": {**base, "IdleTimeout": "-1", "ConnectDelay": "100ms"}}))
    assert spec.idle_timeout == -1.0
    assert spec.connect_delay == 0.1
    assert spec.timeout == 5.0  # default


def test_rtu_and_rtu_over_tcp() -> None:
    rtu = parse_link(
        _device(
            {
                "modbus-rtu": {
                    "Address": "/dev/ttyUSB0",
                    "UnitID": 2,
                    "BaudRate": 19200,
                    "DataBits": 8,
                    "StopBits": 1,
                    "Parity": "e",
                    "Timeout": 5,
                    "IdleTimeout": 5,
                }
            }
        )
    )
    assert rtu.serial
    assert rtu.framing == "rtu"
    assert rtu.parity == "E"
    assert rtu.gateway == ("serial", "/dev/ttyUSB0")
    over_tcp = parse_link(_device({"modbus-rtu-tcp": {"Address": "gw", "Port": 4001, "UnitID": 9}}))
    assert over_tcp.framing == "rtu"
    assert not over_tcp.serial
    assert over_tcp.gateway == ("tcp", "gw", 4001, "rtu")


@pytest.mark.parametrize(
    ("protocols", "path", "text"),
    [
        ({}, "devices.dev.protocols", "expected one of modbus-tcp"),
        (
            {"modbus-tcp": {"Port": 502, "UnitID": 1}},
            "devices.dev.protocols.modbus-tcp.Address",
            "is required",
        ),
        (
            {"modbus-tcp": {"Address": "h", "UnitID": 1}},
            "devices.dev.protocols.modbus-tcp.Port",
            "is required",
        ),
        ({"modbus-tcp": {"Address": "h", "Port": 70000, "UnitID": 1}}, "modbus-tcp.Port", "out of range"),
        ({"modbus-tcp": {"Address": "h", "Port": 502, "UnitID": 256}}, "modbus-tcp.UnitID", "out of range"),
        (
            {"modbus-tcp": {"Address": "h", "Port": 502, "UnitID": 1, "Timeout": "soon"}},
            "modbus-tcp.Timeout",
            "duration",
        ),
        (
            {"modbus-tcp": {"Address": "h", "Port": 502, "UnitID": 1, "Timeout": 0}},
            "modbus-tcp.Timeout",
            "longer than 0",
        ),
        (
            {
                "modbus-rtu": {
                    "Address": "/dev/x",
                    "UnitID": 1,
                    "BaudRate": 9600,
                    "DataBits": 8,
                    "StopBits": 1,
                }
            },
            "modbus-rtu.Parity",
            "is required",
        ),
        (
            {
                "modbus-rtu": {
                    "Address": "/dev/x",
                    "UnitID": 1,
                    "BaudRate": 9600,
                    "DataBits": 8,
                    "StopBits": 1,
                    "Parity": "X",
                }
            },
            "modbus-rtu.Parity",
            "N (none), O (odd) or E (even)",
        ),
        (
            {"modbus-tcp": {"Address": "h", "Port": 1, "UnitID": 1}, "modbus-rtu": {"Address": "/dev/x"}},
            "devices.dev.protocols",
            "found modbus-tcp, modbus-rtu",
        ),
    ],
)
def test_protocol_errors_name_the_key(protocols: dict[str, Any], path: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_link(_device(protocols))
    assert any(p.endswith(path) and text in m for p, m in info.value.problems), info.value.problems


def test_attributes_parse_like_edgex() -> None:
    p = parse_point("d", _resource({"primaryTable": "holding_registers", "startingAddress": "3"}), "p")
    assert (p.table, p.address, p.count, p.value_type, p.raw_type) == (
        Table.HOLDING_REGISTERS,
        3,
        1,
        ValueType.INT16,
        ValueType.INT16,
    )
    p = parse_point(
        "d",
        _resource(
            {
                "primaryTable": "INPUT_REGISTERS",
                "startingAddress": 8,
                "rawType": "int32",
                "isWordSwap": "true",
            },
            "Float64",
        ),
        "p",
    )
    assert (p.count, p.raw_type, p.word_swap, p.byte_swap) == (2, ValueType.INT32, True, False)
    p = parse_point(
        "d", _resource({"primaryTable": "HOLDING_REGISTERS", "startingAddress": "10.10"}, "Bool"), "p"
    )
    assert (p.address, p.bit) == (10, 10)
    p = parse_point("d", _resource({"primaryTable": "DISCRETES_INPUT", "startingAddress": 0}, "Bool"), "p")
    assert p.table == Table.DISCRETE_INPUTS
    p = parse_point(
        "d", _resource({"primaryTable": "HOLDING_REGISTERS", "startingAddress": 0}, "Uint64"), "p"
    )
    assert p.count == 4
    p = parse_point(
        "d",
        _resource(
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 0, "stringRegisterSize": "8"}, "String"
        ),
        "p",
    )
    assert p.count == 8


@pytest.mark.parametrize(
    ("attributes", "value_type", "key", "text"),
    [
        ({"startingAddress": 1}, "Int16", "primaryTable", "is required"),
        ({"primaryTable": "REGISTERS", "startingAddress": 1}, "Int16", "primaryTable", "is not one of"),
        ({"primaryTable": "COILS"}, "Bool", "startingAddress", "is required"),
        ({"primaryTable": "COILS", "startingAddress": -1}, "Bool", "startingAddress", "out of range"),
        ({"primaryTable": "COILS", "startingAddress": "x"}, "Bool", "startingAddress", "integer"),
        ({"primaryTable": "COILS", "startingAddress": 1}, "Int16", "primaryTable", "valueType must be Bool"),
        (
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1, "rawType": "Int16"},
            "Int32",
            "rawType",
            "cannot be read",
        ),
        (
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1, "rawType": "Int32"},
            "Float32",
            "rawType",
            "allowed: Int16, Uint16",
        ),
        (
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1, "rawType": "Word"},
            "Float32",
            "rawType",
            "unknown valueType",
        ),
        (
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1, "isByteSwap": "yes"},
            "Int32",
            "isByteSwap",
            "true or false",
        ),
        (
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1},
            "String",
            "stringRegisterSize",
            "is required",
        ),
        (
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1, "stringRegisterSize": 124},
            "String",
            "stringRegisterSize",
            "1..123",
        ),
        (
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": "1.3"},
            "Int16",
            "startingAddress",
            "only for Bool",
        ),
        (
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": "1.16"},
            "Bool",
            "startingAddress",
            "0..15",
        ),
        (
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 65535},
            "Int32",
            "startingAddress",
            "past address 65535",
        ),
        (
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1},
            "Uint8",
            "attributes",
            "not supported by Modbus",
        ),
        (
            {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1},
            "Float32Array",
            "attributes",
            "not supported by Modbus",
        ),
    ],
)
def test_attribute_errors_name_the_key(
    attributes: dict[str, Any], value_type: str, key: str, text: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_point("dev", _resource(attributes, value_type), "prof")
    paths = [p for p, _ in info.value.problems]
    assert any(
        p.endswith(key) and p.startswith("profiles.prof.deviceResources.r.attributes") for p in paths
    ), paths
    assert any(text in m for _, m in info.value.problems), info.value.problems
    assert "'dev'" in str(info.value)


def test_add_device_rejects_a_bad_profile_and_conflicting_gateway_settings() -> None:
    profile = DeviceProfile.model_validate(
        {
            "name": "p",
            "deviceResources": [
                {
                    "name": "ok",
                    "attributes": {"primaryTable": "COILS", "startingAddress": 0},
                    "properties": {"valueType": "Bool", "readWrite": "R"},
                },
                {
                    "name": "bad",
                    "attributes": {"primaryTable": "COILS"},
                    "properties": {"valueType": "Bool", "readWrite": "R"},
                },
            ],
        }
    )
    connector = ModbusConnector()
    tcp = Device(
        name="a", profile_name="p", protocols={"modbus-tcp": {"Address": "h", "Port": 502, "UnitID": 1}}
    )
    with pytest.raises(ConfigError, match="'bad'"):
        connector.add_device(tcp, profile)
    assert "a" not in connector.devices

    good = DeviceProfile.model_validate(
        {
            **profile.model_dump(by_alias=True),
            "deviceResources": [profile.device_resources[0].model_dump(by_alias=True)],
        }
    )
    serial = {
        "Address": "/dev/ttyS0",
        "UnitID": 1,
        "BaudRate": 9600,
        "DataBits": 8,
        "StopBits": 1,
        "Parity": "N",
    }
    connector.add_device(Device(name="s1", profile_name="p", protocols={"modbus-rtu": serial}), good)
    connector.add_device(
        Device(name="s2", profile_name="p", protocols={"modbus-rtu": {**serial, "UnitID": 2}}), good
    )
    with pytest.raises(ConfigError, match="shares modbus-rtu:///dev/ttyS0 with 's1'"):
        connector.add_device(
            Device(name="s3", profile_name="p", protocols={"modbus-rtu": {**serial, "BaudRate": 19200}}), good
        )


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"max_gap": 3}, "max_gap"),
        ({"coalesce": "yes"}, "coalesce"),
        ({"max_registers_per_read": 126}, "max_registers_per_read"),
        ({"max_bits_per_read": 0}, "max_bits_per_read"),
        ({"reconnect_min": 0}, "reconnect_min"),
        ({"reconnect_min": "-1s"}, "reconnect_min"),
        ({"reconnect_max": "soon"}, "reconnect_max"),
        ({"reconnect_min": 5, "reconnect_max": 1}, "reconnect_max"),
        ({"reconnect_min": "1m", "reconnect_max": "30s"}, "reconnect_max"),
        ({"close_after_timeouts": 0}, "close_after_timeouts"),
    ],
)
def test_option_errors(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        ModbusConnector(options)
    assert [p for p, _ in info.value.problems] == [f"connectors.modbus.options.{key}"]


def test_reconnect_options_are_durations() -> None:
    c = ModbusConnector({"reconnect_min": "250ms", "reconnect_max": "1m30s"})
    assert (c._reconnect_min, c._reconnect_max) == (0.25, 90.0)


def test_swap32_matches_edgex_vectors() -> None:
    # device-modbus-go internal/driver/swap_test.go
    data = bytes([6, 9, 12, 15])
    assert swap32(data, True, False) == bytes([9, 6, 15, 12])
    assert swap32(data, False, True) == bytes([12, 15, 6, 9])
    assert swap32(data, True, True) == bytes([15, 12, 9, 6])
    assert swap32(data, False, False) == data


def _pt(name: str, table: Table, address: int, count: int = 1) -> Point:
    return Point(name, table, address, count, ValueType.INT16, ValueType.INT16, False, False)


def test_planner() -> None:
    hr, co = Table.HOLDING_REGISTERS, Table.COILS
    points = [
        _pt("a", hr, 10),
        _pt("b", hr, 0, 2),
        _pt("c", hr, 3),
        _pt("d", co, 5),
        _pt("e", hr, 30),
        _pt("f", hr, 3),
    ]
    blocks = plan(points, Limits(max_gap_registers=7))
    assert [(b.table, b.address, b.count, sorted(i for i, _ in b.members)) for b in blocks] == [
        (co, 5, 1, [3]),
        (hr, 0, 11, [0, 1, 2, 5]),  # 0-1, 3 (twice), 10: gaps 1 and 6
        (hr, 30, 1, [4]),  # gap 19 > 7
    ]
    assert len(plan(points, Limits(coalesce=False))) == len(points)
    # blocks the device refused are read point by point
    split = plan(points, Limits(max_gap_registers=7), split=[(hr, 0, 11)])
    assert sorted((b.address, b.count) for b in split if b.table == hr) == [
        (0, 2),
        (3, 1),
        (3, 1),
        (10, 1),
        (30, 1),
    ]
    # the request size limit
    many = [_pt(f"r{i}", hr, i * 2, 2) for i in range(100)]  # 200 registers, contiguous
    assert [b.count for b in plan(many, Limits())] == [124, 76]


def test_unknown_properties_and_attributes_are_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # EdgeX ignores keys it does not know; edgeflow does too, but says so, naming the key path.
    spec = parse_link(_device({"modbus-tcp": {"Address": "h", "Port": 502, "UnitID": 1, "Baud": 9600}}))
    assert spec.port == 502
    attrs = {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1, "isByteswap": True}
    point = parse_point("d", _resource(attrs, "Int32"), "prof")
    assert not point.byte_swap
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("devices.dev.protocols.modbus-tcp.Baud: unknown property" in m for m in messages), messages
    assert any(
        "profiles.prof.deviceResources.r.attributes.isByteswap: unknown attribute" in m for m in messages
    )
