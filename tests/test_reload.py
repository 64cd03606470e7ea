"""Reloading the configuration while running (issue 17): validated first, refused whole when not valid
or when it changes what needs a restart; unchanged devices keep their connections and unchanged
pipelines their rule state; SIGHUP does it for ``edgeflow run``."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from edgeflow.config import load_config
from edgeflow.errors import ConfigError
from edgeflow.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "virtual"


def base(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "boiler.profile.yaml").write_text((EXAMPLE / "boiler.profile.yaml").read_text())
    data: dict[str, Any] = yaml.safe_load((EXAMPLE / "edgeflow.yaml").read_text())
    data.pop("metrics", None)
    data["uplink"]["path"] = str(tmp_path / "out" / "events.jsonl")
    return data


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "edgeflow.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def until(cond: Any, seconds: float = 20.0) -> None:
    import asyncio

    async with asyncio.timeout(seconds):
        while not cond():  # noqa: ASYNC110 - polls a condition
            await asyncio.sleep(0.05)


async def test_reload_keeps_what_did_not_change(tmp_path: Path) -> None:
    data = base(tmp_path)
    rt = Runtime(load_config(write(tmp_path, data)))
    await rt.start()
    try:
        service = rt.services["virtual"]
        conn = service.connector
        await until(lambda: rt.stats()["pipelines"]["temperatures"]["readings_in"] > 5)
        kept_route = rt.routes[0]
        kept_device = conn._state["boiler-1"]  # type: ignore[attr-defined]
        new = copy.deepcopy(data)
        new["devices"][1]["protocols"] = {"virtual": {"seed": 22}}  # changed
        new["devices"].append({**copy.deepcopy(data["devices"][1]), "name": "boiler-3"})  # added
        new["pipelines"][1]["rules"] = [{"type": "deadband", "absolute": 0.5}]  # changed
        summary = await rt.reload(load_config(write(tmp_path, new)))
        assert summary == {
            "devices_removed": [],
            "devices_changed": ["boiler-2"],
            "devices_added": ["boiler-3"],
            "pipelines_replaced": ["the-rest"],
        }
        assert rt.routes[0] is kept_route  # same pipeline object: its rule state goes on
        assert conn._state["boiler-1"] is kept_device  # type: ignore[attr-defined]
        assert rt.services["virtual"] is service
        await until(lambda: rt.device_states().get("boiler-3", {}).get("reads_ok", 0) > 2)
        removed = copy.deepcopy(new)
        removed["devices"] = [d for d in removed["devices"] if d["name"] != "boiler-2"]
        summary = await rt.reload(load_config(write(tmp_path, removed)))
        assert summary["devices_removed"] == ["boiler-2"]
        assert "boiler-2" not in rt.device_states()
    finally:
        await rt.stop()
    assert rt.ledger_problems() == []
    assert "the-rest (replaced 1)" in rt.ledger()["pipelines"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d, tmp: d["uplink"].update(path=str(tmp / "elsewhere.jsonl")), "uplink needs a restart"),
        (lambda d, tmp: d.update(service="renamed"), "service needs a restart"),
        (lambda d, tmp: d["devices"][0].update(connector="virtul"), "virtul"),
        (lambda d, tmp: d["pipelines"][0]["rules"][0].update(max_eror=1), "max_eror"),
        (
            lambda d, tmp: d["pipelines"].append({"name": "dup", "match": {"device": "boiler-*"}}),
            "would both write",
        ),
    ],
)
async def test_a_bad_reload_is_refused_whole_and_the_running_config_goes_on(
    tmp_path: Path, change: Any, message: str
) -> None:
    data = base(tmp_path)
    rt = Runtime(load_config(write(tmp_path, data)))
    await rt.start()
    try:
        before = (rt.config, list(rt.routes), dict(rt.device_specs))
        new = copy.deepcopy(data)
        change(new, tmp_path)
        with pytest.raises(ConfigError) as info:
            await rt.reload(load_config(write(tmp_path, new)))
        assert message in str(info.value)
        assert (rt.config, list(rt.routes), dict(rt.device_specs)) == before
        reads = rt.device_states()["boiler-1"]["reads_ok"]
        await until(lambda: rt.device_states()["boiler-1"]["reads_ok"] > reads)  # still running
    finally:
        await rt.stop()
    assert rt.ledger_problems() == []


@pytest.mark.slow
def test_sighup_reloads_edgeflow_run(tmp_path: Path) -> None:
    data = base(tmp_path)
    path = write(tmp_path, data)
    out = tmp_path / "out" / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeflow", "run", str(path), "--stats"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )

    def devices_in_output() -> set[str]:
        if not out.exists():
            return set()
        return {orjson.loads(line)["event"]["deviceName"] for line in out.read_bytes().splitlines() if line}

    def wait(cond: Any, what: str) -> None:
        deadline = time.monotonic() + 40
        while not cond():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    try:
        wait(lambda: "boiler-1" in devices_in_output(), "first events")
        bad = copy.deepcopy(data)
        bad["devices"][0]["protocols"] = {"virtual": {"sed": 1}}
        write(tmp_path, bad)
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        new = copy.deepcopy(data)
        new["devices"].append({**copy.deepcopy(data["devices"][1]), "name": "boiler-9"})
        write(tmp_path, new)
        proc.send_signal(signal.SIGHUP)
        wait(lambda: "boiler-9" in devices_in_output(), "events of the device the reload added")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "reload refused, the running configuration keeps going" in stderr
    assert "did you mean 'seed'" in stderr
    assert "devices added: boiler-9" in stderr
    assert "Traceback" not in stderr
    stats = orjson.loads(stdout)
    assert stats["ledger_problems"] == []
