"""MQTT device connector: messages/s onto the bus from one broker connection, and the CPU it costs,
beside a plain paho subscriber on the same broker. Prints a table; asserts nothing.

    python benchmarks/mqtt_devices.py [--devices 1000] [--messages 100000] [--qos 0 1] [--repeat 3]

Starts its own Mosquitto on a free loopback port. For each QoS and each subscriber:

1. the subscriber's persistent session is made (connect, subscribe ``incoming/data/#``, leave);
2. ``--devices`` devices publish ``--messages`` small JSON payloads in all, round-robin, as EdgeX
   device-mqtt firmware does: ``incoming/data/<device>/allValues`` with
   ``{"randfloat32": .., "randfloat64": .., "message": ".."}`` (the EdgeX MQTT test profile's
   ``allValues`` command: three readings per message). The broker queues them for the session;
3. the subscriber connects again in a fresh process and drains the queue. Timed from its connect
   to the last message on the bus; CPU is the subscriber process's own (user + system).

So the publishers' speed does not limit what is measured, and both subscribers see the same broker,
the same queue and the same messages:

* ``edgeflow``: ``MqttConnector`` + ``DeviceService`` + ``Bus`` with one subscription that counts the
  readings it gets (the whole path to the bus: routing, JSON, type checks, transforms, batching);
* ``paho``: ``paho.mqtt.client`` with ``loop_forever`` and an ``on_message`` that counts;
* ``bridge``: edgeflow's paho bridge alone (``edgeflow.mqtt.connection.MqttConnection`` on the event
  loop, an ``on_message`` that counts), so the table shows what the bridge costs and what the rest adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import start_mosquitto, stop_mosquitto  # noqa: E402

_SHARED = next(
    (c for c in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data") if c.is_dir()),
    ROOT.parent / "shared" / "data",
)
PROFILE = _SHARED / "edgex" / "mqtt.test.device.profile.yml"
TOPIC = "incoming/data/#"


def device_name(i: int) -> str:
    return f"sensor-{i:04d}"


# ------------------------------------------------------------------------------------------ broker


def paho_client(client_id: str, protocol: str, *, persistent: bool = False) -> Any:
    """A paho client; ``persistent``: a session the broker keeps (clean session off, 1 h expiry)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    if protocol == "5":
        return paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    return paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, clean_session=not persistent
    )


def paho_connect(c: Any, port: int, protocol: str, *, persistent: bool = False) -> None:
    if protocol != "5":
        c.connect("127.0.0.1", port)
        return
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600 if persistent else 0
    c.connect("127.0.0.1", port, clean_start=not persistent, properties=props)


def make_session(port: int, client_id: str, qos: int, protocol: str) -> None:
    import threading

    subscribed = threading.Event()
    c = paho_client(client_id, protocol, persistent=True)
    c.on_subscribe = lambda *_a: subscribed.set()
    paho_connect(c, port, protocol, persistent=True)
    c.loop_start()
    c.subscribe(TOPIC, qos)
    if not subscribed.wait(10):
        sys.exit("no SUBACK")
    c.disconnect()
    c.loop_stop()


def publish_all(port: int, devices: int, messages: int, qos: int) -> float:
    """Publish from one paho client; returns seconds taken (QoS 1: all acknowledged)."""
    rng = random.Random(7)
    c = paho_client("bench-publisher", "3.1.1")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    topics = [f"incoming/data/{device_name(i)}/allValues" for i in range(devices)]
    t0 = time.perf_counter()
    last = None
    for n in range(messages):
        payload = json.dumps(
            {
                "randfloat32": round(rng.uniform(0, 100), 2),
                "randfloat64": rng.uniform(0, 100),
                "message": f"m{n % 100}",
            }
        ).encode()
        last = c.publish(topics[n % devices], payload, qos=qos)
        if qos and n % 1000 == 999:
            last.wait_for_publish(30)
    if last is not None:
        last.wait_for_publish(60)
    elapsed = time.perf_counter() - t0
    time.sleep(0.5)  # let QoS 0 messages leave the socket
    c.disconnect()
    c.loop_stop()
    return elapsed


# ------------------------------------------------------------------------------------ subscribers


