"""The README's Python examples run, so they cannot rot."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
RUNNABLE = [b for b in BLOCKS if "asyncio.run(" in b]


def test_readme_has_runnable_examples() -> None:
    assert len(RUNNABLE) >= 1


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
def test_readme_configs_are_valid(text: str, tmp_path: Path, shared_data: Path) -> None:
    from edgeflow.config import load_config
    from edgeflow.connector import load_connector
    from edgeflow.profiles import DeviceProfile

    (tmp_path / "profiles").mkdir()
    shutil.copy(ROOT / "examples" / "virtual" / "boiler.profile.yaml", tmp_path)
    shutil.copy(shared_data / "edgex" / "modbus.test.device.profile.yml", tmp_path / "profiles")
    shutil.copy(shared_data / "edgex" / "mqtt.test.device.profile.yml", tmp_path / "profiles")
    path = tmp_path / "edgeflow.yaml"
    path.write_text(text, encoding="utf-8")
    cfg = load_config(path, environ={})
    assert cfg.devices
    # the connectors' own options and the devices' protocols are checked as at start-up (no connecting)
    connectors = {}
    for d in cfg.devices:
        if d.connector not in connectors:
            connectors[d.connector] = load_connector(d.connector)(cfg.connectors.get(d.connector, {}))
        assert isinstance(d.profile, DeviceProfile)
        connectors[d.connector].add_device(d.to_device(cfg.service, d.profile), d.profile)
