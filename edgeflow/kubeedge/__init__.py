"""KubeEdge ``devices.kubeedge.io/v1beta1`` Device and DeviceModel objects, and their translation into
EdgeX devices and profiles::

    objs = load_kubeedge("device.yaml")               # several documents and List objects allowed
    device, profile = kube_to_edgex(kube_device, kube_model)

Loading raises :class:`~edgeflow.errors.ConfigError` naming the file and key path of each problem;
v1alpha2 objects are refused with :class:`~edgeflow.errors.UnsupportedVersionError`.
"""

from __future__ import annotations

from edgeflow.kubeedge._inspect import describe_kube
from edgeflow.kubeedge._models import (
    KUBE_GROUP,
    KUBE_TO_TWIN_TYPE,
    KUBE_TO_VALUE_TYPE,
    KubeDevice,
    KubeDeviceModel,
    KubeObject,
    kubeedge_from_dict,
    load_kubeedge,
)
from edgeflow.kubeedge._run import RunDevice, kube_run_device
from edgeflow.kubeedge._translate import DEFAULT_COLLECT_CYCLE_MS, kube_to_edgex

__all__ = [
    "DEFAULT_COLLECT_CYCLE_MS",
    "KUBE_GROUP",
    "KUBE_TO_TWIN_TYPE",
    "KUBE_TO_VALUE_TYPE",
    "KubeDevice",
    "KubeDeviceModel",
    "KubeObject",
    "RunDevice",
    "describe_kube",
    "kube_run_device",
    "kube_to_edgex",
    "kubeedge_from_dict",
    "load_kubeedge",
]
