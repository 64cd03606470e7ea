"""The device service and AutoEvent scheduler, driven by the virtual connector (no hardware).

Scheduling runs on a :class:`ManualClock`: time moves only when a test moves it, every poll happens
exactly when it is due, and the counts below are exact (no real sleeps).
"""

from __future__ import annotations

import asyncio
import logging
import random
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
from edgeflow.testing import MS, SECOND, ManualClock

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


#: The manual clock's start: origins of reads at time 0 of a test. A day: a multiple of every interval
#: here, so aligned AutoEvents keep the phase of the first read.
T0 = 86_400_000_000_000


class MidJitter(random.Random):
    """Backoff jitter fixed at its middle (x1.0), so retry times are exact."""

    def random(self) -> float:
        return 0.5


def make(
    *devices: Device, settings: SchedulerSettings | None = None
) -> tuple[DeviceService, VirtualConnector, Collector, ManualClock]:
    conn = VirtualConnector()
    sink = Collector()
    clock = ManualClock(T0)
    svc = DeviceService("svc", conn, sink, SeriesTable(), settings=settings, clock=clock, rng=MidJitter())
    for d in devices:
        svc.add_device(d, PROFILE)
    return svc, conn, sink, clock


def origins(sink: Collector, device: str, source: str | None = None, unit: int = MS) -> list[int]:
    """When (in ``unit`` s after T0) ``device`` published events (of ``source``, or of any)."""
    out = []
    for _, b in sink.items:
        info = b.table.info(int(b.series[0]))
        if info.device == device and source in (None, info.source):
            out.append((int(b.origins[0]) - T0) // unit)
    return out


async def test_read_applies_scale_in_float_mode_and_mappings_of_a_command() -> None:
    svc, _, _, _ = make(device("b1", seed=1))
    batch = await svc.read("b1", "Status")
    readings = list(batch.iter_readings())
    temp, mode = readings
    assert temp.resource_name == "Temp"
    assert temp.value_type is ValueType.FLOAT64  # float transforms: a scaled Int16 reads as Float64
    assert temp.value == pytest.approx(21.5)
    assert temp.units == "degC"
    assert (mode.value_type, mode.value) == (ValueType.STRING, "heat")
    assert {r.origin for r in readings} == {T0}
    events = batch.to_events()
    assert len(events) == 1 and events[0].source_name == "Status"


async def test_edgex_transform_mode_keeps_integer_types_like_device_sdk_go() -> None:
    svc, _, _, _ = make(device("b1"), settings=SchedulerSettings(transforms="edgex"))
    batch = await svc.read("b1", "Temp")
    (r,) = batch.iter_readings()
    # device-sdk-go scales an Int16 in its own type: 215 x 0.1 is no whole Int16, so EdgeX reports "overflow"
    assert (r.value_type, r.value) == (ValueType.STRING, "overflow")


async def test_unknown_source_and_unknown_device_are_connector_errors() -> None:
    svc, _, _, _ = make(device("b1"))
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


@pytest.mark.parametrize(("latency", "needle"), [("-1s", "negative"), ("slow", "not a duration")])
async def test_bad_latency_is_refused_naming_the_device(latency: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=f"device 'b1': protocols.virtual.latency: .*{needle}"):
        VirtualConnector().add_device(device("b1", latency=latency), PROFILE)


async def test_write_checks_profile_then_reads_back_the_written_value() -> None:
    svc, _, _, _ = make(device("b1"))
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
    svc, _, _, _ = make(device("b1"))
    await svc.write("b1", "Temp", {"Temp": 23.4})
    (r,) = (await svc.read("b1", "Temp")).iter_readings()
    assert r.value == pytest.approx(23.4)


async def test_autoevents_publish_on_the_edgex_topic() -> None:
    svc, _, sink, clock = make(
        Device(
            name="b1", profile_name="Boiler", auto_events=[AutoEvent(interval="20ms", source_name="Temp")]
        ),
        settings=SchedulerSettings(align=False),
    )
    await svc.start()
    await clock.run_for(150 * MS)
    await svc.stop()
    # one read at start, then one every 20 ms, each stamped with the clock's time
    assert origins(sink, "b1") == [0, 20, 40, 60, 80, 100, 120, 140]
    assert {t for t, _ in sink.items} == {"edgex/events/device/svc/Boiler/b1/Temp"}
    assert svc.states["b1"].health is DeviceHealth.UP
    assert svc.states["b1"].missed_intervals == 0
    assert clock.pending == 0  # stop() left no task sleeping on the clock


async def test_an_autoevent_interval_in_go_syntax_and_a_bare_number_of_seconds() -> None:
    svc, _, sink, clock = make(
        Device(
            name="b1",
            profile_name="Boiler",
            auto_events=[
                AutoEvent(interval="1m30s", source_name="Temp"),
                AutoEvent.model_validate({"interval": 60, "sourceName": "Mode"}),
            ],
        )
    )
    await svc.start()
    await clock.run_for(3 * 60 * SECOND)
    await svc.stop()
    assert origins(sink, "b1", "Temp", SECOND) == [0, 90, 180]
    assert origins(sink, "b1", "Mode", SECOND) == [0, 60, 120, 180]


async def test_on_change_sends_only_when_a_value_changes() -> None:
    ae = AutoEvent(interval="10ms", source_name="Temp", on_change=True)
    svc, _, sink, clock = make(Device(name="b1", profile_name="Boiler", auto_events=[ae]))
    await svc.start()
    await clock.run_for(100 * MS)  # reads at 0, 10, ..., 100 ms
    assert len(sink.items) == 1  # constant value: only the first read is sent
    assert svc.states["b1"].events_suppressed == 10
    await svc.write("b1", "Temp", {"Temp": 30.0})
    await clock.run_for(100 * MS)  # reads at 110, ..., 200 ms: the first sees the new value
    await svc.stop()
    assert origins(sink, "b1") == [0, 110]
    assert svc.states["b1"].events_suppressed == 19


async def test_on_change_threshold_keeps_baseline_at_last_sent_value() -> None:
    ae = AutoEvent(interval="1s", source_name="Level", on_change=True, on_change_threshold=1.0)
    svc, _, sink, _ = make(Device(name="b1", profile_name="Boiler", auto_events=[ae]))
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
    svc, conn, sink, clock = make(
        Device(name="b1", profile_name="Boiler", auto_events=[ae]), settings=settings
    )
    state = svc.states["b1"]
    await svc.start()
    await clock.run_for(50 * MS)  # reads at 0..50 ms answer
    assert (state.reads_ok, state.reads_failed) == (6, 0)
    conn.set_offline("b1", True)
    await clock.run_for(300 * MS)  # to 350 ms
    # 60 and 70 ms fail: DOWN after the 2nd; then retries after 50 ms, 100 ms, 100 ms (capped): 120, 220, 320
    assert state.health is DeviceHealth.DOWN
    assert state.reads_failed == 5
    assert state.retry_at_ns == T0 + 420 * MS
    with pytest.raises(DeviceOfflineError):
        await svc.write("b1", "Temp", {"Temp": 1.0})
    conn.set_offline("b1", False)
    await clock.run_for(300 * MS)  # to 650 ms: the retry at 420 answers, then every 10 ms again
    await svc.stop()
    assert state.health is DeviceHealth.UP
    assert state.went_down == 1
    assert (state.reads_ok, state.reads_failed, state.missed_intervals) == (6 + 24, 5, 0)
    assert origins(sink, "b1") == [*range(0, 51, 10), *range(420, 651, 10)]
    assert all(task.done() for task in svc._tasks) or not svc._tasks


async def test_a_read_that_outlasts_read_timeout_fails_at_the_timeout() -> None:
    slow = Device(
        name="slow",
        profile_name="Boiler",
        protocols={"virtual": {"latency": "5s"}},
        auto_events=[AutoEvent(interval="2s", source_name="Temp")],
    )
    svc, _, sink, clock = make(slow, settings=SchedulerSettings(read_timeout=1.0))
    state = svc.states["slow"]
    await svc.start()
    await clock.run_for(SECOND - 1)
    assert state.reads_failed == 0
    await clock.run_for(1)  # 1 s: the read times out (on the clock; no real second passes)
    assert (state.reads_failed, state.consecutive_failures) == (1, 1)
    await clock.run_for(6 * SECOND)  # reads at 2, 4, 6 s time out too
    await svc.stop()
    assert state.reads_failed == 4
    assert sink.items == []


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
    svc, _, sink, clock = make(fast, slow)
    await svc.start()
    await clock.run_for(250 * MS)
    assert origins(sink, "slow") == []
    assert origins(sink, "fast") == list(range(0, 251, 10))  # every poll on time
    await clock.run_for(50 * MS)  # the slow read started at 0 answers at 300 ms
    await svc.stop()
    assert origins(sink, "slow") == [300]  # stamped when it answered
    # the intervals from 10 to 300 ms went by while it read: counted, not queued; the one it ended in
    # (300..310 ms) is read at once, late
    assert svc.states["slow"].missed_intervals == 29
    assert svc.states["fast"].missed_intervals == 0
    assert len(origins(sink, "fast")) == 31


def _outlasting() -> Device:
    """A device whose reads (250 ms) outlast its AutoEvent's interval (100 ms)."""
    return Device(
        name="slow",
        profile_name="Boiler",
        protocols={"virtual": {"latency": "250ms"}},
        auto_events=[AutoEvent(interval="100ms", source_name="Temp")],
    )


async def test_falling_behind_and_catching_up_are_each_said_once(caplog: pytest.LogCaptureFixture) -> None:
    svc, conn, _, clock = make(_outlasting())
    with caplog.at_level(logging.WARNING, logger="edgeflow.service"):
        await svc.start()
        await clock.run_for(1 * SECOND)  # every read (250 ms) outlasts the 100 ms interval
        conn._state["slow"].latency = 0.0  # the device answers at once from now on
        await clock.run_for(5 * SECOND)
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("AutoEvents")]
        assert len(said) == 1  # falling behind, once, not once per interval
        # the read at 0 ends at 250 ms: the interval from 100 ms went by without one; 200..300 is read late
        assert said[0].startswith("AutoEvents are falling behind: 1 interval(s) of slow went by without a read")
        await clock.run_for(6 * SECOND)  # 10 s without a missed interval
        await svc.stop()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("AutoEvents")]
    # reads of 250 ms from 0, 0.25, 0.5, 0.75 and 1.0 s (each begun at once, late, in the interval the one
    # before ended in), the intervals between without one: 1 + 2 + 1 + 2 + 1 missed, the last at 1.25 s
    missed = svc.states["slow"].missed_intervals
    assert missed == 7
    assert said[1:] == [
        f"AutoEvents caught up: {missed} interval(s) of 1 device(s) missed from 0.2 s to 1.2 s after polling began"
    ]


