"""KubeEdge Device and DeviceModel objects described as plain JSON-able data."""

from __future__ import annotations

from typing import Any

from edgeflow.kubeedge._models import KubeDeviceModel, KubeObject
from edgeflow.kubeedge._translate import DEFAULT_COLLECT_CYCLE_MS

__all__ = ["describe_kube"]


def describe_kube(obj: KubeObject) -> dict[str, Any]:
    """A KubeEdge Device or DeviceModel as JSON-able data (what ``edgeflow inspect`` prints for it)."""
    if isinstance(obj, KubeDeviceModel):
        return {
            "kind": "KubeEdgeDeviceModel",
            "name": obj.name,
            "namespace": obj.metadata.namespace,
            "protocol": obj.spec.protocol,
            "properties": [
                {
                    "name": p.name,
                    "description": p.description,
                    "type": p.type,
                    "valueType": p.value_type.value,
                    "twinType": p.twin_type,
                    "readWrite": "RW" if p.writable else "R",
                    "readable": True,
                    "writable": p.writable,
                    "units": p.unit,
                    "minimum": p.minimum,
                    "maximum": p.maximum,
                }
                for p in obj.spec.properties
            ],
        }
    return {
        "kind": "KubeEdgeDevice",
        "name": obj.name,
        "namespace": obj.metadata.namespace,
        "deviceModelRef": obj.spec.device_model_ref.name,
        "nodeName": obj.spec.node_name,
        "protocols": {obj.spec.protocol.protocol_name: dict(obj.spec.protocol.config_data)},
        "properties": [
            {
                "name": p.name,
                "desired": p.desired.value,
                "visitorProtocol": p.visitors.protocol_name,
                "attributes": dict(p.visitors.config_data),
                "collectCycleMs": p.collect_cycle,
                "reportCycleMs": p.report_cycle,
                "reportToCloud": p.report_to_cloud,
                "pushMethods": p.push_method.methods if p.push_method else [],
                **(
                    {"warning": "cycle > 1e9 ms: probably nanoseconds"}
                    if max(p.collect_cycle, p.report_cycle) > 1_000_000_000
                    else {}
                ),
            }
            for p in obj.spec.properties
        ],
        "autoEvents": [
            {"sourceName": p.name, "intervalSeconds": (p.collect_cycle or DEFAULT_COLLECT_CYCLE_MS) / 1000}
            for p in obj.spec.properties
        ],
        "methods": [{"name": m.name, "propertyNames": list(m.property_names)} for m in obj.spec.methods],
    }
