"""The one module that calls pymodbus (tested with 3.16; pinned ``pymodbus>=3.11,<3.17``).

pymodbus's API moves between releases (``slave=`` became ``device_id=`` in 3.10, bit order was fixed
in 3.11, the server datastore is being replaced by ``SimData``), so every call sits here, behind
:class:`ModbusLink`, and every pymodbus exception becomes one of this module's :class:`LinkError` s.

Reconnection belongs to the connector, not to pymodbus: clients are built with ``retries=0`` and
``reconnect_delay=0`` (no reconnect task), pymodbus's own "close after N silent requests" is set out of
reach, and this module's own timeout (``asyncio.timeout``) fires before pymodbus's, which is a
back-stop only. A lost connection fails the request in flight at once (``trace_connect``), instead of
waiting for the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from connectors.modbus._config import LinkSpec, Table
from connectors.modbus._link import (
    EXCEPTION_NAMES,
    LinkClosed,
    LinkError,
    LinkException,
    LinkGarbled,
    LinkTimeout,
)

__all__ = [
    "EXCEPTION_NAMES",
    "LinkClosed",
    "LinkError",
    "LinkException",
    "LinkGarbled",
    "LinkTimeout",
    "ModbusLink",
]

log = logging.getLogger(__name__)

_FRAMERS = {"socket": FramerType.SOCKET, "rtu": FramerType.RTU, "ascii": FramerType.ASCII}
_NEVER = 2**31  # pymodbus's max_no_responses: it must not close the connection on its own


class ModbusLink:
    """One connection (a TCP socket or a serial port) and the requests on it.

    Not safe for concurrent requests: the connector serialises them with its per-connection lock.
    """

    def __init__(self, spec: LinkSpec) -> None:
        self.spec = spec
        #: pymodbus's own response timeout, a back-stop above every timeout the connector passes in.
        self.backstop = spec.timeout + 1.0
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._lost: asyncio.Future[None] | None = None
        self._received = 0  # bytes received since the last request was sent

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    def _on_connect(self, up: bool) -> None:
        if not up and self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _on_packet(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._received = 0
        else:
            self._received = len(data)
        return data

    def _build(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        spec = self.spec
        common: dict[str, Any] = {
            "framer": _FRAMERS[spec.framing],
            "timeout": self.backstop,  # our own timeout fires first
            "retries": 0,
            "reconnect_delay": 0,
            "reconnect_delay_max": 0,
            "trace_connect": self._on_connect,
            "trace_packet": self._on_packet,
            "name": spec.describe(),
        }
        if spec.serial:
            return AsyncModbusSerialClient(
                spec.address,
                baudrate=spec.baudrate,
                bytesize=spec.databits,
                parity=spec.parity,
                stopbits=spec.stopbits,
                **common,
            )
        return AsyncModbusTcpClient(spec.address, port=spec.port, **common)

    async def connect(self) -> None:
        """Open the connection; raises LinkClosed (refused, no such port) or LinkTimeout."""
        self.close()
        self._lost = asyncio.get_running_loop().create_future()
        try:
            client = self._build()  # RuntimeError here where pyserial is missing
            client.set_max_no_responses(_NEVER)
            self._client = client
            async with asyncio.timeout(self.spec.timeout):
                ok = await client.connect()
        except TimeoutError:
            self.close()
            raise LinkTimeout(
                f"connect to {self.spec.describe()} timed out after {self.spec.timeout:g} s"
            ) from None
        except Exception as exc:  # pymodbus, pyserial (termios.error, SerialException), OSError: all mapped
            self.close()
            raise LinkClosed(
                f"cannot connect to {self.spec.describe()}: {type(exc).__name__}: {exc}"
            ) from None
        if not ok:
            self.close()
            raise LinkClosed(f"cannot connect to {self.spec.describe()}")
        if self.spec.connect_delay > 0:
            await asyncio.sleep(self.spec.connect_delay)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if self._lost is not None and not self._lost.done():
            self._lost.cancel()
        self._lost = None

    async def _call(self, request: Callable[[Any], Awaitable[Any]], wait_s: float) -> Any:
        client, lost = self._client, self._lost
        if client is None or lost is None or not client.connected:
            raise LinkClosed("not connected")
        task = asyncio.ensure_future(request(client))
        try:
            async with asyncio.timeout(wait_s):
                await asyncio.wait((task, lost), return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            await _cancel(task)
            if self._received:
                raise LinkGarbled(
                    f"no valid response frame in {self._received} bytes received in {wait_s:g} s"
                ) from None
            raise LinkTimeout(f"no response in {wait_s:g} s") from None
        except asyncio.CancelledError:
            await _cancel(task)
            raise
        if not task.done():
            await _cancel(task)
            if self._received:
                # pymodbus raises inside data_received on a frame it cannot decode; asyncio then drops
                # the connection. Bytes came back, so it was an answer, just not a valid one.
                raise LinkGarbled(f"undecodable response ({self._received} bytes); connection dropped")
            raise LinkClosed("connection lost during the request")
        try:
            return task.result()
        except ModbusException as exc:
            if not self.connected:
                raise LinkClosed(f"connection lost during the request: {exc}") from None
            raise LinkGarbled(str(exc)) from None
        except Exception as exc:  # anything else pymodbus lets out while decoding
            raise LinkGarbled(f"{type(exc).__name__}: {exc}") from None

    async def read(
        self, table: Table, address: int, count: int, unit: int, wait_s: float
    ) -> list[int] | list[bool]:
        """``count`` registers (ints) or bits (bools) of ``table`` from ``address``."""

        def request(c: Any) -> Awaitable[Any]:
            if table == Table.HOLDING_REGISTERS:
                return c.read_holding_registers(address, count=count, device_id=unit)  # type: ignore[no-any-return]
            if table == Table.INPUT_REGISTERS:
                return c.read_input_registers(address, count=count, device_id=unit)  # type: ignore[no-any-return]
            if table == Table.COILS:
                return c.read_coils(address, count=count, device_id=unit)  # type: ignore[no-any-return]
            return c.read_discrete_inputs(address, count=count, device_id=unit)  # type: ignore[no-any-return]

        pdu = await self._call(request, wait_s)
        _check(pdu, int(table))
        if table.is_bits:
            bits = getattr(pdu, "bits", None)
            if not isinstance(bits, list) or len(bits) < count:
                got = len(bits) if isinstance(bits, list) else 0
                raise LinkGarbled(f"short response: {got} of {count} bits")
            return [bool(b) for b in bits[:count]]
        regs = getattr(pdu, "registers", None)
        if not isinstance(regs, list) or len(regs) != count:
            got = len(regs) if isinstance(regs, list) else 0
            raise LinkGarbled(f"short response: {got} of {count} registers")
        return [int(r) for r in regs]

    async def write_registers(self, address: int, values: list[int], unit: int, wait_s: float) -> None:
        """One register with function 6, several with function 16 (as EdgeX)."""
        if len(values) == 1:
            pdu = await self._call(lambda c: c.write_register(address, values[0], device_id=unit), wait_s)
            _check(pdu, 6)
        else:
            pdu = await self._call(lambda c: c.write_registers(address, values, device_id=unit), wait_s)
            _check(pdu, 16)

    async def write_coil(self, address: int, value: bool, unit: int, wait_s: float) -> None:
        pdu = await self._call(lambda c: c.write_coil(address, value, device_id=unit), wait_s)
        _check(pdu, 5)


def _check(pdu: Any, function: int) -> None:
    if pdu is None:
        raise LinkGarbled("empty response")
    if pdu.isError():
        raise LinkException(int(getattr(pdu, "exception_code", 0)), function)
    if int(getattr(pdu, "function_code", -1)) != function:
        raise LinkGarbled(f"response to function {getattr(pdu, 'function_code', '?')}, expected {function}")


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel a request and wait for it to unwind, without raising its outcome."""
    if not task.done():
        task.cancel()
        await asyncio.wait((task,))
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log "exception was never retrieved"
