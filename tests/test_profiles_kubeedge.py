"""KubeEdge v1beta1 Device/DeviceModel CRDs: loading, the cycle-unit warning, refusal of other
versions, type mappings, and conversion to EdgeX types."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from edgeflow.cli.inspect import inspect_file
from edgeflow.errors import ConfigError, UnsupportedVersionError
from edgeflow.kubeedge import (
    KUBE_TO_TWIN_TYPE,
    KUBE_TO_VALUE_TYPE,
    KubeDevice,
    KubeDeviceModel,
    kube_to_edgex,
    kubeedge_from_dict,
    load_kubeedge,
)
from edgeflow.model import ValueType
from edgeflow.profiles import AutoEvent, load_profile

pytestmark = pytest.mark.data

KE = "kubeedge"
TEMP_MODEL = "crd_v1beta1_devicemodel_temperature-model_modbus.yaml"
TEMP_DEVICE = "crd_v1beta1_device_temperature-instance_modbus.yaml"
BETA1_MODEL = "crd_v1beta1_devicemodel_beta1-model.yaml"
BETA1_DEVICE = "crd_v1beta1_device_beta1-device_pushmethod_dbmethod.yaml"

# A v1alpha2 Device in the shape of kubeedge/mappers-go build/crd-samples (KubeEdge ≤ 1.14).
V1ALPHA2_DEVICE = """\
apiVersion: devices.kubeedge.io/v1alpha2
kind: Device
metadata:
  name: lamp
spec:
  deviceModelRef:
    name: lamp-model
  protocol:
    opcua:
      url: opc.tcp://127.0.0.1:4840
  nodeSelector:
    nodeSelectorTerms:
    - matchExpressions:
      - key: ''
        operator: In
        values: [edge-node]
  propertyVisitors:
    - propertyName: switch
      collectCycle: 500000000
      opcua:
        nodeID: ns=2;i=2
