"""The MQTT uplink inside the runtime: a config file with ``uplink: {type: mqtt}``, the password from the
environment, simulated boilers, and the receiver on the other side of a real Mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MosquittoFactory
from uplink_support import wait_for

from edgeflow.cloud import Receiver
from edgeflow.config import load_config
from edgeflow.runtime import run_config
from edgeflow.uplink.spec import MqttAuthSpec

pytestmark = pytest.mark.server

EXAMPLE_PROFILE = Path(__file__).resolve().parents[1] / "examples" / "virtual" / "boiler.profile.yaml"


async def test_runtime_ships_over_mqtt_with_password_from_env(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory(users={"edge": "from-env-only"})
    rx = Receiver(
        broker.url,
        ["plant/#"],
        keep=True,
        auth=MqttAuthSpec(username="edge", password="from-env-only"),  # type: ignore[arg-type]
    )
    await rx.start()
    cfg_path = tmp_path / "edgeflow.yaml"
    cfg_path.write_text(
        f"""
service: plant-7
devices:
  - name: boiler-1
    connector: virtual
    profile: {EXAMPLE_PROFILE}
    protocols: {{ virtual: {{ seed: 1 }} }}
    autoEvents:
      - {{ interval: 100ms, sourceName: Temperature }}
pipelines:
  - name: everything
    match: {{ device: "boiler-*" }}
uplink:
  type: mqtt
  url: {broker.url}
  topic: "plant/{{service}}/{{device}}"
  auth: {{ username: edge }}
  outbox: {{ path: {tmp_path / "outbox.sqlite"}, max_bytes: 16MiB }}
"""
    )
    cfg = load_config(cfg_path, environ={"EDGEFLOW__UPLINK__AUTH__PASSWORD": "from-env-only"})
    stats = await run_config(cfg, duration=2.0)
    up = stats["uplink"]
    assert up["readings_committed"] > 0
    assert up["acked_readings"] == up["readings_committed"]  # stop() flushed the outbox
    assert up["queued"] == 0
    await wait_for(lambda: rx.counts["readings"] == up["readings_committed"], 10, "every reading")
    assert {k[0] for k in rx.series()} == {"boiler-1"}
    assert rx.stats()["missing"] == 0
    await rx.stop()
