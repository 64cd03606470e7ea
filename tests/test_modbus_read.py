"""The EdgeX Modbus test profile end to end, and coalescing: the server counts the requests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.modbus import ModbusConnector, ModbusExceptionError
from edgeflow.connector import DeviceHealth, load_connector
from edgeflow.errors import ConnectorError
from edgeflow.profiles import Device, DeviceProfile

pytestmark = pytest.mark.server


def _edgex_device(port: int) -> Device:
    # As in device-modbus-go's cmd/res/devices/modbus.test.devices.yaml, with 2.x-style string values.
    return Device.model_validate(
        {
            "name": "Modbus-TCP-test-device",
            "profileName": "Test-Device-Modbus-Profile",
            "serviceName": "device-modbus",
            "protocols": {
                "modbus-tcp": {
                    "Address": "127.0.0.1",
                    "Port": str(port),
                    "UnitID": "1",
                    "Timeout": "5",
                    "IdleTimeout": "5",
                }
            },
            "autoEvents": [{"interval": "1s", "sourceName": "Values"}],
        }
    )


@pytest.mark.data
@pytest.mark.parametrize("coalesce", [True, False])
async def test_edgex_test_profile_end_to_end(modbus_server: Any, shared_data: Path, coalesce: bool) -> None:
    profile = DeviceProfile.model_validate(
        yaml.safe_load((shared_data / "edgex" / "modbus.test.device.profile.yml").read_text())
    )
    server = await modbus_server()
    await server.set("co", 0, [True])  # SwitchA
    await server.set("co", 14, [False])  # SwitchB
    await server.set("hr", 1, [3])  # OperationMode: Dry
    await server.set("hr", 2, [0x0000, 0x0007])  # FanSpeed Int32 in HR2-3: VAM Super Hi
    await server.set(
        "ir", 3, [0xFF38]
    )  # RoomTemperature rawType Int16: -200 (x0.1 = -20.0 °C, by the service)
    await server.set("hr", 5, [0x00D7])  # Temperature rawType Int16: 215 (21.5 °C)
    await server.set("hr", 4, [0xBEEF])  # a register no resource names, inside the coalesced range

    cls = load_connector("modbus")  # the entry point declared in pyproject.toml
    assert cls is ModbusConnector
    connector = cls({"coalesce": coalesce})
    connector.add_device(_edgex_device(server.port), profile)
    assert connector.health("Modbus-TCP-test-device") == DeviceHealth.UNKNOWN
    async with connector:
        values = await connector.read("Modbus-TCP-test-device", profile.device_resources)
        by_name = {v.resource: v.value for v in values}
        assert by_name == {
            "SwitchA": True,
            "SwitchB": False,
            "OperationMode": 3,
            "FanSpeed": 7,
            "RoomTemperature": -200.0,  # cast to Float32 before the profile's scale, as EdgeX
            "Temperature": 215.0,
        }
        assert isinstance(by_name["RoomTemperature"], float)
        assert isinstance(by_name["OperationMode"], int)
        assert connector.health("Modbus-TCP-test-device") == DeviceHealth.UP
        # EdgeX v3.1 sends one request per resource: 6. Coalesced: coils 0..14 in one, HR 1..5 in one
        # (OperationMode, FanSpeed, Temperature; HR4 read and dropped), IR 3 in one.
        if coalesce:
            assert dict(server.counts) == {1: 1, 3: 1, 4: 1}
        else:
            assert dict(server.counts) == {1: 2, 3: 3, 4: 1}

        # The "Values" command: SwitchA, OperationMode, FanSpeed, Temperature
        command = profile.command("Values")
        assert command is not None
        server.reset_counts()
        resources = [profile.resource(op.device_resource) for op in command.resource_operations]
        values = await connector.read("Modbus-TCP-test-device", resources)
        assert [v.value for v in values] == [True, 3, 7, 215.0]
        assert server.requests == (2 if coalesce else 4)

        # A write through the same profile: FanSpeed (Int32 over HR2-3), Temperature (rawType Int16)
        await connector.write(
            "Modbus-TCP-test-device",
            [(profile.resource("FanSpeed"), 9), (profile.resource("Temperature"), 250.0)],
        )
        assert await server.get("hr", 2, 4) == [0, 9, 0xBEEF, 250]


def _profile(points: list[tuple[str, str, int, str]]) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "name": "p",
            "deviceResources": [
                {
                    "name": name,
                    "attributes": {"primaryTable": table, "startingAddress": address},
                    "properties": {"valueType": vt, "readWrite": "R"},
                }
                for name, table, address, vt in points
            ],
        }
    )


def _tcp(name: str, port: int, unit: int = 1, timeout: Any = 2) -> Device:
    return Device(
        name=name,
        profile_name="p",
        protocols={"modbus-tcp": {"Address": "127.0.0.1", "Port": port, "UnitID": unit, "Timeout": timeout}},
    )


async def test_six_resources_one_request_and_gap_over_the_limit_two(modbus_server: Any) -> None:
    server = await modbus_server()
    for a in range(20):
        await server.set("hr", a, [100 + a])
    profile = _profile(
        [
            ("a", "HOLDING_REGISTERS", 0, "Int16"),
            ("b", "HOLDING_REGISTERS", 1, "Uint16"),
            ("c", "HOLDING_REGISTERS", 2, "Int32"),  # 2-3
            ("d", "HOLDING_REGISTERS", 5, "Int16"),  # gap of 1 (HR4)
            ("e", "HOLDING_REGISTERS", 6, "Uint16"),
            ("f", "HOLDING_REGISTERS", 8, "Int16"),  # gap of 1 (HR7)
            ("far", "HOLDING_REGISTERS", 15, "Int16"),  # gap of 6 after f
        ]
    )
    connector = ModbusConnector({"max_gap_registers": 4})
    connector.add_device(_tcp("d", server.port), profile)
    async with connector:
        six = profile.device_resources[:6]
        values = await connector.read("d", six)
        assert [v.value for v in values] == [100, 101, (102 << 16) | 103, 105, 106, 108]
        assert server.counts[3] == 1
        server.reset_counts()
        values = await connector.read("d", profile.device_resources)
        assert values[-1].value == 115
        assert server.counts[3] == 2  # gap 6 > max_gap_registers 4
        assert connector.request_count("d") == 3


async def test_request_size_limits(modbus_server: Any) -> None:
    server = await modbus_server(registers=((0, 400),), bits=4096)
    profile = _profile(
        [
            ("r0", "INPUT_REGISTERS", 0, "Int16"),
            ("r124", "INPUT_REGISTERS", 124, "Int16"),  # 0..124 = 125 registers: one request
            ("r126", "INPUT_REGISTERS", 125, "Int32"),  # 125..126 would make 127: next request
            ("c0", "COILS", 0, "Bool"),
            ("c1999", "COILS", 1999, "Bool"),  # 2000 coils: one request
            ("c2100", "COILS", 2100, "Bool"),  # next request
        ]
    )
    connector = ModbusConnector({"max_gap_registers": 200, "max_gap_bits": 3000})
    connector.add_device(_tcp("d", server.port), profile)
    async with connector:
        await connector.read("d", profile.device_resources)
    assert server.counts[4] == 2
    assert server.counts[1] == 2

    # a device with a smaller limit
    server.reset_counts()
    small = ModbusConnector({"max_registers_per_read": 10, "max_gap_registers": 200})
    small.add_device(
        _tcp("d", server.port), _profile([(f"r{a}", "INPUT_REGISTERS", a, "Int16") for a in range(30)])
    )
    async with small:
        await small.read("d", small.device("d")[1].device_resources)
    assert server.counts[4] == 3


async def test_a_hole_in_the_device_map_splits_the_block_and_is_remembered(modbus_server: Any) -> None:
    server = await modbus_server(registers=((0, 10), (20, 10)))  # HR10..19 do not exist
    await server.set("hr", 5, [55])
    await server.set("hr", 25, [2525])
    profile = _profile([("low", "HOLDING_REGISTERS", 5, "Int16"), ("high", "HOLDING_REGISTERS", 25, "Int16")])
    connector = ModbusConnector({"max_gap_registers": 32})
    connector.add_device(_tcp("d", server.port), profile)
    async with connector:
        values = await connector.read("d", profile.device_resources)
        assert [v.value for v in values] == [55, 2525]
        assert server.counts[3] == 3  # the refused coalesced read, then one each
        server.reset_counts()
        values = await connector.read("d", profile.device_resources)
        assert [v.value for v in values] == [55, 2525]
        assert server.counts[3] == 2  # remembered: no second refused read


async def test_devices_on_one_gateway_share_a_connection_with_their_own_unit(modbus_server: Any) -> None:
    server = await modbus_server(units=(1, 2))
    await server.set("hr", 0, [11], unit=1)
    await server.set("hr", 0, [22], unit=2)
    profile = _profile([("v", "HOLDING_REGISTERS", 0, "Int16")])
    connector = ModbusConnector()
    connector.add_device(_tcp("one", server.port, unit=1), profile)
    connector.add_device(_tcp("two", server.port, unit=2), profile)
    async with connector:
        assert (await connector.read("one", profile.device_resources))[0].value == 11
        assert (await connector.read("two", profile.device_resources))[0].value == 22
        # one connection: its request counter is shared
        assert connector.request_count("one") == connector.request_count("two") == 2
        # many reads at once on the shared connection: one at a time on the wire, each gets its own unit's value
        results = await asyncio.gather(
            *(connector.read("one" if i % 2 else "two", profile.device_resources) for i in range(40))
        )
        assert [r[0].value for r in results] == [11 if i % 2 else 22 for i in range(40)]
        assert server.counts[3] == 42


async def test_illegal_address_is_a_typed_error_with_code_and_place(modbus_server: Any) -> None:
    server = await modbus_server(registers=((0, 10),))
    profile = _profile(
        [("ok", "HOLDING_REGISTERS", 1, "Int16"), ("missing", "HOLDING_REGISTERS", 50, "Int16")]
    )
    connector = ModbusConnector()
    connector.add_device(_tcp("d", server.port), profile)
    async with connector:
        with pytest.raises(ModbusExceptionError) as info:
            await connector.read("d", profile.device_resources)
        err = info.value
        assert err.code == 2
        assert err.function == 3
        assert err.device == "d"
        assert err.resource == "missing"
        assert err.address == "HOLDING_REGISTERS[50:51]"
        assert "illegal data address" in str(err)
        # the device answered, so the link is up; the next good read works on the same connection
        assert connector.health("d") == DeviceHealth.UP
        assert (await connector.read("d", profile.device_resources[:1]))[0].value == 0


async def test_removing_devices_forgets_them_and_closes_their_connection_once_unused(
    modbus_server: Any,
) -> None:
    server = await modbus_server()
    await server.set("hr", 0, [7])
    profile = _profile([("a", "HOLDING_REGISTERS", 0, "Int16")])
    connector = ModbusConnector()
    connector.add_device(_tcp("one", server.port, unit=1), profile)
    connector.add_device(_tcp("two", server.port, unit=1), profile)  # the same gateway: one connection
    async with connector:
        assert [v.value for v in await connector.read("two", profile.device_resources)] == [7]
        link = connector._states["two"].conn.link
        assert link.connected
        connector.remove_device("one")
        with pytest.raises(ConnectorError, match="unknown device"):
            connector.health("one")
        assert link.connected  # "two" still uses it
        assert [v.value for v in await connector.read("two", profile.device_resources)] == [7]
        connector.remove_device("two")
        assert not link.connected and connector._connections == {}
        # a device of the same name can come back, with other settings
        connector.add_device(_tcp("one", server.port, timeout=1), profile)
        assert [v.value for v in await connector.read("one", profile.device_resources)] == [7]
