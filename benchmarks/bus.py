"""Throughput of the core-data bus: publish → one subscriber, on one core.

Targets (issue 2): ≥ 1,000,000 readings/s in batches of 1,000, and ≥ 100,000 single-reading
events/s. Run:  python benchmarks/bus.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from edgeflow.bus import Bus, event_topic
from edgeflow.model import Event, Reading, ReadingBatch, SeriesTable, ValueType


async def run(messages: list[ReadingBatch] | list[Event], topic: str, capacity: int) -> tuple[float, int]:
    bus: Bus[ReadingBatch | Event] = Bus()
    sub = bus.subscribe("edgex/events/device/#", capacity=capacity, policy="block")
    received = 0
    total = sum(len(m) for m in messages)

    async def consume() -> None:
        nonlocal received
        while received < total:
            for _, msg in await sub.get_many():
                received += len(msg)

    consumer = asyncio.create_task(consume())
    t0 = time.perf_counter()
    for m in messages:
        await bus.publish(topic, m)
    await consumer
    return time.perf_counter() - t0, received


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=5_000, help="batches of 1,000 readings")
    ap.add_argument("--events", type=int, default=300_000, help="single-reading events")
    args = ap.parse_args()

    table = SeriesTable()
    sid = table.intern("dev", "temp", "prof", ValueType.FLOAT64)
    n = 1_000
    batches = [
        ReadingBatch.from_columns(table, np.arange(n) + i * n, np.random.rand(n), np.full(n, sid))
        for i in range(args.batches)
    ]
    events = [
        Event("dev", "prof", "temp", i, [Reading("dev", "temp", "prof", ValueType.FLOAT64, 1.0, i)])
        for i in range(args.events)
    ]
    topic = event_topic("svc", "prof", "dev", "temp")

    secs, got = asyncio.run(run(batches, topic, capacity=100_000))
    print(
        f"batches of {n}: {got:,} readings in {secs:.3f} s = {got / secs:,.0f} readings/s "
        f"({len(batches) / secs:,.0f} batches/s)  target ≥ 1,000,000 readings/s"
    )
    secs, got = asyncio.run(run(events, topic, capacity=10_000))
    print(
        f"single-reading events: {got:,} in {secs:.3f} s = {got / secs:,.0f} events/s  "
        f"target ≥ 100,000 events/s"
    )


if __name__ == "__main__":
    main()
