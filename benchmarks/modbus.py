"""Modbus connector benchmarks against local pymodbus servers. Prints what it measured.

    python benchmarks/modbus.py                 # all three
    python benchmarks/modbus.py poll --seconds 20 --devices 100 --registers 50
    python benchmarks/modbus.py throughput --seconds 3
    python benchmarks/modbus.py edgex

poll        N devices x M holding registers, each device read every second on an absolute schedule
            (deadline += 1 s) for S seconds; the servers run in a child process, so the CPU measured is
            the polling process's own. Reports missed intervals (a read that had not finished by the next
            deadline), errors, read latency and CPU share of one core.
throughput  readings/s from one connection, one device of 100 Int16 resources, coalesced vs one
            request per resource (EdgeX v3.1's way).
edgex       requests per read of the EdgeX test profile (device-modbus-go) and of each of its commands,
            coalesced vs one request per resource.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from connectors.modbus import ModbusConnector
from edgeflow.errors import ConnectorError
from edgeflow.profiles import Device, DeviceProfile

_ROOT = Path(__file__).resolve().parents[1]
SHARED = next(
    (c for c in (_ROOT.parent / "shared" / "data", _ROOT.parent.parent / "shared" / "data") if c.is_dir()),
    _ROOT.parent / "shared" / "data",
)


# -------------------------------------------------------------------------------------------- servers


def _sim_devices(units: list[int], registers: int) -> list[Any]:
    from pymodbus.simulator import DataType, SimData, SimDevice

    def regs() -> list[Any]:
        return [SimData(0, count=registers, values=1234, datatype=DataType.REGISTERS)]

    def bits() -> list[Any]:
        return [SimData(0, count=64, values=False, datatype=DataType.BITS)]

    return [SimDevice(u, simdata=(bits(), bits(), regs(), regs())) for u in units]


async def _serve(
    ports: list[int], units: list[int], registers: int, counts: dict[int, int] | None = None
) -> list[Any]:
    from pymodbus.server import ModbusTcpServer

    def trace(sending: bool, pdu: Any) -> Any:
        if counts is not None and not sending:
            counts[pdu.function_code] = counts.get(pdu.function_code, 0) + 1
        return pdu

    servers = []
    for port in ports:
        server = ModbusTcpServer(_sim_devices(units, registers), address=("127.0.0.1", port), trace_pdu=trace)
        await server.serve_forever(background=True)
        servers.append(server)
    return servers


def _server_process(ports: list[int], units: list[int], registers: int, ready: Any, stop: Any) -> None:
    async def main() -> None:
        servers = await _serve(ports, units, registers)
        ready.set()
        await asyncio.to_thread(stop.wait)
        for s in servers:
            await s.shutdown()

    asyncio.run(main())


def _free_ports(n: int) -> list[int]:
    import socket

    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _profile(n: int, name: str = "bench") -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "name": name,
            "deviceResources": [
                {
                    "name": f"r{i}",
                    "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": i},
                    "properties": {"valueType": "Int16", "readWrite": "R"},
                }
                for i in range(n)
            ],
        }
    )


def _device(name: str, port: int, unit: int, profile: str) -> Device:
    return Device(
        name=name,
        profile_name=profile,
        protocols={"modbus-tcp": {"Address": "127.0.0.1", "Port": port, "UnitID": unit, "Timeout": 2}},
    )


# -------------------------------------------------------------------------------------------- poll


async def _poll(args: argparse.Namespace) -> None:
    per_server = args.devices_per_connection
    n_servers = -(-args.devices // per_server)
    ports = _free_ports(n_servers)
    units = list(range(1, per_server + 1))
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_server_process, args=(ports, units, args.registers, ready, stop))
    proc.start()
    try:
        if not ready.wait(30):
            raise SystemExit("servers did not start")
        profile = _profile(args.registers)
        connector = ModbusConnector({"coalesce": not args.no_coalesce})
        names = []
        for i in range(args.devices):
            name = f"dev{i:03d}"
            connector.add_device(
                _device(name, ports[i // per_server], units[i % per_server], profile.name), profile
            )
            names.append(name)
        resources = profile.device_resources
        missed = errors = reads = readings = 0
        latencies: list[float] = []
        loop = asyncio.get_running_loop()
        async with connector:
            await asyncio.gather(*(connector.read(n, resources) for n in names))  # connect everything first
            start = loop.time() + 0.5
            end = start + args.seconds

            async def device_loop(name: str, offset: float) -> None:
                nonlocal missed, errors, reads, readings
                deadline = start + offset
                while deadline < end:
                    await asyncio.sleep(max(0.0, deadline - loop.time()))
                    t0 = loop.time()
                    try:
                        values = await connector.read(name, resources)
                        readings += len(values)
                    except ConnectorError:
                        errors += 1
                    t1 = loop.time()
                    reads += 1
                    latencies.append(t1 - t0)
                    deadline += args.interval
                    if t1 > deadline:
                        missed += 1
                        deadline = t1 + (args.interval - (t1 - deadline) % args.interval)

            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            w0 = time.perf_counter()
            # devices spread their phase over the interval, as AutoEvents started at different times do
            await asyncio.gather(
                *(device_loop(n, args.interval * i / len(names)) for i, n in enumerate(names))
            )
            wall = time.perf_counter() - w0
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        latencies.sort()
        print(
            f"poll: {args.devices} devices x {args.registers} registers every {args.interval:g} s for {args.seconds:g} s, "
            f"{n_servers} connections of {per_server} devices, coalesce={not args.no_coalesce}"
        )
        print(
            f"  reads {reads}, readings {readings} ({readings / wall:.0f}/s), errors {errors}, missed intervals {missed}"
        )
        print(
            f"  read latency ms: median {1000 * statistics.median(latencies):.2f}, "
            f"p99 {1000 * latencies[int(0.99 * (len(latencies) - 1))]:.2f}, max {1000 * latencies[-1]:.2f}"
        )
        print(
            f"  CPU of the polling process: {cpu:.2f} s in {wall:.1f} s wall = {100 * cpu / wall:.1f} % of one core"
        )
    finally:
        stop.set()
        proc.join(10)


# -------------------------------------------------------------------------------------------- throughput


async def _throughput(args: argparse.Namespace) -> None:
    ports = _free_ports(1)
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_server_process, args=(ports, [1], 200, ready, stop))
    proc.start()
    try:
        if not ready.wait(30):
            raise SystemExit("server did not start")
        profile = _profile(100)
        print(
            f"throughput: one connection, one device, {len(profile.device_resources)} Int16 resources per read"
        )
        for coalesce in (True, False):
            connector = ModbusConnector({"coalesce": coalesce})
            connector.add_device(_device("d", ports[0], 1, profile.name), profile)
            async with connector:
                await connector.read("d", profile.device_resources)
                n = 0
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < args.seconds:
                    n += len(await connector.read("d", profile.device_resources))
                dt = time.perf_counter() - t0
            label = "coalesced" if coalesce else "one request per resource"
            print(f"  {label:>26}: {n / dt:10.0f} readings/s")
    finally:
        stop.set()
        proc.join(10)


# -------------------------------------------------------------------------------------------- edgex


async def _edgex(_: argparse.Namespace) -> None:
    path = SHARED / "edgex" / "modbus.test.device.profile.yml"
    if not path.exists():
        print(f"edgex: {path} is absent")
        return
    profile = DeviceProfile.model_validate(yaml.safe_load(path.read_text()))
    port = _free_ports(1)[0]
    counts: dict[int, int] = {}
    servers = await _serve([port], [1], 100, counts)
    try:
        sources: list[tuple[str, list[Any]]] = [("all resources", list(profile.device_resources))]
        for command in profile.device_commands:
            sources.append(
                (
                    f"command {command.name}",
                    [profile.resource(op.device_resource) for op in command.resource_operations],
                )
            )
        print(f"edgex: {profile.name}, requests per read (one request per resource is EdgeX v3.1)")
        for label, resources in sources:
            used = []
            for coalesce in (True, False):
                connector = ModbusConnector({"coalesce": coalesce})
                connector.add_device(_device("d", port, 1, profile.name), profile)
                async with connector:
                    counts.clear()
                    await connector.read("d", resources)
                    used.append(sum(counts.values()))
            print(
                f"  {label:>22}: {len(resources)} resources, {used[0]} requests coalesced vs {used[1]} ({used[1] - used[0]} saved)"
            )
    finally:
        for s in servers:
            await s.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "what", nargs="*", default=["edgex", "throughput", "poll"], choices=["edgex", "throughput", "poll"]
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--devices-per-connection", type=int, default=10)
    parser.add_argument("--registers", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--no-coalesce", action="store_true")
    args = parser.parse_args()
    for what in args.what:
        if what == "throughput":
            args_t = argparse.Namespace(**{**vars(args), "seconds": min(args.seconds, 3.0)})
            asyncio.run(_throughput(args_t))
        else:
            asyncio.run({"edgex": _edgex, "poll": _poll}[what](args))


if __name__ == "__main__":
    main()
