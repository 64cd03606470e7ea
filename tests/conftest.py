"""Shared fixtures. Fixtures that start real servers (Mosquitto, pymodbus, asyncua) live here and are
reused by every test module that needs one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The steering repository's shared data, beside the project checkout (or beside the folder of
#: worktrees, for a checkout in ``wt/<name>``).
_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = next(
    (c for c in (_ROOT.parent / "shared" / "data", _ROOT.parent.parent / "shared" / "data") if c.is_dir()),
    _ROOT.parent / "shared" / "data",
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that use it are skipped, with the reason, where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


# ==================================================================================================
# Modbus: a real pymodbus async server on a free loopback port (tests/test_modbus*.py, benchmarks)
# ==================================================================================================

import asyncio  # noqa: E402
import collections  # noqa: E402
import socket  # noqa: E402
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence  # noqa: E402
from typing import Any  # noqa: E402


def free_tcp_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ModbusTestServer:
    """A pymodbus server (TCP with MBAP framing, or RTU framing over TCP, or RTU on a serial port)
    whose datastore the test writes and reads, counting the requests it receives per function code.

    ``registers``: valid ranges ``(first, count)`` of holding and input registers (addresses outside
    them answer exception 2); ``bits``: number of coils and discrete inputs from address 0.
    ``action``: pymodbus's per-request hook (``async (fc, start, address, count, registers, values)``,
    returning an exception code to answer with). ``stop()`` and ``start()`` again serve the same data on
    the same port.
    """

    def __init__(
        self,
        *,
        units: Sequence[int] = (1,),
        registers: Sequence[tuple[int, int]] = ((0, 1000),),
        bits: int = 2048,
        framer: str = "socket",
        serial_port: str | None = None,
        action: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        from pymodbus.simulator import DataType, SimData, SimDevice

        self.host = "127.0.0.1"
        self.port = free_tcp_port()
        self.framer = framer
        self.serial_port = serial_port
        self.counts: collections.Counter[int] = collections.Counter()
        self._server: Any = None
        self._core: Any = None

        def regs() -> list[Any]:
            return [SimData(a, count=n, values=0, datatype=DataType.REGISTERS) for a, n in registers]

        def flags() -> list[Any]:
            return [SimData(0, count=bits, values=False, datatype=DataType.BITS)]

        self._devices = [
            SimDevice(u, simdata=(flags(), flags(), regs(), regs()), action=action) for u in units
        ]

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        if not sending:
            self.counts[int(pdu.function_code)] += 1
        return pdu

    @property
    def requests(self) -> int:
        return sum(self.counts.values())

    def reset_counts(self) -> None:
        self.counts.clear()

    async def start(self) -> None:
        from pymodbus import FramerType
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer

        if self.serial_port is not None:
            server = ModbusSerialServer(
                self._devices,
                framer=FramerType.ASCII if self.framer == "ascii" else FramerType.RTU,
                port=self.serial_port,
                baudrate=115200,
                trace_pdu=self._trace_pdu,
            )
        else:
            framer = FramerType.RTU if self.framer == "rtu" else FramerType.SOCKET
            server = ModbusTcpServer(
                self._devices, framer=framer, address=(self.host, self.port), trace_pdu=self._trace_pdu
            )
        if self._core is not None:
            server.context = self._core  # keep the data across a restart
        self._core = server.context
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
            await asyncio.sleep(0.05)

    async def set(
        self, table: str, address: int, values: Sequence[int] | Sequence[bool], unit: int = 1
    ) -> None:
        """Write the datastore directly: ``table`` is ``co``, ``di``, ``hr`` or ``ir``."""
        fc = {"co": 5, "di": 2, "hr": 6, "ir": 4}[table]
        result = await self._core.async_setValues(unit, fc, address, list(values))
        assert result is None, f"datastore refused {table}[{address}] = {values}: {result}"

    async def get(self, table: str, address: int, count: int, unit: int = 1) -> list[Any]:
        fc = {"co": 1, "di": 2, "hr": 3, "ir": 4}[table]
        result = await self._core.async_getValues(unit, fc, address, count)
        assert isinstance(result, list), f"datastore refused {table}[{address}:{count}]: {result}"
        return result


ModbusServerFactory = Callable[..., Awaitable[ModbusTestServer]]


@pytest.fixture
async def modbus_server() -> AsyncIterator[ModbusServerFactory]:
    """Factory: ``server = await modbus_server(units=(1, 2), registers=((0, 100),), framer="socket")``
    starts a server on a free loopback port; every server is stopped at the end of the test."""
    pytest.importorskip("pymodbus")
    started: list[ModbusTestServer] = []

    async def make(**kwargs: Any) -> ModbusTestServer:
        server = ModbusTestServer(**kwargs)
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_tcp_server() -> AsyncIterator[Callable[[RawHandler], Awaitable[int]]]:
    """Factory: ``port = await raw_tcp_server(handler)`` serves ``handler(reader, writer)`` on a free
    loopback port: a device that stays silent, answers junk, or hangs up (closed at the end of the test)."""
    servers: list[asyncio.Server] = []

    async def make(handler: RawHandler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield make
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two connected pseudo-terminals made by socat (skips where socat is absent): a serial line for
    a pymodbus serial server on one end and the connector on the other."""
    import shutil
    import subprocess
    import time

    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("socat is not installed")
    pytest.importorskip("serial")
    a, b = str(tmp_path / "ttyA"), str(tmp_path / "ttyB")
    proc = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            if os.path.exists(a) and os.path.exists(b):
                break
            time.sleep(0.01)
        else:
            pytest.fail("socat did not create the pseudo-terminals")
        yield a, b
    finally:
        proc.terminate()
        proc.wait(timeout=10)
