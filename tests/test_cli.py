"""The ``edgeflow`` command, run as a user runs it: a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "virtual" / "edgeflow.yaml"


def edgeflow(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeflow", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def test_validate_ok_and_invalid_exit_codes(tmp_path: Path) -> None:
    ok = edgeflow("validate", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
    data = yaml.safe_load(EXAMPLE.read_text())
    data["devices"][1]["protocols"] = {"virtual": "nope"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    res = edgeflow("validate", str(bad))
    assert res.returncode == 2
    assert "devices[1].protocols.virtual" in res.stderr
    assert str(bad) in res.stderr


def test_schema_prints_json_schema() -> None:
    res = edgeflow("schema")
    assert res.returncode == 0
    assert "devices" in orjson.loads(res.stdout)["properties"]


def test_run_with_duration_stops_cleanly_and_writes_events(tmp_path: Path) -> None:
    res = edgeflow("run", str(EXAMPLE), "--duration", "1", "--stats", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    stats = orjson.loads(res.stdout)
    lines = (tmp_path / "out" / "events.jsonl").read_bytes().splitlines()
    assert lines
    assert sum(len(orjson.loads(line)["event"]["readings"]) for line in lines) == stats["uplink"]["acked_readings"]
    assert stats["ledger_problems"] == []


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_run_stops_on_signal_and_flushes(tmp_path: Path, sig: str) -> None:
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeflow", "run", str(EXAMPLE), "--stats"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = tmp_path / "out" / "events.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (out.exists() and out.stat().st_size > 0):
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    stats = orjson.loads(stdout)
    lines = out.read_bytes().splitlines()
    assert sum(len(orjson.loads(line)["event"]["readings"]) for line in lines) == stats["uplink"]["acked_readings"]
    # every reading read is accounted for; what the rules let out (and what no pipeline took) was written
    led = stats["ledger"]
    assert stats["ledger_problems"] == []
    assert led["bus"]["published"] == led["router"]["taken"] > 0
    assert led["bus"]["queued"] == led["commit"]["pending"] == led["outbox"]["queued"] == 0
    pipes = led["pipelines"].values()
    assert stats["uplink"]["acked_readings"] == led["router"]["unrouted_shipped"] + sum(
        p["out"] + p["late"] + p["alarms"] for p in pipes
    )


def test_inspect_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    junk.write_text("just: a mapping\n")
    res = edgeflow("inspect", str(junk))
    assert res.returncode == 2
    assert str(junk) in res.stderr
    res = edgeflow("inspect", str(tmp_path / "absent.yaml"))
    assert res.returncode == 2


def test_inspect_edgex_profile(shared_data: Path) -> None:
    res = edgeflow("inspect", str(shared_data / "edgex" / "modbus.test.device.profile.yml"))
    assert res.returncode == 0, res.stderr
    out = orjson.loads(res.stdout)
    assert out["kind"] == "DeviceProfile"
    assert out["name"] == "Test-Device-Modbus-Profile"


def test_inspect_kubeedge_device(shared_data: Path) -> None:
    res = edgeflow(
        "inspect", str(shared_data / "kubeedge" / "crd_v1beta1_device_temperature-instance_modbus.yaml")
    )
    assert res.returncode == 0, res.stderr
    out = orjson.loads(res.stdout)
    assert out["name"] == "temperature-instance"
