"""A pymodbus TCP server that replays a recorded series into Int16 holding registers, counting requests.

    python benchmarks/peers/replay_server.py --csv NAB.csv --port P --devices 20 --registers 10 \
        --step 1.0 --stats stats.json --ready ready.json

Unit ids 1..devices, holding registers 0..registers-1. Register r of unit u holds
``round(scale * series[(k + offset(u, r)) % n])`` where ``k = floor((now - t0) / step)``: the series
advances one sample per ``step`` seconds of wall clock, each register at its own place in it
(``offset = 37 * ((u - 1) * registers + r)``). The value a client reads is computed at the moment of the
request, so what every peer read can be recomputed afterwards from ``t0`` (see :func:`source_value`).

Every read request is counted per unit with its wall-clock time and register count. On SIGTERM or
SIGINT the counts are written to ``--stats`` as JSON and the server exits. ``--ready`` is written
(with ``t0``, ``scale``, ``step``) once the server listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


def load_series(csv: Path) -> np.ndarray:
    """The value column of the NAB machine-temperature CSV (``timestamp,value``)."""
    values = []
    with csv.open() as f:
        next(f)
        for line in f:
            values.append(float(line.rsplit(",", 1)[1]))
    return np.asarray(values, dtype=np.float64)


def offset(unit: int, register: int, registers: int) -> int:
    return 37 * ((unit - 1) * registers + register)


def source_value(
    series: np.ndarray, scale: float, unit: int, register: int, registers: int, k: int | np.ndarray
) -> Any:
    """What register ``register`` of ``unit`` held during step ``k`` (an int or an array of steps)."""
    idx = (np.asarray(k) + offset(unit, register, registers)) % len(series)
    return np.round(series[idx] * scale).astype(np.int64)


async def _serve(args: argparse.Namespace) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    series = load_series(args.csv)
    t0 = time.time()
    reads: dict[int, list[float]] = {u: [] for u in range(1, args.devices + 1)}
    registers_read: dict[int, int] = dict.fromkeys(reads, 0)

    async def action(
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: Any,
    ) -> None:
        now = time.time()
        reads[unit].append(now)
        registers_read[unit] += count
        k = math.floor((now - t0) / args.step)
        for i in range(len(current_registers)):
            reg = start_address + i
            if 0 <= reg < args.registers:
                v = int(source_value(series, args.scale, unit, reg, args.registers, k))
                current_registers[i] = v & 0xFFFF

    devices = [
        SimDevice(
            u,
            simdata=[SimData(0, count=args.registers, values=0, datatype=DataType.REGISTERS)],
            action=partial(action, u),
        )
        for u in range(1, args.devices + 1)
    ]
    server = ModbusTcpServer(devices, address=("127.0.0.1", args.port))
    await server.serve_forever(background=True)
    args.ready.write_text(json.dumps({"t0": t0, "scale": args.scale, "step": args.step}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    args.stats.write_text(
        json.dumps(
            {
                "t0": t0,
                "reads": {str(u): v for u, v in reads.items()},
                "registers_read": {str(u): v for u, v in registers_read.items()},
            }
        )
    )
    await server.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--registers", type=int, default=10)
    p.add_argument("--step", type=float, default=1.0)
    p.add_argument("--scale", type=float, default=100.0)
    p.add_argument("--stats", type=Path, required=True)
    p.add_argument("--ready", type=Path, required=True)
    asyncio.run(_serve(p.parse_args()))


if __name__ == "__main__":
    main()
