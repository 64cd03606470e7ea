"""Northbound: how shipped readings leave the node.

Every uplink ships through the commit log (:mod:`edgeflow.commitlog`): readings are encoded and
committed, with the stream's sequence numbers and the rule state, before a transport delivers them;
a batch leaves the outbox only once delivered. :func:`create_uplink` builds the uplink a config names:

* ``file`` — :class:`FileUplink`, one EdgeX v3 ``AddEventRequest`` JSON line per event;
* ``mqtt`` — :class:`~edgeflow.uplink.mqtt.MqttUplink`, QoS 1 to a broker (needs the ``mqtt`` extra).
"""

from __future__ import annotations

from edgeflow.errors import UplinkError
from edgeflow.uplink.base import Transport, Uplink, commit_log_for
from edgeflow.uplink.file import FileUplink
from edgeflow.uplink.spec import FileUplinkSpec, MqttUplinkSpec, UplinkSpec

__all__ = ["FileUplink", "Transport", "Uplink", "commit_log_for", "create_uplink"]


def create_uplink(spec: UplinkSpec, *, service: str) -> Uplink:
    """The uplink for ``spec`` (not yet started)."""
    if isinstance(spec, FileUplinkSpec):
        return FileUplink(spec, service=service)
    if isinstance(spec, MqttUplinkSpec):
        try:
            from edgeflow.uplink.mqtt import MqttUplink
        except ImportError as exc:
            raise UplinkError(
                f"the mqtt uplink needs paho-mqtt: pip install 'edgeflow-iot[mqtt]' ({exc})"
            ) from exc
        return MqttUplink(spec, service=service)
    raise TypeError(f"no uplink for {type(spec).__name__}")  # pragma: no cover - the union is closed
