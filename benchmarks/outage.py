"""A broker outage at a steady ingest rate: backlog, drain speed, and edge memory.

    python benchmarks/outage.py [--rate 10000] [--outage 60] [--warmup 10] [--batch 1000]

Starts Mosquitto (``/usr/sbin/mosquitto``) on a free loopback port and a receiver in a separate
process (persistent session, so it gets everything the broker accepted), then ships ``--rate``
readings/s (compact encoding, messages of ``--batch`` readings, 10 series of random walks) from an
``MqttUplink`` in this process:

1. ``--warmup`` seconds connected — the baseline RSS of this (edge) process;
2. the broker is stopped for ``--outage`` seconds while ingest goes on — RSS sampled every second;
3. the broker is started again; ingest goes on; time until the outbox is empty.

Prints the backlog, the drain time, how much faster the backlog drained than it built up
(``outage / drain time``, the drain time counted from the broker's restart, so it includes the
reconnect backoff; net of the ongoing ingest), the gross ship rate while draining, RSS during
the outage relative to the baseline, and what the receiver counted. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the Mosquitto launcher the tests use

from conftest import MosquittoBroker, free_port  # noqa: E402

from edgeflow.model import ReadingBatch, SeriesTable  # noqa: E402
from edgeflow.uplink.mqtt import MqttUplink  # noqa: E402
from edgeflow.uplink.spec import MqttUplinkSpec  # noqa: E402

logging.basicConfig(level=logging.ERROR)

RECEIVER = """
import asyncio, sys, threading, orjson
from edgeflow.cloud import Receiver
async def main():
    rx = Receiver(sys.argv[1], ["edgeflow/+/batches"], client_id="bench-receiver")
    await rx.start()
    print("subscribed", flush=True)
    expected = int(await asyncio.to_thread(sys.stdin.read))  # readings the edge committed
    for _ in range(600):  # up to 60 s more: its own reconnect backoff may still be running
        if rx.counts["readings"] >= expected:
            break
        await asyncio.sleep(0.1)
    await rx.stop()
    st = rx.stats()
    print(orjson.dumps({k: st[k] for k in ("messages", "batches", "readings", "duplicates", "missing")}).decode(), flush=True)
asyncio.run(main())
"""


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Source:
    """Random walks of 10 series, ``batch`` readings per call, origins 1 ms apart per series."""

    def __init__(self, batch: int) -> None:
        self.table = SeriesTable()
        self.sids = np.asarray([self.table.intern("bench", f"s{i}", "bench") for i in range(10)], np.int32)
        self.batch = batch
        self.k = 0
        self.rng = np.random.default_rng(7)
        self.level = np.full(10, 50.0)

    def next(self) -> ReadingBatch:
        per = self.batch // 10
        steps = np.round(self.rng.normal(0, 0.3, (per, 10)), 3)
        vals = self.level + np.cumsum(steps, axis=0)
        self.level = vals[-1]
        origins = (
            1_700_000_000 * 10**9 + np.repeat(np.arange(self.k, self.k + per, dtype=np.int64), 10) * 10**6
        )
        self.k += per
        return ReadingBatch(self.table, origins, vals.ravel(), np.tile(self.sids, per))


def start_receiver(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RECEIVER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    broker = MosquittoBroker(workdir=workdir, port=free_port())
    broker.start()
    rx = start_receiver(broker.url)
    assert rx.stdout is not None
    assert rx.stdin is not None
    assert (await asyncio.to_thread(rx.stdout.readline)).strip() == "subscribed"
    spec = MqttUplinkSpec.model_validate(
        {
            "type": "mqtt",
            "url": broker.url,
            "outbox": {"path": str(workdir / "edge.sqlite")},
            "reconnect": {"initial_delay": 0.2, "max_delay": 2.0},
            "keepalive": 10,
        }
    )
    up = MqttUplink(spec, service="bench")
    await up.start()
    src = Source(args.batch)
    period = args.batch / args.rate
    next_t = time.monotonic()
    out: dict[str, Any] = {}

    async def produce_until(deadline: float, *, sample: list[int] | None = None, until: Any = None) -> float:
        nonlocal next_t
        last_sample = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline or (until is not None and until()):
                return now
            if now >= next_t:
                await up.send(src.next())
                next_t += period
            if sample is not None and now - last_sample >= 1.0:
                sample.append(rss())
                last_sample = now
            await asyncio.sleep(max(0.0, min(next_t, deadline) - time.monotonic()))

    try:
        base: list[int] = []
        await produce_until(time.monotonic() + args.warmup / 2)
        await produce_until(time.monotonic() + args.warmup / 2, sample=base)
        out["baseline_rss_mb"] = float(np.median(base)) / 1e6
        broker.stop()
        t_down = time.monotonic()
        during: list[int] = []
        await produce_until(t_down + args.outage, sample=during)
        st = up.stats()
        out["outage_s"] = time.monotonic() - t_down
        out["backlog_readings"] = st["queued_readings"]
        out["backlog_mb"] = st["queued_bytes"] / 1e6
        out["outbox_file_mb"] = st["outbox_file_bytes"] / 1e6
        out["rss_during_max_mb"] = max(during) / 1e6
        out["rss_during_max_vs_baseline"] = max(during) / float(np.median(base))
        acked_before = st["acked_readings"]
        broker.start()
        t_up = time.monotonic()
        t_conn = await produce_until(t_up + 600, until=lambda: up.connected)
        t_empty = await produce_until(t_up + 600, until=lambda: up.stats()["queued"] == 0)
        drain = t_empty - t_up
        out["reconnect_wait_s"] = t_conn - t_up
        out["drain_once_connected_s"] = t_empty - t_conn
        st = up.stats()
        out["drain_s"] = drain
        out["drain_vs_buildup"] = out["outage_s"] / drain
        out["ship_rate_while_draining"] = (st["acked_readings"] - acked_before) / drain
        out["reconnect_attempts"] = st["reconnects"] + st["connect_failures"]
        await produce_until(time.monotonic() + 2)
        await up.stop(flush_timeout=30)
        st = up.stats()
        out["committed_readings"] = st["readings_committed"]
        out["acked_readings"] = st["acked_readings"]
        out["dropped_by_policy"] = st["dropped_by_policy"]
        rx.stdin.write(f"{st['readings_committed']}\n")
        rx.stdin.close()
        out["receiver"] = orjson.loads(await asyncio.to_thread(rx.stdout.readline))
    finally:
        if rx.poll() is None:
            rx.wait(30)
        rx.stdout.close()
        broker.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000, help="readings per second")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the broker is down")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1000, help="readings per send (and per message)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = asyncio.run(run(args, Path(d)))
    print(f"rate {args.rate:,.0f} readings/s, messages of {args.batch} readings, compact")
    for k, v in out.items():
        print(f"  {k:28s} {v:,.2f}" if isinstance(v, float) else f"  {k:28s} {v}")


if __name__ == "__main__":
    main()
