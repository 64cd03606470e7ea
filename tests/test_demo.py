"""``edgeflow demo`` end to end: simulated PLC and boiler, a real broker, the edge, the receiver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeflow.demo import format_report, run_demo
from edgeflow.demo.localbroker import LocalBroker, find_mosquitto

pytestmark = pytest.mark.server


def check(report_seconds: float, report: object) -> None:
    from edgeflow.demo import DemoReport

    assert isinstance(report, DemoReport)
    assert report.within_bounds, format_report(report)
    assert {(s.device, s.resource) for s in report.series} == {
        ("plc-1", "Temperature"),
        ("plc-1", "Pressure"),
        ("plc-1", "Pump"),
        ("boiler-1", "Temperature"),
        ("boiler-1", "Status"),
        ("tank-1", "Level"),
    }
    assert all(s.shipped > 0 and s.read >= s.shipped for s in report.series)
    assert report.readings_read > 20 * report_seconds
    assert report.readings_shipped < report.readings_read
    assert report.bytes_shipped * 10 < report.bytes_edgex_json
    assert report.receiver["missing"] == 0
    assert report.receiver["malformed"] == 0


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
async def test_demo_with_mosquitto(tmp_path: Path) -> None:
    report = await run_demo(2.0, broker="mosquitto", workdir=tmp_path)
    check(2.0, report)
    assert report.broker == "mosquitto"
    assert (tmp_path / "outbox.sqlite").exists()


async def test_demo_with_the_embedded_broker(tmp_path: Path) -> None:
    pytest.importorskip("amqtt")
    report = await run_demo(2.0, broker="embedded", workdir=tmp_path)
    check(2.0, report)
    assert report.broker.startswith("embedded")


async def test_local_broker_stops_what_it_started() -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = LocalBroker("mosquitto")
    await broker.start()
    proc = broker._proc
    assert proc is not None
    await broker.stop()
    assert proc.returncode is not None


def test_demo_command_prints_the_savings() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "edgeflow", "demo", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "saved" in res.stdout
    assert "every series within its bound" in res.stdout
