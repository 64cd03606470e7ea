"""The receiver: de-duplication, gaps, foreign and malformed messages, shared subscriptions, JSON lines,
and ``edgeflow receive``."""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import MosquittoBroker, MosquittoFactory, closed_by_peer, silent_listener
from uplink_support import check_series, make_batch, table, uplink_spec, wait_for

from edgeflow.cli import receive as receive_cmd
from edgeflow.cloud import Receiver, StoreItem, StreamTracker
from edgeflow.codec import make_encoder
from edgeflow.mqtt.connection import ConnectParams, MqttConnection
from edgeflow.uplink.mqtt import MqttUplink


def test_stream_tracker_dedups_and_reports_gaps() -> None:
    t = StreamTracker("s")
    assert [t.add(s) for s in (0, 1, 2, 5, 6, 2, 9, 4)] == [True, True, True, True, True, False, True, True]
    assert t.ranges == [[0, 2], [4, 6], [9, 9]]
    assert t.gaps == [(3, 3), (7, 8)]
    assert t.missing == 3
    assert t.add(3)  # a late arrival (an alarm ahead of it, or a re-send) closes the gap
    assert t.add(8)
    assert t.add(7)
    assert t.ranges == [[0, 9]]
    assert t.summary() == {
        "received": 10,
        "duplicates": 1,
        "first_seq": 0,
        "last_seq": 9,
        "missing": 0,
        "gaps": [],
    }


async def _publisher(broker: MosquittoBroker) -> MqttConnection:
    conn = MqttConnection(
        ConnectParams("127.0.0.1", broker.port, "raw-publisher"), on_ack=lambda mid, ok, why: None
    )
    await conn.connect()
    return conn


@pytest.mark.server
async def test_foreign_and_malformed_messages_are_counted_and_skipped(mosquitto: MosquittoBroker) -> None:
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"], keep=True)
    await rx.start()
    pub = await _publisher(mosquitto)
    enc = make_encoder("compact", stream_id="st")
    t = table()
    good = [e.payload for i in range(3) for e in enc.encode(make_batch(t, i))]
    pub.publish("edgeflow/x/batches", good[0])
    pub.publish("edgeflow/x/batches", b"hello, not ours")  # foreign
    pub.publish("edgeflow/x/batches", b"EFC\x01\x00\x02st\x05garbage")  # compact header, broken body
    pub.publish("edgeflow/x/batches", b'{"apiVersion": "v3", "event": {"readings": 7}}')  # broken JSON event
    pub.publish("edgeflow/x/batches", b"")  # empty
    pub.publish("edgeflow/x/batches", good[1])
    pub.publish("edgeflow/x/batches", good[1])  # duplicate
    pub.publish("edgeflow/x/batches", good[2])
    await wait_for(lambda: rx.counts["messages"] == 8, 10, "all messages")
    assert rx.counts["foreign"] == 2
    assert rx.counts["malformed"] == 2
    assert rx.counts["duplicates"] == 1
    assert rx.counts["batches"] == 3
    check_series(rx.series(), range(3))
    await pub.disconnect()
    await rx.stop()


@pytest.mark.server
async def test_gaps_are_reported_per_stream(mosquitto: MosquittoBroker) -> None:
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"])
    await rx.start()
    pub = await _publisher(mosquitto)
    t = table()
    for sid in ("a", "b"):
        enc = make_encoder("compact", stream_id=sid)
        payloads = [e.payload for i in range(6) for e in enc.encode(make_batch(t, i))]
        for seq, p in enumerate(payloads):
            if sid == "a" and seq in (2, 3):
                continue
            pub.publish("edgeflow/x/batches", p)
    await wait_for(lambda: rx.counts["messages"] == 10, 10, "messages")
    st = rx.stats()
    assert st["streams"]["a"]["gaps"] == [(2, 3)]
    assert st["streams"]["a"]["missing"] == 2
    assert st["streams"]["b"]["missing"] == 0
    assert st["missing"] == 2
    await pub.disconnect()
    await rx.stop()


