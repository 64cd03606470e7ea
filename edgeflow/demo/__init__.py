"""The demo (``edgeflow demo``, :mod:`edgeflow.cli.demo`): the whole pipeline on one machine, on embedded defaults.

It starts, all on loopback and all its own:

* a simulated Modbus PLC (a real pymodbus server whose registers follow a little process model), a
  simulated OPC-UA server (a real asyncua server) with a tank whose level is subscribed to with a
  server-side deadband, and a simulated boiler (the ``virtual`` connector);
* an MQTT broker: Mosquitto when it is installed, else an embedded one;
* the edge: Modbus, OPC-UA and virtual device services → bus → rules (swing filter, deadband, on-change) →
  compact encoding → durable outbox → MQTT uplink;
* the cloud end: a receiver that de-duplicates, checks sequence numbers and rebuilds every series.

It runs for a while, then prints what was read, what was shipped, the bytes saved against EdgeX JSON
(one EdgeX event per read, as EdgeX would publish it) and the error the receiver sees against every
reading the devices gave, per series, next to the bound its rule promised. Everything it started is
stopped and its files removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeflow.cloud import Receiver
from edgeflow.codec import make_encoder, reconstruct
from edgeflow.config import parse_config
from edgeflow.connector import load_simulator
from edgeflow.demo.localbroker import Kind, LocalBroker
from edgeflow.model import ReadingBatch
from edgeflow.runtime import Runtime

__all__ = ["DemoReport", "SeriesReport", "format_report", "run_demo"]

log = logging.getLogger(__name__)

#: Bounds the demo's rules promise, per resource: (rule, bound in the resource's units).
BOUNDS: dict[str, tuple[str, float]] = {
    "Temperature": ("swing", 0.05),
    "Pressure": ("deadband", 0.02),
    "Pump": ("on_change", 0.0),
    "Status": ("on_change", 0.0),
    "Level": ("swing", 0.01),
}

PLC_PROFILE: dict[str, Any] = {
    "name": "Demo-PLC",
    "manufacturer": "edgeflow demo",
    "description": "A simulated PLC: a heated tank's temperature (Float32), line pressure (Int16, scaled) and pump.",
    "deviceResources": [
        {
            "name": "Temperature",
            "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 0},
            "properties": {"valueType": "Float32", "readWrite": "R", "units": "degC"},
        },
        {
            "name": "Pressure",
            "attributes": {"primaryTable": "INPUT_REGISTERS", "startingAddress": 2, "rawType": "Int16"},
            "properties": {"valueType": "Float32", "readWrite": "R", "scale": 0.01, "units": "bar"},
        },
        {
            "name": "Pump",
            "attributes": {"primaryTable": "COILS", "startingAddress": 0},
            "properties": {"valueType": "Bool", "readWrite": "RW"},
        },
    ],
    "deviceCommands": [
        {
            "name": "Process",
            "readWrite": "R",
            "resourceOperations": [
                {"deviceResource": "Temperature"},
                {"deviceResource": "Pressure"},
                {"deviceResource": "Pump"},
            ],
        }
    ],
}

TANK_PROFILE: dict[str, Any] = {
    "name": "Demo-Tank",
    "description": "A tank on an OPC-UA server (the simulator's Plant/Boiler/Level node).",
    "deviceResources": [
        {
            "name": "Level",
            "attributes": {"nodeId": "ns=2;s=Boiler.Level"},
            "properties": {"valueType": "Float64", "readWrite": "R", "units": "m"},
        }
    ],
}

BOILER_PROFILE: dict[str, Any] = {
    "name": "Demo-Boiler",
    "deviceResources": [
        {
            "name": "Temperature",
            "attributes": {"generator": "walk", "min": 60, "max": 90, "start": 75, "step": 0.02},
            "properties": {"valueType": "Float64", "readWrite": "R", "units": "degC"},
        },
        {
            "name": "Status",
            "attributes": {"generator": "random", "min": 0, "max": 2},
            "properties": {"valueType": "Uint8", "readWrite": "R"},
        },
    ],
}


@dataclass
class SeriesReport:
    device: str
    resource: str
    rule: str
    bound: float
    read: int
    shipped: int
    max_error: float
    unreconstructed: int


@dataclass
class DemoReport:
    seconds: float
    broker: str
    readings_read: int
    readings_shipped: int
    bytes_edgex_json: int
    bytes_shipped: int
    receiver: dict[str, Any]
    uplink: dict[str, int | float]
    series: list[SeriesReport] = field(default_factory=list)

    @property
    def savings(self) -> float:
        return 1.0 - self.bytes_shipped / self.bytes_edgex_json if self.bytes_edgex_json else 0.0

    @property
    def within_bounds(self) -> bool:
        return all(s.max_error <= s.bound + 1e-9 and s.unreconstructed == 0 for s in self.series)


class _Plant:
    """The PLC's process: a tank heated towards a set point that changes, with the pump cycling."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.t = 0.0
        self.temp = 20.0
        self._rng = np.random.default_rng(7)

    async def step(self, dt: float) -> None:
        self.t += dt
        pump = int(self.t // 3) % 2 == 0
        setpoint = 60.0 + 15.0 * math.sin(self.t / 5.0)
        self.temp += (setpoint - self.temp) * 0.08 + float(self._rng.normal(0, 0.01))
        pressure = 1.5 + (0.6 if pump else 0.0) + float(self._rng.normal(0, 0.004))
        hi, lo = struct.unpack(">HH", struct.pack(">f", self.temp))
        await self.sim.set("hr", 0, [hi, lo])
        await self.sim.set("ir", 2, [round(pressure * 100)])
        await self.sim.set("co", 0, [pump])

    async def run(self, period: float) -> None:
        while True:
            await self.step(period)
            await asyncio.sleep(period)


def _config(broker: LocalBroker, plc_port: int, opcua_endpoint: str, workdir: Path) -> dict[str, Any]:
    return {
        "service": "demo-edge",
        "devices": [
            {
                "name": "plc-1",
                "connector": "modbus",
                "profile": PLC_PROFILE,
                "protocols": {
                    "modbus-tcp": {"Address": "127.0.0.1", "Port": plc_port, "UnitID": 1, "Timeout": 2}
                },
                "autoEvents": [{"interval": "50ms", "sourceName": "Process"}],
            },
            {
                "name": "tank-1",
                "connector": "opcua",
                "profile": TANK_PROFILE,
                "protocols": {"opcua": {"Endpoint": opcua_endpoint, "Timeout": 2}},
                # subscribed: the server sends a change only when it moves more than 1 mm
                "autoEvents": [
                    {"interval": "50ms", "sourceName": "Level", "onChange": True, "onChangeThreshold": 0.001}
                ],
            },
            {
                "name": "boiler-1",
                "connector": "virtual",
                "profile": BOILER_PROFILE,
                "protocols": {"virtual": {"seed": 3}},
                "autoEvents": [
                    {"interval": "50ms", "sourceName": "Temperature"},
                    {"interval": "200ms", "sourceName": "Status"},
                ],
            },
        ],
        "pipelines": [
            {"name": r.lower(), "match": {"resource": r}, "rules": [_rule(rule, bound)]}
            for r, (rule, bound) in BOUNDS.items()
        ],
        "uplink": {
            "type": "mqtt",
            "url": broker.url,
            "protocol": broker.protocol,
            "encoding": "compact",
            "batching": {"max_delay": 1.0},
            "outbox": {"path": str(workdir / "outbox.sqlite")},
        },
    }


def _rule(rule: str, bound: float) -> dict[str, Any]:
    if rule == "swing":
        return {"type": "swing", "max_error": bound}
    if rule == "deadband":
        return {"type": "deadband", "absolute": bound}
    return {"type": "on_change"}


async def run_demo(
    seconds: float = 8.0,
    *,
    broker: Kind = "auto",
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run the demo for ``seconds`` and return what it measured."""
    simulator = load_simulator("modbus")  # through the registry: edgeflow never imports connectors
    opcua_simulator = load_simulator("opcua")
    say = progress or (lambda _msg: None)
    with contextlib.ExitStack() as stack:
        work = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgeflow-demo-")))
        async with LocalBroker(broker) as mqtt:
            say(f"broker: {mqtt.name} on {mqtt.url}")
            sim = simulator(registers=((0, 16),), bits=16)
            await sim.start()
            plant = _Plant(sim)
            await plant.step(0.0)
            plant_task = asyncio.create_task(plant.run(0.05), name="demo-plant")
            server = opcua_simulator()
            await server.start()
            server_task = asyncio.create_task(server.run(0.05), name="demo-opcua")
            say(
                f"simulated PLC: Modbus TCP on 127.0.0.1:{sim.port}; simulated OPC-UA server: {server.endpoint}; "
                "simulated boiler: virtual connector"
            )
            receiver = Receiver(mqtt.url, ["edgeflow/#"], keep=True, protocol=mqtt.protocol)
            try:
                await receiver.start()
                await receiver.wait_subscribed()
                rt = Runtime(parse_config(_config(mqtt, sim.port, server.endpoint, work), environ={}))
                tap = rt.bus.subscribe(
                    "edgex/events/device/#", capacity=10**8, policy="drop-oldest", name="demo-tap"
                )
                say(f"edge running for {seconds:g} s ...")
                await rt.run(duration=seconds)
                uplink = rt.uplink.stats()
                committed = int(uplink.get("readings_committed", 0))
                async with asyncio.timeout(15):
                    while receiver.counts["readings"] < committed:  # noqa: ASYNC110 - counts, not an event
                        await asyncio.sleep(0.05)
            finally:
                for task in (plant_task, server_task):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await receiver.stop()
                await sim.stop()
                await server.stop()
            raw = ReadingBatch.concat(rt.table, [b for _, b in tap.drain()])
            return _measure(seconds, mqtt.name, raw, receiver, uplink)


def _measure(
    seconds: float, broker: str, raw: ReadingBatch, receiver: Receiver, uplink: dict[str, int | float]
) -> DemoReport:
    baseline = sum(len(m.payload) for m in make_encoder("edgex-json").encode(raw))
    received = receiver.series()
    report = DemoReport(
        seconds=seconds,
        broker=broker,
        readings_read=len(raw),
        readings_shipped=int(uplink.get("acked_readings", 0)),
        bytes_edgex_json=baseline,
        bytes_shipped=int(uplink.get("bytes_shipped", 0)),
        receiver=receiver.stats(),
        uplink=uplink,
    )
    for sid in np.unique(raw.series):
        info = raw.table.info(int(sid))
        mask = raw.series == sid
        origins, values = raw.origins[mask], raw.values[mask]
        rule, bound = BOUNDS.get(info.resource, ("none", 0.0))
        got = received.get((info.device, info.resource))
        if got is None:
            report.series.append(
                SeriesReport(info.device, info.resource, rule, bound, len(origins), 0, math.nan, len(origins))
            )
            continue
        rec = reconstruct(got.origins, got.values, origins, got.interpolation)
        missing = int(np.isnan(rec).sum())
        err = np.abs(rec - values)
        max_err = float(np.nanmax(err)) if missing < len(err) else math.nan
        report.series.append(
            SeriesReport(
                info.device, info.resource, rule, bound, len(origins), len(got.origins), max_err, missing
            )
        )
    return report


def format_report(r: DemoReport) -> str:
    lines = [
        "",
        f"{'series':<24}{'rule':<11}{'read':>7}{'shipped':>9}{'max error':>12}{'bound':>8}",
    ]
    for s in r.series:
        lines.append(
            f"{s.device + '/' + s.resource:<24}{s.rule:<11}{s.read:>7}{s.shipped:>9}{s.max_error:>12.4g}{s.bound:>8.3g}"
            + (f"  ({s.unreconstructed} not rebuilt)" if s.unreconstructed else "")
        )
    rx = r.receiver
    lines += [
        "",
        f"readings read {r.readings_read:,}, shipped {r.readings_shipped:,} "
        f"({r.readings_shipped / max(r.readings_read, 1):.1%})",
        f"bytes: EdgeX JSON would send {r.bytes_edgex_json:,} B; edgeflow shipped {r.bytes_shipped:,} B "
        f"(compact + zstd) = {r.savings:.2%} saved",
        f"receiver: {rx['batches']} batches, {rx['duplicates']} duplicates dropped, {rx['missing']} missing "
        f"by sequence number, {rx['malformed'] + rx['foreign']} malformed or foreign",
        "every series within its bound" if r.within_bounds else "SOME SERIES EXCEED THEIR BOUND",
    ]
    return "\n".join(lines)
