"""A KubeEdge Device and its DeviceModel as an EdgeX device and profile."""

from __future__ import annotations

import logging
import math
from typing import Any

from edgeflow.errors import ConfigError
from edgeflow.kubeedge._models import KUBE_TO_TWIN_TYPE, KubeDevice, KubeDeviceModel
from edgeflow.profiles import AutoEvent, Device, DeviceProfile, DeviceResource, ResourceProperties

__all__ = ["DEFAULT_COLLECT_CYCLE_MS", "kube_to_edgex"]

log = logging.getLogger(__name__)


#: mapper-framework's collect cycle when a property sets none (1 s).
DEFAULT_COLLECT_CYCLE_MS = 1000


def _bound(text: str) -> float | None:
    try:
        f = float(text)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def kube_to_edgex(device: KubeDevice, model: KubeDeviceModel) -> tuple[Device, DeviceProfile]:
    """A KubeEdge Device and its DeviceModel as an EdgeX :class:`Device` and :class:`DeviceProfile`.

    Model properties become resources (type via :data:`KUBE_TO_VALUE_TYPE`, ``ReadOnly`` → ``R``, unit,
    numeric minimum/maximum); a device property's ``visitors.configData`` becomes the resource's
    ``attributes`` (with ``protocolName`` as ``visitorProtocol``) and ``desired.value`` its default;
    ``protocol.configData`` becomes ``protocols[protocolName]``; ``collectCycle`` (ms) an AutoEvent
    per property (1 s where unset, the mapper default). KubeEdge-only settings (node, namespace,
    reportToCloud, reportCycle, pushMethod, methods) are kept under ``device.properties["kubeedge"]``.
    """
    source = f"Device {device.name}"
    if device.spec.device_model_ref.name != model.name:
        raise ConfigError(
            f"device model is {model.name!r}",
            source=source,
            problems=[("spec.deviceModelRef.name", f"refers to {device.spec.device_model_ref.name!r}")],
        )
    known = {p.name for p in model.spec.properties}
    missing = [
        (f"spec.properties[{i}].name", f"no property {p.name!r} in DeviceModel {model.name!r}")
        for i, p in enumerate(device.spec.properties)
        if p.name not in known
    ]
    if missing:
        raise ConfigError("device properties not in its model", source=source, problems=missing)
    proto = device.spec.protocol.protocol_name or model.spec.protocol
    if model.spec.protocol and proto != model.spec.protocol:
        log.warning("%s: protocol %r differs from its model's %r", source, proto, model.spec.protocol)
    dev_props = {p.name: p for p in device.spec.properties}
    resources: list[DeviceResource] = []
    auto_events: list[AutoEvent] = []
    for mp in model.spec.properties:
        dp = dev_props.get(mp.name)
        attributes: dict[str, Any] = {}
        default: str | None = None
        if dp is not None:
            attributes = dict(dp.visitors.config_data)
            if dp.visitors.protocol_name:
                attributes.setdefault("visitorProtocol", dp.visitors.protocol_name)
            default = dp.desired.value or None
        resources.append(
            DeviceResource(
                name=mp.name,
                description=mp.description,
                attributes=attributes,
                properties=ResourceProperties(
                    value_type=mp.value_type,
                    read_write="RW" if mp.writable else "R",
                    units=mp.unit,
                    minimum=_bound(mp.minimum),
                    maximum=_bound(mp.maximum),
                    default_value=default,
                ),
            )
        )
        if dp is not None:
            ms = dp.collect_cycle or DEFAULT_COLLECT_CYCLE_MS
            auto_events.append(AutoEvent(interval=f"{ms}ms", source_name=mp.name))
    profile = DeviceProfile(
        name=model.name,
        description=f"KubeEdge DeviceModel {model.metadata.namespace}/{model.name}",
        device_resources=resources,
    )
    kube: dict[str, Any] = {
        "namespace": device.metadata.namespace,
        "nodeName": device.spec.node_name,
        "deviceModelRef": model.name,
        "properties": {
            p.name: {
                "reportToCloud": p.report_to_cloud,
                "reportCycleMs": p.report_cycle,
                "collectCycleMs": p.collect_cycle,
                "pushMethods": p.push_method.methods if p.push_method else [],
                "twinType": KUBE_TO_TWIN_TYPE[model.property(p.name).type],
            }
            for p in device.spec.properties
        },
        "methods": {m.name: list(m.property_names) for m in device.spec.methods},
    }
    edgex_device = Device(
        name=device.name,
        description=f"KubeEdge Device {device.metadata.namespace}/{device.name}",
        profile_name=model.name,
        labels=[f"{k}={v}" for k, v in sorted(device.metadata.labels.items())],
        protocols={proto: dict(device.spec.protocol.config_data)} if proto else {},
        auto_events=auto_events,
        properties={"kubeedge": kube},
    )
    return edgex_device, profile
