"""OPC-UA: monitored items against polling the same nodes. Prints what it measured.

    python benchmarks/opcua.py                          # 1,000 items changing every 100 ms, 10 s per mode
    python benchmarks/opcua.py --items 200 --seconds 5 --deadband 0.5
    python benchmarks/opcua.py --queue 10               # the server keeps every change between publishes

A simulated server (connectors.opcua.simulator) runs in a child process with ``--items`` Double nodes,
each taking a random-walk step (uniform in ±``--step``) every ``--interval`` seconds. The edge — one
device whose profile has a resource per node and a command over all of them, the OPC-UA connector, the
device service and a real bus with one subscriber — runs in this process, so the CPU it reports is the
edge's own (user + system time over wall time, share of one core). Modes, one after the other against
the same server:

subscribe            an onChange AutoEvent at ``--interval``: monitored items, no deadband
subscribe+deadband   the same with onChangeThreshold ``--deadband``: the server's absolute deadband
poll                 a plain AutoEvent at ``--interval``: read every node every interval (EdgeX's way)
poll+onChange        polled, with onChangeThreshold filtering at the edge (EdgeX 4.0's way)

Columns: readings/s handed to the bus, notifications/s received from the server (subscriptions) or
nodes read/s (polling), edge CPU, the server's CPU (child process), and missed poll intervals.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.opcua import OpcUaConnector
from connectors.opcua.simulator import OpcUaSimulator, free_tcp_port
from edgeflow.bus import Bus
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.profiles import Device, DeviceProfile
from edgeflow.service import DeviceService, SchedulerSettings

# -------------------------------------------------------------------------------------------- server


def _quiet() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # the simulator's unsecured endpoint is on purpose


def _server_process(
    port: int, items: int, interval: float, step: float, ready: Any, stop: Any, out: Any
) -> None:
    _quiet()

    async def main() -> None:
        sim = OpcUaSimulator(port=port)
        await sim.start()
        names = [f"Bench.{i}" for i in range(items)]
        await sim.add_bench_nodes(items)
        rng = random.Random(7)
        values = dict.fromkeys(names, 50.0)
        ready.set()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        w0 = time.perf_counter()
        deadline = time.perf_counter()
        waves = 0
        while not stop.is_set():
            for n in names:
                values[n] += rng.uniform(-step, step)
            await sim.set_many(values)
            waves += 1
            deadline += interval
            await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - w0
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        out.put({"changes_per_s": waves * items / wall, "cpu": cpu / wall})
        await sim.stop()

    asyncio.run(main())


def _server_cpu_probe(pid: int) -> float:
    """CPU seconds used so far by the server process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


# -------------------------------------------------------------------------------------------- edge


def _profile(items: int) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "name": "Bench",
            "deviceResources": [
                {
                    "name": f"v{i}",
                    "attributes": {"nodeId": f"ns=2;s=Bench.{i}"},
                    "properties": {"valueType": "Float64", "readWrite": "R"},
                }
                for i in range(items)
            ],
            "deviceCommands": [
                {
                    "name": "All",
                    "readWrite": "R",
                    "resourceOperations": [{"deviceResource": f"v{i}"} for i in range(items)],
                }
            ],
        }
    )


async def _run_mode(
    label: str,
    endpoint: str,
    profile: DeviceProfile,
    auto_event: dict[str, Any],
    seconds: float,
    server_pid: int,
    *,
    subscriptions: bool = True,
    queue: int | None = None,
) -> dict[str, Any]:
    bus: Bus[ReadingBatch] = Bus()
    sub = bus.subscribe("edgex/events/device/#", capacity=10**7, policy="drop-oldest", name="bench")
    received = 0
    counting = True

    async def drain() -> None:
        nonlocal received
        while True:
            items = await sub.get_many()
            if counting:
                received += sum(len(b) for _, b in items)

    conn = OpcUaConnector({"max_nodes_per_request": 1000})
    svc = DeviceService(
        "bench",
        conn,
        bus.publish,
        SeriesTable(),
        settings=SchedulerSettings(read_timeout=30, push_capacity=10**7),
    )
    svc.add_device(
        Device(
            name="bench-1",
            profile_name=profile.name,
            protocols={
                "opcua": {
                    "Endpoint": endpoint,
                    "Timeout": 10,
                    "Subscriptions": subscriptions,
                    **({"QueueSize": queue} if queue else {}),
                }
            },
            auto_events=[auto_event],
        ),
        profile,
    )
    drainer = asyncio.create_task(drain())
    await svc.start()
    try:
        await asyncio.sleep(3.0)  # connect, subscribe, settle
        counting = False
        received = 0
        st = svc.states["bench-1"]
        stats0 = conn.stats("bench-1")
        reads0, missed0 = st.reads_ok, st.missed_intervals
        counting = True
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        s0 = _server_cpu_probe(server_pid)
        w0 = time.perf_counter()
        await asyncio.sleep(seconds)
        wall = time.perf_counter() - w0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        s1 = _server_cpu_probe(server_pid)
        got = received
        stats1 = conn.stats("bench-1")
        reads, missed = st.reads_ok - reads0, st.missed_intervals - missed0
    finally:
        await svc.stop()
        drainer.cancel()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    polled = "onChange" not in auto_event or not stats1["subscribed"]
    from_server = (
        reads * len(profile.device_resources) if polled else stats1["notifications"] - stats0["notifications"]
    )
    return {
        "mode": label,
        "bus_per_s": got / wall,
        "server_per_s": from_server / wall,
        "cpu": cpu / wall,
        "server_cpu": (s1 - s0) / wall,
        "missed": missed if polled else 0,
        "subscribed": bool(stats1["subscribed"]),
    }