def run_paho(port: int, client_id: str, qos: int, expect: int, protocol: str) -> dict[str, Any]:
    state = {"n": 0, "first": 0.0, "cpu0": 0.0, "last": 0.0, "cpu1": 0.0}

    def on_message(c: Any, _u: Any, msg: Any) -> None:
        state["n"] += 1
        if state["n"] >= expect:
            state["last"], state["cpu1"] = time.perf_counter(), time.process_time()
            c.disconnect()

    c = paho_client(client_id, protocol, persistent=True)
    c.on_message = on_message
    state["first"], state["cpu0"] = time.perf_counter(), time.process_time()
    paho_connect(c, port, protocol, persistent=True)
    c.loop_forever()
    return {
        "messages": state["n"],
        "readings": 0,
        "seconds": state["last"] - state["first"],
        "cpu": state["cpu1"] - state["cpu0"],
    }


def run_bridge(port: int, client_id: str, qos: int, expect: int, protocol: str) -> dict[str, Any]:
    """edgeflow's paho bridge alone (``MqttConnection``, an on_message that counts): what the bridge
    costs beside paho's own loop, without routing, checks or the bus."""
    from edgeflow.mqtt.connection import MqttConnection, connect_params

    async def main() -> dict[str, Any]:
        n = 0
        done = asyncio.Event()

        def on_message(_topic: str, _payload: bytes) -> None:
            nonlocal n
            n += 1
            if n >= expect:
                done.set()

        t0, c0 = time.perf_counter(), time.process_time()
        params = connect_params(
            f"mqtt://127.0.0.1:{port}",
            client_id=client_id,
            protocol=protocol,  # type: ignore[arg-type]
            clean_start=False,
            session_expiry=3600,
        )
        conn = MqttConnection(params, on_message=on_message)
        await conn.connect()
        await done.wait()
        res = {
            "messages": n,
            "readings": 0,
            "seconds": time.perf_counter() - t0,
            "cpu": time.process_time() - c0,
        }
        await conn.disconnect()
        return res

    return asyncio.run(main())


def run_edgeflow(
    port: int, client_id: str, qos: int, expect: int, devices: int, protocol: str
) -> dict[str, Any]:
    from connectors.mqtt import MqttConnector
    from edgeflow.bus import Bus
    from edgeflow.model import ReadingBatch, SeriesTable
    from edgeflow.profiles import Device, load_profile
    from edgeflow.service import DeviceService

    async def main() -> dict[str, Any]:
        bus: Bus[ReadingBatch] = Bus()
        sub = bus.subscribe("edgex/events/device/#", capacity=1_000_000, policy="block", name="count")
        conn = MqttConnector(
            {
                "url": f"mqtt://127.0.0.1:{port}",
                "client_id": client_id,
                "protocol": protocol,
                "clean_start": False,
                "incoming": {"qos": qos},
            }
        )
        svc = DeviceService("bench", conn, bus.publish, SeriesTable())
        profile = load_profile(PROFILE)
        for i in range(devices):
            svc.add_device(Device(name=device_name(i), profile_name=profile.name), profile)
        readings = 0
        batches = 0
        first, cpu0 = time.perf_counter(), time.process_time()
        await svc.start()
        while conn.counts["accepted"] < expect:
            items = await sub.get_many()
            batches += len(items)
            readings += sum(len(b) for _, b in items)
        while sub.stats().queued_readings:
            items = await sub.get_many()
            batches += len(items)
            readings += sum(len(b) for _, b in items)
        last, cpu1 = time.perf_counter(), time.process_time()
        stats = conn.stats()
        await svc.stop()
        return {
            "messages": stats["accepted"],
            "rejected": stats["rejected_total"],
            "readings": readings,
            "bus_batches": batches,
            "seconds": last - first,
            "cpu": cpu1 - cpu0,
        }

    return asyncio.run(main())


# --------------------------------------------------------------------------------------------- main


