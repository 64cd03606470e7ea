"""EdgeX profiles and device definitions described as plain JSON-able data (what ``edgeflow inspect``
prints for them)."""

from __future__ import annotations

from typing import Any

from edgeflow.profiles._models import Device, DeviceProfile, DeviceResource, ResourceProperties

__all__ = ["describe_device", "describe_profile"]


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


def describe_profile(p: DeviceProfile) -> dict[str, Any]:
    """A profile as JSON-able data: resources (properties, transforms, attributes) and commands."""
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


def describe_device(d: Device) -> dict[str, Any]:
    """A device definition as JSON-able data: protocols and AutoEvents (with their intervals in seconds)."""
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
