"""``edgeflow run`` with an MQTT device of EdgeX's MQTT test profile and the file uplink, against a
real Mosquitto: a simulated device publishes and answers the AutoEvent's get commands; every good
message is shipped as an EdgeX event, every bad one is counted, and the run stops cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml
from conftest import MosquittoBroker
from mqtt_device_support import DEVICE, wait_for

from connectors.mqtt.simulator import MqttDeviceSimulator
from edgeflow.model import ValueType, decode_event

pytestmark = pytest.mark.server

CLIENT = "edge-run-test"


def config(tmp_path: Path, broker: MosquittoBroker, shared_data: Path) -> Path:
    doc = {
        "service": "device-mqtt",
        "devices": [
            {
                "name": DEVICE,
                "connector": "mqtt",
                "profile": str(shared_data / "edgex" / "mqtt.test.device.profile.yml"),
                "protocols": {"mqtt": {"CommandTopic": f"command/{DEVICE}"}},
                "autoEvents": [{"interval": "300ms", "sourceName": "ping"}],
            }
        ],
        "connectors": {"mqtt": {"url": broker.url, "client_id": CLIENT, "incoming": {"qos": 1}}},
        "uplink": {"type": "file", "path": str(tmp_path / "out.jsonl")},
    }
    path = tmp_path / "edgeflow.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


async def test_edgeflow_run_ships_what_an_mqtt_device_publishes(
    mosquitto: MosquittoBroker, shared_data: Path, tmp_path: Path
) -> None:
    cfg = config(tmp_path, mosquitto, shared_data)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgeflow",
        "run",
        str(cfg),
        "--stats",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for(
            lambda: (
                mosquitto.log_text().count(f"Sending SUBACK to {CLIENT}") == 2 or proc.returncode is not None
            ),
            30,
            "edgeflow subscribed",
        )
        assert proc.returncode is None
        sim = MqttDeviceSimulator(mosquitto.url, DEVICE, values={"ping": "pong"})
        await sim.start()
        for i in range(5):
            await sim.publish(
                "allValues", {"randfloat32": i + 0.5, "randfloat64": i * 10.25, "message": f"m{i}"}
            )
        await sim.publish("json", {"a": [1, 2]})
        await sim.publish("randfloat64", b"not a number", raw=True)
        await sim.publish("nope", 1)
        await sim.publish("ping", b"", raw=True)  # an empty String is a value
        await sim.drain()
        await wait_for(
            lambda: mosquitto.log_text().count(f"Received PUBACK from {CLIENT}") >= 9,
            20,
            "edgeflow to acknowledge every data message",
        )
        # an AutoEvent sends its next get only after the last one's answer came back: three gets sent
        # means two reads finished (the sim records a get when it arrives, before edgeflow has the answer)
        await wait_for(lambda: len(sim.commands) >= 3, 20, "three AutoEvent gets")
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            stdout, stderr = await proc.communicate()
        await sim.stop()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    stats = orjson.loads(stdout)
    mqtt = stats["connectors"]["mqtt"]
    assert (mqtt["accepted"], mqtt["rejected_total"]) == (7, 2)
    assert mqtt["rejected"] == {DEVICE: {"wrong_type": 1, "unknown_resource": 1}}
    assert stats["devices"][DEVICE]["events_pushed"] == 7
    assert stats["devices"][DEVICE]["reads_ok"] >= 2

    events = [decode_event(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    pushed = [e for e in events if e.source_name != "ping"]
    pings = [r.value for e in events if e.source_name == "ping" for r in e.readings]
    assert [e.source_name for e in pushed] == ["allValues"] * 5 + ["json"]
    for i, e in enumerate(pushed[:5]):
        assert [(r.resource_name, r.value_type, r.value) for r in e.readings] == [
            ("randfloat32", ValueType.FLOAT32, i + 0.5),
            ("randfloat64", ValueType.FLOAT64, i * 10.25),
            ("message", ValueType.STRING, f"m{i}"),
        ]
        assert e.device_name == DEVICE and e.profile_name == "Test-Device-MQTT-Profile"
    assert pushed[5].readings[0].value == {"a": [1, 2]}
    assert pings.count("") == 1  # pushed
    assert pings.count("pong") >= 2 and set(pings) == {"", "pong"}  # polled by the AutoEvent's gets
    origins = [e.origin for e in pushed]
    assert origins == sorted(origins) and time.time_ns() - origins[0] < 120 * 10**9


async def test_connector_counters_reach_the_metrics_endpoint(
    mosquitto: MosquittoBroker, shared_data: Path, tmp_path: Path
) -> None:
    from edgeflow.config import load_config
    from edgeflow.runtime import Runtime

    rt = Runtime(load_config(config(tmp_path, mosquitto, shared_data), environ={}))
    await rt.start()
    try:
        sim = MqttDeviceSimulator(mosquitto.url, DEVICE, values={"ping": "pong"})
        await sim.start()
        await sim.publish("randfloat64", b"warm", raw=True)
        await sim.publish("randfloat64", 20.5)
        await sim.stop()
        await wait_for(lambda: rt.stats()["connectors"]["mqtt"]["messages"] == 2, 10, "both messages")
        text = rt.registry.render()
    finally:
        await rt.stop()
    labels = f'connector="mqtt",device="{DEVICE}",reason="wrong_type"'
    assert f"edgeflow_connector_mqtt_rejected_total{{{labels}}} 1.0" in text
    assert 'edgeflow_connector_mqtt_accepted_total{connector="mqtt"} 1.0' in text
    assert 'edgeflow_connector_mqtt_connected{connector="mqtt"} 1.0' in text
    assert f'edgeflow_device_events_pushed_total{{device="{DEVICE}"}} 1.0' in text
