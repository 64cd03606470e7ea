"""Northbound transports: where shipped readings go.

:func:`create_uplink` builds the transport a config names; each one implements :class:`Uplink`.
"""

from __future__ import annotations

from edgeflow.uplink.base import Uplink
from edgeflow.uplink.file import FileUplink
from edgeflow.uplink.spec import FileUplinkSpec, MqttUplinkSpec, UplinkSpec

__all__ = ["FileUplink", "Uplink", "create_uplink"]


def create_uplink(spec: UplinkSpec, *, service: str) -> Uplink:
    """The transport for ``spec``."""
    if isinstance(spec, FileUplinkSpec):
        return FileUplink(spec, service=service)
    if isinstance(spec, MqttUplinkSpec):
        from edgeflow.uplink.mqtt import MqttUplink  # paho-mqtt is the optional "mqtt" extra

        return MqttUplink(spec, service=service)
    raise TypeError(f"no uplink for {type(spec).__name__}")  # pragma: no cover - the union is closed
