"""Failure is normal: a broker outage, a killed edge process, a full outbox. Against a real Mosquitto."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import MosquittoBroker, MosquittoFactory
from uplink_support import Producer, check_series, make_batch, rss_bytes, table, uplink_spec, wait_for

from edgeflow.cloud import Receiver
from edgeflow.model import ReadingBatch
from edgeflow.uplink.mqtt import MqttUplink

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
async def test_broker_down_30s_mid_stream_loses_nothing(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"], keep=True)
    await rx.start()
    up = MqttUplink(uplink_spec(mosquitto.url, tmp_path / "ob.sqlite"), service="s")
    await up.start()
    producer = Producer(up)
    await producer.run(3)
    mosquitto.stop()
    await producer.run(30)
    during = up.stats()
    assert during["connected"] == 0
    assert during["queued"] > 400  # the outage's batches wait in the outbox
    mosquitto.start()
    await producer.run(3)
    await wait_for(lambda: rx.counts["readings"] == producer.sent * 100, 60, "every committed reading")
    await wait_for(lambda: up.stats()["queued"] == 0, 10, "outbox drained")
    st = up.stats()
    assert st["acked_readings"] == producer.sent * 100
    assert st["dropped_by_policy"] == 0
    assert st["reconnects"] >= 1
    check_series(rx.series(), range(producer.sent))  # in order per series, no duplicates left
    (stream,) = rx.streams.values()
    assert stream.missing == 0
    # only what was in flight when the broker went away may have come twice
    assert rx.counts["duplicates"] <= st["republished"]
    await up.stop()
    await rx.stop()


def _start_edge(url: str, outbox: Path, stop: int, rate: float) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "uplink_edge.py"), url, str(outbox), str(stop), str(rate)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


async def _read_until(proc: subprocess.Popen[str], prefix: str, lines: list[str], seconds: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line:
            raise AssertionError(f"edge process ended early: {lines[-3:]}")
        lines.append(line.strip())
        if line.startswith(prefix):
            return
    raise AssertionError(f"no {prefix!r} from the edge process within {seconds} s")


async def test_edge_killed_with_sigkill_mid_stream_loses_nothing(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"], keep=True)
    await rx.start()
    outbox = tmp_path / "edge.sqlite"
    total = 150
    lines: list[str] = []
    first = _start_edge(mosquitto.url, outbox, total, rate=40)
    try:
        await _read_until(first, "committed 60", lines, 30)
        # a burst the broker has not confirmed yet, then kill -9 mid-stream
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        assert first.stdout is not None
        lines += [ln.strip() for ln in first.stdout.read().splitlines()]
        first.stdout.close()
    finally:
        if first.poll() is None:
            first.kill()
    committed = max(int(ln.split()[1]) for ln in lines if ln.startswith("committed"))
    second = _start_edge(mosquitto.url, outbox, total, rate=200)
    lines2: list[str] = []
    try:
        await _read_until(second, "resumed", lines2, 30)
        resumed = int(lines2[-1].split()[1])
        assert resumed >= committed + 1  # everything that was committed is still in the outbox
        await _read_until(second, "done", lines2, 60)
        assert lines2[-1] == "done 0"
        assert second.wait(10) == 0
    finally:
        if second.poll() is None:
            second.kill()
        if second.stdout is not None:
            second.stdout.close()
    await wait_for(lambda: rx.counts["readings"] == total * 100, 20, "every reading")
    check_series(rx.series(), range(total))
    (stream,) = rx.streams.values()  # the restarted edge resumed the same stream
    assert stream.missing == 0
    assert stream.summary()["last_seq"] == total - 1
    assert rx.counts["duplicates"] <= 100  # at most the window that was in flight at the kill
    await rx.stop()


def _noisy_batch(t: object, i: int, rng: np.random.Generator) -> ReadingBatch:
    b = make_batch(t, i, per_series=250)  # type: ignore[arg-type]
    b.values[:] = rng.normal(size=len(b))  # incompressible values: real bytes into the outbox
    return b


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["drop-oldest", "drop-newest"])
async def test_outbox_at_its_bound_during_an_outage(
    mosquitto_factory: MosquittoFactory, tmp_path: Path, policy: str
) -> None:
    broker = mosquitto_factory()
    rx = Receiver(broker.url, ["edgeflow/+/batches"], keep=True)
    await rx.start()  # its session (subscription, queued messages) outlives the outage
    broker.stop()
    bound = 512 * 1024
    spec = uplink_spec(broker.url, tmp_path / "ob.sqlite", outbox={"max_bytes": bound, "overflow": policy})
    up = MqttUplink(spec, service="s")
    await up.start()
    t = table()
    rng = np.random.default_rng(1)
    n = 600  # 600 x 1000 readings, about 8 MB encoded: 16x the bound
    tracemalloc.start()
    try:
        for i in range(n):
            await up.send(_noisy_batch(t, i, rng))
            if i == 150:  # the outbox has been full for a while: the baseline
                gc.collect()
                base_py, base_rss = tracemalloc.get_traced_memory()[0], rss_bytes()
        gc.collect()
        end_py, end_rss = tracemalloc.get_traced_memory()[0], rss_bytes()
    finally:
        tracemalloc.stop()
    st = up.stats()
    assert st["queued_bytes"] <= bound
    assert st["outbox_file_bytes"] < 2 * bound + (8 << 20)
    kept = int(st["queued"])
    assert st["dropped_by_policy"] == n - kept
    assert st["dropped_readings"] == (n - kept) * 1000
    assert st["batches_committed"] + (st["dropped_by_policy"] if policy == "drop-newest" else 0) == n
    # memory flat while 7 MB more went through: Python heap and RSS
    assert end_py - base_py < 1 << 20
    assert end_rss - base_rss < 8 << 20
    broker.start()
    await wait_for(lambda: up.stats()["queued"] == 0, 30, "outbox drained")
    await wait_for(lambda: rx.counts["batches"] == kept, 10, f"kept batches at the receiver {rx.stats()}")
    seqs = sorted(seq for (_, seq) in rx._kept)
    if policy == "drop-oldest":
        assert seqs == list(range(n - kept, n))  # the newest survive
    else:
        assert seqs == list(range(kept))  # the oldest survive
    assert rx.counts["readings"] == kept * 1000  # nothing else lost
    await up.stop()
    await rx.stop()


async def test_block_policy_holds_the_producer_during_an_outage(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory()
    rx = Receiver(broker.url, ["edgeflow/+/batches"], keep=True)
    await rx.start()  # its session (subscription, queued messages) outlives the outage
    broker.stop()
    spec = uplink_spec(
        broker.url, tmp_path / "ob.sqlite", outbox={"max_bytes": 128 * 1024, "overflow": "block"}
    )
    up = MqttUplink(spec, service="s")
    await up.start()
    t = table()
    rng = np.random.default_rng(2)
    done = 0

    async def produce() -> None:
        nonlocal done
        for i in range(60):
            await up.send(_noisy_batch(t, i, rng))
            done += 1

    task = asyncio.create_task(produce())
    await asyncio.sleep(1.0)
    assert not task.done()
    held = done
    assert 0 < held < 60
    assert up.stats()["dropped_by_policy"] == 0
    broker.start()
    await asyncio.wait_for(task, 30)
    await wait_for(lambda: rx.counts["readings"] == 60 * 1000, 30, "every reading")
    assert up.stats()["dropped_by_policy"] == 0
    await up.stop()
    await rx.stop()
