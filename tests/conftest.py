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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

from connectors.modbus.simulator import ModbusSimulator as ModbusTestServer  # noqa: E402

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
