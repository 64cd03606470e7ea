"""EdgeX device-modbus ``protocols`` and resource ``attributes``, parsed and checked once at start-up.

Protocol keys (exactly one per device):

- ``modbus-tcp``: ``Address``, ``Port``, ``UnitID`` (required), ``Timeout``, ``IdleTimeout``,
  ``ConnectDelay``; ``LinkRecoveryTimeout`` and ``ProtocolRecoveryTimeout`` are checked and ignored.
- ``modbus-rtu`` / ``modbus-ascii``: ``Address`` (serial device path), ``UnitID``, ``BaudRate``,
  ``DataBits``, ``StopBits``, ``Parity`` (``N``/``O``/``E``) (required), ``Timeout``, ``IdleTimeout``,
  ``ConnectDelay``.
- ``modbus-rtu-tcp`` (edgeflow's own key; EdgeX has none): RTU frames over a TCP socket, as serial
  device servers and many gateways speak them: the ``modbus-tcp`` properties.

Durations: a bare number is seconds (as EdgeX), strings ``"500ms"``, ``"2s"``, ``"1m30s"``, ``"1h"``
(:func:`edgeflow.parsing.parse_duration`, the one duration parser of the whole config).
Numbers may be written as strings (EdgeX 2.x files hold every property as a string).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from typing import Any

from edgeflow.errors import ConfigError
from edgeflow.model import ValueType
from edgeflow.parsing import NS_PER_SECOND, PropertyReader, duration_seconds, parse_duration
from edgeflow.profiles import Device, DeviceResource

__all__ = [
    "PROTOCOL_KEYS",
    "LinkSpec",
    "Point",
    "Table",
    "parse_link",
    "parse_point",
]

log = logging.getLogger(__name__)

PROTOCOL_KEYS = ("modbus-tcp", "modbus-rtu", "modbus-ascii", "modbus-rtu-tcp")

DEFAULT_TIMEOUT = 5.0


class Table(IntEnum):
    """The four Modbus tables, valued by their read function code."""

    COILS = 1
    DISCRETE_INPUTS = 2
    HOLDING_REGISTERS = 3
    INPUT_REGISTERS = 4

    @property
    def is_bits(self) -> bool:
        return self in (Table.COILS, Table.DISCRETE_INPUTS)

    @property
    def writable(self) -> bool:
        return self in (Table.COILS, Table.HOLDING_REGISTERS)


_TABLES = {
    "COILS": Table.COILS,
    "DISCRETE_INPUTS": Table.DISCRETE_INPUTS,
    "DISCRETES_INPUT": Table.DISCRETE_INPUTS,  # EdgeX's original spelling
    "INPUT_REGISTERS": Table.INPUT_REGISTERS,
    "HOLDING_REGISTERS": Table.HOLDING_REGISTERS,
}

#: struct format and register count of each numeric type, big-endian.
_NUMERIC = {
    ValueType.INT16: ("h", 1),
    ValueType.UINT16: ("H", 1),
    ValueType.INT32: ("i", 2),
    ValueType.UINT32: ("I", 2),
    ValueType.INT64: ("q", 4),
    ValueType.UINT64: ("Q", 4),
    ValueType.FLOAT32: ("f", 2),
    ValueType.FLOAT64: ("d", 4),
}

#: Allowed ``rawType`` for a ``valueType`` other than itself (EdgeX ``TransformDataBytesToResult``).
_RAW_CASTS = {
    ValueType.FLOAT32: {ValueType.INT16, ValueType.UINT16},
    ValueType.FLOAT64: {ValueType.INT16, ValueType.UINT16, ValueType.INT32},
}


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """How to reach a device: the connection part (shared by devices behind one gateway) and its unit."""

    kind: str  # one of PROTOCOL_KEYS
    address: str  # host, or serial device path
    port: int  # 0 for serial
    unit: int
    timeout: float
    idle_timeout: float  # <= 0: keep the connection open
    connect_delay: float
    baudrate: int = 0
    databits: int = 0
    stopbits: int = 0
    parity: str = ""

    @property
    def serial(self) -> bool:
        return self.kind in ("modbus-rtu", "modbus-ascii")

    @property
    def framing(self) -> str:
        """``socket`` (MBAP header), ``rtu`` or ``ascii``."""
        if self.kind == "modbus-tcp":
            return "socket"
        return "ascii" if self.kind == "modbus-ascii" else "rtu"

    @property
    def gateway(self) -> tuple[Any, ...]:
        """Devices with the same gateway key share one connection."""
        if self.serial:
            return ("serial", self.address)
        return ("tcp", self.address.lower(), self.port, self.framing)

    @property
    def line_settings(self) -> tuple[Any, ...]:
        """Everything that must agree between devices sharing the gateway."""
        return (self.kind, self.baudrate, self.databits, self.stopbits, self.parity)

    def describe(self) -> str:
        where = self.address if self.serial else f"{self.address}:{self.port}"
        return f"{self.kind}://{where}"


@dataclass(frozen=True, slots=True)
class Point:
    """One resource's place in a device: table, first address, extent, and how to decode it."""

    resource: str
    table: Table
    address: int  # zero-based
    count: int  # registers, or bits for COILS/DISCRETE_INPUTS
    value_type: ValueType
    raw_type: ValueType
    byte_swap: bool
    word_swap: bool
    bit: int | None = None  # Bool read of one bit of a register (``startingAddress: "10.3"``)

    @property
    def end(self) -> int:
        """One past the last address."""
        return self.address + self.count

    def where(self) -> str:
        return f"{self.table.name}[{self.address}]" + (f".{self.bit}" if self.bit is not None else "")


