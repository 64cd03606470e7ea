"""How long the event loop stalls while a large outbox drains to a broker and shrinks.

    python benchmarks/drain_stall.py [--mb 256] [--payload 16384] [--broker mosquitto|embedded]

An outage left ``--mb`` megabytes of batches in the commit log. A local broker comes back; the MQTT
uplink drains the outbox (take, publish QoS 1, ack on PUBACK — deletes in the commit log) and, once it
is empty, the commit log gives the space back (VACUUM, WAL truncate). Every database call runs on the
commit log's own thread, so the loop should never wait on the disk. A probe task sleeps 1 ms in a loop
and records how late it wakes: its worst lateness is the longest the event loop was blocked. Printed:
drain time and rate, loop stall p50/p99/max, the file's size before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's edgeflow

from edgeflow.commitlog import CommitLog, OutboxItem
from edgeflow.demo.localbroker import LocalBroker
from edgeflow.uplink.mqtt import MqttTransport
from edgeflow.uplink.spec import MqttUplinkSpec

logging.basicConfig(level=logging.WARNING)


async def fill(log: CommitLog, total: int, payload: int) -> int:
    rng = np.random.default_rng(1)
    body = rng.integers(0, 256, payload, dtype=np.uint8).tobytes()  # incompressible, like zstd output
    n = 0
    done = 0
    while done < total:
        items = [OutboxItem("bench", n + i, "edgeflow/bench/batches", body, readings=1000) for i in range(64)]
        await log.commit(items, [("k", "bench", n + 64)])
        n += 64
        done += 64 * payload
    return n


async def main(args: argparse.Namespace) -> None:
    broker = LocalBroker(args.broker)
    await broker.start()
    try:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "outbox.sqlite"
            log = CommitLog(path, max_bytes=2 * args.mb << 20)
            await log.open()
            t0 = time.perf_counter()
            batches = await fill(log, args.mb << 20, args.payload)
            filled = time.perf_counter() - t0
            before = log.stats()["file_bytes"]
            print(
                f"outbox: {batches:,} batches of {args.payload:,} B = {before / 2**20:,.0f} MB on disk "
                f"(committed in {filled:.1f} s)"
            )
            spec = MqttUplinkSpec.model_validate({"type": "mqtt", "url": broker.url, "max_inflight": 100})
            transport = MqttTransport(spec, service="bench")
            lags: list[float] = []
            loop = asyncio.get_running_loop()

            async def probe() -> None:
                while True:
                    t = loop.time()
                    await asyncio.sleep(0.001)
                    lags.append(loop.time() - t - 0.001)

            task = loop.create_task(probe())
            t0 = time.perf_counter()
            await transport.start(log)
            transport.wake()
            while log.queued_batches:  # noqa: ASYNC110 - polling a counter the log refreshes
                await asyncio.sleep(0.05)
            drained = time.perf_counter() - t0
            await asyncio.sleep(0.5)  # the shrink runs after the last ack
            await log.release()  # a last call on the thread: the counters after the shrink
            after = log.stats()["file_bytes"]
            task.cancel()
            await transport.stop(flush_timeout=0)
            await log.close()
            ms = np.asarray(lags) * 1e3
            print(
                f"drained in {drained:.1f} s = {before / 2**20 / drained:,.0f} MB/s, "
                f"{batches / drained:,.0f} batches/s"
            )
            print(
                f"event-loop stall: p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, "
                f"max {ms.max():.2f} ms ({len(ms):,} probes; target max <= 20 ms)"
            )
            print(f"file: {before / 2**20:,.0f} MB before, {after / 2**20:,.1f} MB after the drain")
            print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    finally:
        await broker.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, default=256, help="megabytes in the outbox (256)")
    p.add_argument("--payload", type=int, default=16384, help="bytes per batch (16384)")
    p.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default="auto")
    asyncio.run(main(p.parse_args()))
