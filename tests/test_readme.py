"""The README's Python examples run, so they cannot rot."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OpcUaCerts

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
RUNNABLE = BLOCKS  # every Python block runs as written, from the checkout's root


def test_readme_has_runnable_examples() -> None:
    assert len(RUNNABLE) >= 5


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_readme_example_runs(code: str, tmp_path: Path) -> None:
    code = code.replace("run(duration=10)", "run(duration=0.5)")
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"EDGEFLOW__UPLINK__PATH": str(tmp_path / "out.jsonl"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert res.returncode == 0, res.stderr


CONFIGS = [
    b
    for b in re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    if b.startswith("service:")
]


@pytest.mark.parametrize("text", CONFIGS, ids=[f"config{i}" for i in range(len(CONFIGS))])
def test_readme_configs_are_valid(
    text: str, tmp_path: Path, shared_data: Path, opcua_certs: OpcUaCerts
) -> None:
    from edgeflow.config import load_config
    from edgeflow.connector import load_connector
    from edgeflow.profiles import DeviceProfile

    (tmp_path / "profiles").mkdir()
    shutil.copy(ROOT / "examples" / "virtual" / "boiler.profile.yaml", tmp_path)
    shutil.copy(shared_data / "edgex" / "modbus.test.device.profile.yml", tmp_path / "profiles")
    shutil.copy(ROOT / "examples" / "opcua" / "simulation.profile.yaml", tmp_path / "profiles")
    shutil.copy(shared_data / "edgex" / "mqtt.test.device.profile.yml", tmp_path / "profiles")
    # the secure OPC-UA example names its certificate files and takes its password from the environment
    certs = tmp_path / "opcua"
    certs.mkdir()
    for name, made in (
        ("edgeflow.der", opcua_certs.client_cert),
        ("edgeflow.key.pem", opcua_certs.client_key),
        ("press-1.der", opcua_certs.server_cert),
    ):
        shutil.copy(made, certs / name)
    text = text.replace("/etc/edgeflow/opcua/", f"{certs}/")
    path = tmp_path / "edgeflow.yaml"
    path.write_text(text, encoding="utf-8")
    environ = {"EDGEFLOW__DEVICES__0__PROTOCOLS__OPCUA__PASSWORD": "secret"} if "Username: operator" in text else {}
    cfg = load_config(path, environ=environ)
    assert cfg.devices
    # the connectors' own options and the devices' protocols are checked as at start-up (no connecting)
    connectors = {}
    for d in cfg.devices:
        if d.connector not in connectors:
            connectors[d.connector] = load_connector(d.connector)(cfg.connectors.get(d.connector, {}))
        assert isinstance(d.profile, DeviceProfile)
        connectors[d.connector].add_device(d.to_device(cfg.service, d.profile), d.profile)
