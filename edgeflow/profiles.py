"""EdgeX device profiles and devices, and KubeEdge Device/DeviceModel CRDs.

The classes mirror EdgeX's v3 DTOs field for field (JSON/YAML names in camelCase, Python names in
snake_case), so a profile published for EdgeX loads unchanged::

    profile = load_profile("modbus.test.device.profile.yml")
    devices = load_devices("devices.yaml")            # top key ``deviceList:``
    objs = load_kubeedge("device.yaml")               # devices.kubeedge.io/v1beta1
    device, profile = kube_to_edgex(kube_device, kube_model)

Every loader raises :class:`~edgeflow.errors.ConfigError` naming the file and the key path of each
problem (``deviceResources[3].properties.valueType``). Transforms (mask, shift, base, scale, offset,
assertion, mappings) are :func:`transform_read` and friends, from :mod:`edgeflow._transforms`.
"""

from __future__ import annotations

from edgeflow._edgex import (
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
    parse_duration,
    profile_from_dict,
)
from edgeflow._inspect import DEFAULT_COLLECT_CYCLE_MS, inspect_file, kube_to_edgex
from edgeflow._kubeedge import (
    KUBE_TO_TWIN_TYPE,
    KUBE_TO_VALUE_TYPE,
    KubeDevice,
    KubeDeviceModel,
    KubeObject,
    kubeedge_from_dict,
    load_kubeedge,
)
from edgeflow._load import validation_problems
from edgeflow._transforms import (
    NAN,
    OVERFLOW,
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
    "DEFAULT_COLLECT_CYCLE_MS",
    "KUBE_TO_TWIN_TYPE",
    "KUBE_TO_VALUE_TYPE",
    "NAN",
    "OVERFLOW",
    "AutoEvent",
    "Device",
    "DeviceCommand",
    "DeviceProfile",
    "DeviceResource",
    "KubeDevice",
    "KubeDeviceModel",
    "KubeObject",
    "ResourceOperation",
    "ResourceProperties",
    "ShiftConvention",
    "TransformMode",
    "TransformResult",
    "apply_mappings",
    "check_assertion",
    "check_device",
    "check_write",
    "devices_from_dict",
    "go_value_string",
    "inspect_file",
    "kube_to_edgex",
    "kubeedge_from_dict",
    "load_devices",
    "load_kubeedge",
    "load_profile",
    "parse_duration",
    "process_read",
    "profile_from_dict",
    "read_value_type",
    "transform_read",
    "transform_write",
    "validation_problems",
]
