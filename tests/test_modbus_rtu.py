"""RTU framing: over TCP (``modbus-rtu-tcp``) against pymodbus's server with its RTU framer, and over a
serial line (a socat pseudo-terminal pair) against pymodbus's serial server, RTU and ASCII."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connectors.modbus import ModbusConnector
from edgeflow.errors import ConnectorError, DeviceTimeoutError
from edgeflow.profiles import Device, DeviceProfile

pytestmark = pytest.mark.server

PROFILE = DeviceProfile.model_validate(
    {
        "name": "rtu",
        "deviceResources": [
            {
                "name": "power",
                "attributes": {
                    "primaryTable": "HOLDING_REGISTERS",
                    "startingAddress": 10,
                    "isWordSwap": True,
                },
                "properties": {"valueType": "Float32", "readWrite": "RW"},
            },
            {
                "name": "energy",
                "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 12},
                "properties": {"valueType": "Uint64", "readWrite": "RW"},
            },
            {
                "name": "status",
                "attributes": {"primaryTable": "INPUT_REGISTERS", "startingAddress": 0},
                "properties": {"valueType": "Int16", "readWrite": "R"},
            },
            {
                "name": "relay",
                "attributes": {"primaryTable": "COILS", "startingAddress": 5},
                "properties": {"valueType": "Bool", "readWrite": "RW"},
            },
        ],
    }
)


async def _fill(server: Any, unit: int) -> None:
    await server.set("hr", 10, [0x0000, 0x3FC0], unit=unit)  # 1.5 word-swapped (0x3FC00000)
    await server.set("hr", 12, [0, 0, 0x0001, 0x0000], unit=unit)  # 65536
    await server.set("ir", 0, [0xFFFF], unit=unit)  # -1
    await server.set("co", 5, [True], unit=unit)


async def _exercise(connector: ModbusConnector, server: Any, device: str, unit: int) -> None:
    values = await connector.read(device, PROFILE.device_resources)
    assert [v.value for v in values] == [1.5, 65536, -1, True]
    assert server.counts[3] >= 1
    assert server.counts[4] >= 1
    assert server.counts[1] >= 1
    await connector.write(
        device,
        [
            (PROFILE.resource("power"), -2.25),  # 0xC0100000, word-swapped
            (PROFILE.resource("energy"), 2**40 + 7),
            (PROFILE.resource("relay"), False),
        ],
    )
    assert await server.get("hr", 10, 6, unit=unit) == [0x0000, 0xC010, 0x0000, 0x0100, 0x0000, 0x0007]
    assert await server.get("co", 5, 1, unit=unit) == [False]
    values = await connector.read(device, PROFILE.device_resources)
    assert [v.value for v in values] == [-2.25, 2**40 + 7, -1, False]


async def test_rtu_over_tcp_two_units_one_gateway(modbus_server: Any) -> None:
    server = await modbus_server(framer="rtu", units=(1, 2))
    await _fill(server, 1)
    await _fill(server, 2)
    connector = ModbusConnector()
    for name, unit in (("u1", 1), ("u2", 2)):
        device = Device(
            name=name,
            profile_name="rtu",
            protocols={
                "modbus-rtu-tcp": {"Address": "127.0.0.1", "Port": server.port, "UnitID": unit, "Timeout": 2}
            },
        )
        connector.add_device(device, PROFILE)
    async with connector:
        server.reset_counts()
        values = await connector.read("u1", PROFILE.device_resources)
        assert [v.value for v in values] == [1.5, 65536, -1, True]
        assert dict(server.counts) == {1: 1, 3: 1, 4: 1}  # HR10..15 coalesced into one request
        await _exercise(connector, server, "u1", 1)
        await _exercise(connector, server, "u2", 2)
        assert connector.request_count("u1") == connector.request_count("u2")  # one shared connection


async def test_rtu_over_tcp_silent_unit_times_out_then_recovers(modbus_server: Any) -> None:
    release = asyncio.Event()
    hang = {"on": False}

    async def maybe_hang(fc: int, start: int, address: int, count: int, regs: Any, set_values: Any) -> None:
        if hang["on"] and set_values is None:
            await release.wait()  # the unit goes quiet: this request is answered late, if ever

    server = await modbus_server(framer="rtu", action=maybe_hang)
    await server.set("ir", 0, [7])
    device = Device(
        name="r",
        profile_name="rtu",
        protocols={
            "modbus-rtu-tcp": {"Address": "127.0.0.1", "Port": server.port, "UnitID": 1, "Timeout": 0.3}
        },
    )
    connector = ModbusConnector()
    connector.add_device(device, PROFILE)
    status = [PROFILE.resource("status")]
    try:
        async with connector:
            assert (await connector.read("r", status))[0].value == 7
            hang["on"] = True
            with pytest.raises(DeviceTimeoutError):
                await connector.read("r", status)
            # RTU frames have no transaction id: the connection was dropped, so a late answer to the
            # timed-out request cannot be taken for the answer to the next one.
            hang["on"] = False
            await server.set("ir", 0, [8])
            assert (await connector.read("r", status))[0].value == 8
            # a read cancelled by its caller (the scheduler gave up) drops the RTU connection too
            hang["on"] = True
            task = asyncio.create_task(connector.read("r", status))
            await asyncio.sleep(0.05)
            assert connector.connected("r")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not connector.connected("r")
            hang["on"] = False
            assert (await connector.read("r", status))[0].value == 8
    finally:
        release.set()


async def test_rtu_over_a_serial_line(modbus_server: Any, pty_pair: tuple[str, str]) -> None:
    server_end, client_end = pty_pair
    server = await modbus_server(serial_port=server_end, units=(7,))
    await _fill(server, 7)
    device = Device(
        name="serial",
        profile_name="rtu",
        protocols={
            "modbus-rtu": {
                "Address": client_end,
                "UnitID": "7",
                "BaudRate": "115200",
                "DataBits": 8,
                "StopBits": 1,
                "Parity": "N",
                "Timeout": "2s",
                "IdleTimeout": 0,
            }
        },
    )
    connector = ModbusConnector()
    connector.add_device(device, PROFILE)
    async with connector:
        await _exercise(connector, server, "serial", 7)


async def test_ascii_over_a_serial_line(modbus_server: Any, pty_pair: tuple[str, str]) -> None:
    server_end, client_end = pty_pair
    server = await modbus_server(serial_port=server_end, units=(1,), framer="ascii")
    await _fill(server, 1)
    device = Device(
        name="ascii",
        profile_name="rtu",
        protocols={
            "modbus-ascii": {
                "Address": client_end,
                "UnitID": 1,
                "BaudRate": 115200,
                "DataBits": 8,
                "StopBits": 1,
                "Parity": "N",
                "Timeout": 2,
            }
        },
    )
    connector = ModbusConnector()
    connector.add_device(device, PROFILE)
    async with connector:
        await _exercise(connector, server, "ascii", 1)


def _serial(name: str, path: str, parity: str) -> Device:
    return Device(
        name=name,
        profile_name="rtu",
        protocols={
            "modbus-rtu": {
                "Address": path,
                "UnitID": 1,
                "BaudRate": 9600,
                "DataBits": 8,
                "StopBits": 1,
                "Parity": parity,
                "Timeout": "200ms",
            }
        },
    )


async def test_serial_line_with_no_device_times_out(pty_pair: tuple[str, str]) -> None:
    _, client_end = pty_pair  # nothing answers on the other end
    connector = ModbusConnector()
    connector.add_device(_serial("nobody", client_end, "N"), PROFILE)
    async with connector:
        for _ in range(2):
            with pytest.raises(DeviceTimeoutError) as info:
                await connector.read("nobody", [PROFILE.resource("status")])
            assert info.value.address == "INPUT_REGISTERS[0:1]"


async def test_serial_port_errors_are_typed(pty_pair: tuple[str, str], tmp_path: Any) -> None:
    _, client_end = pty_pair
    connector = ModbusConnector()
    # a pseudo-terminal refuses parity (termios.error from pyserial), and a port that does not exist
    connector.add_device(_serial("parity", client_end, "E"), PROFILE)
    connector.add_device(_serial("absent", str(tmp_path / "no-such-tty"), "N"), PROFILE)
    async with connector:
        for name in ("parity", "absent"):
            with pytest.raises(ConnectorError, match="cannot connect") as info:
                await connector.read(name, [PROFILE.resource("status")])
            assert info.value.device == name
