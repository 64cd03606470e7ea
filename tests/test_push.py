"""The push path of the device service, for any connector that pushes (MQTT devices, OPC-UA
subscriptions): subscribed before open, transforms and mappings as for a read, batches per topic,
a bounded buffer whose drops are counted, and nothing lost at stop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from edgeflow.bus import Bus, event_topic
from edgeflow.connector import CommandValue, Connector, PushSink
from edgeflow.errors import ConnectorError, ValueFormatError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
from edgeflow.profiles import Device, DeviceProfile, DeviceResource
from edgeflow.service import DeviceService, SchedulerSettings

PROFILE = DeviceProfile.model_validate(
    {
        "name": "Boiler",
        "deviceResources": [
            {"name": "raw", "properties": {"valueType": "Int16", "readWrite": "R", "scale": 0.5}},
            {"name": "state", "properties": {"valueType": "Int16", "readWrite": "R"}},
            {"name": "ok", "properties": {"valueType": "Bool", "readWrite": "R", "assertion": "true"}},
            {"name": "note", "properties": {"valueType": "String", "readWrite": "R"}},
        ],
        "deviceCommands": [
            {
                "name": "all",
                "readWrite": "R",
                "resourceOperations": [
                    {"deviceResource": "raw"},
                    {"deviceResource": "state", "mappings": {"0": "off", "1": "on"}},
                ],
            }
        ],
    }
)


class Pushing(Connector):
    """A connector whose devices push: the test plays the protocol by calling the sink."""

    type_name: ClassVar[str] = "pushing"
    supports_push: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.sinks: dict[str, PushSink] = {}
        self.events: list[str] = []

    async def subscribe(self, device: str, sink: PushSink) -> None:
        self.events.append(f"subscribe {device}")
        self.sinks[device] = sink

    async def open(self) -> None:
        self.events.append("open")

    async def close(self) -> None:
        self.events.append("close")

    async def read(self, device: str, resources: Sequence[DeviceResource]) -> list[CommandValue]:
        raise ConnectorError("reads nothing", device=device)

    async def write(self, device: str, values: Sequence[tuple[DeviceResource, Any]]) -> None:
        raise ConnectorError("writes nothing", device=device)

    def push(self, device: str, source: str, **values: Any) -> None:
        self.sinks[device](device, source, [CommandValue(k, v) for k, v in values.items()])


async def service(**settings: Any) -> tuple[DeviceService, Pushing, list[tuple[str, ReadingBatch]]]:
    conn = Pushing()
    got: list[tuple[str, ReadingBatch]] = []

    async def publish(topic: str, batch: ReadingBatch) -> None:
        got.append((topic, batch))

    clock = iter(range(1_000, 10**9, 1_000))
    svc = DeviceService(
        "svc", conn, publish, SeriesTable(), settings=SchedulerSettings(**settings), clock=lambda: next(clock)
    )
    for name, state in (("b1", "UNLOCKED"), ("b2", "UNLOCKED"), ("locked", "LOCKED")):
        svc.add_device(Device(name=name, profile_name="Boiler", admin_state=state), PROFILE)
    await svc.start()
    return svc, conn, got


async def test_devices_are_subscribed_before_open_and_locked_ones_not_at_all() -> None:
    svc, conn, _ = await service()
    assert conn.events == ["subscribe b1", "subscribe b2", "open"]
    await svc.stop()
    assert conn.events[-1] == "close"


async def test_pushed_values_are_transformed_and_mapped_like_reads_and_batched_per_topic() -> None:
    svc, conn, got = await service()
    conn.push("b1", "all", raw=10, state=1)
    conn.push("b1", "all", raw=11, state=0)
    conn.push("b2", "raw", raw=4)
    conn.push("b1", "note", note="hello")
    assert got == []  # handed over when the loop is free, not per message
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    topics = [t for t, _ in got]
    assert topics == [
        event_topic("svc", "Boiler", "b1", "all"),
        event_topic("svc", "Boiler", "b2", "raw"),
        event_topic("svc", "Boiler", "b1", "note"),
    ]
    b1 = got[0][1]
    readings = list(b1.iter_readings())
    assert [(r.resource_name, r.value, r.value_type) for r in readings] == [
        ("raw", 5.0, ValueType.FLOAT64),  # Int16 scale 0.5, float transforms
        ("state", "on", ValueType.STRING),  # the command's mappings
        ("raw", 5.5, ValueType.FLOAT64),
        ("state", "off", ValueType.STRING),
    ]
    events = b1.to_events()  # one message is one event
    assert [len(e.readings) for e in events] == [2, 2] and events[0].origin < events[1].origin
    assert [r.value for r in got[2][1].iter_readings()] == ["hello"]
    st = svc.states["b1"]
    assert (st.events_pushed, st.health.value) == (3, "UP")
    await svc.stop()


async def test_values_that_do_not_fit_are_refused_whole_to_the_connector() -> None:
    svc, conn, got = await service()
    with pytest.raises(ConnectorError, match="assertion failed"):
        conn.push("b1", "ok", ok=False)
    with pytest.raises(ConnectorError, match="not part of 'raw'"):
        conn.push("b1", "raw", raw=1, state=2)
    with pytest.raises(ValueFormatError):
        conn.push("b1", "all", raw=1, state="x")  # the first value fitted; the message is refused whole
    with pytest.raises(ConnectorError, match="'x' is not part of 'nope'"):
        conn.push("b1", "nope", x=1)
    conn.push("b1", "ok", ok=True)
    await svc.stop()
    assert [(r.resource_name, r.value) for _, b in got for r in b.iter_readings()] == [("ok", True)]


async def test_an_event_name_of_the_connectors_own_takes_any_readable_resource() -> None:
    svc, conn, got = await service()
    conn.push("b1", "telemetry", raw=4, note="x")
    await svc.stop()
    ((topic, batch),) = got
    assert topic == event_topic("svc", "Boiler", "b1", "telemetry")
    assert [(r.resource_name, r.value) for r in batch.iter_readings()] == [("raw", 2.0), ("note", "x")]
    assert {e.source_name for e in batch.to_events()} == {"telemetry"}


async def test_a_full_buffer_drops_and_counts_then_recovers(caplog: pytest.LogCaptureFixture) -> None:
    svc, conn, got = await service(push_capacity=4)
    for i in range(3):
        conn.push("b1", "all", raw=i, state=0)  # 2 readings each: the third does not fit
    assert svc.states["b1"].push_dropped == 2
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sum(len(b) for _, b in got) == 4
    conn.push("b2", "all", raw=1, state=1)
    await svc.stop()
    assert sum(len(b) for _, b in got) == 6
    assert "dropping pushed readings" in caplog.text and "caught up" in caplog.text


async def test_stop_hands_over_what_was_pushed_last() -> None:
    svc, conn, got = await service(push_linger=60.0)
    conn.push("b1", "raw", raw=2)
    await asyncio.sleep(0.01)
    assert got == []  # lingering
    await svc.stop()
    assert [r.value for _, b in got for r in b.iter_readings()] == [1.0]


async def test_a_slow_bus_holds_pushes_in_the_buffer_not_in_the_connector() -> None:
    conn = Pushing()
    bus: Bus[ReadingBatch] = Bus()
    sub = bus.subscribe("#", capacity=2, policy="block", name="slow")
    svc = DeviceService("svc", conn, bus.publish, SeriesTable())
    svc.add_device(Device(name="b1", profile_name="Boiler"), PROFILE)
    await svc.start()
    for i in range(5):
        conn.push("b1", "raw", raw=i)
        await asyncio.sleep(0)  # each push handed over on its own
    got = []
    while len(got) < 5:
        got.extend(r.value for _, b in await sub.get_many() for r in b.iter_readings())
    await svc.stop()
    assert got == [0.0, 0.5, 1.0, 1.5, 2.0]
