"""The Modbus connector under edgeflow's device service: the EdgeX test profile read through AutoEvents,
with the profile's transforms and mappings applied by the service, and a device that goes away and
comes back while its AutoEvent keeps running."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.modbus import ModbusConnector
from edgeflow.config import parse_config
from edgeflow.connector import DeviceHealth
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.profiles import Device, DeviceProfile
from edgeflow.runtime import Runtime
from edgeflow.service import DeviceService, SchedulerSettings

pytestmark = [pytest.mark.server, pytest.mark.data]


def _named(batch: ReadingBatch, table: SeriesTable) -> dict[str, Any]:
    return {table.info(int(batch.series[i])).resource: batch.value_at(i) for i in range(len(batch))}


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_edgex_profile_through_the_device_service(modbus_server: Any, shared_data: Path) -> None:
    profile = DeviceProfile.model_validate(
        yaml.safe_load((shared_data / "edgex" / "modbus.test.device.profile.yml").read_text())
    )
    server = await modbus_server()
    await server.set("co", 0, [True])
    await server.set("hr", 1, [3])
    await server.set("hr", 2, [0, 7])
    await server.set("ir", 3, [0xFF38])
    await server.set("hr", 5, [215])
    device = Device.model_validate(
        {
            "name": "hvac",
            "profileName": profile.name,
            "protocols": {
                "modbus-tcp": {"Address": "127.0.0.1", "Port": server.port, "UnitID": 1, "Timeout": 1}
            },
            "autoEvents": [
                {"interval": "50ms", "sourceName": "Values"},
                {"interval": "50ms", "sourceName": "RoomTemperature"},
            ],
        }
    )
    published: list[tuple[str, ReadingBatch]] = []

    async def publish(topic: str, batch: ReadingBatch) -> None:
        published.append((topic, batch))

    table = SeriesTable()
    connector = ModbusConnector({"reconnect_min": 0.05, "reconnect_max": 0.1})
    service = DeviceService(
        "device-modbus",
        connector,
        publish,
        table,
        settings=SchedulerSettings(
            failure_threshold=2, backoff_initial=0.05, backoff_max=0.1, read_timeout=2
        ),
    )
    service.add_device(device, profile)

    # a GET of the Values command: mappings and scale applied by the service
    values = _named(await service.read("hvac", "Values"), table)
    assert values == {
        "SwitchA": "ON",
        "OperationMode": "Dry",
        "FanSpeed": "VAM Super Hi",
        "Temperature": 21.5,
    }
    assert _named(await service.read("hvac", "RoomTemperature"), table) == {
        "RoomTemperature": pytest.approx(-20.0)
    }

    # a SET: 22.5 °C is 225 in the register, FanSpeed by its value
    await service.write(
        "hvac", "Values", {"SwitchA": "false", "OperationMode": "1", "FanSpeed": "2", "Temperature": "22.5"}
    )
    assert await server.get("hr", 1, 5) == [1, 0, 2, 0, 225]
    assert await server.get("co", 0, 1) == [False]

    await service.start()
    try:
        await _until(lambda: len(published) >= 4)
        topic, _ = published[-1]
        assert topic.startswith("edgex/events/device/device-modbus/Test-Device-Modbus-Profile/hvac/")
        await server.stop()
        await _until(lambda: service.states["hvac"].health is DeviceHealth.DOWN)
        assert connector.health("hvac") == DeviceHealth.DOWN
        count = len(published)
        await server.start()
        await _until(lambda: service.states["hvac"].health is DeviceHealth.UP and len(published) > count + 2)
        assert connector.health("hvac") == DeviceHealth.UP
        assert _named(published[-1][1], table) in (
            {"SwitchA": "OFF", "OperationMode": "Heat", "FanSpeed": "High", "Temperature": 22.5},
            {"RoomTemperature": pytest.approx(-20.0)},
        )
    finally:
        await service.stop()
    assert not any(t for t in asyncio.all_tasks() if t.get_name().startswith("autoevent:"))


async def test_a_poll_in_flight_at_stop_finishes_and_is_published(modbus_server: Any) -> None:
    """SIGINT while the device is answering: the poll finishes and its readings are published, so what a
    device answered before the stop is never dropped (the stop waits at most STOP_GRACE for it)."""
    entered = asyncio.Event()
    answered = 0
    armed = False  # the simulator's own set() goes through the hook too

    async def slow(fc: int, *_: Any) -> None:
        nonlocal answered
        if not armed:
            return
        entered.set()
        await asyncio.sleep(0.4)  # the answer is on its way when the stop comes
        answered += 1

    server = await modbus_server(action=slow)
    await server.set("hr", 0, [42])
    armed = True
    profile = DeviceProfile.model_validate(
        {
            "name": "p",
            "deviceResources": [
                {
                    "name": "level",
                    "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 0},
                    "properties": {"valueType": "Int16", "readWrite": "R"},
                }
            ],
        }
    )
    device = Device.model_validate(
        {
            "name": "tank",
            "profileName": "p",
            "protocols": {
                "modbus-tcp": {"Address": "127.0.0.1", "Port": server.port, "UnitID": 1, "Timeout": 5}
            },
            "autoEvents": [{"interval": "10s", "sourceName": "level"}],
        }
    )
    published: list[ReadingBatch] = []

    async def publish(topic: str, batch: ReadingBatch) -> None:
        published.append(batch)

    table = SeriesTable()
    service = DeviceService("device-modbus", ModbusConnector(), publish, table)
    service.add_device(device, profile)
    await service.start()
    async with asyncio.timeout(10):
        await entered.wait()
    await service.stop()
    assert answered == 1
    assert [_named(b, table) for b in published] == [{"level": 42}]


@pytest.mark.parametrize("aligned", [True, False])
async def test_the_reads_of_one_tick_take_one_router_step(
    modbus_server: Any, tmp_path: Path, aligned: bool
) -> None:
    """Ten units behind one connection, read one after the other every 100 ms: by default (AutoEvents on
    the interval's multiples, the router lingering while reads are in flight) each tick's ten reads go
    through the rules as one batch; without either, every read is a step of its own."""
    units = tuple(range(1, 11))
    server = await modbus_server(units=units)
    for u in units:
        await server.set("hr", 0, [u], unit=u)
    level = {
        "name": "level",
        "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 0},
        "properties": {"valueType": "Int16", "readWrite": "R"},
    }
    cfg = parse_config(
        {
            "service": "edge",
            "scheduler": {"align": aligned},
            "bus": {"linger": "20ms" if aligned else 0},
            "devices": [
                {
                    "name": f"unit{u}",
                    "connector": "modbus",
                    "profile": {"name": "p", "deviceResources": [level]},
                    "protocols": {
                        "modbus-tcp": {"Address": "127.0.0.1", "Port": server.port, "UnitID": u, "Timeout": 2}
                    },
                    "autoEvents": [{"interval": "100ms", "sourceName": "level"}],
                }
                for u in units
            ],
            "pipelines": [{"name": "all", "rules": [{"type": "on_change"}]}],
            "uplink": {"type": "file", "path": str(tmp_path / "out.jsonl")},
        }
    )
    rt = Runtime(cfg)
    async with rt:
        await _until(lambda: rt.ledger()["router"]["taken"] >= 10 * 12)
    led = rt.ledger()
    reads, steps = led["router"]["taken"], led["router"]["steps"]
    ticks = reads / len(units)
    if aligned:
        assert steps <= ticks + 3, (reads, steps)
    else:
        assert steps >= 0.8 * reads, (reads, steps)
    assert not rt.ledger_problems()
