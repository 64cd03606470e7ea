"""The cloud end at scale: acknowledge after storing, the PostgreSQL sink (exactly-once by (stream, seq),
gaps, schema version), receiver groups, store failures, reading back the reconstruction.

Every test runs its own PostgreSQL (initdb + pg_ctl on a free port) and its own Mosquitto."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pytest
from conftest import MosquittoBroker, PostgresCluster
from uplink_support import (
    SERIES,
    Producer,
    expected_origins,
    expected_value,
    make_batch,
    table,
    uplink_spec,
    wait_for,
)

from edgeflow.cli import receive as receive_cmd
from edgeflow.cloud import JsonLinesSink, Receiver
from edgeflow.codec import batch_table, decode, make_encoder
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
from edgeflow.mqtt.connection import ConnectParams, MqttConnection
from edgeflow.uplink.mqtt import MqttUplink

psycopg = pytest.importorskip("psycopg")
from edgeflow.cloud.postgres import SCHEMA_VERSION, PostgresStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_made: list[PostgresStore] = []


class Store(PostgresStore):
    """A store closed at the end of the test, also when the test fails half-way."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        _made.append(self)


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


PER_BATCH = 25 * SERIES  # readings in make_batch(t, i)


def _items(stream: str, batches: range) -> list[tuple[Any, str]]:
    enc = make_encoder("compact", stream_id=stream)
    enc.next_seq = batches.start
    t = table()
    return [(decode(e.payload), "edgeflow/x/batches") for i in batches for e in enc.encode(make_batch(t, i))]


def check_db(url: str, batches: range) -> None:
    """The database holds every reading of ``batches`` exactly once, with the right values."""
    with psycopg.connect(url) as c:
        rows = c.execute(
            "SELECT s.device, r.origin, r.value FROM edgeflow.readings r JOIN edgeflow.series s"
            " ON s.id = r.series ORDER BY s.device, r.origin"
        ).fetchall()
    want = expected_origins(batches)
    assert len(rows) == SERIES * len(want), f"{len(rows)} readings stored, want {SERIES * len(want)}"
    for i in range(SERIES):
        mine = [(o, v) for d, o, v in rows if d == f"pump-{i}"]
        origins = np.array([o for o, _ in mine], np.int64)
        np.testing.assert_array_equal(origins, want)  # each once: no duplicate, none missing
        np.testing.assert_allclose([v for _, v in mine], expected_value(i, want))


def _count(url: str, what: str = "readings") -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as c:
            row = c.execute(f"SELECT count(*) FROM edgeflow.{what}").fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return -1


# -- the sink ----------------------------------------------------------------------------------------


def test_store_is_exactly_once_by_stream_and_seq_across_restarts(pg_url: str) -> None:
    st = Store(pg_url, receiver="a")
    st.open()
    items = _items("s1", range(5))
    assert st.store(items[:3]) == [True, True, True]
    # a redelivery, and the same message twice in one group: stored once
    assert st.store([items[2], items[3], items[3]]) == [False, True, False]
    st.close()
    again = Store(pg_url, receiver="b")  # a restarted receiver: nothing of its memory survives
    again.open()
    assert again.store(items) == [False, False, False, False, True]
    check_db(pg_url, range(5))
    with psycopg.connect(pg_url) as c:
        versions = c.execute("SELECT version FROM edgeflow.schema_version ORDER BY 1").fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]  # each migration once
        by = dict(c.execute("SELECT seq, receiver FROM edgeflow.batches WHERE stream = 's1'").fetchall())
    assert by == {0: "a", 1: "a", 2: "a", 3: "a", 4: "b"}
    assert again.streams() == {"s1": {"batches": 5, "readings": 5 * PER_BATCH, "first_seq": 0, "last_seq": 4}}
    assert again.gaps() == []
    again.close()


