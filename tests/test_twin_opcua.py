"""A KubeEdge Device with the OPC-UA protocol runs against the asyncua simulator: values become twin
reports, a desired value is written to the node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeflow.config import parse_config
from edgeflow.runtime import Runtime
from tests.conftest import MosquittoBroker, OpcUaServerFactory
from tests.edgecore_double import EdgeCoreDouble
from tests.twin_support import NODE, mapper_config

pytestmark = [pytest.mark.server]

DEV = "default/boiler-ua"


def _manifests(tmp_path: Path, sim: Any) -> list[Path]:
    model = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "boiler-ua-model", "namespace": "default"},
        "spec": {
            "protocol": "opcua",
            "properties": [
                {"name": "setpoint", "type": "FLOAT", "accessMode": "ReadWrite", "minimum": "0", "maximum": "100"},
                {"name": "level", "type": "DOUBLE", "accessMode": "ReadOnly"},
            ],
        },
    }
    device = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "boiler-ua", "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "boiler-ua-model"},
            "nodeName": NODE,
            "protocol": {"protocolName": "opcua", "configData": {"url": sim.endpoint, "timeout": 2000}},
            "properties": [
                {
                    "name": name,
                    "collectCycle": 200,
                    "reportCycle": 10000,
                    "reportToCloud": True,
                    "visitors": {"protocolName": "opcua", "configData": {"nodeID": sim.node_id(node)}},
                }
                for name, node in (("setpoint", "Boiler.Setpoint"), ("level", "Boiler.Level"))
            ],
        },
    }
    path = tmp_path / "boiler-ua.yaml"
    path.write_text(yaml.safe_dump_all([model, device], sort_keys=False))
    return [path]


async def test_opcua_device_from_kubernetes(
    tmp_path: Path, mosquitto: MosquittoBroker, opcua_server: OpcUaServerFactory
) -> None:
    sim = await opcua_server()
    double = EdgeCoreDouble(mosquitto.url, NODE)
    double.add_device(DEV)
    await double.start()
    cfg = parse_config(mapper_config(tmp_path, _manifests(tmp_path, sim), mosquitto.url))
    try:
        async with Runtime(cfg):
            await double.wait_for(lambda: double.actual(DEV, "setpoint") == "60.0", what="setpoint 60.0")
            await double.wait_for(lambda: double.actual(DEV, "level") == "1.0", what="level 1.0")
            assert double.devices[DEV].twins["level"].type == "float"
            double.set_desired(DEV, "setpoint", "55.5")
            await double.wait_for(lambda: double.actual(DEV, "setpoint") == "55.5", what="desired 55.5")
            assert sim.get("Boiler.Setpoint") == pytest.approx(55.5)
        assert double.violations == []
    finally:
        await double.stop()
