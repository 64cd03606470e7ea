"""KubeEdge DeviceTwin: edgeflow as a KubeEdge mapper.

* :mod:`edgeflow.twin.spec` — the ``kubeedge:`` config section (no MQTT, no gRPC);
* :mod:`edgeflow.twin.wire` — EdgeCore's topics, regexes, types and payloads (validation both ways);
* :mod:`edgeflow.twin.mapper` — :class:`~edgeflow.twin.mapper.KubeEdgeMapper`: devices, twin values,
  desired values, membership;
* :mod:`edgeflow.twin.eventbus` — the MQTT eventbus transport (``$hw/events/...``);
* :mod:`edgeflow.twin.dmi` — the DMI v1beta1 gRPC transport (``grpcio``; the ``kubeedge`` extra);
* :mod:`edgeflow.twin.rest` — the mapper-framework REST API.

Only the spec and the wire rules are imported here; the runtime imports the transports it needs.
"""

from __future__ import annotations

from edgeflow.twin.spec import DmiSpec, EventbusSpec, KubeEdgeSpec, RateSpec, RestSpec
from edgeflow.twin.wire import TwinValueError, format_twin_value, validate_twin_update

__all__ = [
    "DmiSpec",
    "EventbusSpec",
    "KubeEdgeSpec",
    "RateSpec",
    "RestSpec",
    "TwinValueError",
    "format_twin_value",
    "validate_twin_update",
]
