"""EdgeX profile and device-definition loading, key-path errors, and inspect_file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from edgeflow.cli.inspect import inspect_file
from edgeflow.errors import ConfigError
from edgeflow.model import ValueType
from edgeflow.parsing import validation_problems
from edgeflow.profiles import (
    AutoEvent,
    Device,
    DeviceProfile,
    check_device,
    devices_from_dict,
    load_devices,
    load_profile,
    profile_from_dict,
)

pytestmark = pytest.mark.data

# The device-definition file device-modbus-go v3.1.1 ships beside its profile (cmd/res/devices/
# modbus.test.devices.yaml, first two entries), written inline: shared data holds no device file.
MODBUS_DEVICES = """\
# Pre-define Devices
deviceList:
  - name: Modbus-TCP-test-device
    profileName: Test-Device-Modbus-Profile
    description: >-
      This device is a product for monitoring and controlling digital inputs and
      outputs over a LAN.
    labels:
      - Air conditioner
      - modbus TCP
    protocols:
      modbus-tcp:
        Address: 0.0.0.0
        Port: 1502
        UnitID: 1
        Timeout: 5
        IdleTimeout: 5
    autoEvents:
      - interval: 20s
        onChange: false
        sourceName: HVACValues
  - name: Modbus-RTU-test-device
    profileName: Test-Device-Modbus-Profile
    protocols:
      modbus-rtu:
        Address: /tmp/slave
        UnitID: 1
        BaudRate: 19200
        Parity: 'N'
        Timeout: 5
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# --------------------------------------------------------------------------------------------------
# The shared EdgeX files
# --------------------------------------------------------------------------------------------------


def test_every_shared_edgex_file_loads(shared_data: Path) -> None:
    files = sorted((shared_data / "edgex").iterdir())
    assert len(files) == 3
    for f in files:
        profile = load_profile(f)
        assert profile.device_resources
        assert not profile.problems()


def test_modbus_profile_contents(shared_data: Path) -> None:
    p = load_profile(shared_data / "edgex" / "modbus.test.device.profile.yml")
    assert p.name == "Test-Device-Modbus-Profile"
    assert p.manufacturer == "Cool Automation"
    assert p.labels == ["HVAC", "Air conditioner"]
    assert [r.name for r in p.device_resources] == [
        "SwitchA",
        "SwitchB",
        "OperationMode",
        "FanSpeed",
        "RoomTemperature",
        "Temperature",
    ]
    fan = p.resource("FanSpeed")
    assert fan.properties.value_type is ValueType.INT32
    assert fan.attributes == {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 2}
    assert fan.properties.maximum == 9.0
    assert fan.properties.default_value == "0"
    room = p.resource("RoomTemperature")
    assert room.attributes == {"primaryTable": "INPUT_REGISTERS", "startingAddress": 3, "rawType": "Int16"}
    assert room.properties.value_type is ValueType.FLOAT32
    assert room.properties.scale == pytest.approx(0.1)
    assert room.properties.read_write == "R"
    assert room.properties.readable
    assert not room.properties.writable
    assert room.description == "Room Temperature x10 °C (Read Only)"  # the UTF-8 survives
    switch_b = p.resource("SwitchB")
    assert switch_b.attributes["startingAddress"] == 14
    assert switch_b.is_hidden
    values = p.command("Values")
    assert values is not None
    assert [op.device_resource for op in values.resource_operations] == [
        "SwitchA",
        "OperationMode",
        "FanSpeed",
        "Temperature",
    ]
    assert values.mappings_for("SwitchA") == {"true": "ON", "false": "OFF"}
    op_mode = values.mappings_for("OperationMode")
    assert op_mode["10"] == "VAM Heat"
    assert "7" not in op_mode  # the enum skips 7
    assert p.command("Nope") is None
    assert [r.name for r in p.source_resources("HVACValues")] == ["OperationMode", "FanSpeed", "Temperature"]
    assert [r.name for r in p.source_resources("Temperature")] == ["Temperature"]
    # profile-wide lookup: a resource read on its own is mapped with its first command's mappings
    assert p.mappings_for("SwitchB") == {"true": "ON", "false": "OFF"}
    assert p.mappings_for("FanSpeed", command="HVACValues")["9"] == "VAMHiFreshUp"
    assert p.mappings_for("Temperature") == {}


