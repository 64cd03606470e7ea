"""Modbus connector (EdgeX device-modbus compatible): ``connectors.modbus:ModbusConnector``.

Install with the ``modbus`` extra (pymodbus, pyserial). See the README section "Modbus devices".
"""

from __future__ import annotations

from connectors.modbus._config import PROTOCOL_KEYS, LinkSpec, Point, Table, parse_link, parse_point
from connectors.modbus._connector import OPTION_DEFAULTS, ModbusConnector, ModbusExceptionError
from connectors.modbus._plan import MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ, Block, Limits, plan

__all__ = [
    "MAX_BITS_PER_READ",
    "MAX_REGISTERS_PER_READ",
    "OPTION_DEFAULTS",
    "PROTOCOL_KEYS",
    "Block",
    "Limits",
    "LinkSpec",
    "ModbusConnector",
    "ModbusExceptionError",
    "Point",
    "Table",
    "parse_link",
    "parse_point",
    "plan",
]