"""


def _one(path: Path) -> KubeDevice | KubeDeviceModel:
    objs = load_kubeedge(path)
    assert len(objs) == 1
    return objs[0]


def test_every_shared_kubeedge_file_loads(shared_data: Path) -> None:
    files = sorted((shared_data / KE).iterdir())
    assert len(files) == 4
    kinds = sorted(type(_one(f)).__name__ for f in files)
    assert kinds == ["KubeDevice", "KubeDevice", "KubeDeviceModel", "KubeDeviceModel"]


def test_temperature_model(shared_data: Path) -> None:
    m = _one(shared_data / KE / TEMP_MODEL)
    assert isinstance(m, KubeDeviceModel)
    assert m.name == "temperature-model"
    assert m.metadata.namespace == "default"
    assert m.spec.protocol == "modbus"
    t = m.property("temperature")
    assert t.type == "FLOAT"
    assert t.value_type is ValueType.FLOAT32
    assert t.twin_type == "float"
    assert (t.minimum, t.maximum, t.unit) == ("0", "100.0", "Celsius")
    assert t.writable
    sw = m.property("temperature-switch")
    assert sw.type == "INT"
    assert sw.twin_type == "int"
    assert sw.description == "the switch of device 0:off,1:on"
    assert sw.minimum == ""


def test_temperature_instance(shared_data: Path) -> None:
    d = _one(shared_data / KE / TEMP_DEVICE)
    assert isinstance(d, KubeDevice)
    assert d.name == "temperature-instance"
    assert d.metadata.namespace == "default"  # absent in the file
    assert d.spec.device_model_ref.name == "temperature-model"
    assert d.spec.node_name == "kind-worker"
    assert d.spec.protocol.protocol_name == "modbus"
    assert d.spec.protocol.config_data == {
        "communicateMode": "TCP",
        "port": "5502",  # a string in the file
        "slaveID": 1,
        "ip": "10.244.1.13",
    }
    t = d.property("temperature")
    assert t.collect_cycle == 10000
    assert t.report_cycle == 10000
    assert t.report_to_cloud
    assert t.push_method is None  # commented out in the file
    assert t.visitors.protocol_name == "modbus"
    assert t.visitors.config_data["register"] == "HoldingRegister"
    assert t.visitors.config_data["scale"] == pytest.approx(0.1)
    assert t.visitors.config_data["isSwap"] is False
    sw = d.property("temperature-switch")
    assert sw.desired.value == "1"
    assert sw.visitors.config_data["register"] == "CoilRegister"
    assert [(m.name, m.property_names) for m in d.spec.methods] == [
        ("SwitchControl", ["temperature-switch"]),
        ("UpdateTemperature", ["temperature"]),
    ]


def test_beta1_device_push_methods_and_ns_cycle_warning(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edgeflow.kubeedge._models"):
        d = _one(shared_data / KE / BETA1_DEVICE)
    assert isinstance(d, KubeDevice)
    temp = d.property("temp")
    assert temp.collect_cycle == 10_000_000_000  # kept as written: milliseconds
    assert temp.desired.value == "30"
    assert temp.visitors.config_data == {
        "register": "HoldingRegister",
        "offset": 2,
        "limit": 1,
        "scale": 1,
        "isSwap": True,
        "isRegisterSwap": True,
    }
    assert d.spec.protocol.config_data == {"ip": "172.17.0.3", "port": 1502}
    pm = temp.push_method
    assert pm is not None
    assert pm.mqtt is not None
    assert (pm.mqtt.address, pm.mqtt.topic, pm.mqtt.qos, pm.mqtt.retained) == (
        "tcp://127.0.0.1:1883",
        "temp",
        0,
        False,
    )
    assert pm.db_method is not None
    assert pm.db_method["influxdb2"]["influxdb2DataConfig"]["tag"] == {"unit": "temperature"}
    assert pm.methods == ["mqtt", "dbMethod.influxdb2"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    text = warnings[0].getMessage()
    assert "beta1-device" in text
    assert "spec.properties[0].collectCycle" in text
    assert "nanoseconds" in text
    assert "reportCycle" in warnings[1].getMessage()


def test_ms_cycles_do_not_warn(shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        load_kubeedge(shared_data / KE / TEMP_DEVICE)
    assert not caplog.records


def test_v1alpha2_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "lamp.yaml"
    f.write_text(V1ALPHA2_DEVICE)
    with pytest.raises(UnsupportedVersionError) as ei:
        load_kubeedge(f)
    msg = str(ei.value)
    assert "devices.kubeedge.io/v1alpha2 is not supported" in msg
    assert "v1beta1" in msg
    assert ei.value.problems == [("apiVersion", "v1alpha2 is not supported")]
    assert isinstance(ei.value, ConfigError)
    with pytest.raises(UnsupportedVersionError):
        inspect_file(f)


def test_a_crd_is_not_a_profile(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"Kubernetes DeviceModel object.*load_kubeedge"):
        load_profile(shared_data / KE / TEMP_MODEL)


def test_other_objects_are_refused() -> None:
    with pytest.raises(ConfigError, match="not a KubeEdge device object"):
        kubeedge_from_dict({"apiVersion": "apps/v1", "kind": "Deployment"})
    with pytest.raises(ConfigError, match="'DeviceStatus' is not a Device or DeviceModel"):
        kubeedge_from_dict({"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "DeviceStatus"})
    with pytest.raises(ConfigError, match="not a Kubernetes object"):
        kubeedge_from_dict({"kind": "Device"})


def test_invalid_device_names_key_paths() -> None:
    doc = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "d"},
        "spec": {
            "deviceModelRef": {"name": "m"},
            "properties": [
                {"name": "a", "collectCycle": "often"},
                {"name": "b", "pushMethod": {"mqtt": {"qos": 3}}, "reportCycel": 5},
                {"name": "a"},
            ],
        },
    }
    with pytest.raises(ConfigError) as ei:
        kubeedge_from_dict(doc, source="d.yaml")
    assert [p for p, _ in ei.value.problems] == [
        "spec.properties[0].collectCycle",
        "spec.properties[1].pushMethod.mqtt.qos",
        "spec.properties[1].reportCycel",
    ]
    del doc["spec"]["properties"][:2]  # type: ignore[index]
    doc["spec"]["properties"].append({"name": "a"})  # type: ignore[index]
    with pytest.raises(ConfigError) as ei2:
        kubeedge_from_dict(doc, source="d.yaml")
    assert ei2.value.problems == [("spec.properties[1].name", "duplicate property 'a'")]


def test_multi_document_and_list_files(tmp_path: Path, shared_data: Path) -> None:
    model = (shared_data / KE / TEMP_MODEL).read_text()
    device = (shared_data / KE / TEMP_DEVICE).read_text()
    f = tmp_path / "both.yaml"
    # the model file has no trailing newline; the separator must start its own line
    f.write_text(model + "\n---\n" + device + "\n---\n")
    objs = load_kubeedge(f)
    assert [type(o).__name__ for o in objs] == ["KubeDeviceModel", "KubeDevice"]
    d = inspect_file(f)
    assert d["kind"] == "KubeEdgeObjects"
    assert [i["kind"] for i in d["items"]] == ["KubeEdgeDeviceModel", "KubeEdgeDevice"]
    lst = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "DeviceModel",
                "metadata": {"name": "m"},
                "spec": {},
            },
            {"apiVersion": "devices.kubeedge.io/v1alpha2", "kind": "DeviceModel", "metadata": {"name": "n"}},
        ],
    }
    with pytest.raises(UnsupportedVersionError) as ei:
        kubeedge_from_dict(lst)
    assert ei.value.problems == [("items[1].apiVersion", "v1alpha2 is not supported")]


def test_type_mappings() -> None:
    assert (
        set(KUBE_TO_VALUE_TYPE)
        == set(KUBE_TO_TWIN_TYPE)
        == {
            "INT",
            "FLOAT",
            "DOUBLE",
            "STRING",
            "BOOLEAN",
            "BYTES",
            "STREAM",
        }
    )
    assert KUBE_TO_VALUE_TYPE["INT"] is ValueType.INT64
    assert KUBE_TO_VALUE_TYPE["DOUBLE"] is ValueType.FLOAT64
    assert KUBE_TO_VALUE_TYPE["BOOLEAN"] is ValueType.BOOL
    assert KUBE_TO_VALUE_TYPE["BYTES"] is ValueType.BINARY
    # EdgeCore accepts only these twin metadata types
    assert set(KUBE_TO_TWIN_TYPE.values()) <= {"int", "integer", "float", "boolean", "string"}
    assert KUBE_TO_TWIN_TYPE["DOUBLE"] == "float"
    assert KUBE_TO_TWIN_TYPE["STREAM"] == "string"


def test_kube_to_edgex(shared_data: Path) -> None:
    model = _one(shared_data / KE / TEMP_MODEL)
    device = _one(shared_data / KE / TEMP_DEVICE)
    assert isinstance(model, KubeDeviceModel)
    assert isinstance(device, KubeDevice)
    dev, prof = kube_to_edgex(device, model)
    assert prof.name == "temperature-model"
    t = prof.resource("temperature")
    assert t.properties.value_type is ValueType.FLOAT32
    assert t.properties.read_write == "RW"
    assert t.properties.units == "Celsius"
    assert (t.properties.minimum, t.properties.maximum) == (0.0, 100.0)
    assert t.attributes["register"] == "HoldingRegister"
    assert t.attributes["visitorProtocol"] == "modbus"
    sw = prof.resource("temperature-switch")
    assert sw.properties.value_type is ValueType.INT64
    assert sw.properties.default_value == "1"  # desired.value
    assert dev.name == "temperature-instance"
    assert dev.profile_name == "temperature-model"
    assert dev.protocols == {
        "modbus": {"communicateMode": "TCP", "port": "5502", "slaveID": 1, "ip": "10.244.1.13"}
    }
    assert dev.auto_events == [
        AutoEvent(interval="10000ms", source_name="temperature"),
        AutoEvent(interval="10000ms", source_name="temperature-switch"),
    ]
    assert dev.auto_events[0].interval_seconds == 10.0
    kube = dev.properties["kubeedge"]
    assert kube["nodeName"] == "kind-worker"
    assert kube["properties"]["temperature"]["twinType"] == "float"
    assert kube["methods"] == {"SwitchControl": ["temperature-switch"], "UpdateTemperature": ["temperature"]}


def test_kube_to_edgex_beta1_and_mismatches(shared_data: Path) -> None:
    model = _one(shared_data / KE / BETA1_MODEL)
    device = _one(shared_data / KE / BETA1_DEVICE)
    other_model = _one(shared_data / KE / TEMP_MODEL)
    assert isinstance(model, KubeDeviceModel)
    assert isinstance(other_model, KubeDeviceModel)
    assert isinstance(device, KubeDevice)
    dev, prof = kube_to_edgex(device, model)
    assert prof.resource("temp").properties.maximum == 100.0
    assert dev.auto_events[0].interval == "10000000000ms"  # the ns-style value, taken as ms
    assert dev.protocols == {"modbus": {"ip": "172.17.0.3", "port": 1502}}
    with pytest.raises(ConfigError, match="refers to 'beta1-model'"):
        kube_to_edgex(device, other_model)


def test_inspect_kubeedge(shared_data: Path) -> None:
    d = inspect_file(shared_data / KE / BETA1_DEVICE)
    assert d["kind"] == "KubeEdgeDevice"
    assert d["name"] == "beta1-device"
    assert d["nodeName"] == "worker-node1"
    prop = d["properties"][0]
    assert prop["collectCycleMs"] == 10_000_000_000
    assert prop["pushMethods"] == ["mqtt", "dbMethod.influxdb2"]
    assert "nanoseconds" in prop["warning"]
    m = inspect_file(shared_data / KE / TEMP_MODEL)
    assert m["kind"] == "KubeEdgeDeviceModel"
    assert [(p["name"], p["valueType"], p["twinType"], p["readWrite"]) for p in m["properties"]] == [
        ("temperature", "Float32", "float", "RW"),
        ("temperature-switch", "Int64", "int", "RW"),
    ]
    assert orjson.loads(orjson.dumps(d)) == d
