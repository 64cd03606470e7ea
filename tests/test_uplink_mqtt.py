"""MQTT uplink against a real Mosquitto: delivery, encodings and topics, alarms, batching, restart."""

from __future__ import annotations

import asyncio
import base64
import signal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import MosquittoBroker, MosquittoFactory, free_port
from pydantic import TypeAdapter, ValidationError
from uplink_support import check_series, make_batch, table, uplink_spec, wait_for

from edgeflow.cloud import Receiver
from edgeflow.codec import DecodedBatch
from edgeflow.errors import UplinkError
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.mqtt.connection import ConnectParams, MqttConnection
from edgeflow.uplink.mqtt import MqttUplink
from edgeflow.uplink.spec import MqttUplinkSpec, UplinkSpec

pytestmark = pytest.mark.server


class Counter:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def inc(self, name: str, value: float = 1.0) -> None:
        self.values[name] = self.values.get(name, 0.0) + value


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_every_reading_arrives_once_in_order(
    mosquitto: MosquittoBroker, tmp_path: Path, protocol: str
) -> None:
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"], keep=True, protocol=protocol)  # type: ignore[arg-type]
    await rx.start()
    metrics = Counter()
    up = MqttUplink(
        uplink_spec(mosquitto.url, tmp_path / "ob.sqlite", protocol=protocol),
        service="line1",
        metrics=metrics,
    )
    await up.start()
    t = table()
    for i in range(60):
        await up.send(make_batch(t, i))
    await wait_for(lambda: rx.counts["readings"] == 60 * 100, 20, "all readings at the receiver")
    await wait_for(lambda: up.stats()["queued"] == 0, 5, "outbox empty")
    st = up.stats()
    assert st["acked"] == 60
    assert st["acked_readings"] == 6000
    assert st["dropped_by_policy"] == 0
    assert st["bytes_shipped"] > 0
    assert metrics.values["uplink_readings_acked"] == 6000
    assert metrics.values["uplink_bytes_shipped"] == st["bytes_shipped"]
    check_series(rx.series(), range(60))
    assert rx.counts["duplicates"] == 0
    (stream,) = rx.streams.values()
    assert stream.summary()["first_seq"] == 0
    assert stream.summary()["last_seq"] == 59
    assert stream.missing == 0
    await up.stop()
    await rx.stop()


