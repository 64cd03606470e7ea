"""The device service's push path, for any connector that pushes: batches to the bus, quality flags,
the hand-over between pushing and polling, health that follows the connector, bounded buffering.

The connector here is a small in-memory implementation of the contract (like the virtual connector),
so these tests pin the service's side of it; the OPC-UA tests run the same path against a real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from edgeflow.connector import (
    CommandValue,
    Connector,
    DeviceHealth,
    PushSink,
    Quality,
    QualityAction,
)
from edgeflow.errors import ConnectorError, ValueFormatError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
from edgeflow.profiles import AutoEvent, Device, DeviceProfile, DeviceResource
from edgeflow.service import DeviceService, SchedulerSettings

PROFILE = DeviceProfile.model_validate(
    {
        "name": "Tank",
        "deviceResources": [
            {"name": "Level", "properties": {"valueType": "Int16", "readWrite": "R", "scale": 0.5}},
            {"name": "Temp", "properties": {"valueType": "Float64", "readWrite": "R"}},
        ],
        "deviceCommands": [
            {
                "name": "All",
                "readWrite": "R",
                "resourceOperations": [{"deviceResource": "Level"}, {"deviceResource": "Temp"}],
            }
        ],
    }
)


class Pusher(Connector):
    type_name: ClassVar[str] = "pusher"
    supports_push: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.sinks: dict[str, PushSink] = {}
        self.pushing: set[str] = set()  # sources it pushes now
        self.link = DeviceHealth.UP
        self.reads = 0
        self.actions = {Quality.UNCERTAIN: QualityAction.FLAG, Quality.BAD: QualityAction.FLAG}

    async def read(self, device: str, resources: Sequence[DeviceResource]) -> list[CommandValue]:
        self.reads += 1
        if self.link is DeviceHealth.DOWN:
            from edgeflow.errors import DeviceOfflineError

            raise DeviceOfflineError("link down", device=device)
        return [CommandValue(r.name, 4 if r.name == "Level" else 1.5) for r in resources]

    async def write(self, device: str, values: Sequence[tuple[DeviceResource, Any]]) -> None:
        raise NotImplementedError

    async def subscribe(self, device: str, sink: PushSink) -> None:
        self.sinks[device] = sink

    def pushes(self, device: str, auto_event: AutoEvent) -> bool:
        return self.link is DeviceHealth.UP and auto_event.source_name in self.pushing

    def health(self, device: str) -> DeviceHealth:
        return self.link

    def quality_action(self, device: str, quality: Quality) -> QualityAction:
        return self.actions[quality]


class Bus:
    def __init__(self) -> None:
        self.items: list[tuple[str, ReadingBatch]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, topic: str, batch: ReadingBatch) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.items.append((topic, batch))


def make(
    *auto_events: dict[str, Any], settings: SchedulerSettings | None = None
) -> tuple[DeviceService, Pusher, Bus, SeriesTable]:
    conn = Pusher()
    bus = Bus()
    table = SeriesTable()
    svc = DeviceService("svc", conn, bus, table, settings=settings or SchedulerSettings(), clock=lambda: 7)
    svc.add_device(Device(name="t1", profile_name="Tank", auto_events=list(auto_events)), PROFILE)
    return svc, conn, bus, table


def rows(batch: ReadingBatch) -> list[tuple[str, Any, int]]:
    return [(r.resource_name, r.value, r.origin) for r in batch.iter_readings()]


async def until(cond: Any, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not cond():  # noqa: ASYNC110 - polls a condition, not an event
            await asyncio.sleep(0.005)


async def test_pushed_values_reach_the_bus_in_one_batch_per_source() -> None:
    svc, conn, bus, _table = make()
    await svc.start()
    try:
        sink = conn.sinks["t1"]
        # three notifications in a row, before the service's publisher runs: one hand-off per source
        sink("t1", "Level", [CommandValue("Level", 4, 100)])
        sink("t1", "Level", [CommandValue("Level", 6, 200)])
        sink("t1", "All", [CommandValue("Level", 8, 300), CommandValue("Temp", 2.5, 300)])
        await until(lambda: len(bus.items) == 2)
    finally:
        await svc.stop()
    topics = [t for t, _ in bus.items]
    assert topics == ["edgex/events/device/svc/Tank/t1/Level", "edgex/events/device/svc/Tank/t1/All"]
    assert rows(bus.items[0][1]) == [("Level", 2.0, 100), ("Level", 3.0, 200)]  # scale 0.5 applied
    assert rows(bus.items[1][1]) == [("Level", 4.0, 300), ("Temp", 2.5, 300)]
    assert svc.states["t1"].readings_pushed == 4
    assert svc.states["t1"].events_published == 2


async def test_values_that_are_not_good_are_flagged_or_dropped_and_counted() -> None:
    svc, conn, bus, table = make()
    await svc.start()
    try:
        sink = conn.sinks["t1"]
        sink(
            "t1",
            "All",
            [
                CommandValue("Level", 10, 1, Quality.UNCERTAIN, "UncertainLastUsableValue"),
                CommandValue("Temp", None, 1, Quality.BAD, "BadSensorFailure"),
            ],
        )
        await until(lambda: len(bus.items) == 1)
        conn.actions = {Quality.UNCERTAIN: QualityAction.DROP, Quality.BAD: QualityAction.DROP}
        sink(
            "t1",
            "All",
            [CommandValue("Level", 10, 2, Quality.UNCERTAIN, "UncertainX"), CommandValue("Temp", 3.0, 2)],
        )
        await until(lambda: len(bus.items) == 2)
    finally:
        await svc.stop()
    assert rows(bus.items[0][1]) == [("Level@uncertain", 5.0, 1), ("Temp@bad", "BadSensorFailure", 1)]
    assert table.info(table.lookup("t1", "Temp@bad") or 0).value_type is ValueType.STRING
    assert rows(bus.items[1][1]) == [("Temp", 3.0, 2)]  # never passed on as good
    st = svc.states["t1"]
    assert (st.readings_uncertain, st.readings_bad, st.readings_dropped_quality) == (2, 1, 1)


async def test_a_pushed_autoevent_is_not_polled_until_the_connector_stops_pushing_it() -> None:
    svc, conn, _bus, _ = make(
        {"interval": "20ms", "sourceName": "Level", "onChange": True},
        settings=SchedulerSettings(failure_threshold=1, backoff_initial=30, backoff_max=30),
    )
    conn.pushing = {"Level"}
    await svc.start()
    try:
        await asyncio.sleep(0.2)
        assert conn.reads == 0  # pushed: never polled
        conn.pushing = set()
        conn.state_changed("t1")  # e.g. the server refused the subscription: poll instead, at once
        await until(lambda: conn.reads >= 3)
        conn.pushing = {"Level"}
        conn.state_changed("t1")
        await asyncio.sleep(0.05)
        reads = conn.reads
        await asyncio.sleep(0.2)
        assert conn.reads == reads
    finally:
        await svc.stop()


async def test_health_follows_the_connector_and_offline_time_is_counted() -> None:
    svc, conn, _, _ = make(
        {"interval": "20ms", "sourceName": "Level", "onChange": True},
        settings=SchedulerSettings(failure_threshold=2, backoff_initial=30, backoff_max=30),
    )
    conn.pushing = {"Level"}
    await svc.start()
    try:
        conn.state_changed("t1")
        st = svc.states["t1"]
        assert st.health is DeviceHealth.UP
        conn.link = DeviceHealth.DOWN  # the link went away: DOWN at once, then polled (and failing)
        conn.state_changed("t1")
        assert st.health is DeviceHealth.DOWN and st.went_down == 1
        await until(lambda: st.reads_failed >= 2)  # polled while down, backing off 30 s after 2 failures
        await asyncio.sleep(0.1)
        conn.link = DeviceHealth.UP  # back: UP at once, no wait for the 30 s backoff
        conn.state_changed("t1")
        assert st.health is DeviceHealth.UP
        assert st.offline_seconds > 0.05
        assert st.counters()["offline_seconds"] == st.offline_seconds
    finally:
        await svc.stop()


async def test_a_full_push_buffer_drops_what_does_not_fit_and_counts() -> None:
    svc, conn, bus, _ = make(settings=SchedulerSettings(push_capacity=3))
    bus.gate = asyncio.Event()  # the bus does not take anything for now
    await svc.start()
    try:
        sink = conn.sinks["t1"]
        sink("t1", "Temp", [CommandValue("Temp", 1.0, 1)])
        await asyncio.sleep(0.01)  # the publisher takes that one and waits on the bus
        for i in range(2, 7):
            sink("t1", "Temp", [CommandValue("Temp", float(i), i)])
        assert svc.states["t1"].push_dropped == 2  # 2..4 wait; 5 and 6 find the buffer full
        bus.gate.set()
        await until(lambda: sum(len(b) for _, b in bus.items) == 4)
    finally:
        await svc.stop()
    assert [r[1] for _, b in bus.items for r in rows(b)] == [1.0, 2.0, 3.0, 4.0]


async def test_a_malformed_push_is_counted_and_the_service_goes_on() -> None:
    svc, conn, bus, _ = make()
    await svc.start()
    try:
        sink = conn.sinks["t1"]
        # each refused whole, to the connector (which counts it), and nothing of it is taken
        with pytest.raises(ConnectorError, match="'NoSuch' is not part of 'Temp'"):
            sink("t1", "Temp", [CommandValue("NoSuch", 1.0, 1)])
        with pytest.raises(ConnectorError, match="ghost"):
            sink("ghost", "Temp", [CommandValue("Temp", 1.0, 1)])
        with pytest.raises(ValueFormatError):
            sink("t1", "Temp", [CommandValue("Temp", "not a number", 1)])
        sink("t1", "Temp", [CommandValue("Temp", 2.0, 2)])
        await until(lambda: len(bus.items) == 1)
    finally:
        await svc.stop()
    assert svc.states["t1"].events_pushed == 1
    assert rows(bus.items[0][1]) == [("Temp", 2.0, 2)]


async def test_stop_publishes_what_was_pushed() -> None:
    svc, conn, bus, _ = make()
    await svc.start()
    conn.sinks["t1"]("t1", "Temp", [CommandValue("Temp", 9.0, 9)])
    await svc.stop()
    assert [rows(b) for _, b in bus.items] == [[("Temp", 9.0, 9)]]
