"""A KubeEdge Device and its DeviceModel as something ``edgeflow run`` serves: a connector type, an EdgeX
device and a profile whose resource attributes that connector reads.

Modbus (mapper-framework's modbus mapper ``configData``) is translated to device-modbus's protocols and
attributes: ``protocol.configData {communicateMode: TCP|RTU, ip, port, slaveID, serialPort, baudRate,
dataBits, parity, stopBits}`` becomes ``modbus-tcp``/``modbus-rtu`` and ``visitors.configData {register,
offset, limit, scale, isSwap, isRegisterSwap}`` becomes ``primaryTable``, ``startingAddress``, the raw
type by ``limit`` and the resource's ``scale``. OPC-UA (the keys of KubeEdge's OPC-UA mapper samples):
``protocol.configData {url, securityPolicy, securityMode, userName, password, certificate, privateKey,
timeout (ms)}`` becomes device-opc-ua's ``opcua`` protocol and ``visitors.configData.nodeID`` the resource's
``nodeId``. Values may be numbers or strings (DMI delivers every JSON
number as a float32 and quoted numbers as strings); they are coerced by the type expected. Other
protocols keep ``configData`` as they are: their connector reads them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgeflow.errors import ConfigError
from edgeflow.kubeedge._models import KubeDevice, KubeDeviceModel
from edgeflow.kubeedge._translate import kube_to_edgex
from edgeflow.model import ValueType
from edgeflow.profiles import Device, DeviceProfile, DeviceResource

__all__ = ["RunDevice", "kube_run_device"]

_REGISTERS = {
    "coilregister": "COILS",
    "coil": "COILS",
    "discreteinputregister": "DISCRETE_INPUTS",
    "discreteinput": "DISCRETE_INPUTS",
    "holdingregister": "HOLDING_REGISTERS",
    "inputregister": "INPUT_REGISTERS",
}


@dataclass(frozen=True, slots=True)
class RunDevice:
    """A KubeEdge device ready to run: ``connector`` type, EdgeX device and profile."""

    connector: str
    device: Device
    profile: DeviceProfile
    namespace: str
    kube: KubeDevice
    model: KubeDeviceModel

    @property
    def device_id(self) -> str:
        return f"{self.namespace}/{self.device.name}"


def _int(value: Any, where: str, problems: list[tuple[str, str]]) -> int:
    try:
        f = float(value) if not isinstance(value, int) else value
        if isinstance(f, float) and (not math.isfinite(f) or f != int(f)):
            raise ValueError
        return int(f)
    except (TypeError, ValueError):
        problems.append((where, f"{value!r} is not an integer"))
        return 0


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _modbus_protocols(cfg: Mapping[str, Any], problems: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    where = "spec.protocol.configData"
    for key, v in cfg.items():
        if isinstance(v, Mapping | list):
            problems.append((f"{where}.{key}", "nested values cannot cross DMI; keep configData flat"))
    mode = str(cfg.get("communicateMode", "TCP")).strip().upper()
    unit = _int(cfg.get("slaveID", 1), f"{where}.slaveID", problems)
    timeout = cfg.get("timeout")
    if mode == "TCP":
        if "ip" not in cfg:
            problems.append((f"{where}.ip", "required for communicateMode TCP"))
        out: dict[str, Any] = {
            "Address": str(cfg.get("ip", "")),
            "Port": _int(cfg.get("port", 502), f"{where}.port", problems),
            "UnitID": unit,
        }
        if timeout is not None:
            out["Timeout"] = f"{_int(timeout, f'{where}.timeout', problems)}ms"
        return {"modbus-tcp": out}
    if mode == "RTU":
        out = {
            "Address": str(cfg.get("serialPort", "")),
            "UnitID": unit,
            "BaudRate": _int(cfg.get("baudRate", 9600), f"{where}.baudRate", problems),
            "DataBits": _int(cfg.get("dataBits", 8), f"{where}.dataBits", problems),
            "StopBits": _int(cfg.get("stopBits", 1), f"{where}.stopBits", problems),
            "Parity": str(cfg.get("parity", "N"))[:1].upper() or "N",
        }
        if not out["Address"]:
            problems.append((f"{where}.serialPort", "required for communicateMode RTU"))
        return {"modbus-rtu": out}
    problems.append((f"{where}.communicateMode", f"{mode!r} is not TCP or RTU"))
    return {}


def _modbus_resource(res: DeviceResource, i: int | None, problems: list[tuple[str, str]]) -> DeviceResource:
    attrs = dict(res.attributes)
    if i is None:  # a model property the device does not visit: it cannot be read
        return res.model_copy(update={"attributes": {}})
    where = f"spec.properties[{i}].visitors.configData"
    reg = str(attrs.get("register", "")).replace("_", "").strip().lower()
    table = _REGISTERS.get(reg)
    if table is None:
        problems.append((f"{where}.register", f"{attrs.get('register')!r} is not a Modbus register type"))
        return res
    offset = _int(attrs.get("offset", 0), f"{where}.offset", problems)
    limit = _int(attrs.get("limit", 1), f"{where}.limit", problems)
    props = res.properties
    vt = props.value_type
    update: dict[str, Any] = {}
    new: dict[str, Any] = {"primaryTable": table, "startingAddress": offset}
    if table in ("COILS", "DISCRETE_INPUTS"):
        # a bit; an INT twin of a coil reports 0/1 (the twin formats it)
        vt = ValueType.BOOL
    else:
        if vt in (ValueType.FLOAT32, ValueType.FLOAT64):
            if limit <= 1:
                new["rawType"] = "Int16"
                vt = ValueType.FLOAT32
            elif limit == 2:
                vt = ValueType.FLOAT32
            else:
                vt = ValueType.FLOAT64
        elif vt.is_integer:
            vt = {1: ValueType.INT16, 2: ValueType.INT32}.get(limit, ValueType.INT64)
        elif vt is ValueType.STRING:
            new["stringRegisterSize"] = max(1, limit)
        elif vt is ValueType.BOOL:
            new["startingAddress"] = f"{offset}.0"
            vt = ValueType.BOOL
        if _bool(attrs.get("isSwap", False)):
            new["isByteSwap"] = True
        if _bool(attrs.get("isRegisterSwap", False)):
            new["isWordSwap"] = True
        scale = attrs.get("scale")
        if scale is not None:
            try:
                s = float(scale)
            except (TypeError, ValueError):
                problems.append((f"{where}.scale", f"{scale!r} is not a number"))
            else:
                if s != 1.0:
                    # float32 rounding (DMI sends numbers as float32): 0.100000001 is meant as 0.1
                    update["scale"] = float(f"{s:.7g}")
                    if vt.is_integer:
                        vt = ValueType.FLOAT64 if limit > 1 else ValueType.FLOAT32
                        if limit <= 1:
                            new["rawType"] = "Int16"
                        elif limit == 2:
                            new["rawType"] = "Int32"
    update["value_type"] = vt
    return res.model_copy(update={"attributes": new, "properties": props.model_copy(update=update)})


#: KubeEdge OPC-UA ``protocol.configData`` key -> device-opc-ua protocol property
_OPCUA_PROTOCOL = {
    "url": "Endpoint",
    "securityPolicy": "Policy",
    "securityMode": "Mode",
    "userName": "Username",
    "password": "Password",
    "certificate": "CertFile",
    "privateKey": "KeyFile",
}


def _opcua_protocols(cfg: Mapping[str, Any], problems: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    where = "spec.protocol.configData"
    if not cfg.get("url"):
        problems.append((f"{where}.url", "required: the server's opc.tcp:// endpoint"))
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in _OPCUA_PROTOCOL:
            if value not in ("", None):
                out[_OPCUA_PROTOCOL[key]] = str(value)
        elif key == "timeout":
            out["Timeout"] = f"{_int(value, f'{where}.timeout', problems)}ms"
    return {"opcua": out}


def _opcua_resource(res: DeviceResource, i: int | None, problems: list[tuple[str, str]]) -> DeviceResource:
    if i is None:
        return res.model_copy(update={"attributes": {}})
    attrs = res.attributes
    node = attrs.get("nodeID") or attrs.get("nodeId")
    if not node:
        problems.append(
            (f"spec.properties[{i}].visitors.configData.nodeID", "required (e.g. ns=2;s=Boiler.Temp)")
        )
        return res
    return res.model_copy(update={"attributes": {"nodeId": str(node)}})


Problems = list[tuple[str, str]]
#: Per connector, how a Device's ``configData`` becomes protocol properties and how each property's
#: visitor config becomes resource attributes (both add what they cannot use to the problems).
_TRANSLATIONS: dict[
    str,
    tuple[
        Callable[[Mapping[str, Any], Problems], dict[str, dict[str, Any]]],
        Callable[[DeviceResource, int | None, Problems], DeviceResource],
    ],
] = {
    "modbus": (_modbus_protocols, _modbus_resource),
    "opcua": (_opcua_protocols, _opcua_resource),
}


def kube_run_device(
    device: KubeDevice, model: KubeDeviceModel, *, connectors: Mapping[str, str] | None = None
) -> RunDevice:
    """``device`` and ``model`` translated for ``edgeflow run`` (see the module docstring). Raises
    :class:`ConfigError` naming the Device and key path of every problem."""
    dev, profile = kube_to_edgex(device, model)
    proto = device.spec.protocol.protocol_name or model.spec.protocol
    connector = (connectors or {}).get(proto, proto)
    if not connector:
        raise ConfigError(
            "no protocol",
            source=f"Device {device.name}",
            problems=[("spec.protocol.protocolName", "required (or the DeviceModel's spec.protocol)")],
        )
    translate = _TRANSLATIONS.get(connector)
    if translate is not None:
        protocols_of, resource_of = translate
        problems: list[tuple[str, str]] = []
        protocols = protocols_of(device.spec.protocol.config_data, problems)
        index = {p.name: i for i, p in enumerate(device.spec.properties)}
        resources = [resource_of(r, index.get(r.name), problems) for r in profile.device_resources]
        if problems:
            raise ConfigError(
                f"cannot run this Device with the {connector} connector",
                source=f"Device {device.name}",
                problems=problems,
            )
        profile = profile.model_copy(update={"device_resources": resources})
        dev = dev.model_copy(update={"protocols": protocols})
    return RunDevice(connector, dev, profile, device.metadata.namespace, device, model)
