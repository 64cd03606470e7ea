"""OPC-UA subscriptions against a real asyncua server, through the device service: changes arrive
pushed, in batches, with the server's source timestamps; the deadband drops small changes at the
server; where the server refuses subscriptions the AutoEvent is polled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

pytest.importorskip("asyncua")

from connectors.opcua import OpcUaConnector
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.profiles import Device, DeviceProfile
from edgeflow.service import DeviceService, SchedulerSettings

pytestmark = [pytest.mark.server, pytest.mark.asyncio(loop_scope="module")]

NS = 2
T0 = datetime(2026, 1, 1, tzinfo=UTC)

PROFILE = DeviceProfile.model_validate(
    {
        "name": "Boiler",
        "deviceResources": [
            {
                "name": "Level",
                "attributes": {"nodeId": f"ns={NS};s=Boiler.Level"},
                "properties": {"valueType": "Float64", "readWrite": "R"},
            },
            {
                "name": "Temperature",
                "attributes": {"nodeId": f"ns={NS};s=Boiler.Temperature"},
                "properties": {"valueType": "Float64", "readWrite": "R"},
            },
            {
                "name": "Sawtooth",
                "attributes": {"nodeId": f"ns={NS};i=1003"},
                "properties": {"valueType": "Float64", "readWrite": "R"},
            },
            {
                "name": "Sinusoid",
                "attributes": {"nodeId": f"ns={NS};i=1004"},
                "properties": {"valueType": "Float64", "readWrite": "R"},
            },
        ],
        "deviceCommands": [
            {
                "name": "Waves",
                "readWrite": "R",
                "resourceOperations": [{"deviceResource": "Sawtooth"}, {"deviceResource": "Sinusoid"}],
            }
        ],
    }
)


class Published:
    def __init__(self) -> None:
        self.items: list[tuple[str, ReadingBatch]] = []

    async def __call__(self, topic: str, batch: ReadingBatch) -> None:
        self.items.append((topic, batch))

    def readings(self, resource: str) -> list[tuple[Any, int]]:
        return [
            (r.value, r.origin)
            for _, b in self.items
            for r in b.iter_readings()
            if r.resource_name == resource
        ]

    def values(self, resource: str) -> list[Any]:
        return [v for v, _ in self.readings(resource)]


Rig = tuple[Any, DeviceService, OpcUaConnector, Published]


async def rig_for(sim: Any, auto_events: list[dict[str, Any]], **props: Any) -> Rig:
    conn = OpcUaConnector({"reconnect_min": 0.1, "reconnect_max": 0.5, "watchdog_interval": 1.0})
    out = Published()
    svc = DeviceService(
        "opcua-test",
        conn,
        out,
        SeriesTable(),
        settings=SchedulerSettings(failure_threshold=2, backoff_initial=0.1, backoff_max=0.5, read_timeout=5),
    )
    svc.add_device(
        Device(
            name="boiler",
            profile_name="Boiler",
            protocols={"opcua": {"Endpoint": sim.endpoint, **props}},
            auto_events=auto_events,
        ),
        PROFILE,
    )
    await svc.start()
    return sim, svc, conn, out


async def until(cond: Any, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not cond():  # noqa: ASYNC110 - polls a condition, not an event
            await asyncio.sleep(0.01)


def pushed(conn: OpcUaConnector, svc: DeviceService, source: str) -> bool:
    dev, _ = conn.device("boiler")
    return any(conn.pushes("boiler", ae) for ae in dev.auto_events if ae.source_name == source)


@pytest_asyncio.fixture(loop_scope="module")
async def sim(opcua_servers: Any) -> AsyncIterator[Any]:
    s = await opcua_servers()
    await s.set("Boiler.Level", 1.0)
    await s.set("Boiler.Temperature", 20.0)
    yield s


async def test_changes_arrive_pushed_with_the_servers_source_timestamps(sim: Any) -> None:
    _, svc, conn, out = await rig_for(
        sim, [{"interval": "50ms", "sourceName": "Level", "onChange": True}], QueueSize=10
    )
    try:
        await until(lambda: pushed(conn, svc, "Level") and out.values("Level"))
        await asyncio.sleep(0.3)  # a start-up poll still in flight when the subscription took over ends
        reads = svc.states["boiler"].reads_ok
        for i in range(5):  # the server queues up to 10 changes per item between publishes
            await sim.set("Boiler.Level", 2.0 + i, source_time=T0 + timedelta(seconds=i))
        await until(lambda: out.values("Level")[-1:] == [6.0])
        assert out.readings("Level")[-5:] == [
            (2.0 + i, int((T0 + timedelta(seconds=i)).timestamp()) * 1_000_000_000) for i in range(5)
        ]
        assert svc.states["boiler"].reads_ok == reads  # pushed, not polled
        assert all(t.endswith("/Boiler/boiler/Level") for t, _ in out.items)
        assert conn.device_stats("boiler")["subscribed"] == ["Level"]
    finally:
        await svc.stop()


async def test_the_deadband_drops_small_changes_at_the_server(sim: Any) -> None:
    # Level: EdgeX's onChangeThreshold becomes the server's absolute deadband; Temperature: no deadband
    _, svc, conn, out = await rig_for(
        sim,
        [
            {"interval": "50ms", "sourceName": "Level", "onChange": True, "onChangeThreshold": 0.5},
            {"interval": "50ms", "sourceName": "Temperature", "onChange": True},
        ],
        QueueSize=100,  # every change a publishing interval holds reaches us
    )
    try:
        await sim.set("Boiler.Level", 20.0)
        await sim.set("Boiler.Temperature", 20.0)
        await until(lambda: pushed(conn, svc, "Level") and pushed(conn, svc, "Temperature"))
        await until(lambda: out.values("Level")[-1:] == [20.0] and out.values("Temperature")[-1:] == [20.0])
        before = conn.device_stats("boiler")["notifications"]
        writes = sim.writes
        changes = [20.1, 20.0, 19.9, 20.0, 20.2, 25.0, 25.1, 24.9, 30.0]
        for v in changes:
            await sim.set("Boiler.Level", v)
            await sim.set("Boiler.Temperature", v)
        await until(lambda: out.values("Temperature")[-1:] == [30.0] and out.values("Level")[-1:] == [30.0])
        await asyncio.sleep(0.3)  # anything else the server would send has arrived by now
        assert sim.writes - writes == 2 * len(changes)  # the server saw every change of both nodes
        assert out.values("Temperature")[-len(changes) :] == changes  # no deadband: all of them
        assert out.values("Level")[-3:] == [20.0, 25.0, 30.0]  # deadband 0.5: only the big ones left it
        assert conn.device_stats("boiler")["notifications"] - before == len(changes) + 2  # counted at the client
    finally:
        await svc.stop()


async def test_a_command_autoevent_pushes_one_batch_per_notification(sim: Any) -> None:
    _, svc, conn, out = await rig_for(
        sim, [{"interval": "100ms", "sourceName": "Waves", "onChange": True}], PublishingInterval="200ms"
    )
    try:
        await until(lambda: pushed(conn, svc, "Waves"))
        out.items.clear()
        for _ in range(3):
            await sim.step(0.5)  # moves Sawtooth and Sinusoid together
            await asyncio.sleep(0.3)
        await until(lambda: len(out.values("Sinusoid")) >= 3)
        assert all(t.endswith("/boiler/Waves") for t, _ in out.items)
        assert any(
            {r.resource_name for r in b.iter_readings()} == {"Sawtooth", "Sinusoid"} for _, b in out.items
        )
    finally:
        await svc.stop()


async def test_values_that_are_not_good_are_flagged_not_pushed_as_good(sim: Any) -> None:
    _, svc, conn, out = await rig_for(
        sim, [{"interval": "50ms", "sourceName": "Level", "onChange": True}], QueueSize=10
    )
    try:
        await until(lambda: pushed(conn, svc, "Level"))
        await sim.set("Boiler.Level", 3.25, status="UncertainSensorNotAccurate")
        await sim.set("Boiler.Level", 3.5, status="BadSensorFailure")
        await sim.set("Boiler.Level", 3.75)
        await until(lambda: out.values("Level")[-1:] == [3.75])
        assert out.values("Level@uncertain") == [3.25]
        assert out.values("Level@bad") == ["BadSensorFailure"]
        assert 3.25 not in out.values("Level") and 3.5 not in out.values("Level")
        st = svc.states["boiler"]
        assert (st.readings_uncertain, st.readings_bad) == (1, 1)
    finally:
        await svc.stop()


async def test_polling_takes_over_where_the_server_refuses_subscriptions(opcua_servers: Any) -> None:
    refusing = await opcua_servers(max_subscriptions=0)
    _, svc, conn, out = await rig_for(
        refusing, [{"interval": "50ms", "sourceName": "Level", "onChange": True}]
    )
    try:
        await until(lambda: conn.device_stats("boiler")["polled_fallbacks"] == 1)
        assert "BadTooManySubscriptions" in conn.device_stats("boiler")["refused"]["Level"]
        assert not pushed(conn, svc, "Level")
        for v in (4.0, 4.0, 5.0):  # EdgeX onChange meaning: the repeat is not sent again
            await refusing.set("Boiler.Level", v)
            await asyncio.sleep(0.2)
        await until(lambda: out.values("Level")[-1:] == [5.0])
        assert out.values("Level")[-2:] == [4.0, 5.0]
        assert svc.states["boiler"].reads_ok >= 3 and svc.states["boiler"].events_suppressed >= 1
    finally:
        await svc.stop()


async def test_subscriptions_can_be_switched_off(sim: Any) -> None:
    _, svc, conn, out = await rig_for(
        sim, [{"interval": "50ms", "sourceName": "Level", "onChange": True}], Subscriptions=False
    )
    try:
        await sim.set("Boiler.Level", 7.0)
        await until(lambda: out.values("Level")[-1:] == [7.0])
        assert not pushed(conn, svc, "Level") and conn.device_stats("boiler")["notifications"] == 0
    finally:
        await svc.stop()


async def test_a_removed_device_gets_no_more_data_and_its_endpoint_closes(sim: Any) -> None:
    _, svc, conn, out = await rig_for(
        sim, [{"interval": "50ms", "sourceName": "Level", "onChange": True}], QueueSize=10
    )
    try:
        await until(lambda: pushed(conn, svc, "Level") and out.values("Level"))
        (ep,) = conn._endpoints.values()
        assert ep.link is not None and ep.link.connected
        await svc.remove_device("boiler")
        assert conn.devices == {} and conn.stats() == {}
        n = len(out.items)
        await sim.set("Boiler.Level", 42.0)
        await asyncio.sleep(0.5)  # a notification of the removed device would have arrived by now
        assert len(out.items) == n
        await until(lambda: not conn._closing)  # the endpoint no device uses any more is closed
        assert ep.link is None and ep.task is None and conn._endpoints == {}
    finally:
        await svc.stop()
