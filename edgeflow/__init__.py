"""edgeflow: the edge half of an IoT device-to-cloud pipeline.

The names a user reaches for first are here; each is imported from its room on first use, so
``import edgeflow`` stays light and a name whose room needs an extra (``Receiver``: paho-mqtt) fails
only when it is used::

    import edgeflow
    config = edgeflow.load_config("edgeflow.yaml")
    asyncio.run(edgeflow.Runtime(config).run(duration=10))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

#: Public name → the module it lives in (imported when the name is first used).
_LAZY = {
    "Bus": "edgeflow.bus",
    "EdgeConfig": "edgeflow.config",
    "Receiver": "edgeflow.cloud",
    "Runtime": "edgeflow.runtime",
    "build_pipeline": "edgeflow.rules",
    "decode": "edgeflow.codec",
    "load_config": "edgeflow.config",
    "make_encoder": "edgeflow.codec",
    "parse_config": "edgeflow.config",
}

if TYPE_CHECKING:
    from edgeflow.bus import Bus
    from edgeflow.cloud import Receiver
    from edgeflow.codec import decode, make_encoder
    from edgeflow.config import EdgeConfig, load_config, parse_config
    from edgeflow.rules import build_pipeline
    from edgeflow.runtime import Runtime


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Bus",
    "BusClosedError",
    "BusError",
    "CodecError",
    "ConfigError",
    "ConnectorError",
    "ConnectorNotFoundError",
    "DeviceOfflineError",
    "DeviceProtocolError",
    "DeviceTimeoutError",
    "EdgeConfig",
    "EdgeflowError",
    "Event",
    "OutboxError",
    "Reading",
    "ReadingBatch",
    "Receiver",
    "RuleError",
    "Runtime",
    "SeriesInfo",
    "SeriesTable",
    "TransportSecurityError",
    "UnsupportedVersionError",
    "UplinkError",
    "ValueFormatError",
    "ValueType",
    "WriteRejectedError",
    "__version__",
    "build_pipeline",
    "decode",
    "load_config",
    "make_encoder",
    "parse_config",
]