# --------------------------------------------------------------------------------------------------
# small casts, EdgeX style (spf13/cast): numbers may come as strings
# --------------------------------------------------------------------------------------------------


def _integer(value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip(), 0)
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
    if not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{value} is out of range {lo}..{hi}")
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "t", "f"):
        return value.strip().lower() in ("true", "1", "t")
    raise ValueError(f"expected true or false, got {value!r}")


# --------------------------------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------------------------------

_TCP_REQUIRED = ("Address", "Port", "UnitID")
_SERIAL_REQUIRED = ("Address", "UnitID", "BaudRate", "DataBits", "StopBits", "Parity")
_COMMON_OPTIONAL = (
    "Timeout",
    "IdleTimeout",
    "ConnectDelay",
    "LinkRecoveryTimeout",
    "ProtocolRecoveryTimeout",
)


def parse_link(device: Device) -> LinkSpec:
    """The device's connection from its ``protocols``; ConfigError names every problem's key path."""
    base = f"devices.{device.name}.protocols"
    keys = [k for k in device.protocols if k in PROTOCOL_KEYS]
    if len(keys) != 1:
        found = ", ".join(device.protocols) or "none"
        raise ConfigError(
            f"device {device.name!r}: exactly one Modbus protocol is needed",
            problems=[(base, f"expected one of {', '.join(PROTOCOL_KEYS)}; found {found}")],
        )
    kind = keys[0]
    props: Mapping[str, Any] = device.protocols[kind]
    path = f"{base}.{kind}"
    serial = kind in ("modbus-rtu", "modbus-ascii")
    required = _SERIAL_REQUIRED if serial else _TCP_REQUIRED
    problems: list[tuple[str, str]] = []
    for key in required:
        if props.get(key) in (None, ""):
            problems.append((f"{path}.{key}", "is required"))
    known = set(required) | set(_COMMON_OPTIONAL) | ({"Port"} if serial else set())
    for key in props:
        if key not in known:
            # EdgeX ignores properties it does not know; so do we, loudly (a typo is the likely cause)
            log.warning("%s.%s: unknown property, ignored; known: %s", path, key, ", ".join(sorted(known)))
    if problems:
        raise ConfigError(f"device {device.name!r}: invalid {kind} protocol properties", problems=problems)

    reader = PropertyReader(props, path)
    problems, values, take = reader.problems, reader.values, reader.take
    take("Address", lambda v: _str_nonempty(v), "")
    take("UnitID", lambda v: _integer(v, 0, 255), 1)
    take("Timeout", duration_seconds, DEFAULT_TIMEOUT)
    take("IdleTimeout", _seconds, 0.0)  # 0 or less: keep the connection open, as EdgeX
    take("ConnectDelay", partial(duration_seconds, zero=True), 0.0)
    take("LinkRecoveryTimeout", _seconds, 0.0)  # accepted and ignored
    take("ProtocolRecoveryTimeout", _seconds, 0.0)  # accepted and ignored
    if serial:
        take("BaudRate", lambda v: _integer(v, 50, 4_000_000), 0)
        take("DataBits", lambda v: _integer(v, 5, 8), 0)
        take("StopBits", lambda v: _integer(v, 1, 2), 0)
        take("Parity", _parity, "")
        take("Port", lambda v: 0, 0)
    else:
        take("Port", lambda v: _integer(v, 1, 65535), 0)
    if problems:
        raise ConfigError(f"device {device.name!r}: invalid {kind} protocol properties", problems=problems)
    return LinkSpec(
        kind=kind,
        address=values["Address"],
        port=values["Port"],
        unit=values["UnitID"],
        timeout=values["Timeout"],
        idle_timeout=values["IdleTimeout"],
        connect_delay=values["ConnectDelay"],
        baudrate=values.get("BaudRate", 0),
        databits=values.get("DataBits", 0),
        stopbits=values.get("StopBits", 0),
        parity=values.get("Parity", ""),
    )


def _str_nonempty(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"expected a host name or device path, got {v!r}")
    return v.strip()


def _seconds(v: Any) -> float:
    """Any duration, a sign allowed (``IdleTimeout: -1`` switches idle closing off, as in EdgeX)."""
    return parse_duration(v) / NS_PER_SECOND


def _parity(v: Any) -> str:
    if not isinstance(v, str) or v.strip().upper() not in ("N", "O", "E"):
        raise ValueError(f"expected N (none), O (odd) or E (even), got {v!r}")
    return v.strip().upper()