async def test_edgex_json_goes_to_edgex_message_bus_topics(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    topics: list[str] = []

    def on_batch(b: DecodedBatch, topic: str) -> None:
        topics.append(topic)

    rx = Receiver(mosquitto.url, ["edgex/events/device/#"], on_batch=on_batch, keep=True)
    await rx.start()
    up = MqttUplink(
        uplink_spec(mosquitto.url, tmp_path / "ob.sqlite", encoding="edgex-json"), service="device-pumps"
    )
    await up.start()
    t = table()
    for i in range(3):
        await up.send(make_batch(t, i, per_series=2))
    await wait_for(lambda: rx.counts["readings"] == 3 * 2 * 4, 10, "edgex-json readings")
    assert set(topics) == {
        f"edgex/events/device/device-pumps/pump-profile/pump-{i}/pressure" for i in range(4)
    }
    assert rx.counts["batches"] == 24  # one EdgeX event per message
    await up.stop()
    await rx.stop()


@pytest.mark.parametrize("envelope", ["edgex-v3", "edgex-v4"])
async def test_edgex_message_bus_envelope(mosquitto: MosquittoBroker, tmp_path: Path, envelope: str) -> None:
    raw: list[bytes] = []
    sniffer = MqttConnection(
        ConnectParams("127.0.0.1", mosquitto.port, "sniffer"), on_message=lambda tp, p: raw.append(p)
    )
    await sniffer.connect()
    await sniffer.subscribe("edgex/events/device/#")
    rx = Receiver(mosquitto.url, ["edgex/events/device/#"], keep=True)
    await rx.start()
    spec = uplink_spec(mosquitto.url, tmp_path / "ob.sqlite", encoding="edgex-json", envelope=envelope)
    up = MqttUplink(spec, service="device-pumps")
    await up.start()
    await up.send(make_batch(table(), 0, per_series=1))
    await wait_for(lambda: rx.counts["readings"] == 4 and len(raw) == 4, 10, "events")
    env = orjson.loads(raw[0])
    assert env["apiVersion"] == "v3"
    assert env["errorCode"] == 0
    assert env["contentType"] == "application/json"
    inner = orjson.loads(base64.b64decode(env["payload"])) if envelope == "edgex-v3" else env["payload"]
    assert inner["apiVersion"] == "v3"
    assert inner["event"]["deviceName"] == "pump-0"
    assert inner["event"]["readings"][0]["resourceName"] == "pressure"
    check_series(rx.series(), range(1), per_series=1)
    await up.stop()
    await rx.stop()
    await sniffer.disconnect()


async def test_plain_edgex_events_are_received_without_dedup(mosquitto: MosquittoBroker) -> None:
    """Events from EdgeX itself carry no edgeflow stream: each is passed on, none is a 'duplicate'."""
    rx = Receiver(mosquitto.url, ["edgex/events/device/#"], keep=True)
    await rx.start()
    pub = MqttConnection(
        ConnectParams("127.0.0.1", mosquitto.port, "edgex-device-service"), on_ack=lambda m, ok, why: None
    )
    await pub.connect()
    for i in range(3):
        ev = {
            "apiVersion": "v3",
            "requestId": "r",
            "event": {
                "apiVersion": "v3",
                "id": f"e{i}",
                "deviceName": "Random-Float-Device",
                "profileName": "Random-Float-Device",
                "sourceName": "Float64",
                "origin": 1_700_000_000_000_000_000 + i,
                "readings": [
                    {
                        "id": f"r{i}",
                        "origin": 1_700_000_000_000_000_000 + i,
                        "deviceName": "Random-Float-Device",
                        "resourceName": "Float64",
                        "profileName": "Random-Float-Device",
                        "valueType": "Float64",
                        "value": "1.500000e+00",
                    }
                ],
            },
        }
        pub.publish(
            "edgex/events/device/device-virtual/Random-Float-Device/Random-Float-Device/Float64",
            orjson.dumps(ev),
        )
    await wait_for(lambda: rx.counts["messages"] == 3, 10, "events")
    assert rx.counts["untracked"] == 3
    assert rx.counts["duplicates"] == 0
    assert rx.counts["readings"] == 3
    (s,) = rx.series().values()
    assert s.origins.tolist() == [1_700_000_000_000_000_000 + i for i in range(3)]
    await pub.disconnect()
    await rx.stop()


async def test_topic_template_splits_a_batch_by_device(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    topics: list[str] = []
    rx = Receiver(mosquitto.url, ["plant/#"], on_batch=lambda b, tp: topics.append(tp), keep=True)
    await rx.start()
    spec = uplink_spec(mosquitto.url, tmp_path / "ob.sqlite", topic="plant/{service}/{device}/{source}")
    up = MqttUplink(spec, service="a/b+c%")
    await up.start()
    t = table()
    for i in range(5):
        await up.send(make_batch(t, i))
    await wait_for(lambda: rx.counts["readings"] == 500, 10, "readings")
    # names with / + # are escaped so each stays one topic level, and % too, so "a/b" and "a%2Fb" differ
    assert sorted(set(topics)) == [f"plant/a%2Fb%2Bc%25/pump-{i}/pressure" for i in range(4)]
    check_series(rx.series(), range(5))
    await up.stop()
    await rx.stop()


async def test_alarm_jumps_the_queue(mosquitto_factory: MosquittoFactory, tmp_path: Path) -> None:
    broker = mosquitto_factory()
    order: list[tuple[int, bool]] = []
    rx = Receiver(
        broker.url, ["edgeflow/+/batches"], on_batch=lambda b, tp: order.append((b.seq, b.alarm)), keep=True
    )
    await rx.start()  # its session (subscription, queued messages) outlives the outage
    broker.stop()
    up = MqttUplink(uplink_spec(broker.url, tmp_path / "ob.sqlite"), service="s")
    await up.start()  # broker down: start does not fail, batches wait in the outbox
    t = table()
    for i in range(10):
        await up.send(make_batch(t, i))
    await up.send(make_batch(t, 250, per_series=1), alarm=True)  # the reading after batch 9's last
    assert up.stats()["queued"] == 11
    broker.start()
    await wait_for(lambda: len(order) == 11, 20, "all batches")
    assert order[0] == (10, True)
    assert [s for s, _ in order[1:]] == list(range(10))
    # reconstructed in sequence order, so the alarm's reading lands after batch 9's
    check_series(rx.series(), range(251), per_series=1)
    await up.stop()
    await rx.stop()


async def test_batching_by_count_and_delay(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    sizes: list[int] = []
    rx = Receiver(
        mosquitto.url, ["edgeflow/+/batches"], on_batch=lambda b, tp: sizes.append(b.readings), keep=True
    )
    await rx.start()
    spec = uplink_spec(mosquitto.url, tmp_path / "ob.sqlite", batching={"max_readings": 300, "max_delay": 30})
    up = MqttUplink(spec, service="s")
    await up.start()
    t = table()
    for i in range(6):  # 100 readings each: the count is reached twice, long before the delay
        await up.send(make_batch(t, i))
    await wait_for(lambda: sum(sizes) == 600, 10, "the first 600 readings")
    assert sizes == [300, 300]
    await up.send(make_batch(t, 6))  # below the count: it waits for the delay (or a flush)
    # send returned: the readings are durable already, staged in the commit log, their message not cut
    assert (up.stats()["batching"], up.stats()["staged"]) == (0, 100)
    await up.flush()
    await wait_for(lambda: sum(sizes) == 700, 10, "all readings")
    assert sizes == [300, 300, 100]
    check_series(rx.series(), range(7))
    await up.stop()
    await rx.stop()


async def test_large_send_is_split_at_max_readings(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    sizes: list[int] = []
    rx = Receiver(
        mosquitto.url, ["edgeflow/+/batches"], on_batch=lambda b, tp: sizes.append(b.readings), keep=True
    )
    await rx.start()
    up = MqttUplink(
        uplink_spec(mosquitto.url, tmp_path / "ob.sqlite", batching={"max_readings": 1000}), service="s"
    )
    await up.start()
    await up.send(make_batch(table(), 0, per_series=1000))  # 4000 readings
    await wait_for(lambda: sum(sizes) == 4000, 10, "all readings")
    assert sizes == [1000] * 4
    await up.stop()
    await rx.stop()


async def test_stop_keeps_unsent_batches_and_restart_resumes_the_stream(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory()
    rx = Receiver(broker.url, ["edgeflow/+/batches"], keep=True)
    await rx.start()  # its session (subscription, queued messages) outlives the outage
    broker.stop()
    path = tmp_path / "ob.sqlite"
    t = table()
    up = MqttUplink(uplink_spec(broker.url, path), service="s")
    await up.start()
    for i in range(5):
        await up.send(make_batch(t, i))
    stream = up.stream_id
    await up.stop(flush_timeout=0.2)
    broker.start()
    up2 = MqttUplink(uplink_spec(broker.url, path), service="s")
    await up2.start()
    assert up2.stream_id == stream
    assert up2.stats()["recovered"] == 5
    for i in range(5, 8):
        await up2.send(make_batch(t, i))
    await wait_for(lambda: rx.counts["readings"] == 800, 10, "all readings")
    assert list(rx.streams) == [stream]
    assert rx.streams[stream].summary()["last_seq"] == 7
    assert rx.streams[stream].missing == 0
    check_series(rx.series(), range(8))
    await up2.stop()
    await rx.stop()


async def test_send_before_start_and_bad_interpolation_are_errors(tmp_path: Path) -> None:
    up = MqttUplink(uplink_spec(f"mqtt://127.0.0.1:{free_port()}", tmp_path / "ob.sqlite"), service="s")
    with pytest.raises(UplinkError, match="not started"):
        await up.send(make_batch(table(), 0))
    await up.start()  # nobody listens there: start still succeeds, readings wait in the outbox
    with pytest.raises(UplinkError, match="interpolation of series 1 is 'cubic'"):
        await up.send(make_batch(table(), 0), {0: "linear", 1: "cubic"})
    await up.send(make_batch(table(), 0), {0: "linear"})
    assert up.stats()["queued"] == 1
    assert up.stats()["connect_failures"] >= 1
    await up.stop()


@pytest.mark.slow
async def test_link_that_dies_silently_is_detected_by_keepalive(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The broker freezes (no FIN, no RST): batches sent into the dead link are not lost."""
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"], keep=True)
    await rx.start()
    up = MqttUplink(uplink_spec(mosquitto.url, tmp_path / "ob.sqlite", keepalive=5), service="s")
    await up.start()
    t = table()
    await up.send(make_batch(t, 0))
    await wait_for(lambda: up.stats()["acked"] == 1, 5, "first ack")
    assert mosquitto.proc is not None
    mosquitto.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(1, 20):
            await up.send(make_batch(t, i))
            await asyncio.sleep(0.05)
        assert up.stats()["inflight"] > 0  # written to a socket nobody reads
        await wait_for(lambda: up.stats()["connected"] == 0, 15, "keepalive to notice the dead link")
        assert up.stats()["queued"] == 19  # nothing was deleted without a PUBACK
    finally:
        mosquitto.proc.send_signal(signal.SIGCONT)
    await wait_for(lambda: rx.counts["readings"] == 2000, 30, "every reading")
    check_series(rx.series(), range(20))
    await up.stop()
    await rx.stop()


def test_spec_is_part_of_the_uplink_union_and_errors_name_the_field() -> None:
    ta: TypeAdapter[Any] = TypeAdapter(UplinkSpec)
    spec = ta.validate_python(
        {
            "type": "mqtt",
            "url": "mqtts://broker.example",
            "tls": {"ca_file": "/etc/ca.pem", "cert_file": "/c.pem", "key_file": "/k.pem"},
            "auth": {"username": "edge", "password": "s3cret"},
            "outbox": {"max_bytes": "64MiB", "overflow": "drop-newest"},
        }
    )
    assert isinstance(spec, MqttUplinkSpec)
    assert spec.broker.port == 8883
    assert spec.outbox.max_bytes == 64 * 1024 * 1024
    assert "s3cret" not in repr(spec)
    assert ta.validate_python({"type": "file", "path": "/tmp/x"}).type == "file"
    with pytest.raises(ValidationError, match=r"topic[\s\S]*unknown field \{dev\}"):
        ta.validate_python({"type": "mqtt", "url": "mqtt://b", "topic": "x/{dev}"})
    with pytest.raises(ValidationError, match=r"outbox\.overflow"):
        ta.validate_python({"type": "mqtt", "url": "mqtt://b", "outbox": {"overflow": "drop-all"}})
    with pytest.raises(ValidationError, match="tls is set but url is not mqtts://"):
        ta.validate_python({"type": "mqtt", "url": "mqtt://b", "tls": {}})
    with pytest.raises(ValidationError, match="wildcards"):
        ta.validate_python({"type": "mqtt", "url": "mqtt://b", "topic": "a/+/b"})
    with pytest.raises(ValidationError, match="envelope edgex-v3 needs encoding edgex-json"):
        ta.validate_python({"type": "mqtt", "url": "mqtt://b", "envelope": "edgex-v3"})
    with pytest.raises(ValidationError, match=r"extra"):
        ta.validate_python({"type": "mqtt", "url": "mqtt://b", "qos": 0})


async def test_a_big_fleets_tick_waiting_for_its_commit_does_not_hold_the_router(tmp_path: Path) -> None:
    # A tick of 10,000 devices x 10 resources: 100,000 readings submitted at once. The router's room() must
    # not wait for them to be committed (one slow commit would hold the router, fill the bus and stop the
    # polls); three ticks' worth waits. (An uplink whose broker is not there: only the commit log works.)
    table = SeriesTable()
    sid = table.intern("d", "r")
    n = 100_000
    tick = ReadingBatch.from_columns(table, np.arange(n) + 1, np.ones(n), np.full(n, sid))
    spec = MqttUplinkSpec.model_validate(
        {"type": "mqtt", "url": "mqtt://127.0.0.1:1", "outbox": {"path": str(tmp_path / "outbox.sqlite")}}
    )
    up = MqttUplink(spec, service="s")
    up.pending_min = 200_000  # what the runtime sets for its bus of 100,000 readings
    await up.start()
    try:
        up.submit(tick)
        room = up.room()
        with pytest.raises(StopIteration):  # returned at once, without waiting
            room.send(None)
        up.submit(tick)
        up.submit(tick)
        room = up.room()
        assert room.send(None) is not None  # it waits for a commit
        room.close()
    finally:
        await up.stop(flush_timeout=0)
