"""KubeEdgeMapper without I/O: which twins are reported, values EdgeCore would refuse, desired values."""

from __future__ import annotations

from typing import Any

import pytest

from edgeflow.bus import Bus
from edgeflow.connector import DeviceHealth
from edgeflow.kubeedge import KubeDevice, KubeDeviceModel, kube_run_device, kubeedge_from_dict
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
from edgeflow.twin.mapper import Dirty, KubeEdgeMapper, TwinDevice
from edgeflow.twin.spec import KubeEdgeSpec


class _Host:
    def device_health(self, device: str) -> DeviceHealth:
        return DeviceHealth.UP

    async def write_value(self, device: str, resource: str, value: Any) -> None:
        raise AssertionError("no writes here")

    async def read_values(self, device: str, resource: str) -> list[tuple[str, Any, ValueType]]:
        return []

    async def add_kube_devices(self, devices: Any) -> None:
        pass

    async def remove_kube_devices(self, names: Any) -> None:
        pass


class _Reporter:
    def __init__(self) -> None:
        self.dirty = Dirty()
        self.states: list[tuple[str, str]] = []

    def wake(self) -> None:
        pass

    def device_added(self, dev: TwinDevice) -> None:
        self.dirty.mark(dev.name, dev.reported)

    def device_removed(self, dev: TwinDevice) -> None:
        self.dirty.discard(dev.name)

    def state_changed(self, dev: TwinDevice, state: str) -> None:
        self.states.append((dev.name, state))

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}


def _mapper() -> tuple[KubeEdgeMapper, _Reporter]:
    (model,) = kubeedge_from_dict(
        {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "DeviceModel",
            "metadata": {"name": "m"},
            "spec": {
                "properties": [
                    {"name": "temp", "type": "FLOAT", "accessMode": "ReadOnly"},
                    {"name": "setpoint", "type": "FLOAT"},
                    {"name": "label", "type": "STRING"},
                ]
            },
        }
    )
    (dev,) = kubeedge_from_dict(
        {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": "d1"},
            "spec": {
                "deviceModelRef": {"name": "m"},
                "protocol": {"protocolName": "virtual"},
                "properties": [
                    {"name": "temp", "reportToCloud": True},
                    {"name": "setpoint", "reportToCloud": True},
                    {"name": "label"},  # reportToCloud false: read, not reported
                ],
            },
        }
    )
    assert isinstance(dev, KubeDevice) and isinstance(model, KubeDeviceModel)
    rd = kube_run_device(dev, model)
    bus: Bus[ReadingBatch] = Bus()
    mapper = KubeEdgeMapper(KubeEdgeSpec(), _Host(), bus, SeriesTable(), catalog={rd.device_id: rd})
    rep = _Reporter()
    mapper.reporters.append(rep)
    mapper.attach(rd)
    return mapper, rep


def test_only_report_to_cloud_twins_are_reported() -> None:
    mapper, rep = _mapper()
    assert rep.dirty.pop() == ("d1", {"temp", "setpoint"})
    dev = mapper.devices["d1"]
    assert mapper.set_value(dev, "label", "ab", ValueType.STRING)
    assert dev.values["label"] == "ab"  # kept (the REST API serves it) ...
    assert rep.dirty.pop() is None  # ... not reported
    assert mapper.set_value(dev, "temp", 21.5, ValueType.FLOAT64)
    assert not mapper.set_value(dev, "temp", 21.5, ValueType.FLOAT64)  # unchanged: nothing new to report
    assert rep.dirty.pop() == ("d1", {"temp"})


def test_a_value_edgecore_would_refuse_is_counted_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    mapper, rep = _mapper()
    rep.dirty.pop()
    dev = mapper.devices["d1"]
    assert not mapper.set_value(dev, "temp", float("nan"), ValueType.FLOAT64)
    assert mapper.counts["values_invalid"] == 1
    assert "d1" in caplog.text and "temp" in caplog.text and "nan" in caplog.text
    assert rep.dirty.pop() is None


def test_desired_values_are_checked_and_idempotent() -> None:
    mapper, _ = _mapper()
    dev = mapper.devices["d1"]
    assert "read-only" in (mapper.desire(dev, "temp", "1", source="t") or "")
    assert "no twin" in (mapper.desire(dev, "nothing", "1", source="t") or "")
    assert "regex" in (mapper.desire(dev, "setpoint", "1 2", source="t") or "")
    assert mapper.desire(dev, "setpoint", "30", source="t") is None
    dev.applied["setpoint"] = "30"  # as after a successful write
    assert mapper.desire(dev, "setpoint", "30", source="t") is None
    assert mapper.counts["writes_skipped"] == 1
