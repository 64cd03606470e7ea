"""The device service and AutoEvent scheduler, driven by the virtual connector (no hardware)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from connectors.virtual import VirtualConnector
from edgeflow.bus import Bus
from edgeflow.connector import DeviceHealth
from edgeflow.errors import ConfigError, ConnectorError, DeviceOfflineError, WriteRejectedError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
from edgeflow.profiles import AutoEvent, Device, DeviceProfile
from edgeflow.service import DeviceService, SchedulerSettings

PROFILE = DeviceProfile.model_validate(
    {
        "name": "Boiler",
        "deviceResources": [
            {
                "name": "Temp",
                "attributes": {"generator": "constant", "value": 215},
                "properties": {"valueType": "Int16", "readWrite": "RW", "scale": 0.1, "units": "degC"},
            },
            {
                "name": "Level",
                "attributes": {"generator": "walk", "min": 0, "max": 10, "step": 1, "start": 5},
                "properties": {"valueType": "Float64", "readWrite": "RW", "minimum": 0, "maximum": 10},
            },
            {
                "name": "Mode",
                "attributes": {"generator": "constant", "value": 1},
                "properties": {"valueType": "Uint8", "readWrite": "RW"},
            },
            {"name": "Name", "properties": {"valueType": "String", "readWrite": "R"}},
            {"name": "Ro", "properties": {"valueType": "Float32", "readWrite": "R"}},
        ],
        "deviceCommands": [
            {
                "name": "Status",
                "readWrite": "RW",
                "resourceOperations": [
                    {"deviceResource": "Temp"},
                    {"deviceResource": "Mode", "mappings": {"0": "off", "1": "heat"}},
                ],
            }
        ],
    }
)


def device(name: str, **virtual: Any) -> Device:
    return Device(name=name, profile_name="Boiler", protocols={"virtual": virtual})


class Collector:
    def __init__(self) -> None:
        self.items: list[tuple[str, ReadingBatch]] = []

    async def __call__(self, topic: str, batch: ReadingBatch) -> None:
        self.items.append((topic, batch))


def make(
    *devices: Device, settings: SchedulerSettings | None = None
) -> tuple[DeviceService, VirtualConnector, Collector]:
    conn = VirtualConnector()
    sink = Collector()
    svc = DeviceService("svc", conn, sink, SeriesTable(), settings=settings, clock=lambda: 1_000)
    for d in devices:
        svc.add_device(d, PROFILE)
    return svc, conn, sink


async def test_read_applies_scale_in_float_mode_and_mappings_of_a_command() -> None:
    svc, _, _ = make(device("b1", seed=1))
    batch = await svc.read("b1", "Status")
    readings = list(batch.iter_readings())
    temp, mode = readings
    assert temp.resource_name == "Temp"
    assert temp.value_type is ValueType.FLOAT64  # float transforms: a scaled Int16 reads as Float64
    assert temp.value == pytest.approx(21.5)
    assert temp.units == "degC"
    assert (mode.value_type, mode.value) == (ValueType.STRING, "heat")
    assert {r.origin for r in readings} == {1_000}
    events = batch.to_events()
    assert len(events) == 1 and events[0].source_name == "Status"


async def test_edgex_transform_mode_keeps_integer_types_like_device_sdk_go() -> None:
    svc, _, _ = make(device("b1"), settings=SchedulerSettings(transforms="edgex"))
    batch = await svc.read("b1", "Temp")
    (r,) = batch.iter_readings()
    # device-sdk-go scales an Int16 in its own type: 215 x 0.1 is no whole Int16, so EdgeX reports "overflow"
    assert (r.value_type, r.value) == (ValueType.STRING, "overflow")


async def test_unknown_source_and_unknown_device_are_connector_errors() -> None:
    svc, _, _ = make(device("b1"))
    with pytest.raises(ConnectorError, match="no resource or command"):
        await svc.read("b1", "Nope")
    with pytest.raises(ConnectorError, match="unknown device"):
        await svc.read("ghost", "Temp")


async def test_bad_virtual_attributes_fail_at_add_device() -> None:
    bad = PROFILE.model_copy(
        update={
            "device_resources": [
                PROFILE.device_resources[0].model_copy(update={"attributes": {"generator": "chaos"}})
            ]
        }
    )
    with pytest.raises(ConfigError, match="generator"):
        VirtualConnector().add_device(device("b1"), bad)


async def test_write_checks_profile_then_reads_back_the_written_value() -> None:
    svc, _, _ = make(device("b1"))
    await svc.write("b1", "Level", {"Level": "7.5"})
    (r,) = (await svc.read("b1", "Level")).iter_readings()
    assert r.value == 7.5
    with pytest.raises(WriteRejectedError, match="above maximum"):
        await svc.write("b1", "Level", {"Level": 11})
    with pytest.raises(WriteRejectedError, match="read-only"):
        await svc.write("b1", "Ro", {"Ro": 1.0})
    with pytest.raises(WriteRejectedError, match="not part of"):
        await svc.write("b1", "Level", {"Temp": 1})


async def test_write_inverse_transforms_in_float_mode() -> None:
    svc, _, _ = make(device("b1"))
    await svc.write("b1", "Temp", {"Temp": 23.4})
    (r,) = (await svc.read("b1", "Temp")).iter_readings()
    assert r.value == pytest.approx(23.4)


async def test_autoevents_publish_on_the_edgex_topic() -> None:
    svc, _, sink = make(
        Device(name="b1", profile_name="Boiler", auto_events=[AutoEvent(interval="20ms", source_name="Temp")])
    )
    await svc.start()
    await asyncio.sleep(0.15)
    await svc.stop()
    assert len(sink.items) >= 3
    assert {t for t, _ in sink.items} == {"edgex/events/device/svc/Boiler/b1/Temp"}
    assert svc.states["b1"].health is DeviceHealth.UP


async def test_on_change_sends_only_when_a_value_changes() -> None:
    ae = AutoEvent(interval="10ms", source_name="Temp", on_change=True)
    svc, _, sink = make(Device(name="b1", profile_name="Boiler", auto_events=[ae]))
    await svc.start()
    await asyncio.sleep(0.1)
    assert len(sink.items) == 1  # constant value: only the first read is sent
    await svc.write("b1", "Temp", {"Temp": 30.0})
    await asyncio.sleep(0.1)
    await svc.stop()
    assert len(sink.items) == 2
    assert svc.states["b1"].events_suppressed >= 5


async def test_on_change_threshold_keeps_baseline_at_last_sent_value() -> None:
    ae = AutoEvent(interval="1s", source_name="Level", on_change=True, on_change_threshold=1.0)
    svc, _, sink = make(Device(name="b1", profile_name="Boiler", auto_events=[ae]))
    sent = []
    for v in [5.0, 5.6, 6.2, 6.9, 7.5]:
        await svc.write("b1", "Level", {"Level": v})
        sent.append(await svc.poll_once("b1", ae))
    # 5.0 first; 5.6 within 1.0 of 5.0; 6.2 is 1.2 from the last SENT 5.0 (only 0.6 from 5.6);
    # 6.9 within 1.0 of 6.2; 7.5 is 1.3 from 6.2
    assert sent == [True, False, True, False, True]
    assert len(sink.items) == 3


async def test_failing_device_goes_offline_backs_off_and_comes_back() -> None:
    ae = AutoEvent(interval="10ms", source_name="Temp")
    settings = SchedulerSettings(failure_threshold=2, backoff_initial=0.05, backoff_max=0.1)
    svc, conn, sink = make(Device(name="b1", profile_name="Boiler", auto_events=[ae]), settings=settings)
    await svc.start()
    await asyncio.sleep(0.05)
    conn.set_offline("b1", True)
    await asyncio.sleep(0.3)
    state = svc.states["b1"]
    assert state.health is DeviceHealth.DOWN
    failed = state.reads_failed
    # with backoff (≥ 40 ms between tries once down) far fewer tries than 10 ms polling would make
    assert failed < 0.25 / 0.01
    with pytest.raises(DeviceOfflineError):
        await svc.write("b1", "Temp", {"Temp": 1.0})
    n = len(sink.items)
    conn.set_offline("b1", False)
    await asyncio.sleep(0.3)
    await svc.stop()
    assert state.health is DeviceHealth.UP
    assert state.went_down == 1
    assert len(sink.items) > n
    assert all(task.done() for task in svc._tasks) or not svc._tasks


async def test_a_slow_device_does_not_delay_another() -> None:
    fast = Device(
        name="fast", profile_name="Boiler", auto_events=[AutoEvent(interval="10ms", source_name="Temp")]
    )
    slow = Device(
        name="slow",
        profile_name="Boiler",
        protocols={"virtual": {"latency": "300ms"}},
        auto_events=[AutoEvent(interval="10ms", source_name="Temp")],
    )
    svc, _, sink = make(fast, slow)
    await svc.start()
    await asyncio.sleep(0.25)
    await svc.stop()
    devices = [b.table.info(int(b.series[0])).device for _, b in sink.items]
    assert devices.count("slow") == 0
    assert devices.count("fast") >= 10
    assert svc.states["fast"].missed_intervals <= 2


async def test_locked_device_is_not_polled() -> None:
    d = Device(
        name="b1",
        profile_name="Boiler",
        admin_state="LOCKED",
        auto_events=[AutoEvent(interval="10ms", source_name="Temp")],
    )
    svc, _, sink = make(d)
    await svc.start()
    await asyncio.sleep(0.05)
    await svc.stop()
    assert sink.items == []


async def test_service_publishes_into_a_real_bus() -> None:
    bus: Bus[ReadingBatch] = Bus()
    sub = bus.subscribe("edgex/events/device/+/+/b1/#")
    svc = DeviceService("svc", VirtualConnector(), bus.publish, SeriesTable())
    svc.add_device(
        Device(
            name="b1", profile_name="Boiler", auto_events=[AutoEvent(interval="10ms", source_name="Status")]
        ),
        PROFILE,
    )
    await svc.start()
    topic, batch = await asyncio.wait_for(sub.get(), 1.0)
    await svc.stop()
    assert topic.endswith("/b1/Status")
    assert len(batch) == 2


async def test_a_bool_has_one_form_whichever_library_made_it() -> None:
    # numpy's bool (from a transform or a numpy-based driver) and Python's land in the same column
    profile = DeviceProfile.model_validate(
        {
            "name": "Switch",
            "deviceResources": [{"name": "On", "properties": {"valueType": "Bool", "readWrite": "RW"}}],
        }
    )
    svc = DeviceService("svc", VirtualConnector(), Collector(), SeriesTable(), clock=lambda: 1_000)
    svc.add_device(Device(name="s1", profile_name="Switch", protocols={"virtual": {}}), profile)
    batches = []
    for value in (np.bool_(True), True, np.bool_(False)):
        await svc.write("s1", "On", {"On": value})
        batches.append(await svc.read("s1", "On"))
    assert [b.objects for b in batches] == [None, None, None]
    assert [b.values.tolist() for b in batches] == [[1.0], [1.0], [0.0]]
    assert [type(b.value_at(0)) for b in batches] == [bool, bool, bool]