def test_gaps_per_stream_are_queryable(pg_url: str) -> None:
    st = Store(pg_url)
    st.open()
    items = _items("s2", range(9))
    st.store([items[i] for i in (2, 3, 5, 8)])
    st.store(_items("s3", range(3)))
    assert st.gaps() == [("s2", 0, 1), ("s2", 4, 4), ("s2", 6, 7)]
    assert st.gaps("s3") == []
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT sum(missing) FROM edgeflow.gaps WHERE stream = 's2'").fetchone() == (5,)
    st.store([items[i] for i in (0, 1, 4, 6, 7)])
    assert st.gaps() == []
    st.close()


def test_concurrent_stores_of_the_same_batches_write_each_once(pg_url: str) -> None:
    items = _items("s4", range(60))
    stores = [Store(pg_url, receiver=f"r{i}") for i in range(3)]
    for s in stores:
        s.open()
    results: list[list[bool]] = [[] for _ in stores]

    def run(k: int) -> None:
        rng = np.random.default_rng(k)
        order = rng.permutation(len(items))
        for lo in range(0, len(order), 7):
            results[k] += stores[k].store([items[i] for i in order[lo : lo + 7]])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert sum(sum(r) for r in results) == 60  # every batch stored by exactly one of them
    check_db(pg_url, range(60))
    for s in stores:
        s.close()


