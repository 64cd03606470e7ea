"""OPC-UA reads, writes and method calls against a real asyncua server (the simulator), through the
device service: every value type round-trips, writes go out as the node's own type, methods are
device commands, every NodeId form finds its node, statuses are never passed as Good."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

pytest.importorskip("asyncua")

from connectors.opcua import OpcUaConnector
from edgeflow.errors import DeviceProtocolError, WriteRejectedError
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.profiles import Device, DeviceProfile
from edgeflow.service import DeviceService

pytestmark = [pytest.mark.server, pytest.mark.asyncio(loop_scope="module")]

NS = 2  # the simulator's namespace index
T0 = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

#: Types.<node>, the resource's valueType, the value the simulator starts with, a value to write
TYPES: list[tuple[str, str, Any, Any]] = [
    ("Boolean", "Bool", True, False),
    ("SByte", "Int8", -8, 5),
    ("Byte", "Uint8", 200, 7),
    ("Int16", "Int16", -1600, 1234),
    ("UInt16", "Uint16", 60000, 65535),
    ("Int32", "Int32", -2_000_000, 42),
    ("UInt32", "Uint32", 4_000_000_000, 1),
    ("Int64", "Int64", -(2**40), 2**50),
    ("UInt64", "Uint64", 2**60, 2**63 + 5),
    ("Float", "Float32", 1.5, 2.5),
    ("Double", "Float64", 2.25, -3.75),
    ("String", "String", "hello", "wörld"),
    ("DateTime", "Int64", 1704164645678000000, 1704164645000000000),
    ("Guid", "String", "72962b91-fa75-4ae6-8d28-b404dc7daf63", "0c4b3d25-0c61-4a8c-9d2e-6f3c1f2e7a11"),
    ("ByteString", "Binary", b"\x00\x01edge", None),  # EdgeX never writes Binary resources
    ("ByteString", "Uint8Array", [0, 1, 101, 100, 103, 101], [255, 0]),
    ("XmlElement", "String", "<a>1</a>", "<b/>"),
    ("NodeId", "String", "ns=1;s=Anywhere", "ns=2;i=7"),
    ("ExpandedNodeId", "String", "ns=1;i=42", "ns=3;s=X"),
    ("StatusCode", "Uint32", 0x40900000, 0x80000000),  # UncertainLastUsableValue, Bad
    ("QualifiedName", "String", "1:Name", "2:Other"),
    ("LocalizedText", "String", "Grüße", "Hallo"),
    ("BooleanArray", "BoolArray", [True, False, True], [False]),
    ("SByteArray", "Int8Array", [-1, 0, 1], [127, -128]),
    ("ByteArray", "Uint8Array", [1, 2, 255], [9]),
    ("Int16Array", "Int16Array", [-3, 4], [5, 6, 7]),
    ("UInt16Array", "Uint16Array", [3, 65535], [0]),
    ("Int32Array", "Int32Array", [-5, 6], [-(2**31)]),
    ("UInt32Array", "Uint32Array", [5, 4_000_000_000], [2**32 - 1]),
    ("Int64Array", "Int64Array", [-7, 2**40], [1, 2]),
    ("UInt64Array", "Uint64Array", [7, 2**60], [3]),
    ("FloatArray", "Float32Array", [0.5, -1.25], [2.0, 4.0]),
    ("DoubleArray", "Float64Array", [1.5, 2.5, 3.5], [0.1]),
    ("StringArray", "StringArray", ["a", "b,c"], ["x", "y z"]),
]


def profile() -> DeviceProfile:
    resources: list[dict[str, Any]] = [
        {
            "name": f"T{node}{vt}",
            "attributes": {"nodeId": f"ns={NS};s=Types.{node}"},
            "properties": {"valueType": vt, "readWrite": "R" if new is None else "RW"},
        }
        for node, vt, _, new in TYPES
    ]
    resources += [
        {
            "name": "Counter",
            "attributes": {"nodeId": f"ns={NS};i=1001"},
            "properties": {"valueType": "Int32", "readWrite": "RW"},
        },
        {
            "name": "ByGuid",
            "attributes": {"nodeId": f"ns={NS};g=0c4b3d25-0c61-4a8c-9d2e-6f3c1f2e7a10"},
            "properties": {"valueType": "Float64", "readWrite": "R"},
        },
        {
            "name": "ByOpaque",
            "attributes": {"nodeId": f"ns={NS};b=AQJvcGFxdWU="},
            "properties": {"valueType": "Float64", "readWrite": "R"},
        },
        {
            "name": "ByUri",
            "attributes": {"nodeId": "nsu=urn:edgeflow:simulator:nodes;s=Boiler.Level"},
            "properties": {"valueType": "Float64", "readWrite": "R"},
        },
        {
            "name": "Temperature",
            "attributes": {"browsePath": f"{NS}:Plant/{NS}:Boiler/{NS}:Temperature"},
            "properties": {"valueType": "Float64", "readWrite": "R", "units": "degC"},
        },
        {
            "name": "Level",
            "attributes": {"nodeId": f"ns={NS};s=Boiler.Level"},
            "properties": {"valueType": "Float64", "readWrite": "RW"},
        },
        {
            "name": "Setpoint",
            "attributes": {"nodeId": f"ns={NS};s=Boiler.Setpoint"},
            "properties": {"valueType": "Float64", "readWrite": "RW", "scale": 0.5},
        },
        {
            "name": "Add",
            "attributes": {
                "methodId": f"ns={NS};s=Methods.Add",
                "objectId": f"ns={NS};s=Methods",
                "inputMap": ["2", "3.5"],
            },
            "properties": {"valueType": "Float64", "readWrite": "R"},
        },
        {
            "name": "Scale",
            "attributes": {
                "methodId": f"ns={NS};s=Methods.Scale",
                "objectId": f"ns={NS};s=Methods",
                "inputMap": [[1.0, 2.5], "2"],
            },
            "properties": {"valueType": "Float64Array", "readWrite": "R"},
        },
        {
            "name": "Reset",
            "attributes": {"methodId": f"ns={NS};s=Methods.Reset", "objectId": f"ns={NS};s=Methods"},
            "properties": {"valueType": "Int32", "readWrite": "R"},
        },
        {
            "name": "Fill",
            "attributes": {"methodId": f"ns={NS};s=Methods.Fill", "objectId": f"ns={NS};s=Methods"},
            "properties": {"valueType": "Float64", "readWrite": "W"},
        },
        {
            "name": "AddTooMany",
            "attributes": {
                "methodId": f"ns={NS};s=Methods.Add",
                "objectId": f"ns={NS};s=Methods",
                "inputMap": ["1", "2", "3"],
            },
            "properties": {"valueType": "Float64", "readWrite": "R"},
        },
        {
            "name": "BuildInfo",  # the server's own Server/ServerStatus/BuildInfo: an ExtensionObject
            "attributes": {"nodeId": "i=2260"},
            "properties": {"valueType": "Object", "readWrite": "R"},
        },
        {
            "name": "Ghost",
            "attributes": {"nodeId": f"ns={NS};s=No.Such.Node"},
            "properties": {"valueType": "Float64", "readWrite": "RW"},
        },
        {
            "name": "Lost",
            "attributes": {"browsePath": f"{NS}:Plant/{NS}:Nowhere"},
            "properties": {"valueType": "Float64", "readWrite": "R"},
        },
        {
            "name": "Wrong",
            "attributes": {"nodeId": f"ns={NS};s=Types.String"},
            "properties": {"valueType": "Float64", "readWrite": "R"},
        },
        {
            "name": "Narrow",
            "attributes": {"nodeId": f"ns={NS};s=Types.Int16"},
            "properties": {"valueType": "Int32", "readWrite": "RW"},
        },
    ]
    return DeviceProfile.model_validate({"name": "Sim", "deviceResources": resources})


class Published:
    def __init__(self) -> None:
        self.items: list[tuple[str, ReadingBatch]] = []

    async def __call__(self, topic: str, batch: ReadingBatch) -> None:
        self.items.append((topic, batch))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(opcua_servers: Any) -> AsyncIterator[tuple[Any, DeviceService, SeriesTable]]:
    sim = await opcua_servers()
    table = SeriesTable()
    conn = OpcUaConnector({"reconnect_min": 0.1, "reconnect_max": 0.5})
    svc = DeviceService("opcua-test", conn, Published(), table)
    svc.add_device(
        Device(name="sim", profile_name="Sim", protocols={"opcua": {"Endpoint": sim.endpoint, "Timeout": 3}}),
        profile(),
    )
    await conn.open()
    yield sim, svc, table
    await conn.close()


def values(batch: ReadingBatch) -> dict[str, Any]:
    return {r.resource_name: r.value for r in batch.iter_readings()}


async def read1(svc: DeviceService, name: str) -> Any:
    got = values(await svc.read("sim", name))
    assert list(got) == [name]
    return got[name]


@pytest.mark.parametrize(("node", "vt", "initial", "new"), TYPES, ids=[f"{t[0]}-{t[1]}" for t in TYPES])
async def test_every_value_type_round_trips(rig: Any, node: str, vt: str, initial: Any, new: Any) -> None:
    sim, svc, table = rig
    name = f"T{node}{vt}"
    assert await read1(svc, name) == initial
    assert table.info(table.lookup("sim", name) or 0).value_type.value == vt
    if new is None:
        return
    await svc.write("sim", name, {name: new})
    assert await read1(svc, name) == new
    assert sim.variant_type(f"Types.{node}") == node.removesuffix("Array")  # the node kept its own type
    await svc.write("sim", name, {name: initial})


async def test_writes_go_out_as_the_nodes_own_type(rig: Any) -> None:
    sim, svc, _ = rig
    # Setpoint is a Float node; the resource is a scaled Float64: 123 / scale 0.5 = 246, written as Float
    await svc.write("sim", "Setpoint", {"Setpoint": "123"})
    assert sim.get("Boiler.Setpoint") == 246.0
    assert sim.variant_type("Boiler.Setpoint") == "Float"
    # an Int32 resource over an Int16 node: the node's range decides, and the error names the node
    await svc.write("sim", "Narrow", {"Narrow": 1000})
    assert sim.variant_type("Types.Int16") == "Int16" and sim.get("Types.Int16") == 1000
    with pytest.raises(WriteRejectedError, match=r"70000 is out of range for the node's type Int16") as info:
        await svc.write("sim", "Narrow", {"Narrow": 70000})
    assert info.value.address == f"ns={NS};s=Types.Int16" and info.value.resource == "Narrow"
    await svc.write("sim", "Narrow", {"Narrow": -1600})


async def test_every_node_id_form_and_browse_paths(rig: Any) -> None:
    sim, svc, _ = rig
    await sim.set("Counter", 17)
    assert await read1(svc, "Counter") == 17
    assert await read1(svc, "ByGuid") == 7.5
    assert await read1(svc, "ByOpaque") == 8.5
    await sim.set("Boiler.Level", 1.25)
    assert await read1(svc, "ByUri") == 1.25
    await sim.set("Boiler.Temperature", 21.5)
    assert await read1(svc, "Temperature") == 21.5


async def test_readings_carry_the_servers_source_timestamp(rig: Any) -> None:
    sim, svc, _ = rig
    await sim.set("Boiler.Level", 3.0, source_time=T0)
    batch = await svc.read("sim", "Level")
    assert [r.origin for r in batch.iter_readings()] == [1704164645678000000]


async def test_methods_are_device_commands(rig: Any) -> None:
    sim, svc, _ = rig
    assert await read1(svc, "Add") == 5.5  # inputMap strings, typed as the method declares (Double)
    assert await read1(svc, "Scale") == [2.0, 5.0]  # an array input and a scalar
    await sim.set("Counter", 9)
    assert await read1(svc, "Reset") == 9
    assert sim.get("Counter") == 0
    await sim.set("Boiler.Level", 1.0)
    await svc.write("sim", "Fill", {"Fill": 0.25})  # a SET calls the method with the value
    assert sim.get("Boiler.Level") == 1.25
    with pytest.raises(WriteRejectedError, match="takes 2 input"):
        await svc.read("sim", "AddTooMany")


async def test_missing_nodes_and_wrong_types_are_named(rig: Any) -> None:
    _, svc, _ = rig
    with pytest.raises(DeviceProtocolError, match="BadNodeIdUnknown") as info:
        await svc.read("sim", "Ghost")
    assert (info.value.resource, info.value.address) == ("Ghost", f"ns={NS};s=No.Such.Node")
    with pytest.raises(DeviceProtocolError, match="BadNoMatch"):
        await svc.read("sim", "Lost")
    with pytest.raises(DeviceProtocolError, match="holds String: Float64 cannot hold"):
        await svc.read("sim", "Wrong")
    with pytest.raises(DeviceProtocolError, match="BadNodeIdUnknown"):
        await svc.write("sim", "Ghost", {"Ghost": 1.0})


async def test_uncertain_and_bad_values_are_never_read_as_good(rig: Any) -> None:
    sim, svc, _ = rig
    await sim.set("Boiler.Level", 2.0, status="UncertainLastUsableValue")
    assert values(await svc.read("sim", "Level")) == {"Level@uncertain": 2.0}
    await sim.set("Boiler.Level", 2.0, status="BadSensorFailure")
    assert values(await svc.read("sim", "Level")) == {"Level@bad": "BadSensorFailure"}
    await sim.set("Boiler.Level", 2.5)
    assert values(await svc.read("sim", "Level")) == {"Level": 2.5}
    st = svc.states["sim"]
    assert (st.readings_uncertain, st.readings_bad) == (1, 1)


async def test_a_guid_written_as_text(rig: Any) -> None:
    sim, svc, _ = rig
    await svc.write("sim", "TGuidString", {"TGuidString": "0c4b3d25-0c61-4a8c-9d2e-6f3c1f2e7a12"})
    assert sim.get("Types.Guid") == uuid.UUID("0c4b3d25-0c61-4a8c-9d2e-6f3c1f2e7a12")


async def test_a_structure_reads_as_an_object(rig: Any) -> None:
    _, svc, _ = rig
    info = await read1(svc, "BuildInfo")
    assert isinstance(info, dict)
    assert {"ProductUri", "ManufacturerName", "SoftwareVersion", "BuildDate"} <= set(info)
    assert isinstance(info["BuildDate"], str)  # a DateTime inside a structure: RFC 3339 text
