"""Failure is normal: a server that restarts, exception responses, silence, junk, short answers, hang-ups.
Every failure is a typed edgeflow error naming device, resource and address; nothing crashes; other
devices on other connections are not held up; a device that comes back is read again without a restart."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import pytest

from connectors.modbus import ModbusConnector, ModbusExceptionError
from edgeflow.connector import DeviceHealth
from edgeflow.errors import (
    ConnectorError,
    DeviceOfflineError,
    DeviceProtocolError,
    DeviceTimeoutError,
)
from edgeflow.profiles import Device, DeviceProfile

pytestmark = pytest.mark.server

PROFILE = DeviceProfile.model_validate(
    {
        "name": "p",
        "deviceResources": [
            {
                "name": "temp",
                "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 4, "rawType": "Int16"},
                "properties": {"valueType": "Float32", "readWrite": "R", "scale": 0.1},
            },
            {
                "name": "count",
                "attributes": {"primaryTable": "INPUT_REGISTERS", "startingAddress": 0},
                "properties": {"valueType": "Uint32", "readWrite": "R"},
            },
        ],
    }
)
TEMP = [PROFILE.resource("temp")]


def _device(name: str, port: int, timeout: Any = 2, unit: int = 1) -> Device:
    return Device(
        name=name,
        profile_name="p",
        protocols={"modbus-tcp": {"Address": "127.0.0.1", "Port": port, "UnitID": unit, "Timeout": timeout}},
    )


async def _poll(connector: ModbusConnector, device: str, log: list[str], stop: asyncio.Event) -> None:
    """A scheduler in miniature: reads every 10 ms and records outcomes. Only ConnectorErrors are
    expected; anything else ends the task, which the test sees."""
    while not stop.is_set():
        try:
            await connector.read(device, PROFILE.device_resources)
            log.append("ok")
        except ConnectorError as exc:
            log.append(type(exc).__name__)
        await asyncio.sleep(0.01)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(3000):  # 30 s at most; the test timeout is the real limit
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_server_restart_mid_run(modbus_server: Any) -> None:
    a = await modbus_server()
    b = await modbus_server()
    await a.set("hr", 4, [0x00D7])
    await b.set("hr", 4, [0x0001])
    connector = ModbusConnector({"reconnect_min": 0.05, "reconnect_max": 0.2})
    connector.add_device(_device("a", a.port), PROFILE)
    connector.add_device(_device("b", b.port), PROFILE)
    log_a: list[str] = []
    log_b: list[str] = []
    stop = asyncio.Event()
    async with connector:
        tasks = [
            asyncio.create_task(_poll(connector, "a", log_a, stop)),
            asyncio.create_task(_poll(connector, "b", log_b, stop)),
        ]
        await _until(lambda: log_a.count("ok") >= 3)
        await a.stop()
        await _until(lambda: len(log_a) >= 10 and log_a[-1] != "ok")
        assert connector.health("a") == DeviceHealth.DOWN
        assert connector.health("b") == DeviceHealth.UP
        failures_before_restart = len(log_a) - log_a.count("ok")
        await a.start()  # same port, same data
        ok_before = log_a.count("ok")
        await _until(lambda: log_a.count("ok") >= ok_before + 3)
        stop.set()
        await asyncio.gather(*tasks)  # re-raises anything that is not a ConnectorError
    assert failures_before_restart >= 1
    failures = set(log_a) - {"ok"}
    # refused connects are ConnectorError; during the backoff window reads fail at once as offline
    assert failures <= {"ConnectorError", "DeviceOfflineError"}
    assert "DeviceOfflineError" in failures
    assert set(log_b) == {"ok"}  # the other device never noticed
    assert connector.health("a") == DeviceHealth.UP
    assert (await _read_temp(connector, "a")) == 215.0


async def _read_temp(connector: ModbusConnector, device: str) -> Any:
    return (await connector.read(device, TEMP))[0].value


async def test_backoff_fails_fast_and_caps(modbus_server: Any) -> None:
    server = await modbus_server()
    connector = ModbusConnector({"reconnect_min": 0.05, "reconnect_max": 0.1})
    connector.add_device(_device("d", server.port), PROFILE)
    async with connector:
        assert (await _read_temp(connector, "d")) == 0.0
        await server.stop()  # drops the connection; nothing listens: connection refused
        assert not connector.connected("d")
        server.reset_counts()
        with pytest.raises(ConnectorError, match="cannot connect") as first:
            await _read_temp(connector, "d")
        assert not isinstance(first.value, DeviceOfflineError)
        assert first.value.device == "d"
        assert first.value.resource == "temp"
        with pytest.raises(DeviceOfflineError, match="next connect attempt"):
            await _read_temp(connector, "d")
        await server.start()
        await asyncio.sleep(0.15)  # past the capped backoff
        assert not connector.connected("d")
        assert (await _read_temp(connector, "d")) == 0.0
        assert connector.connected("d")


async def test_nothing_reconnects_in_the_background(modbus_server: Any) -> None:
    server = await modbus_server()
    connector = ModbusConnector()
    connector.add_device(_device("d", server.port), PROFILE)
    async with connector:
        assert (await _read_temp(connector, "d")) == 0.0
        await server.stop()
        await _until(lambda: not connector.connected("d"))
        await server.start()
        # No client dials the server in the background (pymodbus's own reconnect, on by default, is off
        # for serial lines; Modbus TCP is spoken by the connector's own client): the next read does.
        await asyncio.sleep(0.5)
        assert not connector.connected("d")
        assert (await _read_temp(connector, "d")) == 0.0
        assert connector.connected("d")


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (1, "illegal function"),
        (3, "illegal data value"),
        (4, "server device failure"),
        (6, "server device busy"),
        (11, "gateway target device failed to respond"),
    ],
)
async def test_exception_responses(modbus_server: Any, code: int, text: str) -> None:
    from pymodbus.constants import ExcCodes

    async def refuse_input_registers(fc: int, *_: Any) -> Any:
        return ExcCodes(code) if fc == 4 else None

    server = await modbus_server(action=refuse_input_registers)
    connector = ModbusConnector()
    connector.add_device(_device("d", server.port), PROFILE)
    async with connector:
        with pytest.raises(ModbusExceptionError) as info:
            await connector.read("d", PROFILE.device_resources)
        assert isinstance(info.value, DeviceProtocolError)
        assert info.value.code == code
        assert info.value.function == 4
        assert info.value.resource == "count"
        assert info.value.address == "INPUT_REGISTERS[0:2]"
        assert text in str(info.value)
        assert (await _read_temp(connector, "d")) == 0.0  # holding registers still answer


async def test_silent_device_times_out_without_holding_up_another(
    raw_tcp_server: Any, modbus_server: Any
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # accepts, reads, never answers
        writer.close()

    silent_port = await raw_tcp_server(silent)
    good = await modbus_server()
    await good.set("hr", 4, [42])
    connector = ModbusConnector()
    connector.add_device(_device("mute", silent_port, timeout="1500ms"), PROFILE)
    connector.add_device(_device("good", good.port), PROFILE)
    async with connector:
        pending = asyncio.create_task(_read_temp(connector, "mute"))
        await asyncio.sleep(0)  # let it send
        for _ in range(5):
            assert (await _read_temp(connector, "good")) == 42.0
        assert not pending.done()  # the good device was read while the silent one was still waiting
        with pytest.raises(DeviceTimeoutError) as info:
            await pending
        assert info.value.device == "mute"
        assert info.value.resource == "temp"
        assert info.value.address == "HOLDING_REGISTERS[4:5]"
        assert connector.health("mute") == DeviceHealth.DOWN
        assert connector.health("good") == DeviceHealth.UP


async def test_repeated_timeouts_stay_typed(raw_tcp_server: Any) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    port = await raw_tcp_server(silent)
    connector = ModbusConnector({"close_after_timeouts": 2})
    connector.add_device(_device("mute", port, timeout=0.1), PROFILE)
    async with connector:
        for _ in range(5):  # the connection is dropped after 2 and dialled again: still timeouts
            with pytest.raises(DeviceTimeoutError):
                await _read_temp(connector, "mute")
        assert connector.request_count("mute") == 5


async def _reply_to_each_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Any
) -> None:
    try:
        while True:
            header = await reader.readexactly(7)
            tid, _pid, length, unit = struct.unpack(">HHHB", header)
            pdu = await reader.readexactly(length - 1)
            reply = answer(tid, unit, pdu)
            if reply is None:
                writer.close()
                return
            writer.write(reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def _mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


async def test_junk_bytes_are_a_protocol_error(raw_tcp_server: Any) -> None:
    async def junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _reply_to_each_request(reader, writer, lambda *_: b"\xde\xad\xbe\xef" * 5)

    port = await raw_tcp_server(junk)
    connector = ModbusConnector()
    connector.add_device(_device("j", port, timeout=0.3), PROFILE)
    async with connector:
        for _ in range(2):
            with pytest.raises(DeviceProtocolError, match="no valid response frame") as info:
                await _read_temp(connector, "j")
            assert info.value.device == "j"


async def test_short_response_is_a_protocol_error(raw_tcp_server: Any) -> None:
    # Answers every read with a single register, whatever was asked.
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _reply_to_each_request(
            reader, writer, lambda tid, unit, pdu: _mbap(tid, unit, bytes([pdu[0], 2, 0x12, 0x34]))
        )

    port = await raw_tcp_server(short)
    connector = ModbusConnector()
    connector.add_device(_device("s", port), PROFILE)
    async with connector:
        assert (await _read_temp(connector, "s")) == float(0x1234)  # asked for one: fine
        with pytest.raises(DeviceProtocolError, match="short response: 1 of 2 registers") as info:
            await connector.read("s", [PROFILE.resource("count")])
        assert info.value.resource == "count"
        assert (await _read_temp(connector, "s")) == float(0x1234)  # reconnected, reads again


async def test_truncated_pdu_and_wrong_function(raw_tcp_server: Any) -> None:
    answers = iter(
        [
            lambda tid, unit, pdu: _mbap(tid, unit, bytes([pdu[0], 4, 0x12])),  # byte count 4, one byte
            lambda tid, unit, pdu: _mbap(tid, unit, bytes([0x01, 1, 0x01])),  # a read-coils answer
        ]
    )

    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _reply_to_each_request(reader, writer, lambda *a: next(answers)(*a))

    port = await raw_tcp_server(bad)
    connector = ModbusConnector({"reconnect_min": 0.01})
    connector.add_device(_device("g", port, timeout=0.5), PROFILE)
    async with connector:
        with pytest.raises(DeviceProtocolError, match="undecodable response") as info:
            await _read_temp(connector, "g")
        assert info.value.device == "g"
        assert info.value.resource == "temp"
        with pytest.raises(DeviceProtocolError, match="response to function 1, expected 3"):
            await _read_temp(connector, "g")


async def test_a_late_answer_is_not_taken_for_the_next_request(raw_tcp_server: Any) -> None:
    """The first answer comes after the read timed out; the next read, on the same connection, gets
    its own answer (each register value here is the request's transaction id), not the late one."""

    async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        try:
            while True:
                tid, _pid, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                await reader.readexactly(length - 1)
                if first:  # answered 0.7 s late: after the first read's 0.5 s, during the second
                    await asyncio.sleep(0.7)
                    first = False
                writer.write(_mbap(tid, unit, bytes([3, 2]) + tid.to_bytes(2, "big")))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    port = await raw_tcp_server(slow_first)
    connector = ModbusConnector()
    connector.add_device(_device("late", port, timeout=0.5), PROFILE)
    async with connector:
        with pytest.raises(DeviceTimeoutError):
            await _read_temp(connector, "late")
        assert connector.connected("late")  # one timeout keeps a TCP connection
        assert await _read_temp(connector, "late") == 2.0  # transaction 2's answer
        assert await _read_temp(connector, "late") == 3.0


async def test_hang_up_mid_request_fails_at_once(raw_tcp_server: Any) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _reply_to_each_request(reader, writer, lambda *_: None)

    port = await raw_tcp_server(hang_up)
    connector = ModbusConnector()
    # A 60 s timeout: the read must end because the connection dropped, not because time ran out.
    connector.add_device(_device("h", port, timeout=60), PROFILE)
    async with connector:
        with pytest.raises(ConnectorError, match="connection lost") as info:
            await _read_temp(connector, "h")
        assert not isinstance(info.value, DeviceTimeoutError)
        assert connector.health("h") == DeviceHealth.DOWN


async def test_unknown_device_and_resource(modbus_server: Any) -> None:
    server = await modbus_server()
    connector = ModbusConnector()
    connector.add_device(_device("d", server.port), PROFILE)
    other = DeviceProfile.model_validate(
        {
            "name": "o",
            "deviceResources": [
                {
                    "name": "nope",
                    "attributes": {"primaryTable": "COILS", "startingAddress": 0},
                    "properties": {"valueType": "Bool", "readWrite": "R"},
                }
            ],
        }
    )
    async with connector:
        with pytest.raises(ConnectorError, match="unknown device"):
            await connector.read("x", TEMP)
        with pytest.raises(ConnectorError, match="not in the device's profile"):
            await connector.read("d", other.device_resources)


async def test_idle_timeout_closes_and_the_next_read_reopens(modbus_server: Any) -> None:
    server = await modbus_server()
    await server.set("hr", 4, [5])
    device = Device(
        name="idle",
        profile_name="p",
        protocols={
            "modbus-tcp": {"Address": "127.0.0.1", "Port": server.port, "UnitID": 1, "IdleTimeout": "100ms"}
        },
    )
    connector = ModbusConnector()
    connector.add_device(device, PROFILE)
    async with connector:
        assert not connector.connected("idle")  # lazy
        assert (await _read_temp(connector, "idle")) == 5.0
        assert connector.connected("idle")
        await _until(lambda: not connector.connected("idle"))
        assert (await _read_temp(connector, "idle")) == 5.0  # reopened, no error
        assert connector.health("idle") == DeviceHealth.UP
    assert not connector.connected("idle")  # close() closed it
