"""An EdgeX-format OPC-UA profile (attribute ``nodeId``, a method with ``methodId``/``objectId``/``inputMap``)
end to end: ``edgeflow run`` in its own process, a simulated server, the file uplink's EdgeX events."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("asyncua")

from edgeflow.model import decode_event

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]


async def test_an_edgex_profile_through_edgeflow_run_and_the_file_uplink(
    opcua_server: Any, tmp_path: Path
) -> None:
    sim = await opcua_server()
    shutil.copy(ROOT / "examples" / "opcua" / "simulation.profile.yaml", tmp_path)
    out = tmp_path / "out.jsonl"
    (tmp_path / "edgeflow.yaml").write_text(
        f"""
service: opcua-edge
devices:
  - name: sim-1
    connector: opcua
    profile: simulation.profile.yaml
    protocols:
      opcua: {{ Endpoint: "{sim.endpoint}" }}
    autoEvents:
      - {{ interval: 200ms, sourceName: Counter, onChange: true }}
      - {{ interval: 500ms, sourceName: Waves }}
      - {{ interval: 1s, sourceName: Add }}
uplink: {{ type: file, path: {out} }}
""",
        encoding="utf-8",
    )
    started = time.time_ns()
    moving = asyncio.create_task(sim.run(0.1))
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edgeflow",
            "run",
            str(tmp_path / "edgeflow.yaml"),
            "--duration",
            "5",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(90):
            _stdout, stderr = await proc.communicate()
    finally:
        moving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await moving
    assert proc.returncode == 0, stderr.decode()
    events = [decode_event(line) for line in out.read_bytes().splitlines()]
    by_source: dict[str, list[Any]] = {}
    for ev in events:
        assert (ev.device_name, ev.profile_name) == ("sim-1", "OPCUA-Simulation")
        by_source.setdefault(ev.source_name, []).append(ev)

    counters = [r for ev in by_source["Counter"] for r in ev.readings]
    values = [r.value for r in counters]
    assert len(values) >= 5 and values == sorted(values) and len(set(values)) == len(values)  # changes only
    assert all(r.value_type.value == "Int32" for r in counters)
    origins = [r.origin for r in counters]
    assert origins == sorted(origins) and started < origins[0] and origins[-1] < time.time_ns()

    # a polled command: both resources each time, each with its node's own source timestamp
    waves = [r.resource_name for ev in by_source["Waves"] for r in ev.readings]
    assert waves.count("Sawtooth") == waves.count("Sinusoid") >= 5

    adds = [r.value for ev in by_source["Add"] for r in ev.readings]
    assert adds and set(adds) == {5.0}  # Methods.Add called with the profile's inputMap ["2", "3"]