def test_mqtt_profile_unquoted_names(shared_data: Path) -> None:
    p = load_profile(shared_data / "edgex" / "mqtt.test.device.profile.yml")
    assert [r.name for r in p.device_resources] == ["randfloat32", "randfloat64", "ping", "message", "json"]
    assert p.resource("json").properties.value_type is ValueType.OBJECT
    assert p.resource("json").properties.media_type == "application/json"
    assert p.resource("randfloat64").properties.default_value == "0.00"
    assert p.resource("ping").properties.default_value == "oops"
    assert p.resource("randfloat32").properties.minimum == 0.0
    cmd = p.command("allValues")
    assert cmd is not None
    assert cmd.read_write == "RW"


def test_virtual_profile_arrays_and_write_commands(shared_data: Path) -> None:
    p = load_profile(shared_data / "edgex" / "device.virtual.float.yaml")
    assert p.resource("Float64Array").properties.value_type is ValueType.FLOAT64_ARRAY
    assert p.resource("Float32Array").properties.default_value == "[0]"
    hidden = [r.name for r in p.device_resources if r.is_hidden]
    assert hidden == [
        "EnableRandomization_Float32",
        "EnableRandomization_Float64",
        "EnableRandomization_Float32Array",
        "EnableRandomization_Float64Array",
    ]
    assert p.resource("EnableRandomization_Float32").properties.read_write == "W"
    cmd = p.command("WriteFloat32Value")
    assert cmd is not None
    assert cmd.resource_operations[1].default_value == "false"
    assert cmd.resource_operations[0].default_value is None


# --------------------------------------------------------------------------------------------------
# Device definitions
# --------------------------------------------------------------------------------------------------


def test_load_devices_as_edgex_ships_them(tmp_path: Path, shared_data: Path) -> None:
    devices = load_devices(_write(tmp_path, "devices.yaml", MODBUS_DEVICES))
    assert [d.name for d in devices] == ["Modbus-TCP-test-device", "Modbus-RTU-test-device"]
    tcp = devices[0]
    assert tcp.protocols == {
        "modbus-tcp": {"Address": "0.0.0.0", "Port": 1502, "UnitID": 1, "Timeout": 5, "IdleTimeout": 5}
    }
    assert tcp.description.startswith("This device is a product")
    assert tcp.auto_events == [AutoEvent(interval="20s", source_name="HVACValues")]
    assert tcp.auto_events[0].interval_seconds == 20.0
    assert devices[1].protocols["modbus-rtu"]["Parity"] == "N"
    profile = load_profile(shared_data / "edgex" / "modbus.test.device.profile.yml")
    assert check_device(tcp, profile) == []


def test_check_device_names_bad_sources(shared_data: Path) -> None:
    profile = load_profile(shared_data / "edgex" / "modbus.test.device.profile.yml")
    dev = Device(
        name="d",
        profile_name="Other",
        auto_events=[
            AutoEvent(interval="1s", source_name="Temperature"),
            AutoEvent(interval="1s", source_name="X"),
        ],
    )
    assert check_device(dev, profile, where="devices[2]") == [
        ("devices[2].profileName", "is 'Other', the profile is 'Test-Device-Modbus-Profile'"),
        ("devices[2].autoEvents[1].sourceName", "'X' is not in profile 'Test-Device-Modbus-Profile'"),
    ]


