"""OPC-UA configuration, checked at start-up: EdgeX device-opc-ua protocols and attributes, every NodeId
form, security settings that fail closed, and the OPC-UA <-> EdgeX value mapping. No server needed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("asyncua")

from connectors.opcua import (
    DeadbandType,
    OpcUaConnector,
    SecurityMode,
    SecurityPolicy,
    default_value_type,
    parse_endpoint,
    parse_node_id,
    parse_point,
)
from connectors.opcua._trust import TrustError, check_server_certificate, load_certificates
from connectors.opcua._types import Status, from_edgex, to_edgex
from edgeflow.connector import QualityAction
from edgeflow.errors import ConfigError
from edgeflow.model import ValueType
from edgeflow.profiles import Device, DeviceResource, load_profile

ROOT = Path(__file__).resolve().parents[1]


def device(**props: Any) -> Device:
    return Device(
        name="plc", profile_name="P", protocols={"opcua": {"Endpoint": "opc.tcp://10.0.0.5:4840", **props}}
    )


def resource(attrs: dict[str, Any], vt: str = "Float64") -> DeviceResource:
    return DeviceResource.model_validate(
        {"name": "R", "attributes": attrs, "properties": {"valueType": vt, "readWrite": "RW"}}
    )


@pytest.mark.parametrize(
    ("text", "kind", "ns", "ident"),
    [
        ("ns=3;i=1001", "i", 3, 1001),
        ("i=2258", "i", 0, 2258),
        ("ns=2;s=Boiler.Temp", "s", 2, "Boiler.Temp"),
        ("ns=2;s=a;b=c", "s", 2, "a;b=c"),
        (
            "ns=4;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63",
            "g",
            4,
            uuid.UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63"),
        ),
        ("ns=1;b=AQJvcGFxdWU=", "b", 1, b"\x01\x02opaque"),
    ],
)
def test_every_node_id_form(text: str, kind: str, ns: int, ident: Any) -> None:
    ref = parse_node_id(text)
    assert (ref.kind, ref.ns, ref.identifier, ref.nsu) == (kind, ns, ident, None)
    assert str(ref) == text


def test_node_id_with_a_namespace_uri() -> None:
    ref = parse_node_id("nsu=urn:plant:line1;s=Pump.Speed")
    assert (ref.nsu, ref.kind, ref.identifier) == ("urn:plant:line1", "s", "Pump.Speed")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ns=x;i=1", "namespace index 'x'"),
        ("ns=2;i=abc", "numeric identifier 'abc'"),
        ("ns=2;g=not-a-guid", "is not a GUID"),
        ("ns=2;b=***", "is not base64"),
        ("Boiler.Temp", "is not a NodeId"),
        ("ns=2;s=", "empty string identifier"),
    ],
)
def test_bad_node_ids_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_node_id(text)


def test_point_errors_name_profile_resource_and_attribute() -> None:
    with pytest.raises(ConfigError) as info:
        parse_point("plc", resource({"nodeId": "ns=2;x=1"}), "P")
    assert info.value.problems[0][0] == "profiles.P.deviceResources.R.attributes.nodeId"
    with pytest.raises(ConfigError) as info:
        parse_point("plc", resource({}), "P")
    assert "is required" in str(info.value)
    with pytest.raises(ConfigError, match="methodId and objectId go together"):
        parse_point("plc", resource({"methodId": "ns=2;s=M"}), "P")
    with pytest.raises(ConfigError, match="needs a numeric valueType"):
        parse_point(
            "plc", resource({"nodeId": "i=1", "deadbandType": "Absolute", "deadbandValue": 1}, "String"), "P"
        )
    with pytest.raises(ConfigError, match=r"percent deadband is 0\.\.100"):
        parse_point("plc", resource({"nodeId": "i=1", "deadbandType": "percent", "deadbandValue": 150}), "P")


def test_points_browse_paths_and_methods() -> None:
    p = parse_point(
        "plc", resource({"browsePath": "/Objects/2:Plant/2:Boiler/Temp", "samplingInterval": "250ms"}), "P"
    )
    assert p.node.kind == "path" and p.node.path == ((2, "Plant"), (2, "Boiler"), (0, "Temp"))
    assert p.sampling_interval == 0.25
    m = parse_point(
        "plc", resource({"methodId": "ns=2;s=M.Add", "objectId": "ns=2;s=M", "inputMap": ["2", "3"]}), "P"
    )
    assert m.is_method and m.inputs == ("2", "3") and str(m.node) == "ns=2;s=M"


def test_the_edgex_profile_loads_and_validates(tmp_path: Path) -> None:
    profile = load_profile(ROOT / "examples" / "opcua" / "simulation.profile.yaml")
    conn = OpcUaConnector()
    conn.add_device(device(), profile)  # validates every resource's attributes
    assert {r.name for r in profile.device_resources} >= {"Counter", "Random", "Setpoint", "Add"}


def test_endpoint_defaults_and_tuning() -> None:
    spec, tuning = parse_endpoint(
        device(Timeout="2s", DeadbandType="Absolute", DeadbandValue="0.5", QueueSize="4", BadValues="drop")
    )
    assert (spec.policy, spec.mode, spec.timeout) == (SecurityPolicy.NONE, SecurityMode.NONE, 2.0)
    assert (tuning.deadband.type, tuning.deadband.value, tuning.queue_size) == (DeadbandType.ABSOLUTE, 0.5, 4)
    assert (tuning.uncertain, tuning.bad) == (QualityAction.FLAG, QualityAction.DROP)


def test_a_missing_or_bad_endpoint_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_endpoint(Device(name="plc", profile_name="P", protocols={"opcua": {}}))
    assert info.value.problems == [
        ("devices.plc.protocols.opcua.Endpoint", "is required (opc.tcp://host:port/path)")
    ]
    with pytest.raises(ConfigError, match=r"is not an opc\.tcp://"):
        parse_endpoint(Device(name="plc", profile_name="P", protocols={"opcua": {"Endpoint": "http://x"}}))
    with pytest.raises(ConfigError, match="the opcua protocol is needed"):
        parse_endpoint(Device(name="plc", profile_name="P", protocols={"modbus-tcp": {}}))


def test_security_fails_closed_at_configuration(tmp_path: Path) -> None:
    cert = tmp_path / "c.der"
    cert.write_bytes(b"x")
    # a policy without trust: nothing is trusted implicitly
    with pytest.raises(ConfigError) as info:
        parse_endpoint(device(Policy="Basic256Sha256", CertFile=str(cert), KeyFile=str(cert)))
    assert any(
        k.endswith("TrustedCerts") and "trusts no server certificate implicitly" in m
        for k, m in info.value.problems
    )
    # a password over an unsecured channel
    with pytest.raises(ConfigError, match="would cross the network unprotected"):
        parse_endpoint(device(Username="op", Password="secret"))
    # deprecated policies are refused, not accepted quietly
    with pytest.raises(ConfigError, match="deprecated and insecure"):
        parse_endpoint(device(Policy="Basic128Rsa15"))
    with pytest.raises(ConfigError, match=r"Mode.*needs a security Policy"):
        parse_endpoint(device(Mode="Sign"))
    spec, _ = parse_endpoint(
        device(Policy="aes256-sha256-rsapss", CertFile=str(cert), KeyFile=str(cert), TrustedCerts=str(cert))
    )
    assert (spec.policy, spec.mode) == (SecurityPolicy.AES256_SHA256_RSAPSS, SecurityMode.SIGN_AND_ENCRYPT)
    assert "secret" not in repr(
        parse_endpoint(
            device(
                Policy="Basic256Sha256",
                CertFile=str(cert),
                KeyFile=str(cert),
                TrustedCerts=[str(cert)],
                Username="op",
                Password="secret",
            )
        )[0]
    )


def test_unusable_certificate_files_fail_at_start_up(tmp_path: Path, opcua_certs: Any) -> None:
    profile = load_profile(ROOT / "examples" / "opcua" / "simulation.profile.yaml")
    conn = OpcUaConnector()
    with pytest.raises(ConfigError, match="is not the private key of"):
        conn.add_device(
            device(
                Policy="Basic256Sha256",
                CertFile=str(opcua_certs.client_cert),
                KeyFile=str(opcua_certs.rogue_key),
                TrustedCerts=[str(opcua_certs.server_cert)],
            ),
            profile,
        )


def test_connector_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        OpcUaConnector({"reconect_max": 3})
    with pytest.raises(ConfigError, match="must not be less than reconnect_min"):
        OpcUaConnector({"reconnect_min": 5, "reconnect_max": 1})


def test_server_certificate_trust(opcua_certs: Any) -> None:
    server_der = opcua_certs.server_cert.read_bytes()
    pinned = load_certificates([opcua_certs.server_cert])
    check_server_certificate(server_der, pinned, announced_uri="urn:edgeflow:simulator")
    # issued by a trusted CA
    ca = load_certificates([opcua_certs.ca_cert])
    check_server_certificate(
        opcua_certs.ca_server_cert.read_bytes(), ca, announced_uri="urn:edgeflow:simulator"
    )
    # neither pinned nor issued by a trusted one: refused, naming the certificate
    with pytest.raises(TrustError, match=r"the server certificate CN=stranger \(SHA-256 .*\) is not trusted"):
        check_server_certificate(
            opcua_certs.stranger_cert.read_bytes(), pinned + ca, sources=[opcua_certs.server_cert]
        )
    # the right certificate, at the wrong time
    with pytest.raises(TrustError, match=r"CN=simulator .* expired on"):
        check_server_certificate(server_der, pinned, now=datetime.now(UTC) + timedelta(days=400))
    # a certificate for another application than the server announces
    with pytest.raises(
        TrustError, match="is for application 'urn:edgeflow:simulator', but the server announces"
    ):
        check_server_certificate(server_der, pinned, announced_uri="urn:somebody:else")


@pytest.mark.parametrize(
    ("builtin", "array", "vt"),
    [
        ("Boolean", False, ValueType.BOOL),
        ("SByte", False, ValueType.INT8),
        ("UInt64", False, ValueType.UINT64),
        ("Float", False, ValueType.FLOAT32),
        ("Double", True, ValueType.FLOAT64_ARRAY),
        ("String", True, ValueType.STRING_ARRAY),
        ("DateTime", False, ValueType.INT64),
        ("ByteString", False, ValueType.BINARY),
        ("StatusCode", False, ValueType.UINT32),
        ("LocalizedText", False, ValueType.STRING),
        ("ExtensionObject", False, ValueType.OBJECT),
        ("ExtensionObject", True, ValueType.OBJECT_ARRAY),
    ],
)
def test_default_value_types(builtin: str, array: bool, vt: ValueType) -> None:
    assert default_value_type(builtin, array) is vt


def test_values_convert_to_the_resource_type_or_say_why_not() -> None:
    t = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert to_edgex(ValueType.INT64, t) == 1704164645678000000
    assert to_edgex(ValueType.STRING, t) == "2024-01-02T03:04:05.678000Z"
    assert to_edgex(ValueType.UINT32, Status(0x40920000, "UncertainLastUsableValue")) == 0x40920000
    assert (
        to_edgex(ValueType.STRING, Status(0x40920000, "UncertainLastUsableValue"))
        == "UncertainLastUsableValue"
    )
    assert to_edgex(ValueType.UINT8_ARRAY, b"\x01\x02") == [1, 2]
    assert to_edgex(ValueType.OBJECT, {"a": b"\x01", "t": t}) == {
        "a": "AQ==",
        "t": "2024-01-02T03:04:05.678000Z",
    }
    with pytest.raises(ValueError, match="out of range for Int8"):
        to_edgex(ValueType.INT8, 200)
    with pytest.raises(ValueError, match="Bool needs a Boolean node"):
        to_edgex(ValueType.BOOL, 1)
    with pytest.raises(ValueError, match="needs an array"):
        to_edgex(ValueType.FLOAT64_ARRAY, 1.0)


def test_writes_take_the_nodes_own_type() -> None:
    assert from_edgex("Int16", False, 12.0) == 12
    assert from_edgex("Float", False, 1) == 1.0
    assert from_edgex("Byte", True, b"\x01\x02") == [1, 2]
    assert from_edgex("DateTime", False, 1704164645678000000) == datetime(
        2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC
    )
    assert from_edgex("Guid", False, "72962b91-fa75-4ae6-8d28-b404dc7daf63") == uuid.UUID(
        "72962b91-fa75-4ae6-8d28-b404dc7daf63"
    )
    with pytest.raises(ValueError, match=r"70000 is out of range for the node's type Int16"):
        from_edgex("Int16", False, 70000)
    with pytest.raises(ValueError, match="takes whole numbers"):
        from_edgex("UInt32", False, 1.5)
    with pytest.raises(ValueError, match="overflows the node's type Float"):
        from_edgex("Float", False, 1e39)
    with pytest.raises(ValueError, match="cannot write a value of built-in type ExtensionObject"):
        from_edgex("ExtensionObject", False, {})