def test_schema_migration_is_idempotent_and_refuses_a_newer_schema(pg_url: str) -> None:
    for _ in range(2):
        st = Store(pg_url)
        st.open()
        st.close()
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT count(*) FROM edgeflow.schema_version").fetchone() == (SCHEMA_VERSION,)
        # a database of the first schema (before the shared series tables) is migrated
        c.execute("DROP TABLE edgeflow.series_tables")
        c.execute("DELETE FROM edgeflow.schema_version WHERE version > 1")
    st = Store(pg_url)
    st.open()
    st.store_tables({b"h" * 8: b"t"})
    assert st.load_tables([b"h" * 8, b"x" * 8]) == {b"h" * 8: b"t"}
    st.close()
    with psycopg.connect(pg_url) as c:
        c.execute("INSERT INTO edgeflow.schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(Exception, match=f"schema version {SCHEMA_VERSION + 1}"):
        Store(pg_url).open()


def test_non_numeric_values_and_window_starts_round_trip(pg_url: str) -> None:
    t = SeriesTable()
    name = t.intern("d", "name", "p", ValueType.STRING)
    raw = t.intern("d", "blob", "p", ValueType.BINARY)
    mean = t.intern("d", "mean", "p", ValueType.FLOAT64)
    objects = np.array(["hello", b"\x00\x01", None], dtype=object)
    b1 = ReadingBatch(
        t, np.array([1, 2, 3]), np.array([np.nan, np.nan, 2.5]), np.array([name, raw, mean]), objects
    )
    b2 = ReadingBatch(
        t, np.array([10, 20]), np.array([1.5, 2.5]), np.array([mean, mean], np.int32), None, np.array([5, 15])
    )
    enc = make_encoder("compact", stream_id="v")
    items = [(decode(e.payload), "t") for b in (b1, b2) for e in enc.encode(b)]
    st = Store(pg_url)
    st.open()
    assert all(st.store(items))
    st.close()
    with psycopg.connect(pg_url) as c:
        rows = c.execute(
            "SELECT resource, value_type, origin, value, value_obj, start, interpolation"
            " FROM edgeflow.readings_view ORDER BY origin"
        ).fetchall()
    assert rows == [
        ("name", "String", 1, None, "hello", None, "hold"),
        ("blob", "Binary", 2, None, "AAE=", None, "hold"),
        ("mean", "Float64", 3, 2.5, None, None, "hold"),
        ("mean", "Float64", 10, 1.5, None, 5, "hold"),
        ("mean", "Float64", 20, 2.5, None, 15, "hold"),
    ]


def test_plain_edgex_events_without_stream_tags_are_stored_each_time(pg_url: str) -> None:
    """An EdgeX device service's own event carries no stream id or sequence number: nothing to
    de-duplicate by, so it is stored as it comes (and counted as untracked by the receiver)."""
    from edgeflow.model import Event, Reading, encode_add_event_request

    origin = 1_700_000_000_000_000_000
    r = Reading("edgex-dev", "temp", "p", ValueType.FLOAT64, 21.5, origin)
    payload = encode_add_event_request(Event("edgex-dev", "p", "temp", origin, [r]))
    b = decode(payload)
    assert b.seq < 0
    with Store(pg_url) as st:
        assert st.store([(b, "edgex/events/device/x"), (b, "edgex/events/device/x")]) == [True, True]
        assert st.count_readings() == 2
        assert st.streams() == {}
        assert st.series_at("edgex-dev", "temp", [origin, origin + 1]).tolist() == [21.5, 21.5]


def test_a_url_with_a_password_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    receive_cmd.add_arguments(parser)
    args = parser.parse_args(["--sink", "postgresql://u:secret@127.0.0.1:1/db", "--duration", "1"])
    assert receive_cmd.run(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "carries a password" in err
    assert "secret" not in err
    args = parser.parse_args(["--sink", "mysql://u@h/db"])
    assert receive_cmd.run(args) == 2
    assert "expected a postgresql:// URL" in capsys.readouterr().err
    args = parser.parse_args(["--sink", "postgresql://u@h/db", "--out", "x.jsonl"])
    assert receive_cmd.run(args) == 2
    assert "not both" in capsys.readouterr().err


def test_password_from_a_file_or_the_environment(
    pg_cluster: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_cluster.create_database()
    role = f"edge_{os.getpid()}"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-in-a-file'")
    try:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(f"GRANT CREATE ON DATABASE {url.rsplit('/', 1)[1]} TO {role}")
        if not pg_cluster.external:  # the role must give a password (the rest of the cluster trusts)
            hba = pg_cluster.datadir / "pg_hba.conf"
            hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            with psycopg.connect(pg_cluster.url(), autocommit=True) as c:
                c.execute("SELECT pg_reload_conf()")
        pw = tmp_path / "pw"
        pw.write_text("pw-in-a-file\n")
        edge_url = url.replace("postgres@", f"{role}@")
        with Store(edge_url, password_file=pw) as st:
            assert st.streams() == {}
        wrong = tmp_path / "wrong"
        wrong.write_text("not-it\n")
        if not pg_cluster.external:
            with pytest.raises(Exception, match="password authentication failed"):
                Store(edge_url, password_file=wrong).open()
        with pytest.raises(Exception, match="cannot read the password file"):
            Store(edge_url, password_file=tmp_path / "missing").open()
        monkeypatch.setenv("PGPASSWORD", "pw-in-a-file")  # libpq's own: PGPASSWORD, PGPASSFILE, ~/.pgpass
        with Store(edge_url) as st:
            assert st.gaps() == []
    finally:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(f"DROP OWNED BY {role} CASCADE")
        with psycopg.connect(pg_cluster.url(), autocommit=True) as c:
            c.execute(f"DROP ROLE {role}")


# -- with a broker ------------------------------------------------------------------------------------


async def _publisher(broker: MosquittoBroker, name: str = "raw-publisher") -> MqttConnection:
    conn = MqttConnection(ConnectParams("127.0.0.1", broker.port, name), on_ack=lambda mid, ok, why: None)
    await conn.connect()
    return conn


@pytest.mark.server
async def test_malformed_and_foreign_messages_are_counted_acknowledged_never_stored(
    mosquitto: MosquittoBroker, pg_url: str
) -> None:
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"], sink=Store(pg_url), client_id="rx-bad")
    await rx.start()
    pub = await _publisher(mosquitto)
    good = [b for b, _ in _items("g", range(3))]
    enc = make_encoder("compact", stream_id="g")
    payloads = [e.payload for i in range(3) for e in enc.encode(make_batch(table(), i))]
    assert [decode(p).seq for p in payloads] == [b.seq for b in good]
    for p in (
        payloads[0],
        b"hello, not ours",  # foreign
        b"EFC\x01\x00\x02st\x05garbage",  # compact header, broken body
        b'{"apiVersion": "v3", "event": {"readings": 7}}',  # broken EdgeX event
        b"",  # empty
        payloads[1],
        payloads[1],  # duplicate
        payloads[2],
    ):
        pub.publish("edgeflow/x/batches", p)
    await wait_for(lambda: rx.counts["acked"] == 8, 20, "every message acknowledged")
    assert rx.counts["foreign"] == 2
    assert rx.counts["malformed"] == 2
    assert rx.counts["duplicates"] == 1
    assert rx.counts["batches"] == 3
    await rx.stop()
    check_db(pg_url, range(3))  # nothing of the bad messages stored
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT count(*) FROM edgeflow.batches").fetchone() == (3,)
    # acknowledged: the same session gets none of them again, only what is new
    again = Receiver(mosquitto.url, ["edgeflow/+/batches"], sink=Store(pg_url), client_id="rx-bad")
    await again.start()
    pub.publish("edgeflow/x/batches", b"one more foreign message")
    await wait_for(lambda: again.counts["acked"] == 1, 20, "the new message")
    await asyncio.sleep(0.5)
    assert again.counts["messages"] == 1
    await again.stop()
    await pub.disconnect()


@pytest.mark.server
async def test_a_batch_the_database_refuses_is_counted_and_does_not_block_the_others(
    mosquitto: MosquittoBroker, pg_url: str
) -> None:
    """A value PostgreSQL cannot hold (NUL in a JSON string) fails for good, not for a while: the group
    is stored message by message, the refused one is counted, logged and acknowledged, the rest stored."""
    t = SeriesTable()
    name = t.intern("d", "name", "p", ValueType.STRING)
    poison = ReadingBatch(
        t, np.array([1]), np.array([np.nan]), np.array([name], np.int32), np.array(["a\x00b"], dtype=object)
    )
    (bad,) = make_encoder("compact", stream_id="poison").encode(poison)
    enc = make_encoder("compact", stream_id="g")
    good = [e.payload for i in range(4) for e in enc.encode(make_batch(table(), i))]
    st = Store(pg_url)
    st.open()
    with pytest.raises(Exception, match="failed") as info:
        st.store([(decode(bad.payload), "t")])
    assert info.value.permanent
    st.close()
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"], sink=Store(pg_url), client_id="rx-poison")
    await rx.start()
    pub = await _publisher(mosquitto)
    for p in (good[0], good[1], bad.payload, good[2], good[3]):
        pub.publish("edgeflow/x/batches", p)
    await wait_for(lambda: rx.counts["acked"] == 5, 30, "every message acknowledged")
    assert rx.counts["unstorable"] == 1
    assert rx.counts["batches"] == 4
    assert rx.counts["store_failures"] == 0
    await rx.stop()
    await pub.disconnect()
    check_db(pg_url, range(4))


@pytest.mark.server
async def test_a_failing_sink_acknowledges_nothing_and_the_broker_delivers_again(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """A full disk (``/dev/full``): nothing acknowledged, failures counted, the receiver backs off
    instead of spinning; a receiver with the same client id and a working disk then gets every message."""
    full = Receiver(
        mosquitto.url,
        ["edgeflow/+/batches"],
        sink=JsonLinesSink(Path("/dev/full"), fsync=False),
        client_id="rx-disk",
        store_backoff=(0.2, 1.0),
    )
    await full.start()
    pub = await _publisher(mosquitto)
    enc = make_encoder("compact", stream_id="f")
    for i in range(5):
        for e in enc.encode(make_batch(table(), i)):
            pub.publish("edgeflow/x/batches", e.payload)
    await wait_for(lambda: full.counts["store_failures"] >= 3, 30, "repeated store failures")
    started = time.monotonic()
    failures = full.counts["store_failures"]
    await asyncio.sleep(1.5)
    assert full.counts["store_failures"] - failures <= 4  # backing off: at most one try per ~0.5-1 s
    assert time.monotonic() - started >= 1.5
    assert full.counts["acked"] == 0
    assert full.counts["batches"] == 0
    assert full.counts["reconnects"] >= 1  # reconnected to have the messages delivered again
    await full.stop()
    out = tmp_path / "r.jsonl"
    ok = Receiver(mosquitto.url, ["edgeflow/+/batches"], out=out, client_id="rx-disk", keep=True)
    await ok.start()
    await wait_for(lambda: ok.counts["batches"] == 5, 20, "the redelivered batches")
    await ok.stop()
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(lines) == 5 * PER_BATCH
    # a restarted file sink reads back what it holds: a redelivery is not written twice
    sink = JsonLinesSink(out)
    sink.open()
    assert sink.store(_items("f", range(6))) == [False] * 5 + [True]
    sink.close()
    assert len(out.read_bytes().splitlines()) == 6 * PER_BATCH
    await pub.disconnect()


@pytest.mark.server
@pytest.mark.slow
async def test_database_stopped_for_10_s_loses_nothing(
    mosquitto: MosquittoBroker, pg_own_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = pg_own_cluster.create_database()
    rx = Receiver(
        mosquitto.url,
        ["edgeflow/+/batches"],
        sink=Store(url, receiver="rx-db"),
        client_id="rx-db",
        store_backoff=(0.5, 3.0),
    )
    await rx.start()
    up = MqttUplink(uplink_spec(mosquitto.url, tmp_path / "ob.sqlite"), service="s")
    await up.start()
    producer = Producer(up)
    await producer.run(2)
    await wait_for(lambda: _count(url) > 0, 20, "the first readings stored")
    await asyncio.to_thread(pg_own_cluster.stop)
    await producer.run(10)  # the database is down for these 10 s
    assert rx.counts["store_failures"] >= 1
    await asyncio.to_thread(pg_own_cluster.start)
    await producer.run(2)
    await wait_for(lambda: _count(url) == producer.sent * PER_BATCH, 90, "every reading stored")
    await wait_for(lambda: up.stats()["queued"] == 0, 20, "the edge's outbox drained")
    await rx.stop()
    await up.stop()
    check_db(url, range(producer.sent))
    st = Store(url)
    assert st.gaps() == []
    st.close()
    assert rx.counts["store_failures"] >= 1
    assert rx.counts["reconnects"] >= 1


def _receiver_proc(broker: MosquittoBroker, db_url: str, name: str, log: IO[bytes]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeflow",
            "receive",
            "--url",
            broker.url,
            "--topic",
            "edgeflow/+/batches",
            "--group",
            "cloud",
            "--client-id",
            name,
            "--sink",
            db_url,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def _edge_proc(url: str, outbox: Path, stop: int, rate: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "uplink_edge.py"), url, str(outbox), str(stop), str(rate)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + str(ROOT)),
    )


def _reap(procs: list[subprocess.Popen[str]]) -> None:
    """Kill what still runs and close the pipes (a test's cleanup, also after a failure)."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        if p.stdout is not None:
            p.stdout.close()


async def _subscribed(broker: MosquittoBroker, name: str, times: int = 1) -> None:
    await wait_for(
        lambda: broker.log_text().count(f"Received SUBSCRIBE from {name}") >= times, 60, f"{name} subscribed"
    )


async def _edge_line(proc: subprocess.Popen[str], prefix: str, seconds: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line:
            raise AssertionError(f"the edge ended before {prefix!r}")
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"no {prefix!r} from the edge within {seconds} s")


@pytest.mark.server
@pytest.mark.slow
async def test_three_receivers_in_a_group_one_killed_and_the_edge_restarted_store_each_reading_once(
    mosquitto: MosquittoBroker, pg_url: str, tmp_path: Path
) -> None:
    total = 400
    logs = tmp_path / "receivers.log"
    log = logs.open("ab")
    names = ["rx0", "rx1", "rx2"]
    procs = {n: _receiver_proc(mosquitto, pg_url, n, log) for n in names}
    edge: subprocess.Popen[str] | None = None
    edges: list[subprocess.Popen[str]] = []
    try:
        for n in names:
            await _subscribed(mosquitto, n)
        outbox = tmp_path / "edge.sqlite"
        edge = _edge_proc(mosquitto.url, outbox, total, rate=40)
        edges.append(edge)
        await wait_for(lambda: _count(pg_url, "batches") >= 60, 60, "60 batches stored")
        procs["rx1"].send_signal(signal.SIGKILL)  # mid-stream, with messages in flight to it
        assert procs["rx1"].wait(10) == -signal.SIGKILL
        await wait_for(lambda: _count(pg_url, "batches") >= 120, 60, "120 batches stored")
        procs["rx1"].stdout.close()  # type: ignore[union-attr]
        procs["rx1"] = _receiver_proc(mosquitto, pg_url, "rx1", log)  # same client id: same session
        await _edge_line(edge, "committed 200", 60)
        edge.send_signal(signal.SIGKILL)  # the edge restarted once, mid-stream
        assert edge.wait(10) == -signal.SIGKILL
        edge = _edge_proc(mosquitto.url, outbox, total, rate=80)
        edges.append(edge)
        resumed = await _edge_line(edge, "resumed", 60)
        assert 200 <= int(resumed.split()[1]) <= total
        await _edge_line(edge, "done", 120)
        await wait_for(lambda: _count(pg_url, "batches") == total, 90, "every batch stored")
        summaries = {}
        for n, sig in zip(names, (signal.SIGTERM, signal.SIGINT, signal.SIGTERM), strict=True):
            procs[n].send_signal(sig)
        for n in names:
            out, _ = procs[n].communicate(timeout=60)
            assert procs[n].returncode == 0, logs.read_text()[-2000:]
            summaries[n] = orjson.loads(out)
    finally:
        _reap([*procs.values(), *edges])
        log.close()
    check_db(pg_url, range(total))
    st = Store(pg_url)
    assert st.gaps() == []
    assert st.streams()[next(iter(st.streams()))]["batches"] == total
    st.close()
    with psycopg.connect(pg_url) as c:
        by = dict(c.execute("SELECT receiver, count(*) FROM edgeflow.batches GROUP BY 1").fetchall())
    assert sum(by.values()) == total
    assert len(by) == 3, by  # the group shared the load
    for s in summaries.values():
        assert s["sink"] == "postgresql"
        assert s["stored_missing"] == 0
        assert s["store_failures"] == 0


@pytest.mark.server
@pytest.mark.slow
async def test_receivers_in_a_group_share_the_series_table_through_the_database(
    mosquitto: MosquittoBroker, pg_url: str, tmp_path: Path
) -> None:
    """The table travels once, in the first message; the group splits the messages, so the receiver that
    did not get the first one finds the table in the database (in its own process: no shared memory)."""
    total = 40
    logs = tmp_path / "receivers.log"
    log = logs.open("ab")
    names = ["rxa", "rxb"]
    procs = {n: _receiver_proc(mosquitto, pg_url, n, log) for n in names}
    pub: MqttConnection | None = None
    try:
        for n in names:
            await _subscribed(mosquitto, n)
        enc = make_encoder(
            "compact", stream_id="shared-table", series_table=True, table_min_series=1, table_interval=3600
        )
        payloads = [e.payload for i in range(total) for e in enc.encode(make_batch(table(), i, per_series=2))]
        assert [batch_table(p) is not None for p in payloads] == [True] + [False] * (total - 1)
        pub = await _publisher(mosquitto)
        for p in payloads:
            pub.publish("edgeflow/x/batches", p)
        await wait_for(lambda: _count(pg_url, "batches") == total, 60, "every batch stored")
        for n in names:
            procs[n].send_signal(signal.SIGTERM)
        for n in names:
            procs[n].communicate(timeout=60)
            assert procs[n].returncode == 0, logs.read_text()[-2000:]
    finally:
        if pub is not None:
            await pub.disconnect()
        _reap(list(procs.values()))
        log.close()
    with psycopg.connect(pg_url) as c:
        by = dict(c.execute("SELECT receiver, count(*) FROM edgeflow.batches GROUP BY 1").fetchall())
        tables = c.execute("SELECT count(*) FROM edgeflow.series_tables").fetchone()
    assert sorted(by) == ["rxa", "rxb"], by  # both took some, so one of them never saw the table travel
    assert tables == (1,)
    assert _count(pg_url) == total * 2 * SERIES


# -- reading back ------------------------------------------------------------------------------------


@pytest.mark.data
@pytest.mark.parametrize("rule", ["swing", "pmc_mr"])
def test_reconstruction_from_the_database_stays_within_the_bound(
    shared_data: Path, pg_url: str, rule: str
) -> None:
    """The NAB machine temperature through the edge's rule at max error 1 % of its range, stored, and
    rebuilt from the database at every input timestamp (and between them). The series' clock steps back
    55 minutes once, at row 10,148; the database orders a series' points by origin, so the test takes
    the rows before the step (see the README: a series whose clock steps back overlaps itself)."""
    from edgeflow.replay import read_csv
    from edgeflow.rules.pipeline import build_pipeline

    src = shared_data / "timeseries/nab_machine_temperature_system_failure.csv"
    if not src.exists():
        pytest.skip(f"{src} is absent")
    data = read_csv(src, sep=",", time_column="timestamp", value_columns=["value"])
    step = int(np.flatnonzero(np.diff(data.times) < 0)[0]) + 1
    times, x = data.times[:step], data.values[:step, 0]
    bound = 0.01 * float(data.values[:, 0].max() - data.values[:, 0].min())
    t = SeriesTable()
    sid = t.intern("nab", "temperature", "replay", ValueType.FLOAT64)
    pipeline = build_pipeline([{"type": rule, "max_error": bound}], t)
    enc = make_encoder("compact", stream_id="replay")
    items = []
    for lo in range(0, len(x), 1000):
        hi = min(lo + 1000, len(x))
        batch = ReadingBatch(t, times[lo:hi], x[lo:hi], np.full(hi - lo, sid, np.int32))
        for out in (pipeline.process(batch), *([pipeline.flush()] if hi == len(x) else [])):
            items += [(decode(e.payload), "t") for e in enc.encode(out.batch, out.interpolation)]
    with Store(pg_url) as st:
        assert all(st.store(items))
        shipped = sum(b.readings for b, _ in items)
        assert shipped < len(x) / 3  # the rule did reduce
        y = st.series_at("nab", "temperature", times)
        assert np.isfinite(y).all()
        assert np.abs(y - x).max() <= bound * (1 + 1e-9)
        # any timestamps, not only the readings': within the bound of the neighbouring readings
        mid = (times[:-1] + times[1:]) // 2
        ym = st.series_at("nab", "temperature", mid)
        lo_v, hi_v = np.minimum(x[:-1], x[1:]), np.maximum(x[:-1], x[1:])
        assert ((ym >= lo_v - bound * (1 + 1e-9)) & (ym <= hi_v + bound * (1 + 1e-9))).all()
        # the SQL function gives the same values
        probe = np.concatenate([times[::997], mid[::1009]])
        with psycopg.connect(pg_url) as c:
            sql_vals = [
                c.execute("SELECT edgeflow.value_at('nab', 'temperature', %s)", (int(p),)).fetchone()[0]
                for p in probe
            ]
        np.testing.assert_allclose(sql_vals, st.series_at("nab", "temperature", probe), rtol=1e-12)
        assert np.isnan(st.series_at("nab", "temperature", [int(times[0]) - 1])).all()
