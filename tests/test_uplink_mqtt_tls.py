"""TLS, mutual TLS and authentication against a real Mosquitto, with certificates from ``trustme``.
Failures are clear errors and never fall back to plaintext."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import MosquittoBroker, MosquittoFactory, TlsFiles
from uplink_support import check_series, make_batch, table, uplink_spec, wait_for

from edgeflow.cloud import Receiver
from edgeflow.errors import TransportSecurityError
from edgeflow.uplink.mqtt import MqttUplink
from edgeflow.uplink.spec import MqttAuthSpec, TlsSpec

pytestmark = pytest.mark.server


def tls_doc(files: TlsFiles, *, client: bool = True, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"ca_file": str(files.ca)}
    if client:
        doc.update(cert_file=str(files.client_cert), key_file=str(files.client_key))
    doc.update(kw)
    return doc


def plaintext_connections(broker: MosquittoBroker) -> list[str]:
    """Log lines of connections to the plaintext listener."""
    pattern = re.compile(rf"New connection from .* on port {broker.port}\b")
    return [line for line in broker.log_text().splitlines() if pattern.search(line)]


async def test_mutual_tls_works(
    mosquitto_factory: MosquittoFactory, tls_files: TlsFiles, tmp_path: Path
) -> None:
    broker = mosquitto_factory(tls=tls_files, require_certificate=True)
    rx = Receiver(
        broker.tls_url, ["edgeflow/+/batches"], keep=True, tls=TlsSpec.model_validate(tls_doc(tls_files))
    )
    await rx.start()
    spec = uplink_spec(broker.tls_url, tmp_path / "ob.sqlite", tls=tls_doc(tls_files))
    up = MqttUplink(spec, service="s")
    await up.start()
    t = table()
    for i in range(5):
        await up.send(make_batch(t, i))
    await wait_for(lambda: rx.counts["readings"] == 500, 10, "readings over mutual TLS")
    check_series(rx.series(), range(5))
    await up.stop()
    await rx.stop()
    assert plaintext_connections(broker) == []


async def test_server_hostname_sets_sni_and_the_checked_name(
    mosquitto_factory: MosquittoFactory, tls_files: TlsFiles, tmp_path: Path
) -> None:
    broker = mosquitto_factory(tls=tls_files)
    ok = MqttUplink(
        uplink_spec(
            broker.tls_url,
            tmp_path / "a.sqlite",
            tls=tls_doc(tls_files, server_hostname="broker.edgeflow.test"),
        ),
        service="s",
    )
    await ok.start()
    await wait_for(lambda: ok.connected, 5, "connected")
    await ok.stop()
    bad = MqttUplink(
        uplink_spec(
            broker.tls_url, tmp_path / "b.sqlite", tls=tls_doc(tls_files, server_hostname="other.example")
        ),
        service="s",
    )
    with pytest.raises(TransportSecurityError, match=r"certificate was not accepted.*[Hh]ostname mismatch"):
        await bad.start()


async def test_wrong_ca_fails_clearly_and_sends_nothing_in_plaintext(
    mosquitto_factory: MosquittoFactory, tls_files: TlsFiles, tmp_path: Path
) -> None:
    broker = mosquitto_factory(tls=tls_files)
    spec = uplink_spec(
        broker.tls_url, tmp_path / "ob.sqlite", tls=tls_doc(tls_files, ca_file=str(tls_files.wrong_ca))
    )
    up = MqttUplink(spec, service="s")
    with pytest.raises(TransportSecurityError) as err:
        await up.start()
    msg = str(err.value)
    assert f"mqtts://127.0.0.1:{broker.tls_port}" in msg
    assert "certificate was not accepted" in msg
    assert re.search(
        "self-signed certificate in certificate chain|unable to get local issuer certificate", msg
    )
    assert not up.connected
    assert plaintext_connections(broker) == []
    assert "Received PUBLISH" not in broker.log_text()
    assert "New client connected" not in broker.log_text()  # not even over TLS: no CONNECT went out


async def test_tls_client_pointed_at_a_plaintext_port_fails_and_does_not_downgrade(
    mosquitto: MosquittoBroker, tls_files: TlsFiles, tmp_path: Path
) -> None:
    url = f"mqtts://127.0.0.1:{mosquitto.port}"
    up = MqttUplink(uplink_spec(url, tmp_path / "ob.sqlite", tls=tls_doc(tls_files)), service="s")
    with pytest.raises(TransportSecurityError, match="TLS"):
        await up.start()
    log = mosquitto.log_text()
    assert "New client connected" not in log
    assert "Received PUBLISH" not in log


async def test_missing_client_certificate_is_refused(
    mosquitto_factory: MosquittoFactory, tls_files: TlsFiles, tmp_path: Path
) -> None:
    broker = mosquitto_factory(tls=tls_files, require_certificate=True)
    up = MqttUplink(
        uplink_spec(broker.tls_url, tmp_path / "ob.sqlite", tls=tls_doc(tls_files, client=False)), service="s"
    )
    with pytest.raises(TransportSecurityError, match="TLS"):
        await up.start()
    assert "Received PUBLISH" not in broker.log_text()


async def test_wrong_password_is_a_security_error_and_right_one_works(
    mosquitto_factory: MosquittoFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = mosquitto_factory(users={"edge": "correct horse"})
    bad = MqttUplink(
        uplink_spec(broker.url, tmp_path / "a.sqlite", auth={"username": "edge", "password": "pw-Zq81x"}),
        service="s",
    )
    with pytest.raises(TransportSecurityError, match=r"refused authentication as user 'edge'") as err:
        await bad.start()
    assert "pw-Zq81x" not in str(err.value)
    assert "pw-Zq81x" not in repr(bad.spec)
    assert "pw-Zq81x" not in caplog.text
    with pytest.raises(TransportSecurityError, match="refused authentication"):
        await Receiver(broker.url, ["#"], auth=MqttAuthSpec(username="edge", password="nope")).start()  # type: ignore[arg-type]
    rx = Receiver(
        broker.url,
        ["edgeflow/+/batches"],
        keep=True,
        auth=MqttAuthSpec(username="edge", password="correct horse"),  # type: ignore[arg-type]
    )
    await rx.start()
    good = MqttUplink(
        uplink_spec(
            broker.url, tmp_path / "b.sqlite", auth={"username": "edge", "password": "correct horse"}
        ),
        service="s",
    )
    await good.start()
    await good.send(make_batch(table(), 0))
    await wait_for(lambda: rx.counts["readings"] == 100, 10, "readings with auth")
    await good.stop()
    await rx.stop()


def test_unreadable_ca_file_is_a_security_error_naming_it(tmp_path: Path) -> None:
    spec = uplink_spec(
        "mqtts://127.0.0.1:8883", tmp_path / "ob.sqlite", tls={"ca_file": str(tmp_path / "nope.pem")}
    )
    with pytest.raises(TransportSecurityError, match=r"CA file .*nope\.pem"):
        MqttUplink(spec, service="s")
