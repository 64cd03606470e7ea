"""What a Modbus connection is to the connector, whichever client speaks on it: its errors and its
requests (:class:`Link`). :mod:`connectors.modbus._tcp` speaks Modbus TCP itself (the poll path's
client); :mod:`connectors.modbus._pymodbus` speaks RTU and ASCII on serial lines through pymodbus."""

from __future__ import annotations

from typing import Protocol

from connectors.modbus._config import LinkSpec, Table

__all__ = [
    "EXCEPTION_NAMES",
    "Link",
    "LinkClosed",
    "LinkError",
    "LinkException",
    "LinkGarbled",
    "LinkTimeout",
]


class LinkError(Exception):
    """A request failed below the connector; the connector maps it to an edgeflow error."""


class LinkClosed(LinkError):
    """No connection, or it was lost while a request was in flight."""


class LinkTimeout(LinkError):
    """No answer in time."""


class LinkGarbled(LinkError):
    """An answer came but was not a valid response to the request (short, wrong function, junk)."""


class LinkException(LinkError):
    """The device answered with a Modbus exception response."""

    def __init__(self, code: int, function: int) -> None:
        self.code = code
        self.function = function
        super().__init__(
            f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) to function {function}"
        )


EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class Link(Protocol):
    """One connection (a TCP socket or a serial port) and the requests on it. Not safe for concurrent
    requests: the connector serialises them with its per-connection lock."""

    spec: LinkSpec
    #: The client's own response timeout, a back-stop above every timeout the connector passes in.
    backstop: float

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the connection; raises LinkClosed (refused, no such port) or LinkTimeout."""
        ...

    def close(self) -> None: ...

    async def read(
        self, table: Table, address: int, count: int, unit: int, wait_s: float
    ) -> list[int] | list[bool]:
        """``count`` registers (ints) or bits (bools) of ``table`` from ``address``."""
        ...

    async def write_registers(self, address: int, values: list[int], unit: int, wait_s: float) -> None:
        """One register with function 6, several with function 16 (as EdgeX)."""
        ...

    async def write_coil(self, address: int, value: bool, unit: int, wait_s: float) -> None: ...
