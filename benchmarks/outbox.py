"""Readings per second into the durable outbox, one core, no broker.

    python benchmarks/outbox.py [--seconds 10] [--batch 1000] [--series 10] [--synchronous normal]

What it measures, each for ``--seconds``:

1. ``uplink.send``: ``MqttUplink.send`` with the broker unreachable (so nothing leaves the outbox) —
   compact-encode each batch of ``--batch`` readings and commit it (one transaction per message);
   with ``--max-delay`` the uplink first gathers sends into messages of up to 5,000 readings;
2. ``put only``: the outbox alone, with pre-encoded payloads (the SQLite cost per batch);
3. ``take+ack``: draining what was put, in windows of 100 (what the sender does on PUBACKs);
4. latency of one ``put`` (p50 / p99 / max, µs) — what the event loop is blocked for per batch.

Input: a random walk per series rounded to 3 decimals, 1 s sampling, series interleaved. The outbox
lives in a temporary directory on the same disk as ``/tmp``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's edgeflow

from edgeflow.outbox import Outbox, OutboxItem

from edgeflow.codec import make_encoder
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.uplink.mqtt import MqttUplink
from edgeflow.uplink.spec import MqttUplinkSpec

logging.basicConfig(level=logging.ERROR)


def make_batches(count: int, size: int, series: int) -> list[ReadingBatch]:
    table = SeriesTable()
    sids = np.asarray([table.intern("bench-device", f"sensor{i}", "bench") for i in range(series)], np.int32)
    rng = np.random.default_rng(1)
    n = count * size
    values = np.round(50 + np.cumsum(rng.normal(0, 0.3, n)), 3)
    origins = 1_700_000_000 * 10**9 + (np.arange(n, dtype=np.int64) // series) * 10**9
    sers = np.tile(sids, n // series + 1)[:n]
    return [
        ReadingBatch(table, origins[lo : lo + size], values[lo : lo + size], sers[lo : lo + size])
        for lo in range(0, n, size)
    ]


async def uplink_send(
    path: Path, batches: list[ReadingBatch], seconds: float, synchronous: str, max_delay: float
) -> tuple[int, float, dict[str, int | float]]:
    spec = MqttUplinkSpec.model_validate(
        {
            "type": "mqtt",
            "url": f"mqtt://127.0.0.1:{unused_port()}",  # nobody listens: everything stays in the outbox
            "outbox": {"path": str(path), "max_bytes": 1 << 34, "synchronous": synchronous},
            "batching": {"max_delay": max_delay},
            "reconnect": {"initial_delay": 5, "max_delay": 5},
        }
    )
    up = MqttUplink(spec, service="bench")
    await up.start()
    readings = 0
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        b = batches[i % len(batches)]
        i += 1
        await up.send(b)
        readings += len(b)
        if i % 50 == 0:
            await asyncio.sleep(0)
    await up.stop(flush_timeout=0)  # commits what batching still holds
    elapsed = time.perf_counter() - t0
    return readings, elapsed, up.stats()


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def put_latency(path: Path, batches: list[ReadingBatch], synchronous: str) -> list[float]:
    """Latency of Outbox.put alone, for compact messages of the benchmark's batches."""
    enc = make_encoder("compact", stream_id="lat")
    ob = Outbox(path, max_bytes=1 << 34, synchronous=synchronous)  # type: ignore[arg-type]
    lat: list[float] = []

    async def run() -> None:
        for b in batches:
            items = [
                OutboxItem(e.stream_id, e.seq, "t", e.payload, readings=e.readings) for e in enc.encode(b)
            ]
            p0 = time.perf_counter()
            await ob.put(items, ("lat", "lat", enc.next_seq))
            lat.append(time.perf_counter() - p0)

    asyncio.run(run())
    ob.close()
    return lat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--series", type=int, default=10)
    parser.add_argument("--synchronous", choices=["normal", "full"], default="normal")
    parser.add_argument(
        "--max-delay", type=float, default=0.0, help="uplink batching delay (0: no gathering)"
    )
    args = parser.parse_args()
    batches = make_batches(200, args.batch, args.series)
    with tempfile.TemporaryDirectory() as d:
        readings, elapsed, st = asyncio.run(
            uplink_send(Path(d) / "up.sqlite", batches, args.seconds, args.synchronous, args.max_delay)
        )
        print(
            f"batch {args.batch} readings, {args.series} series, synchronous={args.synchronous}, max_delay={args.max_delay}"
        )
        print(
            f"uplink.send: {readings / elapsed:12,.0f} readings/s  "
            f"({st['queued'] / elapsed:,.0f} messages/s, {st['queued_bytes'] / st['queued_readings']:.2f} B/reading stored)"
        )
        us = np.asarray(put_latency(Path(d) / "lat.sqlite", batches, args.synchronous)) * 1e6
        print(
            f"put latency: p50 {np.percentile(us, 50):.0f} µs, p99 {np.percentile(us, 99):.0f} µs, max {us.max():.0f} µs"
        )
        ob = Outbox(Path(d) / "bench.sqlite", max_bytes=1 << 34, synchronous=args.synchronous)
        payload = bytes(int(st["queued_bytes"] / max(1, st["queued"])))
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds / 2:
            ob.put_nowait([OutboxItem("p", n, "edgeflow/bench/batches", payload, readings=args.batch)])
            n += 1
        el = time.perf_counter() - t0
        print(f"put only   : {n / el:12,.0f} batches/s  = {n * args.batch / el:,.0f} readings/s")
        total = ob.queued_batches
        t0 = time.perf_counter()
        while True:
            recs = ob.take(100)
            if not recs:
                break
            ob.ack(recs)
        el = time.perf_counter() - t0
        print(
            f"take+ack   : {total / el:12,.0f} batches/s  = {total * args.batch / el:,.0f} readings/s ({total} batches)"
        )
        print(f"file after drain: {ob.file_bytes() / 1e6:.1f} MB")
        ob.close()


if __name__ == "__main__":
    main()