def test_device_list_errors_name_key_paths(tmp_path: Path) -> None:
    text = """\
deviceList:
  - name: ok
    profileName: p
    autoEvents:
      - {interval: 1s, sourceName: a}
  - name: bad
    profileName: p
    adminState: OPEN
    autoEvents:
      - {interval: 10 parsecs, sourceName: a}
      - {interval: 0s, sourceName: a}
  - name: ok2
    profileName: p
    colour: red
  - name: ok
    profileName: p
"""
    with pytest.raises(ConfigError) as ei:
        load_devices(_write(tmp_path, "bad-devices.yaml", text))
    err = ei.value
    assert err.source is not None
    assert err.source.endswith("bad-devices.yaml")
    paths = [p for p, _ in err.problems]
    assert paths == [
        "deviceList[1].adminState",
        "deviceList[1].autoEvents[0].interval",
        "deviceList[1].autoEvents[1].interval",
        "deviceList[2].colour",
        "deviceList[3].name",
    ]
    assert "bad-devices.yaml" in str(err)
    assert "deviceList[3].name: duplicate device 'ok'" in str(err)
    assert "must be longer than 0" in dict(err.problems)["deviceList[1].autoEvents[1].interval"]


def test_device_list_needs_its_top_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="deviceList"):
        load_devices(_write(tmp_path, "d.yaml", "devices:\n  - name: x\n"))
    with pytest.raises(ConfigError, match="must be a list"):
        devices_from_dict({"deviceList": {"name": "x"}})


# --------------------------------------------------------------------------------------------------
# Malformed profiles
# --------------------------------------------------------------------------------------------------

PROFILE_HEAD = """\
name: "P"
deviceResources:
"""


def _resource(name: str, vt: str = "Int16", rw: str = "RW", extra: str = "") -> str:
    return f"""\
-
  name: "{name}"
  properties:
    valueType: "{vt}"
    readWrite: "{rw}"
{extra}"""


def test_bad_value_type_is_named_by_key_path(tmp_path: Path) -> None:
    text = PROFILE_HEAD + "".join(_resource(f"r{i}") for i in range(3)) + _resource("r3", vt="Float128")
    with pytest.raises(ConfigError) as ei:
        load_profile(_write(tmp_path, "p.yaml", text))
    (path, msg), *rest = ei.value.problems
    assert not rest
    assert path == "deviceResources[3].properties.valueType"
    assert "unknown valueType 'Float128'" in msg
    assert str(ei.value).startswith(f"{tmp_path / 'p.yaml'}: invalid device profile")


def test_several_problems_each_with_a_path(tmp_path: Path) -> None:
    text = (
        PROFILE_HEAD
        + _resource("a", rw="X")
        + _resource("b", extra="    mask: -1\n    scale: big\n")
        + "-\n  name: c\n  properties: {valueType: Int8}\n"
        + "-\n  name: d\n  propertys: {valueType: Int8, readWrite: R}\n"
    )
    with pytest.raises(ConfigError) as ei:
        load_profile(_write(tmp_path, "p.yaml", text))
    assert [p for p, _ in ei.value.problems] == [
        "deviceResources[0].properties.readWrite",
        "deviceResources[1].properties.mask",
        "deviceResources[1].properties.scale",
        "deviceResources[2].properties.readWrite",
        "deviceResources[3].properties",
        "deviceResources[3].propertys",
    ]
    msgs = dict(ei.value.problems)
    assert msgs["deviceResources[2].properties.readWrite"] == "required key is missing"
    assert msgs["deviceResources[3].propertys"] == "unknown key (did you mean 'properties'?)"


def test_commands_must_reference_existing_resources(tmp_path: Path) -> None:
    text = (
        PROFILE_HEAD
        + _resource("a")
        + _resource("b", rw="R")
        + _resource("a")
        + """\
deviceCommands:
- name: c1
  readWrite: RW
  resourceOperations:
    - { deviceResource: "a" }
    - { deviceResource: "ghost" }
- name: c2
  readWrite: W
  resourceOperations:
    - { deviceResource: "b" }
- name: c1
  readWrite: R
  resourceOperations:
    - { deviceResource: "a" }
"""
    )
    with pytest.raises(ConfigError) as ei:
        load_profile(_write(tmp_path, "p.yaml", text))
    assert ei.value.problems == [
        ("deviceResources[2].name", "duplicate device resource 'a'"),
        ("deviceCommands[0].resourceOperations[1].deviceResource", "no device resource named 'ghost'"),
        (
            "deviceCommands[1].resourceOperations[0].deviceResource",
            "command readWrite W does not match resource's R",
        ),
        ("deviceCommands[2].name", "duplicate device command 'c1'"),
    ]