def one_run(
    port: int, kind: str, qos: int, protocol: str, devices: int, messages: int, tag: str
) -> dict[str, Any]:
    client_id = f"bench-{kind}-{tag}"
    make_session(port, client_id, qos, protocol)
    publish_s = publish_all(port, devices, messages, qos)
    cmd = [
        sys.executable,
        __file__,
        "--role",
        kind,
        "--port",
        str(port),
        "--client-id",
        client_id,
        "--qos",
        str(qos),
        "--messages",
        str(messages),
        "--devices",
        str(devices),
        "--protocol",
        protocol,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if out.returncode:
        sys.exit(f"{kind} subscriber failed:\n{out.stderr}")
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    res["publish_s"] = publish_s
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--qos", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--protocol", nargs="+", default=["3.1.1", "5"], choices=["3.1.1", "5"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--role", choices=["paho", "bridge", "edgeflow"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--client-id", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.role == "paho":
        print(json.dumps(run_paho(args.port, args.client_id, args.qos[0], args.messages, args.protocol[0])))
        return
    if args.role == "bridge":
        print(json.dumps(run_bridge(args.port, args.client_id, args.qos[0], args.messages, args.protocol[0])))
        return
    if args.role == "edgeflow":
        res = run_edgeflow(
            args.port, args.client_id, args.qos[0], args.messages, args.devices, args.protocol[0]
        )
        print(json.dumps(res))
        return

    if not PROFILE.is_file():
        sys.exit(f"{PROFILE} is absent (the shared data folder)")
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as d:
        proc, port = start_mosquitto(
            Path(d),
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "queue_qos0_messages true",
            "max_inflight_messages 100",
        )
        try:
            runs: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
            for r in range(args.repeat):  # interleaved, so a busy moment of the machine hits both
                for protocol in args.protocol:
                    for qos in args.qos:
                        for kind in ("paho", "bridge", "edgeflow"):
                            res = one_run(
                                port,
                                kind,
                                qos,
                                protocol,
                                args.devices,
                                args.messages,
                                f"{protocol}-{qos}-{r}",
                            )
                            runs.setdefault((protocol, qos, kind), []).append(res)
        finally:
            stop_mosquitto(proc)

    print(
        f"{args.devices} devices, {args.messages:,} messages per run (3 readings each), "
        f"median of {args.repeat} runs; os.cpu_count()={os.cpu_count()}"
    )
    print()
    head = (
        f"{'MQTT':<5} {'qos':>3}  {'subscriber':<10} {'messages/s':>11} {'readings/s':>11} "
        f"{'CPU µs/msg':>11} {'CPU %':>6} {'msgs/batch':>10}"
    )
    print(head)
    print("-" * len(head))
    med: dict[tuple[str, int, str], dict[str, float]] = {}
    for (protocol, qos, kind), rs in runs.items():
        rate = statistics.median(r["messages"] / r["seconds"] for r in rs)
        cpu_us = statistics.median(r["cpu"] / r["messages"] * 1e6 for r in rs)
        cpu_pct = statistics.median(100 * r["cpu"] / r["seconds"] for r in rs)
        med[(protocol, qos, kind)] = {"rate": rate, "cpu_us": cpu_us}
        bad = [r for r in rs if r["messages"] != args.messages or r.get("rejected")]
        note = "  (incomplete or rejected runs!)" if bad else ""
        if kind == "edgeflow":
            readings = statistics.median(r["readings"] / r["seconds"] for r in rs)
            per_batch = statistics.median(r["messages"] / max(1, r["bus_batches"]) for r in rs)
            rd, pb = f"{readings:>11,.0f}", f"{per_batch:>10.1f}"
        else:
            rd, pb = f"{'-':>11}", f"{'-':>10}"
        print(
            f"{protocol:<5} {qos:>3}  {kind:<10} {rate:>11,.0f} {rd} {cpu_us:>11.1f} {cpu_pct:>6.0f} {pb}{note}"
        )
    print()
    for protocol in args.protocol:
        for qos in args.qos:
            p, br, e = (med[(protocol, qos, k)] for k in ("paho", "bridge", "edgeflow"))
            print(
                f"MQTT {protocol} QoS {qos}: edgeflow {e['rate'] / p['rate']:.2f}x plain paho's message rate, "
                f"{e['cpu_us'] / p['cpu_us']:.2f}x its CPU per message (+{e['cpu_us'] - p['cpu_us']:.0f} µs); "
                f"the bridge alone {br['cpu_us'] / p['cpu_us']:.2f}x"
            )


if __name__ == "__main__":
    main()
