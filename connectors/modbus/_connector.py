"""The Modbus connector: EdgeX device-modbus devices and profiles, coalesced reads, writes, recovery.

Devices behind one gateway (same host and port and framing, or same serial port) share one
connection; each device has its own unit id. Requests on one connection run one at a time (a lock
per connection); connections are independent, so a dead device holds up only its own line.

The connector owns reconnection. A read on a connection that is down connects first; if that fails
the connection waits out a capped exponential backoff (``reconnect_min`` doubling up to
``reconnect_max``), and reads in that window fail at once with DeviceOfflineError. Nothing runs in
the background: the scheduler's next read is the retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from connectors.modbus._codec import decode, encode_registers, registers_to_bytes, to_bool
from connectors.modbus._config import LinkSpec, Point, Table, parse_link, parse_point
from connectors.modbus._link import (
    EXCEPTION_NAMES,
    Link,
    LinkClosed,
    LinkError,
    LinkException,
    LinkGarbled,
    LinkTimeout,
)
from connectors.modbus._plan import MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ, Block, Limits, plan
from connectors.modbus._pymodbus import ModbusLink
from connectors.modbus._tcp import TcpLink
from edgeflow.connector import CommandValue, Connector, DeviceHealth
from edgeflow.errors import (
    ConfigError,
    ConnectorError,
    DeviceOfflineError,
    DeviceProtocolError,
    DeviceTimeoutError,
    WriteRejectedError,
)
from edgeflow.model import ValueType
from edgeflow.parsing import did_you_mean, duration_seconds
from edgeflow.profiles import Device, DeviceProfile, DeviceResource

__all__ = ["ModbusConnector", "ModbusExceptionError"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ModbusExceptionError(DeviceProtocolError):
    """The device answered with a Modbus exception response; ``code`` is the exception code
    (1 illegal function, 2 illegal data address, 3 illegal data value, 4 device failure, ...)."""

    def __init__(
        self, message: str, *, code: int, function: int, device: str, resource: str, address: str
    ) -> None:
        self.code = code
        self.function = function
        super().__init__(message, device=device, resource=resource, address=address)


#: Connector options (``connectors: [{type: modbus, options: {...}}]``) and their defaults.
OPTION_DEFAULTS: dict[str, Any] = {
    "coalesce": True,
    "max_gap_registers": 16,
    "max_gap_bits": 256,
    "max_registers_per_read": MAX_REGISTERS_PER_READ,
    "max_bits_per_read": MAX_BITS_PER_READ,
    "reconnect_min": 0.5,
    "reconnect_max": 30.0,
    "close_after_timeouts": 3,
}


@dataclass(eq=False)
class _Connection:
    link: Link
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failures: int = 0  # consecutive failed connects
    retry_at: float = 0.0  # loop time before which no connect is tried
    last_error: str = ""
    timeouts: int = 0  # consecutive timeouts on an open connection
    idle: asyncio.TimerHandle | None = None
    requests: int = 0


@dataclass(eq=False)
class _DeviceState:
    name: str
    spec: LinkSpec
    conn: _Connection
    points: dict[str, Point]
    health: DeviceHealth = DeviceHealth.UNKNOWN
    split: set[tuple[Table, int, int]] = field(default_factory=set)
    #: the last list of resources read, with its points and requests while ``split`` had this many
    #: entries (a service polls the same list every interval: the plan is made once)
    last_plan: tuple[Sequence[DeviceResource], int, list[Point], list[Block]] | None = None


class ModbusConnector(Connector):
    """EdgeX device-modbus compatible connector over pymodbus (Modbus TCP, RTU, ASCII, RTU over TCP)."""

    type_name: ClassVar[str] = "modbus"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        opts = _parse_options(self.options)
        self.limits = Limits(
            max_gap_registers=opts["max_gap_registers"],
            max_gap_bits=opts["max_gap_bits"],
            max_registers=opts["max_registers_per_read"],
            max_bits=opts["max_bits_per_read"],
            coalesce=opts["coalesce"],
        )
        self._reconnect_min: float = opts["reconnect_min"]
        self._reconnect_max: float = opts["reconnect_max"]
        self._close_after: int = opts["close_after_timeouts"]
        self._states: dict[str, _DeviceState] = {}
        self._connections: dict[tuple[Any, ...], _Connection] = {}
        self._validated: dict[str, tuple[LinkSpec, dict[str, Point]]] = {}

    # ------------------------------------------------------------------ devices

    def validate_device(self, device: Device, profile: DeviceProfile) -> None:
        spec = parse_link(device)
        points = {r.name: parse_point(device.name, r, profile.name) for r in profile.device_resources}
        for other in self._states.values():
            if other.spec.gateway == spec.gateway and other.spec.line_settings != spec.line_settings:
                raise ConfigError(
                    f"device {device.name!r} shares {spec.describe()} with {other.name!r} but not its settings",
                    problems=[
                        (f"devices.{device.name}.protocols.{spec.kind}", "must match the other device's")
                    ],
                )
        self._validated[device.name] = (spec, points)

    def add_device(self, device: Device, profile: DeviceProfile) -> None:
        super().add_device(device, profile)  # calls validate_device
        spec, points = self._validated.pop(device.name)
        conn = self._connections.get(spec.gateway)
        if conn is None:
            # Modbus TCP: spoken here (the poll path); RTU and ASCII on serial lines: through pymodbus
            conn = _Connection(TcpLink(spec) if spec.framing == "socket" else ModbusLink(spec))
            self._connections[spec.gateway] = conn
        conn.link.backstop = max(conn.link.backstop, spec.timeout + 1.0)
        self._states[device.name] = _DeviceState(device.name, spec, conn, points)

    def remove_device(self, name: str) -> None:
        """Forget the device; its connection closes when no other device uses it."""
        super().remove_device(name)
        self._validated.pop(name, None)
        state = self._states.pop(name, None)
        if state is None or any(s.conn is state.conn for s in self._states.values()):
            return
        conn = self._connections.pop(state.spec.gateway, None)
        if conn is not None:
            if conn.idle is not None:
                conn.idle.cancel()
                conn.idle = None
            conn.link.close()

    def _state(self, device: str) -> _DeviceState:
        state = self._states.get(device)
        if state is None:
            raise ConnectorError("unknown device", device=device)
        return state

    def _point(self, state: _DeviceState, resource: DeviceResource) -> Point:
        point = state.points.get(resource.name)
        if point is None:
            raise ConnectorError(
                "resource is not in the device's profile", device=state.name, resource=resource.name
            )
        return point

    def health(self, device: str) -> DeviceHealth:
        return self._state(device).health

    def connected(self, device: str) -> bool:
        """Whether the device's connection is open right now (connections open on the first read)."""
        return self._state(device).conn.link.connected

    def request_count(self, device: str) -> int:
        """Modbus requests sent on the device's connection so far (all devices sharing it)."""
        return self._state(device).conn.requests

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connections open lazily, on each one's first request."""

    async def close(self) -> None:
        for conn in self._connections.values():
            if conn.idle is not None:
                conn.idle.cancel()
                conn.idle = None
            conn.link.close()

    # ------------------------------------------------------------------ requests

    async def _request(
        self,
        state: _DeviceState,
        call: Callable[[Link], Awaitable[T]],
        *,
        resource: str,
        address: str,
    ) -> T:
        """Run ``call`` on the device's connection, connected, under its lock; map every failure."""
        conn = state.conn
        where = {"device": state.name, "resource": resource, "address": address}
        async with conn.lock:
            await self._ensure_connected(state, where)
            conn.requests += 1
            try:
                result = await call(conn.link)
            except LinkException as exc:
                conn.timeouts = 0
                state.health = DeviceHealth.UP
                name = EXCEPTION_NAMES.get(exc.code, "unknown")
                raise ModbusExceptionError(
                    f"Modbus exception code {exc.code} ({name}) to function {exc.function}",
                    code=exc.code,
                    function=exc.function,
                    **where,
                ) from None
            except LinkTimeout as exc:
                conn.timeouts += 1
                state.health = DeviceHealth.DOWN
                if state.spec.framing != "socket" or conn.timeouts >= self._close_after:
                    # RTU frames carry no transaction id: a late answer would be taken for the next one.
                    conn.link.close()
                raise DeviceTimeoutError(
                    f"{state.spec.describe()} unit {state.spec.unit}: {exc}", **where
                ) from None
            except LinkGarbled as exc:
                conn.link.close()  # resynchronise the byte stream
                state.health = DeviceHealth.DOWN
                raise DeviceProtocolError(f"malformed response: {exc}", **where) from None
            except LinkClosed as exc:
                conn.link.close()
                state.health = DeviceHealth.DOWN
                raise ConnectorError(f"{state.spec.describe()}: {exc}", **where) from None
            except asyncio.CancelledError:
                if state.spec.framing != "socket":
                    conn.link.close()  # the answer may still come, and would be taken for the next one's
                raise
            finally:
                self._arm_idle(state)
            conn.timeouts = 0
            state.health = DeviceHealth.UP
            return result

    async def _ensure_connected(self, state: _DeviceState, where: dict[str, str]) -> None:
        conn = state.conn
        if conn.link.connected:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < conn.retry_at:
            state.health = DeviceHealth.DOWN
            raise DeviceOfflineError(
                f"{state.spec.describe()} is down ({conn.last_error}); next connect attempt in "
                f"{conn.retry_at - now:.1f} s",
                **where,
            )
        try:
            await conn.link.connect()
        except LinkError as exc:
            conn.failures += 1
            delay = min(self._reconnect_max, self._reconnect_min * 2 ** (conn.failures - 1))
            conn.retry_at = loop.time() + delay
            conn.last_error = str(exc)
            state.health = DeviceHealth.DOWN
            log.warning("%s (attempt %d; next in %.1f s)", exc, conn.failures, delay)
            cls = DeviceTimeoutError if isinstance(exc, LinkTimeout) else ConnectorError
            raise cls(str(exc), **where) from None
        if conn.failures:
            log.info("%s is back after %d failed connects", state.spec.describe(), conn.failures)
        conn.failures = 0
        conn.retry_at = 0.0
        conn.timeouts = 0

    def _arm_idle(self, state: _DeviceState) -> None:
        idle = state.spec.idle_timeout
        if idle <= 0:
            return
        conn = state.conn
        if conn.idle is not None:
            conn.idle.cancel()
        conn.idle = asyncio.get_running_loop().call_later(idle, _close_if_idle, conn)

    # ------------------------------------------------------------------ read

    async def read(self, device: str, resources: Sequence[DeviceResource]) -> list[CommandValue]:
        state = self._state(device)
        last = state.last_plan
        if last is not None and last[0] is resources and last[1] == len(state.split):
            points, blocks = last[2], last[3]
        else:
            points = [self._point(state, r) for r in resources]
            blocks = plan(points, self.limits, state.split)
            state.last_plan = (resources, len(state.split), points, blocks)
        values: list[Any] = [None] * len(points)
        origins: list[int] = [0] * len(points)
        for block in blocks:
            try:
                await self._read_block(state, block, values, origins)
            except ModbusExceptionError as exc:
                if len(block.members) < 2 or exc.code not in (2, 3):
                    raise
                # The device refuses the coalesced range (a hole in its map, or a smaller request limit):
                # remember, and read these points one request each from now on.
                log.info(
                    "device %s refused %s[%d..%d] as one read (code %d); reading its %d points separately",
                    device,
                    block.table.name,
                    block.address,
                    block.end - 1,
                    exc.code,
                    len(block.members),
                )
                state.split.add(block.key())
                for member in block.members:
                    single = Block(block.table, member[1].address, member[1].count, [member])
                    await self._read_block(state, single, values, origins)
        return [CommandValue(p.resource, values[i], origins[i]) for i, p in enumerate(points)]

    async def _read_block(
        self, state: _DeviceState, block: Block, values: list[Any], origins: list[int]
    ) -> None:
        unit, timeout = state.spec.unit, state.spec.timeout
        resources, address = block.names()
        data = await self._request(
            state,
            lambda link: link.read(block.table, block.address, block.count, unit, timeout),
            resource=resources,
            address=address,
        )
        origin = self.clock.time_ns()  # the service's clock: whole microseconds by default
        if block.table.is_bits:
            for i, p in block.members:
                values[i] = bool(data[p.address - block.address])
                origins[i] = origin
            return
        raw = registers_to_bytes(data)
        for i, p in block.members:
            values[i] = decode(p, raw, p.address - block.address)
            origins[i] = origin

    # ------------------------------------------------------------------ write

    async def write(self, device: str, values: Sequence[tuple[DeviceResource, Any]]) -> None:
        state = self._state(device)
        unit, timeout = state.spec.unit, state.spec.timeout
        for resource, value in values:
            p = self._point(state, resource)
            where = p.where()
            if not p.table.writable:
                raise WriteRejectedError(
                    f"{p.table.name} is read-only", device=device, resource=p.resource, address=where
                )
            try:
                if p.value_type == ValueType.BOOL:
                    flag = to_bool(p, value)
                    if p.table == Table.COILS:
                        await self._request(
                            state,
                            lambda link, a=p.address, f=flag: link.write_coil(a, f, unit, timeout),  # type: ignore[misc]
                            resource=p.resource,
                            address=where,
                        )
                    else:
                        await self._request(
                            state,
                            lambda link, q=p, f=flag: _write_bit(link, q, f, unit, timeout),  # type: ignore[misc]
                            resource=p.resource,
                            address=where,
                        )
                    continue
                regs = encode_registers(p, value)
            except WriteRejectedError as exc:
                exc.device = device
                raise
            await self._request(
                state,
                lambda link, a=p.address, r=regs: link.write_registers(a, r, unit, timeout),  # type: ignore[misc]
                resource=p.resource,
                address=where,
            )


