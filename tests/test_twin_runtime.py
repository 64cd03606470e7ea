"""``Runtime.add_devices`` / ``remove_devices``: the running set changes, the rest is untouched."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edgeflow.config import DeviceSpec, parse_config
from edgeflow.errors import ConfigError
from edgeflow.profiles import load_profile
from edgeflow.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "examples" / "virtual" / "boiler.profile.yaml"


def _spec(name: str) -> DeviceSpec:
    return DeviceSpec(
        name=name,
        connector="virtual",
        profile=load_profile(PROFILE),
        protocols={"virtual": {}},
        auto_events=[{"interval": "50ms", "source_name": "Temperature"}],  # type: ignore[list-item]
    )


async def _until(cond: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_add_and_remove_devices_while_running(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "service": "edge",
            "devices": [
                {
                    "name": "boiler-1",
                    "connector": "virtual",
                    "profile": str(PROFILE),
                    "protocols": {"virtual": {}},
                    "autoEvents": [{"interval": "50ms", "sourceName": "Temperature"}],
                }
            ],
            "uplink": {"type": "file", "path": str(tmp_path / "out.jsonl")},
        }
    )
    async with Runtime(cfg) as rt:
        service = rt.services["virtual"]
        state1 = service.states["boiler-1"]
        await _until(lambda: state1.reads_ok >= 2, "boiler-1 polls")
        await rt.add_devices([_spec("boiler-2")])
        state2 = service.states["boiler-2"]
        await _until(lambda: state2.reads_ok >= 2, "boiler-2 polls")
        # the device that was there keeps its state object and goes on counting
        assert service.states["boiler-1"] is state1
        with pytest.raises(ConfigError, match="already running"):
            await rt.add_devices([_spec("boiler-1")])
        await rt.remove_devices(["boiler-1", "nobody"])
        assert "boiler-1" not in service.states and "boiler-1" not in rt.device_specs
        n2 = state2.reads_ok
        await _until(lambda: state2.reads_ok >= n2 + 2, "boiler-2 keeps polling")
        # a removed device can come back with a new definition
        await rt.add_devices([_spec("boiler-1")])
        await _until(lambda: service.states["boiler-1"].reads_ok >= 1, "boiler-1 back")
        assert sorted(rt.device_specs) == ["boiler-1", "boiler-2"]
    assert rt.ledger_problems() == []
