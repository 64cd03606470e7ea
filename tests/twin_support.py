"""Helpers for the KubeEdge mapper tests: the shared CRD samples pointed at a local simulator."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeflow.parsing import load_yaml_documents

DEVICE = "crd_v1beta1_device_temperature-instance_modbus.yaml"
MODEL = "crd_v1beta1_devicemodel_temperature-model_modbus.yaml"
NODE = "kind-worker"


def kube_dir(shared_data: Path) -> Path:
    d = shared_data / "kubeedge"
    if not (d / DEVICE).exists() or not (d / MODEL).exists():
        pytest.skip(f"KubeEdge CRD samples not in {d} (see ../shared/data/README.md)")
    return d


def local_manifests(
    shared_data: Path,
    tmp_path: Path,
    port: int,
    *,
    copies: int = 1,
    collect_ms: int = 200,
    report_ms: int | None = None,
) -> list[Path]:
    """The shared Device and DeviceModel samples, unchanged but for the device's address (the sample
    points at a pod IP) and its collect cycle (10 s in the sample; tests poll faster). ``copies`` > 1
    adds devices ``temperature-instance-2`` … on Modbus unit 2 …"""
    d = kube_dir(shared_data)
    (device,), _ = load_yaml_documents(d / DEVICE)
    docs: list[dict[str, Any]] = []
    for i in range(copies):
        dev = copy.deepcopy(device)
        if i:
            dev["metadata"]["name"] = f"temperature-instance-{i + 1}"
        cfg = dev["spec"]["protocol"]["configData"]
        cfg["ip"] = "127.0.0.1"
        cfg["port"] = str(port)
        cfg["slaveID"] = i + 1
        for prop in dev["spec"]["properties"]:
            prop["collectCycle"] = collect_ms
            if report_ms is not None:
                prop["reportCycle"] = report_ms
        docs.append(dev)
    out = tmp_path / "devices.yaml"
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return [out, d / MODEL]


def mapper_config(tmp_path: Path, manifests: list[Path], broker_url: str, **kubeedge: Any) -> dict[str, Any]:
    ke: dict[str, Any] = {
        "manifests": [str(p) for p in manifests],
        "node": NODE,
        "eventbus": {"url": broker_url, "reconnect": {"initial_delay": 0.1, "max_delay": 1.0}},
    }
    ke.update(kubeedge)
    return {
        "service": "edge",
        "scheduler": {"failureThreshold": 2, "backoffInitial": 0.2, "backoffMax": 0.5, "readTimeout": 1.0},
        "uplink": {"type": "file", "path": str(tmp_path / "out.jsonl")},
        "kubeedge": ke,
    }
