"""The MQTT device connector against a real Mosquitto: EdgeX's MQTT test profile end to end, get and
set commands, timeouts and late replies, malformed messages survived, names that look like topics,
free topic mappings, per-subscription QoS."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import orjson
import pytest
from conftest import MosquittoBroker
from mqtt_device_support import DEVICE, Rig, edgex_profile, wait_for

from connectors.mqtt.simulator import MqttDeviceSimulator
from edgeflow.errors import DeviceTimeoutError, WriteRejectedError
from edgeflow.model import ValueType, decode_event, encode_add_event_request
from edgeflow.mqtt.connection import connect_params
from edgeflow.profiles import Device, DeviceProfile

pytestmark = pytest.mark.server

VALUES = {"randfloat32": 12.5, "randfloat64": 73.96732207, "message": "hello", "ping": "pong"}


def edgex_device(name: str = DEVICE, **mqtt: object) -> Device:
    return Device(
        name=name,
        profile_name="Test-Device-MQTT-Profile",
        protocols={"mqtt": mqtt or {"CommandTopic": f"command/{name}"}},
    )


async def test_edgex_test_profile_end_to_end(mosquitto: MosquittoBroker, shared_data: Path) -> None:
    profile = edgex_profile(shared_data)
    rig = await Rig({"url": mosquitto.url}, [(edgex_device(), profile)]).start()
    sim = MqttDeviceSimulator(mosquitto.url, DEVICE, values=VALUES)
    await sim.start()
    await sim.publish("allValues", {"randfloat32": 3.32, "randfloat64": 5.54, "message": "Hi World"})
    await sim.publish("randfloat64", 5.67, raw=False)
    await sim.publish("randfloat32", b"1.25", raw=True)  # a bare value, as device-mqtt accepts
    await sim.publish("json", {"rpm": [1200, 1250], "ok": True})
    await sim.publish("ping", b"pong", raw=True)
    await wait_for(lambda: len(rig.readings) == 7, 10, "7 readings on the bus")
    await sim.stop()
    await rig.stop()

    got = [(r.resource_name, r.value, r.value_type) for r in rig.readings]
    f32 = got[0][1]
    assert math.isclose(f32, 3.32, rel_tol=1e-7) and got[0][2] is ValueType.FLOAT32
    assert got[1:] == [
        ("randfloat64", 5.54, ValueType.FLOAT64),
        ("message", "Hi World", ValueType.STRING),
        ("randfloat64", 5.67, ValueType.FLOAT64),
        ("randfloat32", 1.25, ValueType.FLOAT32),
        ("json", {"rpm": [1200, 1250], "ok": True}, ValueType.OBJECT),
        ("ping", "pong", ValueType.STRING),
    ]
    # one MQTT message is one event on the bus, on its source's topic, EdgeX v3 JSON to the byte
    assert rig.topics == [
        f"edgex/events/device/svc/Test-Device-MQTT-Profile/{DEVICE}/{source}"
        for source in ("allValues", "randfloat64", "randfloat32", "json", "ping")
    ]
    events = [e for b in rig.batches for e in b.to_events()]
    assert [len(e.readings) for e in events] == [3, 1, 1, 1, 1]
    wire = orjson.loads(encode_add_event_request(events[0]))
    assert [(r["resourceName"], r["valueType"], r["value"]) for r in wire["event"]["readings"]] == [
        ("randfloat32", "Float32", "3.320000e+00"),
        ("randfloat64", "Float64", "5.540000e+00"),
        ("message", "String", "Hi World"),
    ]
    assert decode_event(encode_add_event_request(events[3])).readings[0].value == {
        "rpm": [1200, 1250],
        "ok": True,
    }
    st = rig.conn.stats()
    assert (st["messages"], st["accepted"], st["rejected_total"]) == (5, 5, 0)
    assert rig.svc.states[DEVICE].events_pushed == 5


async def test_get_and_set_commands_round_trip(mosquitto: MosquittoBroker, shared_data: Path) -> None:
    profile = edgex_profile(shared_data)
    rig = await Rig({"url": mosquitto.url}, [(edgex_device(), profile)]).start()
    sim = MqttDeviceSimulator(mosquitto.url, DEVICE, values=dict(VALUES))
    await sim.start()

    batch = await rig.svc.read(DEVICE, "allValues")
    assert [(r.resource_name, r.value) for r in batch.iter_readings()] == [
        ("randfloat32", 12.5),
        ("randfloat64", 73.96732207),
        ("message", "hello"),
    ]
    ping = await rig.svc.read(DEVICE, "ping")
    assert [r.value for r in ping.iter_readings()] == ["pong"]
    # EdgeX device-mqtt's wire: one command per resource, a fresh uuid each, empty get payloads
    uuid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    assert all(re.fullmatch(f"command/{DEVICE}/[a-z0-9]+/get/{uuid}", t) for t in sim.command_topics)
    assert sorted(c[1] for c in sim.commands) == ["message", "ping", "randfloat32", "randfloat64"]
    assert all(c[2] is None for c in sim.commands)

    await rig.svc.write(DEVICE, "allValues", {"randfloat32": "42.5", "randfloat64": 7, "message": "set me"})
    sets = {c[1]: c[2] for c in sim.commands if c[0] == "set"}
    assert sets == {
        "randfloat32": {"randfloat32": 42.5},
        "randfloat64": {"randfloat64": 7.0},
        "message": {"message": "set me"},
    }
    assert (sim.values["randfloat32"], sim.values["message"]) == (42.5, "set me")
    with pytest.raises(WriteRejectedError, match="above maximum"):
        await rig.svc.write(DEVICE, "randfloat64", {"randfloat64": 101})
    with pytest.raises(WriteRejectedError, match="read-only"):
        await rig.svc.write(DEVICE, "ping", {"ping": "x"})
    st = rig.conn.stats()
    assert (st["commands_answered"], st["replies"], st["commands_timed_out"], st["commands_waiting"]) == (
        7,
        7,
        0,
        0,
    )
    await sim.stop()
    await rig.stop()


async def test_commands_time_out_and_late_replies_are_counted_and_dropped(
    mosquitto: MosquittoBroker, shared_data: Path
) -> None:
    profile = edgex_profile(shared_data)
    devices = [(edgex_device("silent"), profile), (edgex_device("slow"), profile)]
    rig = await Rig({"url": mosquitto.url, "commands": {"timeout": "300ms"}}, devices).start()
    silent = MqttDeviceSimulator(mosquitto.url, "silent", values=VALUES, answer=False)
    slow = MqttDeviceSimulator(mosquitto.url, "slow", values=VALUES, delay=0.6)
    await silent.start()
    await slow.start()

    with pytest.raises(DeviceTimeoutError) as info:
        await rig.svc.read("silent", "randfloat64")
    assert (info.value.device, info.value.resource) == ("silent", "randfloat64")
    assert "no reply to get within 0.3 s" in str(info.value)
    with pytest.raises(DeviceTimeoutError):
        await rig.svc.write("slow", "message", {"message": "late"})
    assert slow.values["message"] == "late"  # it did it, but answered after the timeout
    await wait_for(lambda: rig.conn.counts["late_replies"] == 1, 5, "the late reply")
    # a reply nobody asked for
    other = connect_params(mosquitto.url, client_id="stranger")
    from edgeflow.mqtt.connection import MqttConnection

    stranger = MqttConnection(other)
    await stranger.connect()
    stranger.publish("command/response/not-a-command", b"{}", 1)
    await wait_for(lambda: rig.conn.rejects.total == 1, 5, "the unknown reply")
    st = rig.conn.stats()
    assert st["commands_timed_out"] == 2
    assert st["late_replies_by_device"] == {"slow": 1}
    assert st["rejected"] == {"": {"unknown_reply": 1}}
    assert st["commands_waiting"] == 0
    await stranger.disconnect()
    await silent.stop()
    await slow.stop()
    await rig.stop()


async def test_malformed_messages_are_counted_logged_once_per_interval_and_survived(
    mosquitto: MosquittoBroker, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    profile = edgex_profile(shared_data)
    rig = await Rig(
        {"url": mosquitto.url, "max_payload": 1024, "log_interval": "1h"}, [(edgex_device(), profile)]
    ).start()
    sim = MqttDeviceSimulator(mosquitto.url, DEVICE)
    await sim.start()
    caplog.set_level(logging.WARNING, logger="connectors.mqtt")
    for _ in range(20):
        await sim.publish("randfloat64", b"warm", raw=True)  # wrong type
        await sim.publish("allValues", b"{not json", raw=True)
        await sim.publish("nope", 1)  # unknown resource
        await sim.publish("message", b"x" * 2000, raw=True)  # oversize
        sim.publish_raw("incoming/data/ghost/randfloat64", b"1")  # no such device
        sim.publish_raw("incoming/data/too/many/levels", b"1")
    await sim.publish("randfloat64", 1.5)
    await wait_for(lambda: rig.values() == [("randfloat64", 1.5)], 10, "the good message after the bad ones")
    st = rig.conn.stats()
    assert st["rejected"] == {
        DEVICE: {"wrong_type": 20, "not_json": 20, "unknown_resource": 20, "oversize": 20},
        "": {"unknown_device": 20, "bad_topic": 20},
    }
    assert st["messages"] == st["accepted"] + st["rejected_total"] == 121
    warnings = [r for r in caplog.records if r.name == "connectors.mqtt"]
    assert len(warnings) == 6  # one per (device, reason), not 120
    await sim.stop()
    await rig.stop()  # the rest is summarised at close
    summaries = [r.getMessage() for r in caplog.records if "more messages" in r.getMessage()]
    assert len(summaries) == 6 and all("dropped 19 more" in m for m in summaries)


async def test_names_that_look_like_topics_reach_only_their_own_device(
    mosquitto: MosquittoBroker, shared_data: Path
) -> None:
    profile = edgex_profile(shared_data)
    names = ["a", "a/b", "+", "#"]
    rig = await Rig(
        {"url": mosquitto.url, "commands": {"timeout": "2s"}},
        [(edgex_device(n, Commands=True), profile) for n in names],
    ).start()
    sims = {
        n: MqttDeviceSimulator(mosquitto.url, n, values={"randfloat64": float(i)})
        for i, n in enumerate(names)
    }
    for sim in sims.values():
        await sim.start()
    for i, n in enumerate(names):
        await sims[n].publish("randfloat64", 10.0 + i)
    await wait_for(lambda: len(rig.readings) == 4, 10, "one reading per device")
    assert sorted((r.device_name, r.value) for r in rig.readings) == [
        ("#", 13.0),
        ("+", 12.0),
        ("a", 10.0),
        ("a/b", 11.0),
    ]
    assert sims["a/b"].data_topic("randfloat64") == "incoming/data/a%2Fb/randfloat64"
    for i, n in enumerate(names):
        batch = await rig.svc.read(n, "randfloat64")
        assert [r.value for r in batch.iter_readings()] == [float(i)]
    # each simulator saw only its own command, on its escaped topic
    assert {n: len(s.commands) for n, s in sims.items()} == dict.fromkeys(names, 1)
    assert sims["+"].command_topics[0].startswith("command/%2B/randfloat64/get/")
    assert sims["#"].command_topics[0].startswith("command/%23/randfloat64/get/")
    for sim in sims.values():
        await sim.stop()
    await rig.stop()


async def test_free_topic_mapping_with_origins_from_the_payload(mosquitto: MosquittoBroker) -> None:
    profile = DeviceProfile.model_validate(
        {
            "name": "TH",
            "deviceResources": [
                {
                    "name": "temperature",
                    "properties": {"valueType": "Float64", "readWrite": "R", "units": "degC"},
                },
                {"name": "humidity", "properties": {"valueType": "Uint8", "readWrite": "R", "units": "%"}},
            ],
        }
    )
    options = {
        "url": mosquitto.url,
        "incoming": {"enabled": False},
        "topics": [
            {
                "pattern": "site/+/{device}/telemetry",
                "qos": 1,
                "source": "telemetry",
                "fields": {"temperature": "$.t", "humidity": "$.h"},
                "origin": "$.time",
            }
        ],
    }
    rig = await Rig(options, [(Device(name=n, profile_name="TH"), profile) for n in ("th-1", "th 2")]).start()
    sim = MqttDeviceSimulator(mosquitto.url, "publisher")
    await sim.start()
    sim.publish_raw("site/north/th-1/telemetry", b'{"t": 21.5, "h": 40, "time": 1700000000}')
    sim.publish_raw("site/south/th 2/telemetry", b'{"t": 19.0, "time": "2023-11-14T22:13:21Z"}')
    sim.publish_raw(
        "site/south/th-1/telemetry", b'{"t": 22, "h": 400, "time": 1700000002}'
    )  # 400 is no Uint8
    await wait_for(
        lambda: len(rig.readings) == 3 and rig.conn.rejects.total == 1,
        10,
        f"mapped readings {rig.conn.stats()} {rig.values()}",
    )
    assert [(r.device_name, r.resource_name, r.value, r.origin, r.units) for r in rig.readings] == [
        ("th-1", "temperature", 21.5, 1_700_000_000_000_000_000, "degC"),
        ("th-1", "humidity", 40, 1_700_000_000_000_000_000, "%"),
        ("th 2", "temperature", 19.0, 1_700_000_001_000_000_000, "degC"),
    ]
    assert rig.conn.stats()["rejected"] == {"th-1": {"wrong_type": 1}}
    assert rig.conn.stats()["subscriptions"] == {"site/+/+/telemetry": 1}
    await sim.stop()
    await rig.stop()


async def test_each_subscription_has_its_own_qos(mosquitto: MosquittoBroker, shared_data: Path) -> None:
    options = {
        "url": mosquitto.url,
        "incoming": {"qos": 2},
        "commands": {"response_qos": 1},
        "topics": [{"pattern": "raw/{device}/{source}", "qos": 0}],
    }
    rig = await Rig(options, [(edgex_device(), edgex_profile(shared_data))]).start()
    assert rig.conn.stats()["subscriptions"] == {"raw/+/+": 0, "incoming/data/#": 2, "command/response/#": 1}
    sim = MqttDeviceSimulator(mosquitto.url, DEVICE, qos=2)
    await sim.start()
    await sim.publish("randfloat64", 2.5)
    sim.publish_raw(f"raw/{DEVICE}/randfloat64", b"3.5", qos=0)
    await wait_for(lambda: len(rig.readings) == 2, 10, "readings at QoS 2 and 0")
    assert sorted(rig.values()) == [("randfloat64", 2.5), ("randfloat64", 3.5)]
    await sim.stop()
    await rig.stop()


async def test_a_removed_device_is_forgotten_and_can_come_back(
    mosquitto: MosquittoBroker, shared_data: Path
) -> None:
    profile = edgex_profile(shared_data)
    rig = await Rig({"url": mosquitto.url, "log_interval": "1h"}, [(edgex_device(), profile)]).start()
    sim = MqttDeviceSimulator(mosquitto.url, DEVICE)
    await sim.start()
    await sim.publish("randfloat64", 1.0)
    await wait_for(lambda: rig.values() == [("randfloat64", 1.0)], 10, "a reading before the removal")
    await rig.svc.remove_device(DEVICE)
    await sim.publish("randfloat64", 2.0)
    await wait_for(lambda: rig.conn.stats()["rejected_total"] == 1, 10, "the message counted as rejected")
    assert rig.conn.stats()["rejected"] == {"": {"unknown_device": 1}}
    await rig.svc.add_running_device(edgex_device(), profile)
    await sim.publish("randfloat64", 3.0)
    await wait_for(lambda: rig.values()[-1:] == [("randfloat64", 3.0)], 10, "a reading after it came back")
    assert ("randfloat64", 2.0) not in rig.values()
    await sim.stop()
    await rig.stop()