async def main(args: argparse.Namespace) -> None:
    port = free_tcp_port()
    ctx = multiprocessing.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=_server_process, args=(port, args.items, args.interval, args.step, ready, stop, out)
    )
    proc.start()
    try:
        if not ready.wait(120):
            raise SystemExit("the simulator did not start")
        endpoint = f"opc.tcp://127.0.0.1:{port}/edgeflow/sim"
        profile = _profile(args.items)
        interval = f"{args.interval * 1000:g}ms"
        modes = [
            ("subscribe", {"interval": interval, "sourceName": "All", "onChange": True}),
            (
                "subscribe+deadband",
                {
                    "interval": interval,
                    "sourceName": "All",
                    "onChange": True,
                    "onChangeThreshold": args.deadband,
                },
            ),
            ("poll", {"interval": interval, "sourceName": "All"}),
            (
                "poll+onChange",
                {
                    "interval": interval,
                    "sourceName": "All",
                    "onChange": True,
                    "onChangeThreshold": args.deadband,
                },
            ),
        ]
        results = []
        for label, ae in modes:
            # poll+onChange: the same AutoEvent as subscribe+deadband, with subscriptions switched off
            subscriptions = label != "poll+onChange"
            results.append(
                await _run_mode(
                    label,
                    endpoint,
                    profile,
                    ae,
                    args.seconds,
                    proc.pid or 0,
                    subscriptions=subscriptions,
                    queue=args.queue,
                )
            )
    finally:
        stop.set()
        proc.join(60)
    server = out.get(timeout=5) if not out.empty() else {"changes_per_s": float("nan")}
    print(
        f"OPC-UA: {args.items} Double nodes, each changing every {args.interval * 1000:g} ms "
        f"(random walk, step ±{args.step:g}); server made {server['changes_per_s']:,.0f} changes/s; "
        f"{args.seconds:g} s per mode; deadband/onChangeThreshold {args.deadband:g}; "
        f"QueueSize {args.queue or 'default (1 per publishing interval)'}"
    )
    print(
        f"{'mode':<20}{'bus readings/s':>16}{'from server/s':>15}{'edge CPU':>10}{'µs/value':>10}"
        f"{'server CPU':>12}{'missed':>8}"
    )
    for r in results:
        per = 1e6 * r["cpu"] / r["server_per_s"] if r["server_per_s"] else float("nan")
        print(
            f"{r['mode']:<20}{r['bus_per_s']:>16,.0f}{r['server_per_s']:>15,.0f}{r['cpu']:>10.0%}{per:>10.0f}"
            f"{r['server_cpu']:>12.0%}{r['missed']:>8}"
        )
    print(
        "edge CPU: this process (connector, service, bus), share of one core; µs/value: edge CPU per value\n"
        "received from the server; server CPU: the simulator's process; missed: poll intervals overrun"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1000, help="monitored items / nodes (default 1000)")
    parser.add_argument("--interval", type=float, default=0.1, help="change and AutoEvent interval, s (0.1)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per mode (10)")
    parser.add_argument("--step", type=float, default=1.0, help="random-walk step bound (1.0)")
    parser.add_argument("--deadband", type=float, default=0.5, help="deadband / onChangeThreshold (0.5)")
    parser.add_argument(
        "--queue", type=int, default=None, help="QueueSize of each monitored item (default: 1)"
    )
    _quiet()
    asyncio.run(main(parser.parse_args()))
