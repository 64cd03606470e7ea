"""What a user writes under ``kubeedge:`` in the config: the KubeEdge mapper (pydantic; no MQTT, no gRPC).

::

    kubeedge:
      manifests: [k8s/temperature-model.yaml, k8s/temperature-instance.yaml]   # Device + DeviceModel YAML
      node: edge-node-1            # this node's name (membership topics, spec.nodeName filter)
      deviceId: namespaced         # <namespace>/<name> topics (KubeEdge >= 1.16.2); "name" for <= 1.15
      eventbus: {url: mqtt://127.0.0.1:1883}        # EdgeCore's MQTT broker; leave out to disable
      rate: {perSecond: 10, burst: 20}               # twin + state messages, node-wide
      rules: [{type: deadband, absolute: 0.5}]       # optional: twins report through these rules
      dmi: {edgecoreSocket: /etc/kubeedge/dmi.sock, socket: /etc/kubeedge/edgeflow.sock}
      rest: {listen: "0.0.0.0:7777"}

Every duration is one syntax (seconds, or ``"250ms"``, ``"1m"``); KubeEdge's own ``collectCycle`` and
``reportCycle`` inside the manifests are milliseconds, as in KubeEdge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from edgeflow.mqtt.spec import MqttAuthSpec, ReconnectSpec, TlsSpec
from edgeflow.parsing import ListenAddress, NonNegativeSeconds, PositiveSeconds
from edgeflow.rules.spec import RuleSpec

__all__ = ["DmiSpec", "EventbusSpec", "KubeEdgeSpec", "RateSpec", "RestSpec"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class RateSpec(_Spec):
    """A token bucket: ``per_second`` sustained, ``burst`` at once.

    Defaults stay inside EdgeCore's limits: its EdgeHub forwards 30 messages/s (burst 60) per node to the
    cloud, and every twin report, even of an unchanged value, costs a SQLite write and a cloud PATCH."""

    per_second: float = Field(default=10.0, gt=0)
    burst: int = Field(default=20, ge=1)


class EventbusSpec(_Spec):
    """EdgeCore's MQTT broker (the eventbus)."""

    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = ""
    tls: TlsSpec | None = None
    auth: MqttAuthSpec | None = None
    reconnect: ReconnectSpec = Field(default_factory=ReconnectSpec)
    qos: Literal[0, 1] = 1


class DmiSpec(_Spec):
    """KubeEdge DMI v1beta1 over Unix sockets: EdgeCore's ``DeviceManagerService`` and ours."""

    edgecore_socket: Path = Path("/etc/kubeedge/dmi.sock")
    socket: Path = Path("/etc/kubeedge/edgeflow.sock")
    mapper_name: str = "edgeflow"
    #: The protocol this mapper registers for (EdgeCore keeps one DMI client per protocol).
    protocol: str = "modbus"
    #: ReportDeviceStatus/ReportDeviceStates calls: EdgeCore's DMI server allows ``rate.Every(1s)``, burst
    #: 100, shared by every mapper on the node.
    rate: RateSpec = Field(default_factory=lambda: RateSpec(per_second=0.8, burst=50))
    #: How long a device's first change waits for its other twins, so one call carries them all.
    linger: NonNegativeSeconds = 0.5
    register_retry: PositiveSeconds = 5.0


class RestSpec(_Spec):
    """The mapper-framework REST API (``/api/v1/ping``, ``/api/v1/device/{id}/{property}``, methods)."""

    listen: ListenAddress = "0.0.0.0:7777"


class KubeEdgeSpec(_Spec):
    """edgeflow as a KubeEdge mapper."""

    manifests: list[Path] = Field(
        default_factory=list, description="files of KubeEdge v1beta1 Device and DeviceModel objects"
    )
    node: str = Field(default="", description="this edge node's name; empty: every manifest device runs")
    device_id: Literal["namespaced", "name"] = Field(
        default="namespaced", description="namespaced: <ns>/<name> (KubeEdge >= 1.16.2); name: <= 1.15"
    )
    membership: Literal["follow", "ignore"] = Field(
        default="follow",
        description="follow: devices EdgeCore adds to or removes from this node start and stop live",
    )
    connectors: dict[str, str] = Field(
        default_factory=dict, description="KubeEdge protocolName -> edgeflow connector (default: same name)"
    )
    report_cycle: PositiveSeconds = Field(
        default=60.0, description="heartbeat for properties that set no reportCycle"
    )
    report_expected: bool = Field(
        default=False, description="also send 'expected' (the Device's desired value) in twin reports"
    )
    rate: RateSpec = Field(default_factory=RateSpec)
    linger: NonNegativeSeconds = Field(
        default=0.1, description="a device's first change waits this long for its other twins (one message)"
    )
    rules: list[RuleSpec] = Field(default_factory=list, description="rules twin values pass before reporting")
    eventbus: EventbusSpec | None = None
    dmi: DmiSpec | None = None
    rest: RestSpec | None = None
    queue: int = Field(default=10_000, ge=1, description="readings waiting for the twin at most")

    def connector_for(self, protocol: str) -> str:
        return self.connectors.get(protocol, protocol)
