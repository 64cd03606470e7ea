"""KubeEdge DMI v1beta1 over Unix sockets: the mapper registers with a DeviceManagerService double,
reports status and states within EdgeCore's rate limit, and serves DeviceMapperService to a client that
registers, updates, gets and removes devices; desired values reach a real pymodbus server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

pytest.importorskip("grpc")

from edgeflow.config import parse_config
from edgeflow.kubeedge import KubeDevice, KubeDeviceModel, load_kubeedge
from edgeflow.runtime import Runtime
from edgeflow.twin.dmi import device_from_proto, device_to_proto, model_from_proto, model_to_proto, pb
from tests.conftest import ModbusServerFactory
from tests.dmi_double import DeviceManagerDouble, mapper_client
from tests.twin_support import local_manifests

pytestmark = [pytest.mark.server, pytest.mark.data]


def _objects(paths: list[Path]) -> tuple[list[KubeDevice], KubeDeviceModel]:
    objs = [o for p in paths for o in load_kubeedge(p)]
    devices = [o for o in objs if isinstance(o, KubeDevice)]
    (model,) = [o for o in objs if isinstance(o, KubeDeviceModel)]
    return devices, model


def test_proto_round_trip_keeps_the_device(shared_data: Path, tmp_path: Path) -> None:
    devices, model = _objects(local_manifests(shared_data, tmp_path, 5020))
    dev = devices[0]
    wire = pb.Device.FromString(device_to_proto(dev).SerializeToString())
    back = device_from_proto(wire)
    # EdgeCore sends every JSON number as a float32; the mapper rounds the noise away (0.1, not 0.100000001)
    assert back.spec.properties[0].visitors.config_data["scale"] == 0.1
    assert back.spec.protocol.config_data["slaveID"] == 1
    assert back.spec.properties[1].desired.value == "1"
    assert [p.name for p in back.spec.properties] == [p.name for p in dev.spec.properties]
    m = model_from_proto(pb.DeviceModel.FromString(model_to_proto(model).SerializeToString()), "modbus")
    assert [(p.name, p.type, p.access_mode) for p in m.spec.properties] == [
        (p.name, p.type, p.access_mode) for p in model.spec.properties
    ]


async def _wait(cond: object, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_dmi_register_report_and_desired_values(
    shared_data: Path, tmp_path: Path, modbus_server: ModbusServerFactory
) -> None:
    sim = await modbus_server(units=(1, 2))
    await sim.set("hr", 0, [235], unit=1)
    await sim.set("hr", 0, [200], unit=2)
    devices, model = _objects(local_manifests(shared_data, tmp_path, sim.port, copies=2))
    edgecore_sock, mapper_sock = tmp_path / "dmi.sock", tmp_path / "mapper.sock"
    # EdgeCore knows device 1 (MapperRegister returns it); device 2 is registered later
    double = DeviceManagerDouble(edgecore_sock, [(devices[0], model)])
    await double.start()
    cfg = parse_config(
        {
            "service": "edge",
            "uplink": {"type": "file", "path": str(tmp_path / "out.jsonl")},
            "kubeedge": {
                "membership": "ignore",
                "dmi": {"edgecore_socket": str(edgecore_sock), "socket": str(mapper_sock), "protocol": "modbus"},
            },
        }
    )
    rt = Runtime(cfg)
    channel, client = mapper_client(mapper_sock)
    try:
        async with rt:
            await _wait(lambda: double.registers, "MapperRegister")
            reg = double.registers[0]
            assert reg.withData and reg.mapper.protocol == "modbus" and reg.mapper.address == str(mapper_sock).encode()
            await _wait(lambda: double.reported("temperature-instance", "temperature") == "23.5", "status report")
            # one call carries every twin of the device, with its type and the desired value observed
            req = next(r for r in double.statuses if len(r.reportedDevice.twins) == 2)
            twins = {t.propertyName: t for t in req.reportedDevice.twins}
            assert twins["temperature"].reported.metadata["type"] == "float"
            assert twins["temperature-switch"].observedDesired.value == "1"
            await _wait(lambda: double.state("temperature-instance") == "online", "state report")
            # the desired value of the registered Device reached the coil
            await _wait(lambda: double.reported("temperature-instance", "temperature-switch") == "1", "switch on")

            # EdgeCore registers another device, with a desired value
            dev2 = device_to_proto(devices[1])
            dev2.spec.properties[0].desired.value = "33.3"
            await client.CreateDeviceModel(pb.CreateDeviceModelRequest(model=model_to_proto(model)), timeout=10)
            resp = await client.RegisterDevice(pb.RegisterDeviceRequest(device=dev2), timeout=10)
            assert resp.deviceName == "temperature-instance-2"
            await _wait(lambda: double.reported("temperature-instance-2", "temperature") == "33.3", "desired 33.3")
            assert await sim.get("hr", 0, 1, unit=2) == [333]

            got = await client.GetDevice(
                pb.GetDeviceRequest(deviceName="temperature-instance-2", deviceNamespace="default"), timeout=10
            )
            assert {t.propertyName: t.reported.value for t in got.device.status.twins}["temperature"] == "33.3"

            # UpdateDevice with a new desired value writes it; the device keeps running
            dev2.spec.properties[0].desired.value = "12.5"
            await client.UpdateDevice(pb.UpdateDeviceRequest(device=dev2), timeout=10)
            await _wait(lambda: double.reported("temperature-instance-2", "temperature") == "12.5", "desired 12.5")
            assert await sim.get("hr", 0, 1, unit=2) == [125]

            # a Device whose model is unknown is refused, with the reason
            bad = device_to_proto(devices[1])
            bad.name, bad.spec.deviceModelReference = "stray", "no-such-model"
            with pytest.raises(Exception, match="no DeviceModel"):
                await client.RegisterDevice(pb.RegisterDeviceRequest(device=bad), timeout=10)

            await client.RemoveDevice(
                pb.RemoveDeviceRequest(deviceName="temperature-instance-2", deviceNamespace="default"), timeout=10
            )
            assert "temperature-instance-2" not in rt.device_specs
            assert "temperature-instance" in rt.device_specs
        # never over EdgeCore's limit: no call was refused
        assert double.refused == 0
        assert double.violations == []
    finally:
        await channel.close()
        await double.stop()


async def test_registers_again_when_edgecore_comes_back(
    shared_data: Path, tmp_path: Path, modbus_server: ModbusServerFactory
) -> None:
    sim = await modbus_server(units=(1,))
    await sim.set("hr", 0, [235])
    devices, model = _objects(local_manifests(shared_data, tmp_path, sim.port))
    edgecore_sock, mapper_sock = tmp_path / "dmi.sock", tmp_path / "mapper.sock"
    double = DeviceManagerDouble(edgecore_sock, [(devices[0], model)])
    await double.start()
    cfg = parse_config(
        {
            "service": "edge",
            "uplink": {"type": "file", "path": str(tmp_path / "out.jsonl")},
            "kubeedge": {
                "membership": "ignore",
                "dmi": {
                    "edgecore_socket": str(edgecore_sock),
                    "socket": str(mapper_sock),
                    "register_retry": 0.2,
                },
            },
        }
    )
    try:
        async with Runtime(cfg):
            await _wait(lambda: double.reported("temperature-instance", "temperature") == "23.5", "report")
            await double.stop()
            await sim.set("hr", 0, [240])
            await asyncio.sleep(0.5)
            double2 = DeviceManagerDouble(edgecore_sock, [(devices[0], model)])  # a restarted EdgeCore
            await double2.start()
            try:
                await _wait(lambda: double2.registers, "MapperRegister again")
                await _wait(lambda: double2.reported("temperature-instance", "temperature") == "24.0", "report again")
            finally:
                await double2.stop()
    finally:
        await double.stop()