# --------------------------------------------------------------------------------------------------
# resource attributes
# --------------------------------------------------------------------------------------------------

_KNOWN_ATTRIBUTES = {
    "primaryTable",
    "startingAddress",
    "rawType",
    "isByteSwap",
    "isWordSwap",
    "stringRegisterSize",
}


def parse_point(device: str, resource: DeviceResource, profile: str) -> Point:
    """The resource's Modbus point; ConfigError names the profile, resource and attribute."""
    path = f"profiles.{profile}.deviceResources.{resource.name}.attributes"
    attrs = resource.attributes
    problems: list[tuple[str, str]] = []
    vt = resource.properties.value_type

    def fail(key: str, msg: str) -> ConfigError:
        problems.append((f"{path}.{key}" if key else path, msg))
        return ConfigError(
            f"device {device!r}: resource {resource.name!r} has invalid Modbus attributes", problems=problems
        )

    for key in attrs:
        if key not in _KNOWN_ATTRIBUTES:
            # EdgeX ignores attributes it does not know; so do we, loudly (a typo is the likely cause)
            log.warning(
                "%s.%s: unknown attribute, ignored; known: %s",
                path,
                key,
                ", ".join(sorted(_KNOWN_ATTRIBUTES)),
            )

    table_raw = attrs.get("primaryTable")
    if table_raw is None:
        raise fail("primaryTable", f"is required: one of {', '.join(_TABLES)}")
    table = _TABLES.get(str(table_raw).strip().upper())
    if table is None:
        raise fail("primaryTable", f"{table_raw!r} is not one of {', '.join(_TABLES)}")

    if "startingAddress" not in attrs:
        raise fail("startingAddress", "is required (zero-based register or coil address)")
    try:
        address, bit = _starting_address(attrs["startingAddress"])
    except ValueError as exc:
        raise fail("startingAddress", str(exc)) from None

    if vt not in _NUMERIC and vt not in (ValueType.BOOL, ValueType.STRING):
        raise fail(
            "",
            f"valueType {vt.value} is not supported by Modbus (Bool, String, Int/Uint 16/32/64, Float32/64)",
        )

    raw = vt
    if "rawType" in attrs:
        try:
            raw = ValueType.parse(str(attrs["rawType"]))
        except ValueError as exc:
            raise fail("rawType", str(exc)) from None
        if raw != vt and raw not in _RAW_CASTS.get(vt, set()):
            allowed = ", ".join(sorted(t.value for t in _RAW_CASTS.get(vt, set()))) or "none"
            raise fail(
                "rawType", f"rawType {raw.value} cannot be read as valueType {vt.value} (allowed: {allowed})"
            )

    swaps = {}
    for key in ("isByteSwap", "isWordSwap"):
        try:
            swaps[key] = _boolean(attrs[key]) if key in attrs else False
        except ValueError as exc:
            raise fail(key, str(exc)) from None

    if table.is_bits and vt != ValueType.BOOL:
        raise fail("primaryTable", f"{table.name} holds single bits; valueType must be Bool, not {vt.value}")
    if bit is not None and (vt != ValueType.BOOL or table.is_bits):
        raise fail(
            "startingAddress", "a bit address 'register.bit' is only for Bool in INPUT_/HOLDING_REGISTERS"
        )

    if vt == ValueType.STRING:
        if "stringRegisterSize" not in attrs:
            raise fail("stringRegisterSize", "is required for valueType String (1..123 registers)")
        try:
            count = _integer(attrs["stringRegisterSize"], 1, 123)
        except ValueError as exc:
            raise fail("stringRegisterSize", str(exc)) from None
    elif vt == ValueType.BOOL:
        count = 1
    else:
        count = _NUMERIC[raw][1]
    if address + count > 65536:
        raise fail("startingAddress", f"{address} + {count} registers runs past address 65535")
    if problems:
        raise ConfigError(
            f"device {device!r}: resource {resource.name!r} has invalid Modbus attributes", problems=problems
        )
    return Point(
        resource=resource.name,
        table=table,
        address=address,
        count=count,
        value_type=vt,
        raw_type=raw,
        byte_swap=swaps["isByteSwap"],
        word_swap=swaps["isWordSwap"],
        bit=bit,
    )


def _starting_address(value: Any) -> tuple[int, int | None]:
    if isinstance(value, float) and not value.is_integer():
        value = f"{value:.2f}"  # EdgeX formats float addresses with two decimals
    if isinstance(value, str) and "." in value:
        reg, _, bit = value.strip().partition(".")
        return _integer(reg, 0, 65535), _integer(bit.lstrip("0") or "0", 0, 15)
    return _integer(value, 0, 65535), None


def struct_format(t: ValueType) -> str:
    """Big-endian struct format of a numeric raw type."""
    return ">" + _NUMERIC[t][0]


def register_count(t: ValueType) -> int:
    return _NUMERIC[t][1]


def numeric_struct(t: ValueType) -> struct.Struct:
    return struct.Struct(struct_format(t))