def test_direct_construction_runs_the_cross_checks() -> None:
    with pytest.raises(ValidationError, match="no device resource named 'x'"):
        DeviceProfile.model_validate(
            {
                "name": "p",
                "deviceResources": [{"name": "a", "properties": {"valueType": "Bool", "readWrite": "R"}}],
                "deviceCommands": [
                    {"name": "c", "readWrite": "R", "resourceOperations": [{"deviceResource": "x"}]}
                ],
            }
        )


def test_writable_binary_is_refused() -> None:
    with pytest.raises(ConfigError) as ei:
        profile_from_dict(
            {
                "name": "p",
                "deviceResources": [
                    {"name": "img", "properties": {"valueType": "Binary", "readWrite": "RW"}}
                ],
            }
        )
    assert ei.value.problems == [
        ("deviceResources[0].properties.readWrite", "a Binary resource cannot be written")
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: [unclosed\n", "not valid YAML: line 2"),
        ("a: 1\nb: 2\na: 3\n", "duplicate key 'a' (first defined on line 1)"),
        ("- just\n- a list\n", "must be a mapping"),
        ("name: p\n---\nname: q\n", "expected one YAML document"),
        ("", "expected one YAML document holding a device profile, found 0"),
    ],
)
def test_unreadable_profiles(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=r"p\.yaml") as ei:
        load_profile(_write(tmp_path, "p.yaml", text))
    assert needle in str(ei.value)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_profile(tmp_path / "absent.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_profile(bad)


def test_yaml_is_read_as_yaml_1_2(tmp_path: Path) -> None:
    """EdgeX (Go yaml.v3) reads ON, yes, 1:30 and dates as strings; PyYAML's YAML 1.1 would not."""
    text = """\
name: P
manufacturer: 2024-01-01
model: 1:30
deviceResources:
- name: on
  tags: {state: ON, answer: yes, big: 1e3, hex: 0x1F}
  properties: {valueType: Bool, readWrite: RW, defaultValue: off, units: 10}
"""
    p = load_profile(_write(tmp_path, "p.yaml", text))
    r = p.device_resources[0]
    assert r.name == "on"
    assert r.tags == {"state": "ON", "answer": "yes", "big": 1000.0, "hex": 31}
    assert r.properties.default_value == "off"
    assert r.properties.units == "10"
    assert p.manufacturer == "2024-01-01"
    assert p.model == "1:30"


def test_json_profile_loads(tmp_path: Path) -> None:
    body = {
        "name": "J",
        "deviceResources": [{"name": "t", "properties": {"valueType": "Float64", "readWrite": "R"}}],
    }
    p = load_profile(_write(tmp_path, "p.json", orjson.dumps(body).decode()))
    assert p.resource("t").properties.value_type is ValueType.FLOAT64


# --------------------------------------------------------------------------------------------------
# validation_problems
# --------------------------------------------------------------------------------------------------


class _Inner(BaseModel):
    port: int


class _Outer(BaseModel):
    servers: list[dict[str, _Inner]]


def test_validation_problems_paths() -> None:
    with pytest.raises(ValidationError) as ei:
        _Outer.model_validate({"servers": [{"a": {"port": 1}}, {"b": {"port": "x"}}]})
    assert validation_problems(ei.value) == [
        ("servers[1].b.port", "Input should be a valid integer, unable to parse string as an integer")
    ]
    assert validation_problems(ei.value, prefix="config") == [
        ("config.servers[1].b.port", "Input should be a valid integer, unable to parse string as an integer")
    ]
    with pytest.raises(ValidationError) as ei2:
        _Outer.model_validate([1])
    assert validation_problems(ei2.value, prefix="x[0]") == [
        ("x[0]", "Input should be a valid dictionary or instance of _Outer")
    ]


# --------------------------------------------------------------------------------------------------
# inspect_file
# --------------------------------------------------------------------------------------------------


def test_inspect_profile(shared_data: Path) -> None:
    d = inspect_file(shared_data / "edgex" / "modbus.test.device.profile.yml")
    assert d["kind"] == "DeviceProfile"
    assert d["name"] == "Test-Device-Modbus-Profile"
    room = next(r for r in d["resources"] if r["name"] == "RoomTemperature")
    assert room["valueType"] == "Float32"
    assert room["readWrite"] == "R"
    assert room["writable"] is False
    assert room["transforms"] == {"scale": 0.1}
    assert room["attributes"] == {"primaryTable": "INPUT_REGISTERS", "startingAddress": 3, "rawType": "Int16"}
    switch_a = next(r for r in d["resources"] if r["name"] == "SwitchA")
    assert "transforms" not in switch_a  # scale 1 is the default, not a transform
    cmd = next(c for c in d["commands"] if c["name"] == "Switch")
    assert cmd["mappings"]["SwitchB"] == {"true": "ON", "false": "OFF"}
    assert orjson.loads(orjson.dumps(d)) == d


def test_inspect_device_list(tmp_path: Path) -> None:
    d = inspect_file(_write(tmp_path, "devices.yaml", MODBUS_DEVICES))
    assert d["kind"] == "DeviceList"
    assert d["name"] == "devices.yaml"
    tcp = d["devices"][0]
    assert tcp["protocols"]["modbus-tcp"]["Port"] == 1502
    assert tcp["autoEvents"] == [
        {"sourceName": "HVACValues", "interval": "20s", "intervalSeconds": 20.0, "onChange": False}
    ]
    assert orjson.loads(orjson.dumps(d)) == d


def test_inspect_refuses_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"top-level keys: port, server"):
        inspect_file(_write(tmp_path, "c.yaml", "server: x\nport: 1\n"))
    with pytest.raises(ConfigError, match="file is empty"):
        inspect_file(_write(tmp_path, "e.yaml", "# nothing\n"))
    with pytest.raises(ConfigError, match="the document is a list"):
        inspect_file(_write(tmp_path, "l.yaml", "- 1\n"))
    with pytest.raises(ConfigError, match="cannot read file"):
        inspect_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"deviceResources\[0\].properties.valueType"):
        inspect_file(_write(tmp_path, "p.yaml", PROFILE_HEAD + _resource("a", vt="Int17")))


