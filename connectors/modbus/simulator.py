"""A simulated Modbus device: a real pymodbus server on loopback whose registers code can set.

The demo runs one as a plant device; the tests run them to read, write, break and restart. It
serves TCP (MBAP framing), RTU framing over TCP, or RTU/ASCII on a serial port, and counts the
requests it receives per function code, so coalescing can be checked from the server's side.

This module, like :mod:`connectors.modbus._pymodbus` for the client, is the one place the server side
of pymodbus is called.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["ModbusSimulator", "free_tcp_port"]

_WRITE_FC = {"co": 5, "di": 2, "hr": 6, "ir": 4}
_READ_FC = {"co": 1, "di": 2, "hr": 3, "ir": 4}


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ModbusSimulator:
    """A pymodbus server whose datastore code writes and reads.

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
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        from pymodbus.simulator import DataType, SimData, SimDevice

        self.host = host
        self.port = port or free_tcp_port(host)
        self.framer = framer
        self.serial_port = serial_port
        self.counts: collections.Counter[int] = collections.Counter()
        self._server: Any = None
        self._core: Any = None

        def regs() -> list[Any]:
            return [SimData(a, count=n, values=0, datatype=DataType.REGISTERS) for a, n in registers]

        def flags() -> list[Any]:
            return [SimData(0, count=bits, values=False, datatype=DataType.BITS)]

        hook: Any = action
        self._devices = [SimDevice(u, simdata=(flags(), flags(), regs(), regs()), action=hook) for u in units]

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

        server: Any
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
        result = await self._core.async_setValues(unit, _WRITE_FC[table], address, list(values))
        if result is not None:
            raise ValueError(f"datastore refused {table}[{address}] = {values}: {result}")

    async def get(self, table: str, address: int, count: int, unit: int = 1) -> list[Any]:
        result = await self._core.async_getValues(unit, _READ_FC[table], address, count)
        if not isinstance(result, list):
            raise ValueError(f"datastore refused {table}[{address}:{count}]: {result}")
        return result
