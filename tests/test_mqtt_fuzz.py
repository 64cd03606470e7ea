"""Fuzzed topics and payloads through a real Mosquitto into the MQTT device connector: it neither
crashes nor stalls (a good message after each fuzzed round still arrives), and its counters add up
(every message it got is accepted, a reply, or counted under a reason)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import MosquittoBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_device_support import Rig, wait_for

from connectors.mqtt.simulator import MqttDeviceSimulator
from edgeflow.mqtt.topics import topic_matches
from edgeflow.profiles import Device, DeviceProfile

pytestmark = pytest.mark.server

PROFILE = DeviceProfile.model_validate(
    {
        "name": "Fuzz",
        "deviceResources": [
            {"name": "temp", "properties": {"valueType": "Float64", "readWrite": "R"}},
            {"name": "level", "properties": {"valueType": "Int16", "readWrite": "R"}},
            {"name": "raw", "properties": {"valueType": "Binary", "readWrite": "R", "mediaType": "x"}},
            {"name": "note", "properties": {"valueType": "String", "readWrite": "R"}},
        ],
        "deviceCommands": [
            {
                "name": "both",
                "readWrite": "R",
                "resourceOperations": [{"deviceResource": "temp"}, {"deviceResource": "level"}],
            }
        ],
    }
)
NAMES = ("s1", "a/b", "+")

level = st.one_of(
    st.sampled_from(["s1", "a%2Fb", "%2B", "temp", "level", "raw", "note", "both", "ghost", "", "%", "%zz"]),
    # what a broker takes in a topic (Mosquitto refuses control characters and non-characters)
    st.text(
        st.characters(exclude_categories=("Cs", "Cc", "Cn", "Co"), exclude_characters="/+#"), max_size=12
    ),
)
topic = st.builds(
    lambda head, rest: "/".join([head, *rest]),
    st.sampled_from(["incoming/data", "incoming/data", "sensors", "command/response"]),
    st.lists(level, max_size=4),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["t", "temp", "level", "note", "ts"]) | st.text(max_size=4), inner, max_size=4
        )
    ),
    max_leaves=8,
)
payload = st.one_of(
    st.binary(max_size=600), json_value.map(lambda v: json.dumps(v).encode()), st.just(b""), st.just(b"1.5")
)


def test_fuzzed_topics_and_payloads_neither_crash_nor_stall_and_counters_add_up(
    mosquitto: MosquittoBroker,
) -> None:
    loop = asyncio.new_event_loop()
    options = {
        "url": mosquitto.url,
        "incoming": {"qos": 1},
        "commands": {"response_qos": 1},
        "max_payload": 512,
        "topics": [
            {
                "pattern": "sensors/{device}/t",
                "fields": {"temp": "$.t", "note": "$.note"},
                "source": "x",
                "origin": "$.ts",
            }
        ],
    }
    devices = [
        (Device(name=n, profile_name="Fuzz", protocols={"mqtt": {"Commands": True}}), PROFILE) for n in NAMES
    ]
    rig = Rig(options, devices)
    pub = MqttDeviceSimulator(mosquitto.url, "fuzzer", qos=1)
    loop.run_until_complete(rig.start())
    loop.run_until_complete(pub.start())
    sent = 0

    async def one_round(messages: list[tuple[str, bytes]]) -> None:
        nonlocal sent
        good_before = len([r for r in rig.readings if r.device_name == "s1" and r.value == 42.0])
        for t, p in messages:
            pub.publish_raw(t, p)
        pub.publish_raw("incoming/data/s1/temp", b"42")  # the good message after the fuzz
        filters = [f for f, _ in rig.conn.subscriptions()]
        sent += sum(1 for t, _ in messages if any(topic_matches(f, t) for f in filters)) + 1
        await pub.drain()
        conn = rig.conn
        await wait_for(lambda: conn.counts["messages"] == sent, 10, "every message handled")
        await wait_for(
            lambda: (
                len([r for r in rig.readings if r.device_name == "s1" and r.value == 42.0]) == good_before + 1
            ),
            10,
            "the good message on the bus",
        )
        c = conn.counts
        assert c["messages"] == c["accepted"] + c["replies"] + c["late_replies"] + conn.rejects.total
        assert sum(conn.rejects.counts().values()) == conn.rejects.total
        assert {d for d, _ in conn.rejects.counts()} <= {"", *NAMES}
        assert sum(st.events_pushed for st in rig.svc.states.values()) == c["accepted"]

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(st.tuples(topic, payload), min_size=1, max_size=15))
    def fuzz(messages: list[tuple[str, bytes]]) -> None:
        loop.run_until_complete(one_round(messages))

    try:
        fuzz()
        stats: dict[str, Any] = rig.conn.stats()
        assert stats["connected"] == 1 and stats["link_connection_losses"] == 0
    finally:
        loop.run_until_complete(pub.stop())
        loop.run_until_complete(rig.stop())
        loop.close()
