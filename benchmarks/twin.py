"""KubeEdge mapper: twin messages and DMI calls per minute for N devices x M twins changing every second,
with and without a deadband, against EdgeCore's limits. Prints a table; asserts nothing.

    python benchmarks/twin.py [--devices 100] [--twins 10] [--seconds 60] [--deadband 0.5 2.0]

Starts its own Mosquitto (the eventbus) and a counting DeviceManagerService on a Unix socket (EdgeCore's
DMI side, with its token bucket: 1 call/s, burst 100; over it a call is refused). The mapper
(:class:`edgeflow.twin.mapper.KubeEdgeMapper` with both transports, default rates: eventbus 10 msg/s
burst 20, DMI 0.8 call/s burst 50) takes its values from the bus, where every second each device
publishes one batch of its twins: a random walk (+-0.1 per second, Gaussian), so every value changes
every second; with ``--deadband`` the twins report through ``{type: deadband, absolute: D}``.

Counted after a warm-up (first reports, and every device's first state over DMI): eventbus
``twin/update`` messages as a subscriber on the broker sees them, the twins they carry and the seconds
between two reports of one device (``s/device``); ``ReportDeviceStatus``/``ReportDeviceStates`` calls
EdgeCore's side served and refused; and the age of a new value when it reached EdgeCore's side over MQTT
(from the moment the twin took it, after its rules; heartbeats of a value already there are not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import start_mosquitto, stop_mosquitto

from edgeflow.bus import Bus, event_topic
from edgeflow.connector import DeviceHealth
from edgeflow.kubeedge import KubeDevice, KubeDeviceModel, kube_run_device, kubeedge_from_dict
from edgeflow.model import ReadingBatch, SeriesTable, ValueType, batch_from_values
from edgeflow.twin.spec import KubeEdgeSpec

#: EdgeCore's limits (reference/kubeedge.md section 12)
EDGEHUB_PER_MIN = 30 * 60  # EdgeHub upstream 30 msg/s, burst 60, per node
DMI_PER_MIN = 60  # DMI server rate.Every(1s), burst 100, shared by every mapper on the node


def kube_objects(devices: int, twins: int) -> list[tuple[KubeDevice, KubeDeviceModel]]:
    model_doc = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "bench-model", "namespace": "default"},
        "spec": {
            "protocol": "virtual",
            "properties": [
                {"name": f"t{j}", "type": "FLOAT", "accessMode": "ReadOnly"} for j in range(twins)
            ],
        },
    }
    (model,) = kubeedge_from_dict(model_doc)
    assert isinstance(model, KubeDeviceModel)
    out = []
    for i in range(devices):
        doc = {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": f"dev-{i:03d}", "namespace": "default"},
            "spec": {
                "deviceModelRef": {"name": "bench-model"},
                "protocol": {"protocolName": "virtual"},
                "properties": [
                    {"name": f"t{j}", "collectCycle": 1000, "reportCycle": 60000, "reportToCloud": True}
                    for j in range(twins)
                ],
            },
        }
        (dev,) = kubeedge_from_dict(doc)
        assert isinstance(dev, KubeDevice)
        out.append((dev, model))
    return out


class Host:
    def device_health(self, device: str) -> DeviceHealth:
        return DeviceHealth.UP

    async def write_value(self, device: str, resource: str, value: Any) -> None:
        raise NotImplementedError

    async def read_values(self, device: str, resource: str) -> list[tuple[str, Any, ValueType]]:
        raise NotImplementedError

    async def add_kube_devices(self, devices: Any) -> None:
        raise NotImplementedError

    async def remove_kube_devices(self, names: Any) -> None:
        raise NotImplementedError


async def run(args: argparse.Namespace, deadband: float | None, port: int, sock_dir: Path) -> dict[str, Any]:
    import grpc

    from edgeflow.mqtt.connection import MqttConnection, connect_params
    from edgeflow.twin._bucket import TokenBucket
    from edgeflow.twin.dmi import DmiReporter, pb, pb_grpc
    from edgeflow.twin.eventbus import EventbusTwin
    from edgeflow.twin.mapper import KubeEdgeMapper

    edgecore_sock = sock_dir / f"dmi-{deadband}.sock"
    mapper_sock = sock_dir / f"mapper-{deadband}.sock"
    last_change: dict[tuple[str, str], tuple[int, str]] = {}  # (device, twin) -> (ns of change, value text)
    ages: list[float] = []
    received: dict[tuple[str, str], str] = {}
    counts = {
        "mqtt_msgs": 0,
        "mqtt_twins": 0,
        "dmi_status": 0,
        "dmi_states": 0,
        "dmi_refused": 0,
        "dmi_twins": 0,
    }

    class Manager(pb_grpc.DeviceManagerServiceServicer):  # type: ignore[misc]
        bucket = TokenBucket(1.0, 100)

        async def _limit(self, context: Any) -> None:
            if not self.bucket.try_take():
                counts["dmi_refused"] += 1
                await context.abort(grpc.StatusCode.UNKNOWN, "too many request")

        async def MapperRegister(self, request: Any, context: Any) -> Any:
            await self._limit(context)
            return pb.MapperRegisterResponse()

        async def ReportDeviceStatus(self, request: Any, context: Any) -> Any:
            await self._limit(context)
            counts["dmi_status"] += 1
            counts["dmi_twins"] += len(request.reportedDevice.twins)
            return pb.ReportDeviceStatusResponse()

        async def ReportDeviceStates(self, request: Any, context: Any) -> Any:
            await self._limit(context)
            counts["dmi_states"] += 1
            return pb.ReportDeviceStatesResponse()

    server = grpc.aio.server()
    pb_grpc.add_DeviceManagerServiceServicer_to_server(Manager(), server)
    server.add_insecure_port(f"unix://{edgecore_sock}")
    await server.start()

    import orjson

    measuring = [False]

    def on_message(topic: str, payload: bytes) -> None:
        if not topic.endswith("/twin/update"):
            return
        doc = orjson.loads(payload)
        device = topic.split("/")[4]
        if measuring[0]:
            counts["mqtt_msgs"] += 1
            counts["mqtt_twins"] += len(doc["twin"])
        now = time.time_ns()
        for name, msg in doc["twin"].items():
            value = msg["actual"]["value"]
            if received.get((device, name)) == value:
                continue  # a heartbeat of a value EdgeCore already has: not a new value's age
            received[(device, name)] = value
            changed = last_change.get((device, name))
            if measuring[0] and changed is not None and changed[1] == value:
                ages.append((now - changed[0]) / 1e9)

    sub = MqttConnection(
        connect_params(f"mqtt://127.0.0.1:{port}", client_id=f"edgecore-{deadband}"), on_message=on_message
    )
    await sub.connect()
    await sub.subscribe("$hw/events/device/+/+/twin/update", 0)

    rules = [{"type": "deadband", "absolute": deadband}] if deadband else []
    spec = KubeEdgeSpec.model_validate(
        {
            "rules": rules,
            "eventbus": {"url": f"mqtt://127.0.0.1:{port}", "client_id": f"bench-{deadband}", "qos": 0},
            "dmi": {"edgecore_socket": str(edgecore_sock), "socket": str(mapper_sock)},
            "membership": "ignore",
        }
    )
    table = SeriesTable()
    bus: Bus[ReadingBatch] = Bus()
    pairs = kube_objects(args.devices, args.twins)
    catalog = {f"default/{d.name}": kube_run_device(d, m) for d, m in pairs}
    mapper = KubeEdgeMapper(spec, Host(), bus, table, catalog=catalog)
    assert spec.eventbus is not None and spec.dmi is not None
    mapper.reporters.append(EventbusTwin(mapper, spec.eventbus))
    mapper.reporters.append(DmiReporter(mapper, spec.dmi))
    for rd in catalog.values():
        mapper.attach(rd)
    await mapper.start()

    rng = random.Random(1)
    values = {(d.name, f"t{j}"): 20.0 for d, _ in pairs for j in range(args.twins)}
    sids = {key: table.intern(key[0], key[1], "bench-model", ValueType.FLOAT64, "", key[1]) for key in values}

    async def produce(seconds: float) -> int:
        published = 0
        start = time.monotonic()
        tick = 0
        while time.monotonic() - start < seconds:
            now = time.time_ns()
            for d, _ in pairs:
                keys = [(d.name, f"t{j}") for j in range(args.twins)]
                for k in keys:
                    values[k] += rng.gauss(0.0, 0.1)
                batch = batch_from_values(
                    table, [now] * len(keys), [values[k] for k in keys], [sids[k] for k in keys]
                )
                await bus.publish(event_topic("edge", "bench-model", d.name, "all"), batch)
                published += len(keys)
            tick += 1
            await asyncio.sleep(max(0.0, start + tick - time.monotonic()))
        return published

    def note_changes() -> None:
        # what the twin would report for each series now (the value it passed through its rules)
        for dev in mapper.devices.values():
            for name, text in dev.values.items():
                prev = last_change.get((dev.name, name))
                if prev is None or prev[1] != text:
                    last_change[(dev.name, name)] = (time.time_ns(), text)

    async def watch() -> None:
        while True:
            note_changes()
            await asyncio.sleep(0.02)

    watcher = asyncio.get_running_loop().create_task(watch())
    # warm-up: first reports, registration, and every device's first state (100 states take EdgeCore's
    # DMI budget for over a minute: burst 50, then 0.8/s), then measure the steady state
    dmi = mapper.reporters[1]
    await produce(5.0)
    t_warm = time.monotonic()
    while dmi.stats().get("states_sent", 0) < len(pairs) and time.monotonic() - t_warm < 180:
        await produce(1.0)
    for k in counts:
        counts[k] = 0
    measuring[0] = True
    cpu0 = time.process_time()
    t0 = time.monotonic()
    readings = await produce(args.seconds)
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    watcher.cancel()
    await mapper.stop()
    await sub.disconnect()
    await server.stop(0.5)
    per_min = 60.0 / elapsed
    return {
        "deadband": deadband,
        "seconds": elapsed,
        "readings_per_min": readings * per_min,
        "mqtt_msgs_per_min": counts["mqtt_msgs"] * per_min,
        "mqtt_twins_per_msg": counts["mqtt_twins"] / max(1, counts["mqtt_msgs"]),
        "dmi_calls_per_min": (counts["dmi_status"] + counts["dmi_states"]) * per_min,
        "dmi_twins_per_call": counts["dmi_twins"] / max(1, counts["dmi_status"]),
        "dmi_refused": counts["dmi_refused"],
        "age_median_s": statistics.median(ages) if ages else float("nan"),
        "age_p95_s": statistics.quantiles(ages, n=20)[-1] if len(ages) > 20 else float("nan"),
        "cpu_s": cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--twins", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--deadband", type=float, nargs="*", default=[0.5, 2.0])
    args = ap.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="twinbench") as tmp:
        workdir = Path(tmp)
        proc, port = start_mosquitto(workdir)
        try:
            results = [asyncio.run(run(args, db, port, workdir)) for db in (None, *args.deadband)]
        finally:
            stop_mosquitto(proc)
    print(
        f"KubeEdge mapper: {args.devices} devices x {args.twins} twins changing every second "
        f"({args.devices * args.twins * 60} values/min in), {args.seconds:.0f} s each; "
        f"load before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f} (2 cores)"
    )
    print(
        f"EdgeCore limits: EdgeHub {EDGEHUB_PER_MIN} msg/min per node (every twin report = 1 SQLite write + "
        f"1 cloud PATCH per twin); DMI {DMI_PER_MIN} calls/min per node (burst 100)"
    )
    hdr = (
        f"{'rules':<16}{'twin msg/min':>13}{'twins/msg':>10}{'s/device':>9}{'DMI calls/min':>14}{'twins/call':>11}"
        f"{'refused':>8}{'age p50 s':>10}{'age p95 s':>10}{'CPU s':>7}"
    )
    print(hdr)
    for r in results:
        name = "none" if r["deadband"] is None else f"deadband {r['deadband']}"
        print(
            f"{name:<16}{r['mqtt_msgs_per_min']:>13.0f}{r['mqtt_twins_per_msg']:>10.1f}"
            f"{args.devices * 60 / max(r['mqtt_msgs_per_min'], 1e-9):>9.1f}"
            f"{r['dmi_calls_per_min']:>14.1f}{r['dmi_twins_per_call']:>11.1f}{r['dmi_refused']:>8d}"
            f"{r['age_median_s']:>10.1f}{r['age_p95_s']:>10.1f}{r['cpu_s']:>7.1f}"
        )


if __name__ == "__main__":
    main()
