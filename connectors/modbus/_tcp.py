"""Modbus TCP spoken directly: MBAP framing on an asyncio transport, for the poll path.

A poll of one device is one request and one answer; through pymodbus's client that cost ≈ 285 µs of CPU
on the machine that runs the peer benchmark, a bare MBAP client ≈ 120 µs, most of it the two system calls
(5,000 reads of 10 registers in one process, once, by hand; ``python benchmarks/modbus.py poll`` shows the
difference on a whole poller: 9.2 % of a core against 12.7 %). What pymodbus does beyond framing — its transaction manager, retries,
reconnect task, frame logging — the connector does (one request at a time per connection under its
lock, its own timeouts and reconnect backoff), so this client is only the wire:

* a request is ``MBAP(transaction id, protocol 0, length, unit) + PDU``; the answer with the same
  transaction id completes it, an answer with another (a late one, to a request that timed out) is
  dropped;
* bytes that do not frame as MBAP (protocol id not 0, a length out of range) are junk: counted and
  dropped, and a request that gets only junk fails at its timeout as :class:`LinkGarbled` ("no valid
  response frame in N bytes");
* a frame whose PDU does not decode (a byte count the data does not have, an odd register count) or
  answers another function is :class:`LinkGarbled` at once; an exception response (function | 0x80)
  is :class:`LinkException`; the peer closing the connection fails the request in flight at once
  (:class:`LinkClosed`), not at its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Final

from connectors.modbus._config import LinkSpec, Table
from connectors.modbus._link import LinkClosed, LinkException, LinkGarbled, LinkTimeout

__all__ = ["TcpLink"]

_MBAP: Final = struct.Struct(">HHHB")  # transaction id, protocol id, length (unit + PDU), unit
_MAX_LENGTH: Final = 254  # unit + a PDU of at most 253 bytes


class _Wire(asyncio.Protocol):
    """The connection's byte stream, cut into MBAP frames; the frame of the awaited transaction
    completes :attr:`waiter`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.tid = -1  # the transaction awaited
        self.waiter: asyncio.Future[bytes] | None = None
        self.received = 0  # bytes received since the last request was sent
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(LinkClosed("connection lost during the request"))

    def _fail(self, exc: Exception) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        buf = self.buffer
        buf += data
        while len(buf) >= _MBAP.size:
            tid, protocol, length, _unit = _MBAP.unpack_from(buf)
            if protocol != 0 or not 2 <= length <= _MAX_LENGTH:
                buf.clear()  # not MBAP: no frame boundary to find again in this stream
                return
            end = 6 + length
            if len(buf) < end:
                return
            pdu = bytes(buf[_MBAP.size : end])
            del buf[:end]
            w = self.waiter
            if tid == self.tid and w is not None and not w.done():
                w.set_result(pdu)


class TcpLink:
    """One Modbus TCP connection (see the module docstring); the connector's :class:`~connectors.modbus._link.Link`."""

    def __init__(self, spec: LinkSpec) -> None:
        self.spec = spec
        self.backstop = spec.timeout + 1.0  # (kept for the Link interface: this client has no other timeout)
        self._wire: _Wire | None = None
        self._tid = 0

    @property
    def connected(self) -> bool:
        return self._wire is not None and self._wire.open

    async def connect(self) -> None:
        self.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.spec.timeout):
                _, wire = await loop.create_connection(_Wire, self.spec.address, self.spec.port)
        except TimeoutError:
            raise LinkTimeout(
                f"connect to {self.spec.describe()} timed out after {self.spec.timeout:g} s"
            ) from None
        except OSError as exc:
            raise LinkClosed(
                f"cannot connect to {self.spec.describe()}: {type(exc).__name__}: {exc}"
            ) from None
        self._wire = wire
        if self.spec.connect_delay > 0:
            await asyncio.sleep(self.spec.connect_delay)

    def close(self) -> None:
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.open = False
            if wire.transport is not None:
                wire.transport.close()
            wire._fail(LinkClosed("connection closed"))

    async def _call(self, unit: int, pdu: bytes, function: int, wait_s: float) -> bytes:
        """Send ``pdu`` to ``unit``; the answer's PDU after its function code, checked to answer
        ``function``."""
        wire = self._wire
        if wire is None or not wire.open or wire.transport is None:
            raise LinkClosed("not connected")
        self._tid = self._tid % 0xFFFF + 1
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        wire.tid, wire.waiter, wire.received = self._tid, waiter, 0
        wire.transport.write(_MBAP.pack(self._tid, 0, len(pdu) + 1, unit) + pdu)
        try:
            async with asyncio.timeout(wait_s):
                answer = await waiter
        except TimeoutError:
            if wire.received:
                raise LinkGarbled(
                    f"no valid response frame in {wire.received} bytes received in {wait_s:g} s"
                ) from None
            raise LinkTimeout(f"no response in {wait_s:g} s") from None
        finally:
            wire.waiter = None
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled():
                with contextlib.suppress(BaseException):
                    waiter.exception()  # retrieved: a failure after a timeout is not "never retrieved"
        fc = answer[0]
        if fc == function | 0x80:
            if len(answer) < 2:
                raise LinkGarbled(f"undecodable response ({len(answer)} bytes): exception without a code")
            raise LinkException(answer[1], function)
        if fc != function:
            raise LinkGarbled(f"response to function {fc}, expected {function}")
        return answer[1:]

    async def read(
        self, table: Table, address: int, count: int, unit: int, wait_s: float
    ) -> list[int] | list[bool]:
        function = int(table)
        data = await self._call(unit, struct.pack(">BHH", function, address, count), function, wait_s)
        if not data or len(data) - 1 != data[0]:
            have = max(0, len(data) - 1)
            raise LinkGarbled(
                f"undecodable response ({len(data) + 1} bytes): byte count {data[0] if data else '-'}, "
                f"{have} bytes follow"
            )
        body = data[1:]
        if table.is_bits:
            bits = [bool(byte >> k & 1) for byte in body for k in range(8)]
            if len(bits) < count:
                raise LinkGarbled(f"short response: {len(bits)} of {count} bits")
            return bits[:count]
        if len(body) % 2:
            raise LinkGarbled(f"undecodable response: {len(body)} bytes of registers")
        if len(body) // 2 != count:
            raise LinkGarbled(f"short response: {len(body) // 2} of {count} registers")
        return list(struct.unpack(f">{count}H", body))

    async def write_registers(self, address: int, values: list[int], unit: int, wait_s: float) -> None:
        if len(values) == 1:
            await self._call(unit, struct.pack(">BHH", 6, address, values[0]), 6, wait_s)
            return
        n = len(values)
        pdu = struct.pack(f">BHHB{n}H", 16, address, n, 2 * n, *values)
        await self._call(unit, pdu, 16, wait_s)

    async def write_coil(self, address: int, value: bool, unit: int, wait_s: float) -> None:
        await self._call(unit, struct.pack(">BHH", 5, address, 0xFF00 if value else 0), 5, wait_s)