async def _write_bit(link: Link, point: Point, flag: bool, unit: int, wait_s: float) -> None:
    """Set or clear one bit of a holding register: read, modify, write, under the connection's lock."""
    (word,) = await link.read(Table.HOLDING_REGISTERS, point.address, 1, unit, wait_s)
    mask = 1 << (point.bit or 0)
    new = (int(word) | mask) if flag else (int(word) & ~mask)
    await link.write_registers(point.address, [new & 0xFFFF], unit, wait_s)


def _close_if_idle(conn: _Connection) -> None:
    conn.idle = None
    if not conn.lock.locked() and conn.link.connected:
        log.debug("closing idle connection %s", conn.link.spec.describe())
        conn.link.close()


def _parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    path = "connectors.modbus"
    problems: list[tuple[str, str]] = []
    out = dict(OPTION_DEFAULTS)
    for key, value in options.items():
        if key not in OPTION_DEFAULTS:
            problems.append(
                (
                    f"{path}.{key}",
                    f"unknown option{did_you_mean(key, OPTION_DEFAULTS)}; expected {', '.join(OPTION_DEFAULTS)}",
                )
            )
            continue
        default = OPTION_DEFAULTS[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                problems.append((f"{path}.{key}", f"expected true or false, got {value!r}"))
                continue
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append((f"{path}.{key}", f"expected a non-negative integer, got {value!r}"))
                continue
        else:  # a duration: seconds, or "500ms", "1m30s"
            try:
                value = duration_seconds(value)
            except ValueError as exc:
                problems.append((f"{path}.{key}", str(exc)))
                continue
        out[key] = value
    if not 1 <= out["max_registers_per_read"] <= MAX_REGISTERS_PER_READ:
        problems.append((f"{path}.max_registers_per_read", f"must be 1..{MAX_REGISTERS_PER_READ}"))
    if not 1 <= out["max_bits_per_read"] <= MAX_BITS_PER_READ:
        problems.append((f"{path}.max_bits_per_read", f"must be 1..{MAX_BITS_PER_READ}"))
    if out["close_after_timeouts"] < 1:
        problems.append((f"{path}.close_after_timeouts", "must be at least 1"))
    if out["reconnect_max"] < out["reconnect_min"]:
        problems.append((f"{path}.reconnect_max", "must not be less than reconnect_min"))
    if problems:
        raise ConfigError("invalid Modbus connector options", problems=problems)
    return out
