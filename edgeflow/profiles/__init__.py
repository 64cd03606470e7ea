"""EdgeX device profiles and devices: the models, loading them as published, transforms, inspect.

The classes mirror EdgeX's v3 DTOs field for field (JSON/YAML names in camelCase, Python names in
snake_case), so a profile published for EdgeX loads unchanged::

    profile = load_profile("modbus.test.device.profile.yml")
    devices = load_devices("devices.yaml")            # top key ``deviceList:``

Every loader raises :class:`~edgeflow.errors.ConfigError` naming the file and the key path of each
problem (``deviceResources[3].properties.valueType``). Transforms (mask, shift, base, scale, offset,
assertion, mappings) are :func:`transform_read` and friends. KubeEdge's Device/DeviceModel objects are in
:mod:`edgeflow.kubeedge`.
"""

from __future__ import annotations

from edgeflow.profiles._inspect import describe_device, describe_profile
from edgeflow.profiles._models import (
    AutoEvent,
    Device,
    DeviceCommand,
    DeviceProfile,
    DeviceResource,
    ResourceOperation,
    ResourceProperties,
    check_device,
    devices_from_dict,
    load_devices,
    load_profile,
    profile_from_dict,
)
from edgeflow.profiles._transforms import (
    NAN,
    OVERFLOW,
    ReadPlan,
    ShiftConvention,
    TransformMode,
    TransformResult,
    apply_mappings,
    check_assertion,
    check_write,
    go_value_string,
    process_read,
    read_value_type,
    transform_read,
    transform_write,
)

__all__ = [
    "NAN",
    "OVERFLOW",
    "AutoEvent",
    "Device",
    "DeviceCommand",
    "DeviceProfile",
    "DeviceResource",
    "ReadPlan",
    "ResourceOperation",
    "ResourceProperties",
    "ShiftConvention",
    "TransformMode",
    "TransformResult",
    "apply_mappings",
    "check_assertion",
    "check_device",
    "check_write",
    "describe_device",
    "describe_profile",
    "devices_from_dict",
    "go_value_string",
    "load_devices",
    "load_profile",
    "process_read",
    "profile_from_dict",
    "read_value_type",
    "transform_read",
    "transform_write",
]
