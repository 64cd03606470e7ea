"""OPC-UA connector (EdgeX device-opc-ua compatible): ``connectors.opcua:OpcUaConnector``.

Install with the ``opcua`` extra (asyncua). See the README section "opcua".
"""

from __future__ import annotations

from connectors.opcua._config import (
    PROTOCOL_KEY,
    Deadband,
    DeadbandType,
    EndpointSpec,
    SecurityMode,
    SecurityPolicy,
    parse_endpoint,
)
from connectors.opcua._connector import OPTION_DEFAULTS, OpcUaConnector, OpcUaSecurityError
from connectors.opcua._nodes import NodeRef, Point, parse_node_id, parse_point
from connectors.opcua._types import DEFAULT_VALUE_TYPES, default_value_type

__all__ = [
    "DEFAULT_VALUE_TYPES",
    "OPTION_DEFAULTS",
    "PROTOCOL_KEY",
    "Deadband",
    "DeadbandType",
    "EndpointSpec",
    "NodeRef",
    "OpcUaConnector",
    "OpcUaSecurityError",
    "Point",
    "SecurityMode",
    "SecurityPolicy",
    "default_value_type",
    "parse_endpoint",
    "parse_node_id",
    "parse_point",
]
