"""The mapper-framework REST API on a running mapper: ping, a property's value, methods list and call
(the write reaches a real pymodbus server)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from edgeflow.config import parse_config
from edgeflow.runtime import Runtime
from edgeflow.twin.rest import MapperRestApi
from tests.conftest import ModbusServerFactory
from tests.twin_support import local_manifests

pytestmark = [pytest.mark.server, pytest.mark.data]


async def _get(port: int, path: str) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, orjson.loads(body) if head.find(b"application/json") >= 0 else body.decode()


async def test_rest_api(shared_data: Path, tmp_path: Path, modbus_server: ModbusServerFactory) -> None:
    sim = await modbus_server(units=(1,))
    await sim.set("hr", 0, [235])
    manifests = local_manifests(shared_data, tmp_path, sim.port)
    cfg = parse_config(
        {
            "service": "edge",
            "uplink": {"type": "file", "path": str(tmp_path / "out.jsonl")},
            "kubeedge": {"manifests": [str(p) for p in manifests], "rest": {"listen": "127.0.0.1:0"}},
        }
    )
    async with Runtime(cfg) as rt:
        assert rt.kubeedge is not None
        api = rt.kubeedge.servers[0]
        assert isinstance(api, MapperRestApi)
        port = api.port
        status, body = await _get(port, "/api/v1/ping")
        assert status == 200
        assert body["apiVersion"] == "v1" and body["statusCode"] == 200
        assert body["Message"] == "This is v1 API, the server is running normally."
        deadline = time.monotonic() + 30
        while True:
            status, body = await _get(port, "/api/v1/device/default/temperature-instance/temperature")
            if status == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert status == 200
        data = body["Data"]
        assert (data["DeviceName"], data["PropertyName"], data["Value"], data["Type"]) == (
            "temperature-instance",
            "temperature",
            "23.5",
            "float",
        )
        assert data["CollectTimeStamp"] > 1_600_000_000_000

        status, body = await _get(port, "/api/v1/devicemethod/default/temperature-instance")
        assert status == 200
        methods = {m["Name"]: m for m in body["Data"]["Methods"]}
        assert methods["SwitchControl"]["Parameters"] == [{"PropertyName": "temperature-switch", "ValueType": "int"}]
        assert methods["UpdateTemperature"]["Path"] == (
            "/api/v1/devicemethod/default/temperature-instance/UpdateTemperature/{propertyName}/{data}"
        )

        status, body = await _get(
            port, "/api/v1/devicemethod/default/temperature-instance/UpdateTemperature/temperature/42.5"
        )
        assert status == 200, body
        assert await sim.get("hr", 0, 1) == [425]
        status, body = await _get(port, "/api/v1/device/default/temperature-instance/temperature")
        assert body["Data"]["Value"] == "42.5"

        # a method that does not control that property, an unknown device, a value out of range
        status, body = await _get(
            port, "/api/v1/devicemethod/default/temperature-instance/SwitchControl/temperature/1"
        )
        assert status == 500 and "does not control" in body
        status, _ = await _get(port, "/api/v1/device/default/nobody/temperature")
        assert status == 500
        status, body = await _get(
            port, "/api/v1/devicemethod/default/temperature-instance/UpdateTemperature/temperature/1000"
        )
        assert status == 500 and "Write device data error" in body
        assert await sim.get("hr", 0, 1) == [425]
        status, body = await _get(port, "/api/v1/meta/model/default/temperature-instance")
        assert status == 200 and body["Name"] == "temperature-model"
