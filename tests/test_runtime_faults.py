"""Supervision: a broker that refuses publishes, a commit log that fails, a start that fails part-way.
The node keeps reading, says what is wrong on ``/readyz``, recovers by itself, and loses nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import MosquittoFactory, free_port
from runtime_support import sensors
from uplink_support import wait_for

from edgeflow.cloud import Receiver
from edgeflow.config import parse_config
from edgeflow.errors import ConfigError
from edgeflow.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]

def _config(tmp_path: Path, url: str, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "service": "faults",
        "devices": sensors(["d1"], "20ms"),
        "pipelines": [{"name": "all"}],
        "uplink": {
            "type": "mqtt",
            "url": url,
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "reconnect": {"initial_delay": 0.1, "max_delay": 1.0},
        },
        "metrics": {"listen": "127.0.0.1:0"},
    }
    cfg.update(over)
    return cfg


async def readyz(rt: Runtime) -> tuple[int, dict[str, Any]]:
    assert rt.metrics_server is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", rt.metrics_server.port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)


async def wait_ready(rt: Runtime, status: int, seconds: float, *, reason: str = "") -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        got, body = await readyz(rt)
        if got == status and all(reason in p for p in body["problems"][:1]):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz is {got} {body['problems']}, waited {seconds} s for {status} {reason!r}")
        await asyncio.sleep(0.1)


@pytest.mark.server
@pytest.mark.slow
async def test_refused_publishes_and_a_failing_commit_log_lose_nothing(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory(acl="topic readwrite #\n")
    rx = Receiver(broker.url, ["edgeflow/+/batches"], keep=True)
    await rx.start()
    rt = Runtime(parse_config(_config(tmp_path, broker.url), environ={}))
    await rt.start()
    try:
        await wait_for(lambda: rx.counts["readings"] > 20, 10, "first readings at the cloud")
        await wait_ready(rt, 200, 5)

        # 1. The broker refuses every publish for 10 s (MQTT 5 PUBACK "Not authorized").
        broker.set_acl("topic read #\n")
        body = await wait_ready(rt, 503, 5, reason="rejects publishes")
        assert "Not authorized" in body["problems"][0]
        read_before = rt.bus.published_readings
        await asyncio.sleep(10)
        assert rt.bus.published_readings > read_before + 100  # the devices kept being read
        assert rt.uplink.stats()["queued"] > 0  # and their readings wait in the outbox
        broker.set_acl("topic readwrite #\n")
        await wait_ready(rt, 200, 15)
        assert rt.uplink.stats()["rejected"] >= 1

        # 2. The commit log fails: another writer holds the database, commits get "database is locked".
        other = sqlite3.connect(tmp_path / "outbox.sqlite", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            body = await wait_ready(rt, 503, 10, reason="commit log")
            assert "database is locked" in body["problems"][0]
            read_before = rt.bus.published_readings
            await asyncio.sleep(1.0)
            assert rt.bus.published_readings > read_before  # reading goes on; readings wait in memory
        finally:
            other.execute("ROLLBACK")
            other.close()
        await wait_ready(rt, 200, 15)
        assert rt.uplink.stats()["commit_failures"] >= 1
    finally:
        await rt.stop()

    # Nothing lost: every reading read reached the cloud, once, with no gap.
    led = rt.ledger()
    assert rt.ledger_problems() == []
    published = led["bus"]["published"]
    assert led["bus"]["dropped"] == 0
    assert led["outbox"]["queued"] == 0 and led["commit"]["pending"] == 0
    await wait_for(lambda: rx.counts["readings"] == published, 15, "every reading at the cloud")
    (stream,) = rx.streams.values()
    assert stream.missing == 0, stream.summary()
    await rx.stop()


async def test_a_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    taken = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    cfg = _config(tmp_path, "mqtt://127.0.0.1:1", metrics={"listen": f"127.0.0.1:{port}"})
    cfg["uplink"] = {"type": "file", "path": str(tmp_path / "out.jsonl")}
    rt = Runtime(parse_config(cfg, environ={}))
    before = set(asyncio.all_tasks())
    with pytest.raises(ConfigError, match=rf"metrics.listen: 127.0.0.1:{port}: .*address already in use"):
        await rt.start()
    await asyncio.sleep(0.05)
    assert set(asyncio.all_tasks()) - before == set()  # no AutoEvent, router, committer or transport left
    assert not rt.uplink.commit_log.is_open
    assert all(not s._tasks for s in rt.services.values())
    taken.close()
    await taken.wait_closed()


def test_a_failed_start_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    import socket
    import subprocess

    import yaml

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = _config(tmp_path, f"mqtt://127.0.0.1:{free_port()}", metrics={"listen": f"127.0.0.1:{port}"})
        cfg["uplink"] = {"type": "file", "path": str(tmp_path / "out.jsonl")}
        path = tmp_path / "edge.yaml"
        path.write_text(yaml.safe_dump(cfg))
        res = subprocess.run(
            [sys.executable, "-m", "edgeflow", "run", str(path), "--duration", "5"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr
    assert "metrics.listen" in res.stderr and "address already in use" in res.stderr.lower()
    assert len(lines) <= 2, res.stderr  # the error line and its key path