@pytest.mark.server
async def test_shared_subscription_splits_the_load(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    got: dict[str, list[int]] = {"r1": [], "r2": []}
    rxs = [
        Receiver(
            mosquitto.url,
            ["edgeflow/+/batches"],
            group="cloud",
            client_id=name,
            keep=True,
            on_batch=lambda b, tp, name=name: got[name].append(b.seq),  # type: ignore[misc]
        )
        for name in got
    ]
    for r in rxs:
        await r.start()
    up = MqttUplink(uplink_spec(mosquitto.url, tmp_path / "ob.sqlite"), service="s")
    await up.start()
    t = table()
    for i in range(40):
        await up.send(make_batch(t, i))
    await wait_for(lambda: len(got["r1"]) + len(got["r2"]) == 40, 10, "all batches across the group")
    assert got["r1"]
    assert got["r2"]
    assert sorted(got["r1"] + got["r2"]) == list(range(40))  # each batch to exactly one receiver
    await up.stop()
    for r in rxs:
        await r.stop()


@pytest.mark.server
async def test_jsonl_output_one_line_per_reading(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    out = tmp_path / "readings.jsonl"
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"], out=out)
    await rx.start()
    up = MqttUplink(uplink_spec(mosquitto.url, tmp_path / "ob.sqlite"), service="s")
    await up.start()
    await up.send(make_batch(table(), 0, per_series=3))
    await wait_for(lambda: rx.counts["readings"] == 12, 10, "readings")
    await up.stop()
    await rx.stop()
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(lines) == 12
    first = lines[0]
    assert first["device"] == "pump-0"
    assert first["resource"] == "pressure"
    assert first["seq"] == 0
    assert first["stream"] == up.stream_id
    assert first["topic"] == "edgeflow/s/batches"
    assert first["origin"] == 1_700_000_000_000_000_000
    assert first["value"] == 0.0
    assert first["valueType"] == "Float64"


@pytest.mark.server
def test_edgeflow_receive_cli(
    mosquitto: MosquittoBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    receive_cmd.add_arguments(parser)
    out = tmp_path / "r.jsonl"
    args = parser.parse_args(
        [
            "--url",
            mosquitto.url,
            "--topic",
            "edgeflow/#",
            "--out",
            str(out),
            "--duration",
            "3",
            "--client-id",
            "cli",
        ]
    )
    rc: list[int] = []
    th = threading.Thread(target=lambda: rc.append(receive_cmd.run(args)))
    th.start()

    async def ship() -> None:
        await asyncio.sleep(1.0)  # let the receiver subscribe
        up = MqttUplink(uplink_spec(mosquitto.url, tmp_path / "ob.sqlite"), service="s")
        await up.start()
        await up.send(make_batch(table(), 0, per_series=5))
        await up.stop()

    asyncio.run(ship())
    th.join(20)
    assert rc == [0]
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["readings"] == 20
    assert summary["missing"] == 0
    assert len(out.read_bytes().splitlines()) == 20


def test_receive_cli_refuses_a_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    receive_cmd.add_arguments(parser)
    assert receive_cmd.run(parser.parse_args(["--url", "http://x", "--duration", "1"])) == 1
    assert "scheme must be mqtt:// or mqtts://" in capsys.readouterr().err


def test_json_lines_carry_typed_values() -> None:
    from edgeflow.cloud import jsonl_lines
    from edgeflow.codec import decode
    from edgeflow.model import ReadingBatch, SeriesTable, ValueType

    t = SeriesTable()
    on = t.intern("d", "on", "p", ValueType.BOOL)
    n = t.intern("d", "count", "p", ValueType.INT32)
    x = t.intern("d", "temp", "p", ValueType.FLOAT64)
    batch = ReadingBatch.from_columns(t, [1, 2, 3], [1.0, 7.0, 2.5], [on, n, x])
    payload = make_encoder("compact", stream_id="s").encode(batch)[0].payload
    lines = [orjson.loads(line) for line in jsonl_lines(decode(payload), "t").splitlines()]
    assert [(r["resource"], r["value"]) for r in lines] == [("on", True), ("count", 7), ("temp", 2.5)]


def test_handle_without_a_broker_decodes_and_dedups() -> None:
    rx = Receiver("mqtt://127.0.0.1:1", ["x"], keep=True)
    payload = make_encoder("compact", stream_id="s").encode(make_batch(table(), 0))[0].payload
    assert rx.handle("x", payload) is not None
    assert rx.handle("x", payload) is None
    assert rx.counts["duplicates"] == 1
    check_series(rx.series(), range(1))


class _GateSink:
    """A sink of the test's own (the contract is open): holds every store until the gate opens."""

    name = "gate"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.stored: list[int] = []

    def open(self) -> None:
        pass

    def store(self, items: Sequence[StoreItem]) -> list[bool]:
        assert self.gate.wait(60)
        self.stored += [b.seq for b, _ in items]
        return [True] * len(items)

    def close(self) -> None:
        pass


@pytest.mark.server
async def test_a_slow_sink_bounds_what_waits_unacknowledged(mosquitto: MosquittoBroker) -> None:
    """MQTT 5 Receive Maximum: while the sink holds, the broker sends no more than that many messages."""
    sink = _GateSink()
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"], sink=sink, client_id="rx-slow", receive_maximum=5)
    await rx.start()
    pub = await _publisher(mosquitto)
    enc = make_encoder("compact", stream_id="slow")
    for i in range(40):
        for e in enc.encode(make_batch(table(), i)):
            pub.publish("edgeflow/x/batches", e.payload)
    await wait_for(lambda: rx.counts["messages"] == 5, 20, "the first five messages")
    await asyncio.sleep(1.0)
    assert rx.counts["messages"] == 5  # nothing more while none is acknowledged
    assert rx.counts["acked"] == 0
    sink.gate.set()
    await wait_for(lambda: rx.counts["acked"] == 40, 30, "every message stored and acknowledged")
    assert sorted(sink.stored) == list(range(40))
    await rx.stop()
    await pub.disconnect()


@pytest.mark.server
async def test_with_a_sink_a_message_awaiting_its_series_table_is_stored_once_the_table_comes(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """``series_table: true``: a receiver that missed the message carrying the table (it was dropped at
    the edge, or the receiver started later) holds the messages that refer to it unacknowledged, and
    stores them once a message carrying the table has been stored: nothing is acknowledged unstored."""
    import uuid

    from edgeflow.cloud import JsonLinesSink
    from edgeflow.codec import batch_table
    from edgeflow.model import ReadingBatch, SeriesTable

    t = SeriesTable()
    tag = uuid.uuid4().hex[:8]  # a table this process has not decoded before
    sids = np.asarray([t.intern(f"d-{tag}-{i}", "R", "P") for i in range(40)], dtype=np.int32)

    def batch(k: int) -> ReadingBatch:
        return ReadingBatch(t, np.full(40, 10**18 + k, dtype=np.int64), np.arange(40.0) + k, sids)

    enc = make_encoder("compact", stream_id="tables", series_table=True)
    (first,) = enc.encode(batch(0))  # carries the table; "dropped by the outbox": never published
    held = [enc.encode(batch(k))[0] for k in (1, 2)]
    assert batch_table(first.payload) is not None and all(batch_table(m.payload) is None for m in held)
    enc.resend_table()
    (carrier,) = enc.encode(batch(3))
    out = tmp_path / "r.jsonl"
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"], sink=JsonLinesSink(out), client_id="rx-tables")
    await rx.start()
    pub = await _publisher(mosquitto)
    for m in held:
        pub.publish("edgeflow/x/batches", m.payload)
    await wait_for(lambda: rx.counts["awaiting_table"] == 2, 20, "both held")
    assert (rx.counts["acked"] == 0 and not out.exists()) or out.read_bytes() == b""
    pub.publish("edgeflow/x/batches", carrier.payload)
    await wait_for(lambda: rx.counts["acked"] == 3, 20, "all three stored and acknowledged")
    await rx.stop()
    await pub.disconnect()
    assert rx.counts["batches"] == 3 and rx.counts["malformed"] == 0
    assert len(out.read_bytes().splitlines()) == 3 * 40


async def test_stop_while_reconnecting_to_a_broker_that_hangs_returns_and_leaves_no_connection(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """The broker goes away and something on its port accepts TCP but never answers CONNECT: the
    receiver is stuck in a connection attempt when it is told to stop. It stops at once and leaves no
    connection of its own behind (a connection made while stopping is closed by the loop that made it)."""
    broker = mosquitto_factory()
    rx = Receiver(broker.url, ["edgeflow/+/batches"], keep=True)
    await rx.start()
    broker.stop()
    with silent_listener(broker.port) as accepted:
        await wait_for(lambda: len(accepted) >= 1, 10, "the receiver's reconnection attempt")
        async with asyncio.timeout(5):
            await rx.stop()
        assert all(closed_by_peer(c) for c in accepted)
