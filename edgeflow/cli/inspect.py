"""``edgeflow inspect FILE``: any EdgeX profile, EdgeX device list or KubeEdge CRD, normalised as JSON."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeflow.cli._output import print_json
from edgeflow.errors import ConfigError
from edgeflow.kubeedge import KubeObject, describe_kube, kubeedge_from_dict
from edgeflow.parsing import load_yaml_documents
from edgeflow.profiles import describe_device, describe_profile, devices_from_dict, profile_from_dict

__all__ = ["inspect_file"]

HELP = "print an EdgeX profile/device file or a KubeEdge Device/DeviceModel CRD as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file")


def run(args: argparse.Namespace) -> int:
    print_json(inspect_file(args.file))
    return 0


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
        described = [describe_kube(o) for o in objs]
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
            "devices": [describe_device(d) for d in devices],
        }
    elif "deviceResources" in first:
        out = describe_profile(profile_from_dict(first, source=source))
    else:
        keys = ", ".join(sorted(str(k) for k in first)[:8]) or "none"
        raise ConfigError(
            "not a device profile (deviceResources), device list (deviceList) or KubeEdge CRD "
            f"(apiVersion/kind); top-level keys: {keys}",
            source=source,
        )
    out["source"] = source
    return out
