"""OPC-UA recovery: the server stopped for 10 s and restarted, and the network cut without a word from
either side. The device goes offline (health and metrics say so), the connector reconnects with capped
backoff and recreates its subscriptions, the device comes back — without restarting edgeflow."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("asyncua")

from edgeflow.config import parse_config
from edgeflow.model import ReadingBatch
from edgeflow.runtime import Runtime

pytestmark = pytest.mark.server

NS = 2
PROFILE = {
    "name": "Boiler",
    "deviceResources": [
        {
            "name": "Level",
            "attributes": {"nodeId": f"ns={NS};s=Boiler.Level"},
            "properties": {"valueType": "Float64", "readWrite": "R"},
        },
        {
            "name": "Counter",
            "attributes": {"nodeId": f"ns={NS};i=1001"},
            "properties": {"valueType": "Int32", "readWrite": "R"},
        },
    ],
}


def config(endpoint: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "service": "edge-opcua",
        "devices": [
            {
                "name": "boiler",
                "connector": "opcua",
                "profile": PROFILE,
                "protocols": {"opcua": {"Endpoint": endpoint, "Timeout": 1}},
                "autoEvents": [
                    {"interval": "100ms", "sourceName": "Level", "onChange": True},  # subscribed
                    {"interval": "200ms", "sourceName": "Counter"},  # polled, as EdgeX does
                ],
            }
        ],
        "connectors": {"opcua": {"reconnect_min": 0.2, "reconnect_max": 1.0, "watchdog_interval": 2.0}},
        "scheduler": {"failureThreshold": 1, "backoffInitial": 0.2, "backoffMax": 1.0, "readTimeout": 3},
        "uplink": {"type": "file", "path": str(tmp_path / "out.jsonl")},
    }


async def until(cond: Any, seconds: float = 20.0) -> None:
    async with asyncio.timeout(seconds):
        while not cond():  # noqa: ASYNC110 - polls a condition, not an event
            await asyncio.sleep(0.02)


def metric(rt: Runtime, name: str) -> float:
    m = re.search(rf'^edgeflow_{name}\{{device="boiler"\}} (\S+)$', rt.registry.render(), re.M)
    assert m is not None, name
    return float(m.group(1))


class Tap:
    def __init__(self, rt: Runtime) -> None:
        self.sub = rt.bus.subscribe("edgex/events/device/#", capacity=10**7, policy="drop-oldest", name="tap")
        self.seen: list[tuple[str, Any]] = []

    def values(self, resource: str) -> list[Any]:
        for _, batch in self.sub.drain():
            assert isinstance(batch, ReadingBatch)
            self.seen += [(r.resource_name, r.value) for r in batch.iter_readings()]
        return [v for n, v in self.seen if n == resource]


async def test_server_stopped_for_ten_seconds_then_back(opcua_server: Any, tmp_path: Path) -> None:
    sim = await opcua_server()
    await sim.set("Boiler.Level", 1.0)
    rt = Runtime(parse_config(config(sim.endpoint, tmp_path), environ={}))
    tap = Tap(rt)
    conn = rt.services["opcua"].connector
    async with rt:
        await until(lambda: conn.device_stats("boiler")["subscribed"] == ["Level"] and 1.0 in tap.values("Level"))
        assert metric(rt, "device_up") == 1.0

        await sim.stop()
        down_at = time.monotonic()
        await until(lambda: rt.device_states()["boiler"]["health"] == "DOWN")
        assert metric(rt, "device_up") == 0.0
        await sim.set("Boiler.Level", 2.0)  # changed while nobody could see it
        await asyncio.sleep(10 - (time.monotonic() - down_at))
        assert rt.device_states()["boiler"]["health"] == "DOWN"
        assert metric(rt, "device_offline_seconds_total") >= 9.5

        await sim.start()
        await until(lambda: rt.device_states()["boiler"]["health"] == "UP")
        await until(lambda: conn.device_stats("boiler")["subscribed"] == ["Level"])
        await until(lambda: 2.0 in tap.values("Level"))  # the recreated subscription's first value
        await sim.set("Boiler.Level", 3.0)
        await until(lambda: 3.0 in tap.values("Level"))
        counter = len(tap.values("Counter"))
        await until(lambda: len(tap.values("Counter")) > counter + 2)  # polling is back too

        stats = conn.device_stats("boiler")
        assert (stats["connects"], stats["losses"]) == (2, 1)
        assert metric(rt, "device_up") == 1.0
        assert metric(rt, "device_went_down_total") == 1.0
        offline = metric(rt, "device_offline_seconds_total")
        assert 9.5 <= offline < 30
        assert metric(rt, "device_reads_failed_total") >= 1  # the polled AutoEvent failed while down


async def test_a_silent_network_cut_is_detected_and_survived(
    opcua_server: Any, tcp_proxy: Any, tmp_path: Path
) -> None:
    sim = await opcua_server()
    proxy = await tcp_proxy(sim.port)
    await sim.set("Boiler.Level", 1.0)
    rt = Runtime(parse_config(config(f"opc.tcp://127.0.0.1:{proxy.port}/edgeflow/sim", tmp_path), environ={}))
    tap = Tap(rt)
    conn = rt.services["opcua"].connector
    async with rt:
        await until(lambda: conn.device_stats("boiler")["subscribed"] == ["Level"] and 1.0 in tap.values("Level"))
        proxy.cut()  # no FIN, no RST: only silence
        await until(lambda: rt.device_states()["boiler"]["health"] == "DOWN")
        await sim.set("Boiler.Level", 5.0)
        await asyncio.sleep(1.0)
        proxy.restore()
        await until(lambda: rt.device_states()["boiler"]["health"] == "UP")
        await until(lambda: 5.0 in tap.values("Level"))
        assert conn.device_stats("boiler")["losses"] == 1