# --------------------------------------------------------------------------------------------------
# Public face
# --------------------------------------------------------------------------------------------------


def test_public_names() -> None:
    import edgeflow.profiles as public

    assert len(set(public.__all__)) == len(public.__all__)
    missing = [n for n in public.__all__ if not hasattr(public, n)]
    assert missing == []
    for name in ("load_profile", "load_devices", "describe_profile", "describe_device", "transform_read"):
        assert name in public.__all__


def test_null_is_absent_and_edgex4_fields(tmp_path: Path) -> None:
    text = """\
apiVersion: v3
name: P4
dbTimestamp: {created: 1700000000000, modified: 1700000000001}
labels:
deviceResources:
- name: t
  attributes:
  properties: {valueType: Float64, readWrite: R, minimum: ~, optional: ~}
deviceCommands:
"""
    p = load_profile(_write(tmp_path, "p4.yaml", text))
    assert p.api_version == "v3"
    assert p.labels == []
    assert p.device_commands == []
    assert p.db_timestamp == {"created": 1700000000000, "modified": 1700000000001}
    t = p.resource("t")
    assert t.attributes == {}
    assert t.properties.minimum is None
    with pytest.raises(ConfigError) as ei:
        profile_from_dict({"name": None, "deviceResources": [{"name": "t", "properties": None}]})
    assert [path for path, _ in ei.value.problems] == ["name", "deviceResources[0].properties"]
    dev = Device.model_validate(
        {
            "name": "d",
            "profileName": "P4",
            "parent": "gw",
            "protocols": None,
            "autoEvents": [
                {"interval": "1ms", "sourceName": "t", "onChangeThreshold": 0.5, "retention": {"maxCap": 10}}
            ],
        }
    )
    assert dev.parent == "gw"
    assert dev.protocols == {}
    assert dev.auto_events[0].on_change_threshold == 0.5
    assert dev.auto_events[0].interval_seconds == 0.001
