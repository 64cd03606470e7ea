"""The cloud end into PostgreSQL: readings/s from one receiver and from three in a group, and database
bytes per reading (raw readings against segment points).

    python benchmarks/cloud_postgres.py [--messages 600] [--batch 1000] [--series 10] [--inflight 100]

Starts its own PostgreSQL (initdb + pg_ctl, as the ``postgres`` user when run as root) and Mosquitto
on free loopback ports. Nothing of the machine's services is used.

1. **Sink only**: ``PostgresStore.store`` from this process, groups of 20 pre-decoded messages of
   ``--batch`` readings (compact, ``--series`` random-walk series) — the database path without MQTT.
2. **One receiver** (``edgeflow receive --sink``, a separate process, persistent session): the
   messages are published while it is stopped, so the broker holds a backlog; the receiver is started
   and timed from start until the database holds every reading (includes its start-up: connect,
   schema check).
3. **Three receivers in one group** (``--group``): all three running; the messages are published as
   fast as the broker takes them; timed from the first publish until every reading is stored.
4. **Bytes per reading**: the NAB machine-temperature series from ``../shared/data`` stored raw (every
   reading) and as swing-filter points at max error 1 % of its range, in two databases; total size of
   the ``edgeflow.readings`` table and its indexes (and of ``edgeflow.batches``) over the readings of
   the input.

Prints what it measured and the machine load (``os.getloadavg()``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the Mosquitto and PostgreSQL launchers the tests use

import psycopg  # noqa: E402
from conftest import SHARED_DATA, MosquittoBroker, PostgresCluster, free_port  # noqa: E402

from edgeflow.cloud.postgres import PostgresStore  # noqa: E402
from edgeflow.codec import decode, make_encoder  # noqa: E402
from edgeflow.model import ReadingBatch, SeriesTable, ValueType  # noqa: E402
from edgeflow.mqtt.connection import ConnectParams, MqttConnection  # noqa: E402

TOPIC = "edgeflow/bench/batches"
RECEIVE_MAXIMUM = 1000


class TunedBroker(MosquittoBroker):
    """The tests' Mosquitto with ``max_inflight_messages`` set (Mosquitto's default is 20)."""

    def __init__(self, *, inflight: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.inflight = inflight

    def write_config(self) -> None:
        super().write_config()
        with self.config_path.open("a") as f:
            f.write(f"max_inflight_messages {self.inflight}\n")


def payloads(n_messages: int, batch: int, n_series: int, stream: str) -> list[bytes]:
    rng = np.random.default_rng(7)
    t = SeriesTable()
    sids = [t.intern(f"dev-{i}", "temperature", "bench", ValueType.FLOAT64) for i in range(n_series)]
    enc = make_encoder("compact", stream_id=stream, max_readings=batch)
    per = batch // n_series
    walk = np.zeros(n_series)
    out: list[bytes] = []
    t0 = 1_700_000_000_000_000_000
    for m in range(n_messages):
        steps = rng.normal(0, 0.1, size=(per, n_series)).cumsum(axis=0) + walk
        walk = steps[-1]
        origins = np.repeat(t0 + (m * per + np.arange(per, dtype=np.int64)) * 1_000_000, n_series)
        series = np.tile(np.asarray(sids, np.int32), per)
        rb = ReadingBatch(t, origins, np.round(steps.ravel(), 3), series)
        out += [e.payload for e in enc.encode(rb)]
    return out


def new_cluster() -> PostgresCluster:
    workdir = Path(tempfile.mkdtemp(prefix="edgeflow-pg-bench-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    c = PostgresCluster(workdir=workdir, port=free_port())
    c.init()
    c.start()
    return c


def count(url: str) -> int:
    with psycopg.connect(url) as c:
        row = c.execute("SELECT count(*) FROM edgeflow.readings").fetchone()
        return int(row[0]) if row else 0


def wait_count(url: str, want: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while True:
        n = count(url)
        if n >= want:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"only {n} of {want} readings stored within {timeout} s")
        time.sleep(0.05)


def receiver(broker: MosquittoBroker, url: str, name: str, group: str | None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "edgeflow", "receive", "--url", broker.url, "--topic", TOPIC]
    argv += ["--client-id", name, "--sink", url, "--receive-maximum", str(RECEIVE_MAXIMUM)]
    if group:
        argv += ["--group", group]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(60)


async def publish(broker: MosquittoBroker, msgs: list[bytes]) -> None:
    acked = 0
    done = asyncio.Event()

    def on_ack(_mid: int, ok: bool, _why: str) -> None:
        nonlocal acked
        acked += 1
        if acked == len(msgs):
            done.set()

    conn = MqttConnection(
        ConnectParams("127.0.0.1", broker.port, "bench-pub", max_inflight=1000), on_ack=on_ack
    )
    await conn.connect()
    sent = 0
    while sent < len(msgs):
        while sent < len(msgs) and sent - acked < 500:
            conn.publish(TOPIC, msgs[sent], 1)
            sent += 1
        await asyncio.sleep(0.001)
    await asyncio.wait_for(done.wait(), 300)
    await conn.disconnect()


def subscribed(broker: MosquittoBroker, name: str, times: int = 1) -> None:
    deadline = time.monotonic() + 60
    while broker.log_text().count(f"Received SUBSCRIBE from {name}") < times:
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not subscribe")
        time.sleep(0.05)


def table_bytes(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("VACUUM ANALYZE edgeflow.readings")
        row = c.execute(
            "SELECT pg_total_relation_size('edgeflow.readings'), pg_total_relation_size('edgeflow.batches'),"
            " (SELECT count(*) FROM edgeflow.readings)"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])


def bytes_per_reading(cluster: PostgresCluster) -> dict[str, Any]:
    from edgeflow.replay import read_csv
    from edgeflow.rules.pipeline import build_pipeline

    src = SHARED_DATA / "timeseries/nab_machine_temperature_system_failure.csv"
    if not src.exists():
        return {"skipped": f"{src} is absent"}
    data = read_csv(src, sep=",", time_column="timestamp", value_columns=["value"])
    x = data.values[:, 0]
    bound = 0.01 * float(x.max() - x.min())
    out: dict[str, Any] = {"series": src.name, "readings": len(x), "max_error": bound}
    for label, rules in (
        ("raw", []),
        ("swing 1%", [{"type": "swing", "max_error": bound, "backwards": "reset"}]),
    ):
        t = SeriesTable()
        sid = t.intern("nab", "temperature", "replay", ValueType.FLOAT64)
        pipeline = build_pipeline(rules, t)
        enc = make_encoder("compact", stream_id=label)
        items = []
        for lo in range(0, len(x), 1000):
            hi = min(lo + 1000, len(x))
            res = pipeline.process(
                ReadingBatch(t, data.times[lo:hi], x[lo:hi], np.full(hi - lo, sid, np.int32))
            )
            outs = [res, pipeline.flush()] if hi == len(x) else [res]
            for o in outs:
                items += [(decode(e.payload), "t") for e in enc.encode(o.batch, o.interpolation)]
        url = cluster.create_database()
        st = PostgresStore(url)
        st.open()
        st.store(items)
        st.close()
        readings_bytes, batch_bytes, rows = table_bytes(url)
        out[label] = {
            "rows": rows,
            "messages": len(items),
            "readings_table_bytes": readings_bytes,
            "batches_table_bytes": batch_bytes,
            "bytes_per_stored_row": round(readings_bytes / rows, 1),
            "db_bytes_per_input_reading": round((readings_bytes + batch_bytes) / len(x), 2),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--inflight", type=int, default=100, help="Mosquitto max_inflight_messages")
    ap.add_argument("--receive-maximum", type=int, default=1000, help="the receivers' MQTT 5 Receive Maximum")
    args = ap.parse_args()
    global RECEIVE_MAXIMUM
    RECEIVE_MAXIMUM = args.receive_maximum
    total = args.messages * args.batch
    print(
        f"load before: {os.getloadavg()}; {os.cpu_count()} CPUs; broker max_inflight_messages "
        f"{args.inflight}, receivers' receive maximum {args.receive_maximum}"
    )
    cluster = new_cluster()
    work = Path(tempfile.mkdtemp(prefix="edgeflow-bench-mq-"))
    broker = TunedBroker(workdir=work, port=free_port(), inflight=args.inflight)
    broker.start()
    try:
        # 1. the sink alone
        msgs = payloads(args.messages, args.batch, args.series, "sink-only")
        decoded = [(decode(p), TOPIC) for p in msgs]
        url = cluster.create_database()
        st = PostgresStore(url)
        st.open()
        t0 = time.perf_counter()
        for lo in range(0, len(decoded), 20):
            st.store(decoded[lo : lo + 20])
        dt = time.perf_counter() - t0
        st.close()
        print(
            f"sink only (store(), groups of 20 messages of {args.batch}): {total / dt:,.0f} readings/s "
            f"({dt:.2f} s for {total:,}); load {os.getloadavg()}"
        )

        # 2. one receiver draining a backlog
        url = cluster.create_database()
        msgs = payloads(args.messages, args.batch, args.series, "one")
        first = receiver(broker, url, "rx-one", None)  # once, to create the session and the schema
        subscribed(broker, "rx-one")
        stop([first])
        asyncio.run(publish(broker, msgs))
        t0 = time.monotonic()
        rx = receiver(broker, url, "rx-one", None)
        t1 = wait_count(url, total)
        stop([rx])
        print(
            f"one receiver, backlog of {args.messages} messages x {args.batch} readings: "
            f"{total / (t1 - t0):,.0f} readings/s ({t1 - t0:.2f} s incl. start-up); load {os.getloadavg()}"
        )

        # 3. three receivers in one group
        url = cluster.create_database()
        msgs = payloads(args.messages, args.batch, args.series, "group")
        rxs = [receiver(broker, url, f"rx-g{i}", "bench") for i in range(3)]
        for i in range(3):
            subscribed(broker, f"rx-g{i}")
        time.sleep(1.0)
        t0 = time.monotonic()
        asyncio.run(publish(broker, msgs))
        t1 = wait_count(url, total)
        stop(rxs)
        with psycopg.connect(url) as c:
            split = c.execute(
                "SELECT receiver, count(*) FROM edgeflow.batches GROUP BY 1 ORDER BY 1"
            ).fetchall()
        print(
            f"three receivers in a group: {total / (t1 - t0):,.0f} readings/s ({t1 - t0:.2f} s from the "
            f"first publish); batches per receiver {dict(split)}; load {os.getloadavg()}"
        )

        # 4. bytes per reading
        b = bytes_per_reading(cluster)
        print("bytes per reading:", b)
    finally:
        broker.stop()
        cluster.stop()
        shutil.rmtree(cluster.workdir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
