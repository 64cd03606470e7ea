"""Views across file formats: a KubeEdge Device/DeviceModel pair as EdgeX types, and
:func:`inspect_file`, which recognises any profile, device list or CRD file and describes it as plain
JSON-able data (what ``edgeflow inspect FILE`` prints).

Both are public through :mod:`edgeflow.profiles`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeflow._edgex import (
    AutoEvent,
    Device,
    DeviceProfile,
    DeviceResource,
    ResourceProperties,
    devices_from_dict,
    profile_from_dict,
)
from edgeflow._kubeedge import KUBE_TO_TWIN_TYPE, KubeDevice, KubeDeviceModel, KubeObject, kubeedge_from_dict
from edgeflow._load import load_yaml_documents
from edgeflow.errors import ConfigError

__all__ = ["DEFAULT_COLLECT_CYCLE_MS", "inspect_file", "kube_to_edgex"]

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


# --------------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------------


def _props_summary(p: ResourceProperties) -> dict[str, Any]:
    d: dict[str, Any] = {
        "valueType": p.value_type.value,
        "readWrite": p.read_write,
        "readable": p.readable,
        "writable": p.writable,
        "units": p.units,
    }
    for key, value in (
        ("minimum", p.minimum),
        ("maximum", p.maximum),
        ("defaultValue", p.default_value),
        ("assertion", p.assertion),
        ("mediaType", p.media_type or None),
    ):
        if value is not None:
            d[key] = value
    transforms = {
        k: v
        for k, v, default in (
            ("mask", p.mask, 0),
            ("shift", p.shift, 0),
            ("base", p.base, 0),
            ("scale", p.scale, 1),
            ("offset", p.offset, 0),
        )
        if v is not None and v != default
    }
    if transforms:
        d["transforms"] = transforms
    return d


def _resource_summary(r: DeviceResource) -> dict[str, Any]:
    d: dict[str, Any] = {"name": r.name, "description": r.description, "hidden": r.is_hidden}
    d.update(_props_summary(r.properties))
    d["attributes"] = dict(r.attributes)
    if r.tags:
        d["tags"] = dict(r.tags)
    return d


def _describe_profile(p: DeviceProfile) -> dict[str, Any]:
    return {
        "kind": "DeviceProfile",
        "name": p.name,
        "manufacturer": p.manufacturer,
        "model": p.model,
        "description": p.description,
        "labels": list(p.labels),
        "resources": [_resource_summary(r) for r in p.device_resources],
        "commands": [
            {
                "name": c.name,
                "readWrite": c.read_write,
                "hidden": c.is_hidden,
                "resources": [op.device_resource for op in c.resource_operations],
                "mappings": {
                    op.device_resource: dict(op.mappings) for op in c.resource_operations if op.mappings
                },
            }
            for c in p.device_commands
        ],
    }


def _describe_device(d: Device) -> dict[str, Any]:
    return {
        "name": d.name,
        "description": d.description,
        "profileName": d.profile_name,
        "serviceName": d.service_name,
        "adminState": d.admin_state,
        "operatingState": d.operating_state,
        "labels": list(d.labels),
        "protocols": {k: dict(v) for k, v in d.protocols.items()},
        "autoEvents": [
            {
                "sourceName": a.source_name,
                "interval": a.interval,
                "intervalSeconds": a.interval_seconds,
                "onChange": a.on_change,
                **({"onChangeThreshold": a.on_change_threshold} if a.on_change_threshold is not None else {}),
            }
            for a in d.auto_events
        ],
    }


def _describe_kube(obj: KubeObject) -> dict[str, Any]:
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


def inspect_file(path: str | Path) -> dict[str, Any]:
    """Load any EdgeX device profile, EdgeX device definition file (``deviceList:``) or KubeEdge
    v1beta1 Device/DeviceModel file, recognised by its content, and describe it as JSON-able data.

    The result has ``kind`` (``"DeviceProfile"``, ``"DeviceList"``, ``"KubeEdgeDevice"`` or
    ``"KubeEdgeDeviceModel"``), ``name``, ``source`` and, per kind, ``resources``/``commands``,
    ``devices`` (each with ``protocols`` and ``autoEvents``) or ``properties``. A file holding several
    KubeEdge objects gives ``kind: "KubeEdgeObjects"`` with one description per object in ``items``.
    Raises :class:`ConfigError` for unreadable, invalid or unrecognised files.
    """
    docs, source = load_yaml_documents(path)
    if not docs:
        raise ConfigError("file is empty", source=source)
    first = docs[0]
    if not isinstance(first, Mapping):
        raise ConfigError(
            f"not a device profile, device list or KubeEdge CRD (the document is a {type(first).__name__})",
            source=source,
        )
    out: dict[str, Any]
    if "apiVersion" in first and "kind" in first:
        objs: list[KubeObject] = []
        for n, doc in enumerate(docs):
            if not isinstance(doc, Mapping):
                raise ConfigError(f"YAML document {n + 1} is not a mapping", source=source)
            objs.extend(kubeedge_from_dict(doc, source=source))
        described = [_describe_kube(o) for o in objs]
        if len(described) == 1:
            out = described[0]
        else:
            out = {"kind": "KubeEdgeObjects", "name": Path(source).name, "items": described}
    elif len(docs) > 1:
        raise ConfigError(f"expected one YAML document, found {len(docs)}", source=source)
    elif "deviceList" in first:
        devices = devices_from_dict(first, source=source)
        out = {
            "kind": "DeviceList",
            "name": Path(source).name,
            "devices": [_describe_device(d) for d in devices],
        }
    elif "deviceResources" in first:
        out = _describe_profile(profile_from_dict(first, source=source))
    else:
        keys = ", ".join(sorted(str(k) for k in first)[:8]) or "none"
        raise ConfigError(
            "not a device profile (deviceResources), device list (deviceList) or KubeEdge CRD "
            f"(apiVersion/kind); top-level keys: {keys}",
            source=source,
        )
    out["source"] = source
    return out