async def test_still_behind_at_the_stop_is_said_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    svc, _, _, clock = make(_outlasting())
    with caplog.at_level(logging.WARNING, logger="edgeflow.service"):
        await svc.start()
        await clock.run_for(2 * SECOND)
        await svc.stop()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("AutoEvents")]
    missed = svc.states["slow"].missed_intervals
    assert said[-1].startswith(f"AutoEvents were still behind at the stop: {missed} interval(s) of 1 device(s)")


async def test_locked_device_is_not_polled() -> None:
    d = Device(
        name="b1",
        profile_name="Boiler",
        admin_state="LOCKED",
        auto_events=[AutoEvent(interval="10ms", source_name="Temp")],
    )
    svc, _, sink, clock = make(d)
    await svc.start()
    await clock.run_for(50 * MS)
    assert clock.pending == 0  # no AutoEvent task waits
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


async def test_aligned_autoevents_read_on_multiples_of_the_interval_together() -> None:
    # the default: after a first read at once, every device reads on the wall clock's multiples of
    # its interval, whenever it started, so the devices of one interval are read at the same instants
    ae = [AutoEvent(interval="20ms", source_name="Temp")]
    svc, _, sink, clock = make(Device(name="b1", profile_name="Boiler", auto_events=ae))
    await svc.start()
    await clock.run_for(7 * MS)  # b2 comes 7 ms after b1
    await svc.add_running_device(Device(name="b2", profile_name="Boiler", auto_events=ae), PROFILE)
    await clock.run_for(60 * MS)
    await svc.stop()
    assert origins(sink, "b1") == [0, 20, 40, 60]
    assert origins(sink, "b2") == [7, 20, 40, 60]
    assert svc.states["b2"].missed_intervals == 0
