"""Readings per second through the single committer into the commit log, one core, no broker.

    python benchmarks/outbox.py [--seconds 10] [--batch 1000] [--series 10] [--synchronous normal]

What it measures, each for ``--seconds``:

1. ``uplink.send``: ``MqttUplink.send`` with the broker unreachable (so nothing leaves the outbox) —
   each send of ``--batch`` readings is compact-encoded by the committer and committed (with the
   stream's next sequence number) before ``send`` returns; with ``--max-delay`` sends are gathered into
   messages of up to 5,000 readings first;
2. ``uplink.submit``: what the runtime's router does — hand batches over without waiting for each
   commit (backpressure only when too much is pending): commits group what arrived meanwhile;
3. ``commit only``: the commit log alone, with pre-encoded payloads (the SQLite cost per batch);
4. ``take+ack``: draining what was committed, in windows of 100 (what the sender does on PUBACKs);
5. the event loop's longest stall while 1 and 2 run (a 1 ms probe task): the commits run on the
   commit log's own thread, so the loop only pays for encoding.

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

from edgeflow.commitlog import CommitLog, OutboxItem
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


class LagProbe:
    """Wakes every millisecond and records how late it woke: the event loop's stalls."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.001)
            lag = loop.time() - t - 0.001
            self.lags.append(lag)
            self.worst = max(self.worst, lag)

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary(self) -> str:
        ms = np.asarray(self.lags) * 1e3
        return f"loop stall p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms"


async def uplink_send(
    path: Path, batches: list[ReadingBatch], seconds: float, synchronous: str, max_delay: float, wait: bool
) -> tuple[int, float, dict[str, int | float], str]:
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
    i = 0
    with LagProbe() as probe:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            b = batches[i % len(batches)]
            i += 1
            if wait:
                await up.send(b)
            else:
                await up.room()
                up.submit(b)
                if i % 10 == 0:
                    await asyncio.sleep(0)
            readings += len(b)
        await up.flush()
        elapsed = time.perf_counter() - t0
    st = up.stats()
    await up.stop(flush_timeout=0)
    return readings, elapsed, st, probe.summary()


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def log_only(path: Path, batch: int, payload_size: int, seconds: float, synchronous: str) -> None:
    log = CommitLog(path, max_bytes=1 << 34, synchronous=synchronous)  # type: ignore[arg-type]
    await log.open()
    payload = bytes(payload_size)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await log.commit(
            [OutboxItem("p", n, "edgeflow/bench/batches", payload, readings=batch)], [("k", "p", n + 1)]
        )
        n += 1
    el = time.perf_counter() - t0
    print(f"commit only  : {n / el:12,.0f} commits/s  = {n * batch / el:,.0f} readings/s (one batch each)")
    total = log.queued_batches
    t0 = time.perf_counter()
    while recs := await log.take(100):
        await log.ack(recs)
    el = time.perf_counter() - t0
    print(
        f"take+ack     : {total / el:12,.0f} batches/s  = {total * batch / el:,.0f} readings/s ({total} batches)"
    )
    print(f"file after drain: {log.stats()['file_bytes'] / 1e6:.1f} MB")
    await log.close()


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
    print(
        f"batch {args.batch} readings, {args.series} series, synchronous={args.synchronous}, max_delay={args.max_delay}"
    )
    with tempfile.TemporaryDirectory() as d:
        for wait, name in ((True, "uplink.send  "), (False, "uplink.submit")):
            readings, elapsed, st, lag = asyncio.run(
                uplink_send(
                    Path(d) / f"up{wait}.sqlite",
                    batches,
                    args.seconds,
                    args.synchronous,
                    args.max_delay,
                    wait,
                )
            )
            print(
                f"{name}: {readings / elapsed:12,.0f} readings/s  ({st['commits'] / elapsed:,.0f} commits/s, "
                f"{st['queued'] / elapsed:,.0f} messages/s, {st['queued_bytes'] / max(1, st['queued_readings']):.2f} "
                f"B/reading stored; {lag})"
            )
        payload = int(st["queued_bytes"] / max(1, st["queued"]))
        asyncio.run(
            log_only(Path(d) / "bench.sqlite", args.batch, payload, args.seconds / 2, args.synchronous)
        )


if __name__ == "__main__":
    main()
