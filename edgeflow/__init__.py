"""edgeflow: the edge half of an IoT device-to-cloud pipeline."""

from __future__ import annotations

from edgeflow.errors import (
    BusClosedError,
    BusError,
    CodecError,
    ConfigError,
    ConnectorError,
    ConnectorNotFoundError,
    DeviceOfflineError,
    DeviceProtocolError,
    DeviceTimeoutError,
    EdgeflowError,
    OutboxError,
    RuleError,
    TransportSecurityError,
    UnsupportedVersionError,
    UplinkError,
    ValueFormatError,
    WriteRejectedError,
)
from edgeflow.model import Event, Reading, ReadingBatch, SeriesInfo, SeriesTable, ValueType

__version__ = "0.1.0"

__all__ = [
    "BusClosedError",
    "BusError",
    "CodecError",
    "ConfigError",
    "ConnectorError",
    "ConnectorNotFoundError",
    "DeviceOfflineError",
    "DeviceProtocolError",
    "DeviceTimeoutError",
    "EdgeflowError",
    "Event",
    "OutboxError",
    "Reading",
    "ReadingBatch",
    "RuleError",
    "SeriesInfo",
    "SeriesTable",
    "TransportSecurityError",
    "UnsupportedVersionError",
    "UplinkError",
    "ValueFormatError",
    "ValueType",
    "WriteRejectedError",
    "__version__",
]
