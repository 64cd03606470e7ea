"""The MQTT device connector's link to the broker: restarts (resubscribe, readings flow again),
persistent sessions (nothing published while away is lost), TLS, mutual TLS and passwords (failures
are clear errors, never plaintext)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import MosquittoBroker, MosquittoFactory, TlsFiles, closed_by_peer, silent_listener
from mqtt_device_support import DEVICE, Rig, edgex_profile, wait_for

from connectors.mqtt.simulator import MqttDeviceSimulator
from edgeflow.connector import DeviceHealth
from edgeflow.errors import DeviceOfflineError, TransportSecurityError
from edgeflow.mqtt import MqttAuthSpec, TlsSpec
from edgeflow.mqtt.connection import connect_params
from edgeflow.profiles import Device

pytestmark = pytest.mark.server


def device() -> Device:
    return Device(
        name=DEVICE,
        profile_name="Test-Device-MQTT-Profile",
        protocols={"mqtt": {"CommandTopic": f"command/{DEVICE}"}},
    )


def quick(url: str, **kw: Any) -> dict[str, Any]:
    return {"url": url, "reconnect": {"initial_delay": 0.05, "max_delay": 0.3}, "keepalive": 5, **kw}


async def test_broker_restart_resubscribes_and_readings_flow_again(
    mosquitto: MosquittoBroker, shared_data: Path
) -> None:
    rig = await Rig(quick(mosquitto.url), [(device(), edgex_profile(shared_data))]).start()
    sim = MqttDeviceSimulator(mosquitto.url, DEVICE, values={"randfloat64": 1.0})
    await sim.start()
    await sim.publish("randfloat64", 1.0)
    await wait_for(lambda: rig.values() == [("randfloat64", 1.0)], 10, "a reading before the restart")
    assert rig.conn.health(DEVICE) is DeviceHealth.UP
    await sim.stop()

    mosquitto.stop()
    await wait_for(lambda: rig.conn.health(DEVICE) is DeviceHealth.DOWN, 10, "the link seen down")
    with pytest.raises(DeviceOfflineError, match="not connected"):
        await rig.svc.read(DEVICE, "randfloat64")
    mosquitto.start()
    await rig.conn.wait_connected()
    sim = MqttDeviceSimulator(mosquitto.url, DEVICE, values={"randfloat64": 3.0})
    await sim.start()
    await sim.publish("randfloat64", 2.0)
    await wait_for(lambda: len(rig.readings) == 2, 10, "a reading after the restart")
    assert rig.values()[-1] == ("randfloat64", 2.0)
    assert [r.value for r in (await rig.svc.read(DEVICE, "randfloat64")).iter_readings()] == [3.0]
    st = rig.conn.stats()
    assert (st["link_connection_losses"], st["link_resubscribes"], st["connected"]) == (1, 1, 1)
    # the connector subscribed again on the new connection: both filters, twice in the broker's log
    subs = re.findall(r"Received SUBSCRIBE from (edgeflow-devices-\S+)", mosquitto.log_text())
    assert len(subs) == 4  # data and command replies, on each of the two connections
    await sim.stop()
    await rig.stop()


async def test_a_persistent_session_keeps_what_devices_published_while_edgeflow_was_away(
    mosquitto: MosquittoBroker, shared_data: Path
) -> None:
    options = quick(
        mosquitto.url, client_id="edge-7-devices", clean_start=False, incoming={"qos": 1}, protocol="5"
    )
    profile = edgex_profile(shared_data)
    first = await Rig(options, [(device(), profile)]).start()
    await first.stop()  # away: the broker keeps the session and queues QoS 1 messages
    sim = MqttDeviceSimulator(mosquitto.url, DEVICE)
    await sim.start()
    for i in range(50):
        await sim.publish("randfloat64", float(i))
    await sim.stop()
    second = await Rig(options, [(device(), profile)]).start()
    await wait_for(lambda: len(second.readings) == 50, 10, "the backlog")
    assert second.values() == [("randfloat64", float(i)) for i in range(50)]
    await second.stop()


async def test_mutual_tls_and_a_password(
    mosquitto_factory: MosquittoFactory, tls_files: TlsFiles, shared_data: Path
) -> None:
    broker = mosquitto_factory(tls=tls_files, require_certificate=True, users={"edge": "s3cret"})
    tls = {
        "ca_file": str(tls_files.ca),
        "cert_file": str(tls_files.client_cert),
        "key_file": str(tls_files.client_key),
    }
    options = quick(broker.tls_url, tls=tls, auth={"username": "edge", "password": "s3cret"})
    rig = await Rig(options, [(device(), edgex_profile(shared_data))]).start()
    params = connect_params(
        broker.tls_url,
        client_id="sim",
        tls=TlsSpec.model_validate(tls),
        auth=MqttAuthSpec.model_validate({"username": "edge", "password": "s3cret"}),
    )
    sim = MqttDeviceSimulator(broker.tls_url, DEVICE, values={"message": "over TLS"}, params=params)
    await sim.start()
    await sim.publish("randfloat64", 4.5)
    await wait_for(lambda: rig.values() == [("randfloat64", 4.5)], 10, "a reading over mutual TLS")
    assert [r.value for r in (await rig.svc.read(DEVICE, "message")).iter_readings()] == ["over TLS"]
    await sim.stop()
    await rig.stop()
    plaintext = re.findall(rf"New connection from .* on port {broker.port}\b", broker.log_text())
    assert plaintext == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tls": {"ca_file": "WRONG_CA"}}, "certificate was not accepted"),
        ({"tls": {"ca_file": "CA"}}, "does it require a client certificate"),
        ({"auth": {"username": "edge", "password": "wrong"}}, "refused authentication as user 'edge'"),
    ],
)
async def test_tls_and_login_failures_fail_closed_at_start(
    mosquitto_factory: MosquittoFactory,
    tls_files: TlsFiles,
    shared_data: Path,
    change: dict[str, Any],
    message: str,
) -> None:
    broker = mosquitto_factory(tls=tls_files, require_certificate=True, users={"edge": "s3cret"})
    full = {
        "ca_file": str(tls_files.ca),
        "cert_file": str(tls_files.client_cert),
        "key_file": str(tls_files.client_key),
    }
    options = quick(broker.tls_url, tls=full, auth={"username": "edge", "password": "s3cret"})
    if "tls" in change:
        ca = tls_files.wrong_ca if change["tls"]["ca_file"] == "WRONG_CA" else tls_files.ca
        options["tls"] = {"ca_file": str(ca)}
    else:
        options.update(change)
    rig = Rig(options, [(device(), edgex_profile(shared_data))])
    with pytest.raises(TransportSecurityError, match=message):
        await rig.svc.start()
    await rig.svc.stop()
    assert re.findall(rf"New connection from .* on port {broker.port}\b", broker.log_text()) == []


async def test_a_broker_down_at_start_is_not_an_error(
    mosquitto_factory: MosquittoFactory, shared_data: Path
) -> None:
    broker = mosquitto_factory(start=False)
    rig = Rig(quick(broker.url), [(device(), edgex_profile(shared_data))])
    await rig.svc.start()  # retries in the background
    assert rig.conn.health(DEVICE) is DeviceHealth.DOWN
    broker.start()
    await rig.conn.wait_connected()
    sim = MqttDeviceSimulator(broker.url, DEVICE)
    await sim.start()
    await sim.publish("randfloat64", 9.0)
    await wait_for(lambda: rig.sub.stats().queued_readings == 1, 10, "a reading once the broker is up")
    await sim.stop()
    await rig.stop()
    assert rig.values() == [("randfloat64", 9.0)]


async def test_stop_while_connecting_to_a_broker_that_hangs_returns_at_once(
    mosquitto_factory: MosquittoFactory, shared_data: Path
) -> None:
    """Something on the broker's port accepts TCP and never answers CONNECT; stopping the connector
    while its session waits for the CONNACK returns at once and leaves no connection open."""
    broker = mosquitto_factory(start=False)
    with silent_listener(broker.port) as accepted:
        rig = Rig(quick(broker.url, connect_timeout=30), [(device(), edgex_profile(shared_data))])
        await rig.svc.start()
        await wait_for(lambda: len(accepted) >= 1, 10, "a connection attempt")
        async with asyncio.timeout(5):
            await rig.stop()
        assert all(closed_by_peer(c) for c in accepted)
