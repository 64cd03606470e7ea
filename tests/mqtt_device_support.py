"""A device service over the MQTT connector with a bus subscription that collects what arrives; shared
by the MQTT device tests. The broker is the ``mosquitto`` fixture of conftest."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.mqtt import MqttConnector
from edgeflow.bus import Bus
from edgeflow.model import Reading, ReadingBatch, SeriesTable
from edgeflow.profiles import Device, DeviceProfile, load_profile
from edgeflow.service import DeviceService, SchedulerSettings

DEVICE = "MQTT-test-device"


def edgex_profile(shared_data: Path) -> DeviceProfile:
    return load_profile(shared_data / "edgex" / "mqtt.test.device.profile.yml")


class Rig:
    """Connector + service + bus; ``readings`` and ``topics`` collect what reaches the bus."""

    def __init__(
        self,
        options: dict[str, Any],
        devices: list[tuple[Device, DeviceProfile]],
        settings: SchedulerSettings | None = None,
    ) -> None:
        self.conn = MqttConnector(options)
        self.bus: Bus[ReadingBatch] = Bus()
        self.sub = self.bus.subscribe("edgex/events/device/#", capacity=1_000_000, policy="block", name="t")
        self.svc = DeviceService("svc", self.conn, self.bus.publish, SeriesTable(), settings=settings)
        for dev, profile in devices:
            self.svc.add_device(dev, profile)
        self.readings: list[Reading] = []
        self.topics: list[str] = []
        self.batches: list[ReadingBatch] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Rig:
        await self.svc.start()
        await self.conn.wait_connected()
        self._task = asyncio.get_running_loop().create_task(self._collect())
        return self

    async def _collect(self) -> None:
        async for topic, batch in self.sub:
            self.topics.append(topic)
            self.batches.append(batch)
            self.readings.extend(batch.iter_readings())

    async def stop(self) -> None:
        await self.svc.stop()
        await asyncio.sleep(0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for topic, batch in self.sub.drain():
            self.topics.append(topic)
            self.batches.append(batch)
            self.readings.extend(batch.iter_readings())

    def values(self, device: str | None = None) -> list[tuple[str, Any]]:
        return [
            (r.resource_name, r.value) for r in self.readings if device is None or r.device_name == device
        ]


async def wait_for(cond: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.02)
