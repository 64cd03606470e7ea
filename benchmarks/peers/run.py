"""edgeflow side by side with ThingsBoard IoT Gateway and Node-RED: the same devices, the same data, one command.

    python benchmarks/peers/run.py [--seconds 60 --reps 3] [--peers edgeflow,thingsboard,nodered]
                                   [--settings none,on_change,deadband,bounded] [--kill-seconds 15]
                                   [--kill-settings none,batched]
    python benchmarks/peers/run.py --link-kbit 64 [--link-seconds 30]     # through a thin link instead

What it does, from a fresh clone (the project's ``.venv`` from ``scripts/bootstrap``):

1. Installs the peers into folders of its own under ``benchmarks/peers/.work/`` (git-ignored), once:
   ThingsBoard IoT Gateway (PyPI ``thingsboard-gateway==3.8.5`` and the ``pymodbus==3.9.2`` its Modbus
   connector pins, in a venv of its own) and Node-RED (npm ``node-red@4.1.8`` with
   ``node-red-contrib-modbus@5.23.3``; 5.45+ fetch a dependency from a host outside the npm registry).
   A peer whose install fails is reported in the table with the reason.
2. Starts ``replay_server.py`` (pymodbus; 20 units x 10 Int16 holding registers replaying the NAB
   machine-temperature series x 100, one new sample per second, counting every request), a Mosquitto of
   its own on a free port, and a counter subscribed to ``#`` on it (bytes, messages, readings, each
   message's arrival time; payloads kept and decoded afterwards).
3. For each rep, peer and setting: starts the peer polling every unit every 100 ms, waits for its first
   telemetry, measures ``--seconds`` (CPU user+system and peak RSS of the process tree, psutil, every
   0.5 s), then sends SIGINT and waits (30 s, then SIGKILL: reported as a hang).
4. Once per peer, rep and ``--kill-settings`` setting a SIGKILL run (``none``; for edgeflow also
   ``batched``): kill -9 while shipping, ``--kill-seconds`` plus a random 0-1 s after the first telemetry
   (so the kill does not fall at the same phase of a batching cycle every time), stop the Modbus server,
   start the peer again on the same state folder to let it ship what it kept, then SIGINT. Lost = what
   the server served minus what was delivered in the end. For edgeflow a copy of its outbox taken
   between the kill and the restart says what it had committed (each stream's next sequence number), so
   the loss splits into committed batches lost (the outbox's promise: must be 0) and readings answered
   but not yet committed (the window between a device's answer and the commit: a reading still in
   memory dies with the process, in any gateway). For every peer: how many of each unit's last polls
   were lost and how long before the kill the oldest of them was answered.

Settings (same bound for all: 1 % of the series' range, in register units):

============  =======================  ===============================  ==================================
setting       edgeflow                 ThingsBoard IoT Gateway          Node-RED
============  =======================  ===============================  ==================================
none          no rule (defaults)       reportStrategy ON_RECEIVED       no filter
batched       no rule, batching        (compared with their none)
              ``max_delay: 1s``
on_change     ``on_change``            ON_CHANGE                        filter (rbe) "block unless changed"
deadband      ``deadband`` absolute E  ON_CHANGE (it has no deadband)   filter "deadband" E, vs last output
bounded       ``swing`` max_error E    ON_CHANGE (nothing bounded)      filter "deadband" E (nothing else)
bounded_      ``swing`` max_error E,   (compared with their bounded)
batched       ``max_delay: 1s``
============  =======================  ===============================  ==================================

Measured per run: telemetry bytes (MQTT PUBLISH size: fixed header + topic + packet id + payload, plus
one property byte for MQTT 5), messages, readings delivered, Modbus requests, missed polls (gaps between
a unit's polls longer than 1.5 intervals, counted in intervals; a poll = the requests of one unit
within half an interval), CPU seconds and share of a core, peak RSS, max and mean |error| of the
receiver's reconstruction against the source at the middle of every replayed step (hold for the peers'
points, edgeflow's own interpolation for its series), readings lost on SIGINT and on SIGKILL (register
values the server served minus readings delivered, in the ``none`` setting), whether the peer hung on
stop. Median and spread (min..max) over reps; ratios edgeflow / peer per setting.

ThingsBoard stand-in: the gateway's MQTT client asks the server for its session limits with an RPC
(``v1/devices/me/rpc/request/<id>``, method ``getSessionLimits``) right after connecting; the harness
answers on ``v1/devices/me/rpc/response/<id>`` with ``{"maxPayloadSize": 65536,
"maxInflightMessages": 100, "rateLimits": {}, "gatewayRateLimits": {}}`` (no rate limits). It answers
nothing else; every other ThingsBoard topic the gateway publishes to is only counted.

Through a thin link (``--link-kbit``): the broker behind ``benchmarks/linkproxy.py`` (a token-bucket TCP
proxy, the one ``backhaul.py`` uses) and each peer, setting ``none``, pointed at the proxy; the poll period
is stretched (20 units x 10 registers every ``200 / rate`` s) to search the highest reading rate the peer
sustains: every value served delivered (within 20 s after the server stops) and the latency from the
reading's timestamp to its arrival not growing over the run (the median over the last third at most 3 % of
the time between them + 0.1 s above the middle third's, p99 at most 5 s). Settings ``none`` for every
peer and edgeflow's ``batched`` (``max_delay: 1s``), as far as ``--settings`` lists them. Doubling from an estimate, then two bisections; capped at the
poll setup's 2,000 readings/s. Writes ``peers-link.json`` + ``.csv``.

Results: a table on stdout and ``benchmarks/results/peers.json`` + ``peers.csv``, with the machine
(cores, load average before and after).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import os
import random
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = HERE / ".work"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(HERE))

from linkproxy import LinkProxy  # noqa: E402
from replay_server import load_series, source_value  # noqa: E402

from edgeflow.codec import decode, merge_points, reconstruct  # noqa: E402
from edgeflow.commitlog import unpack_staged  # noqa: E402
from edgeflow.model import SeriesTable  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SETTINGS = ("none", "batched", "on_change", "deadband", "bounded", "bounded_batched")
#: edgeflow-only settings and the peers' setting each is compared with
EDGEFLOW_ONLY = {"batched": "none", "bounded_batched": "bounded"}
PEERS = ("edgeflow", "thingsboard", "nodered")
TB_VERSION = "3.8.5"
TB_PYMODBUS = "3.9.2"
NODE_RED = "node-red@4.1.8"
NODE_RED_MODBUS = "node-red-contrib-modbus@5.23.3"


def shared_data() -> Path:
    for c in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"):
        if c.is_dir():
            return c
    return ROOT.parent / "shared" / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ installs


def install_thingsboard() -> tuple[Path | None, str | None]:
    venv = WORK / "tbvenv"
    py = venv / "bin" / "python"
    stamp = venv / f".installed-{TB_VERSION}"
    if stamp.exists():
        return py, None
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [
                str(py),
                "-m",
                "pip",
                "install",
                "-q",
                f"thingsboard-gateway=={TB_VERSION}",
                f"pymodbus=={TB_PYMODBUS}",
            ],
            check=True,
            capture_output=True,
            timeout=1200,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        return None, f"install failed: {exc}; {err.decode(errors='replace').strip().splitlines()[-1:]}"
    stamp.touch()
    return py, None


def install_nodered() -> tuple[Path | None, str | None]:
    folder = WORK / "nodered"
    red = folder / "node_modules" / "node-red" / "red.js"
    stamp = folder / ".installed"
    if stamp.exists() and red.exists():
        return red, None
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None, "node/npm not on PATH"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "package.json").exists():
        (folder / "package.json").write_text('{"name": "edgeflow-bench-nodered", "private": true}\n')
    try:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", NODE_RED, NODE_RED_MODBUS],
            cwd=folder,
            check=True,
            capture_output=True,
            timeout=1200,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        err = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")
        lines = [ln for ln in err.splitlines() if "error" in ln][:2]
        return None, f"npm install failed: {' | '.join(lines) or exc}"
    stamp.touch()
    return red, None


# ------------------------------------------------------------------------------------------ broker + counter


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            ("user root\n" if os.geteuid() == 0 else "")
            + f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
            + "max_inflight_messages 0\npersistence false\n"
        )
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def publish_size(topic: str, payload: bytes, mqtt5: bool) -> int:
    rem = 2 + len(topic.encode()) + 2 + len(payload) + (1 if mqtt5 else 0)
    n = 1
    while rem >= 128**n:
        n += 1
    return 1 + n + rem


class Counter:
    """Subscribed to ``#``: keeps (arrival time, topic, payload) of every message; answers the
    ThingsBoard session-limits RPC (the only server behaviour the gateway needs to run)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.lock = threading.Lock()
        self.messages: list[tuple[float, str, bytes]] = []
        self.answered = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-counter")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe("#", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.time()
        topic = msg.topic
        if topic.startswith("v1/devices/me/rpc/request/"):
            with contextlib.suppress(ValueError):
                body = json.loads(msg.payload)
                if body.get("method") == "getSessionLimits":
                    rid = topic.rsplit("/", 1)[1]
                    client.publish(
                        f"v1/devices/me/rpc/response/{rid}",
                        json.dumps(
                            {
                                "maxPayloadSize": 65536,
                                "maxInflightMessages": 100,
                                "rateLimits": {},
                                "gatewayRateLimits": {},
                            }
                        ),
                        qos=1,
                    )
                    self.answered += 1
        with self.lock:
            self.messages.append((now, topic, bytes(msg.payload)))

    def take(self) -> list[tuple[float, str, bytes]]:
        with self.lock:
            out, self.messages = self.messages, []
        return out

    def last_arrival(self, prefix: str) -> float:
        with self.lock:
            for t, topic, _ in reversed(self.messages):
                if topic.startswith(prefix):
                    return t
        return 0.0

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# ------------------------------------------------------------------------------------------ peers


@dataclass
class Setup:
    devices: int
    registers: int
    interval_s: float
    modbus_port: int
    broker_port: int
    bound: float  # 1 % of the range, register units


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _unit_name(u: int) -> str:
    return f"dev{u:02d}"


class Peer:
    name = ""
    telemetry_prefix = ""
    mqtt5 = False

    def __init__(self, setup: Setup, rundir: Path, setting: str) -> None:
        self.setup, self.rundir, self.setting = setup, rundir, setting
        rundir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self) -> None:
        cmd, env = self.command()
        log = (self.rundir / "peer.log").open("ab")
        self.proc = subprocess.Popen(
            cmd,
            preexec_fn=_default_sigint,  # a background shell starts us with SIGINT ignored: not the peer
            cwd=self.rundir,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def readings(
        self, messages: list[tuple[float, str, bytes]]
    ) -> dict[tuple[int, int], list[tuple[int, float]]]:
        """(unit, register) -> [(origin ns, value)] of the telemetry messages."""
        raise NotImplementedError

    def interpolation(self, messages: list[tuple[float, str, bytes]]) -> dict[tuple[int, int], str]:
        return {}

    def committed_after_kill(self) -> dict[str, int] | None:
        """What the peer had made durable when it was killed, where it says so (stream -> next seq)."""
        return None

    def committed_delivered(
        self, messages: list[tuple[float, str, bytes]], committed: dict[str, int]
    ) -> dict[str, int]:
        raise NotImplementedError


class Edgeflow(Peer):
    name = "edgeflow"
    telemetry_prefix = "edgeflow/"
    mqtt5 = True
    profile = False

    def command(self) -> tuple[list[str], dict[str, str]]:
        s = self.setup
        profile = {
            "name": "bench",
            "deviceResources": [
                {
                    "name": f"r{i}",
                    "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": i},
                    "properties": {"valueType": "Int16", "readWrite": "R"},
                }
                for i in range(s.registers)
            ],
            "deviceCommands": [
                {
                    "name": "all",
                    "readWrite": "R",
                    "resourceOperations": [{"deviceResource": f"r{i}"} for i in range(s.registers)],
                }
            ],
        }
        rules: list[dict[str, Any]] = {
            "none": [],
            "batched": [],
            "bounded_batched": [{"type": "swing", "max_error": s.bound}],
            "on_change": [{"type": "on_change"}],
            "deadband": [{"type": "deadband", "absolute": s.bound}],
            "bounded": [{"type": "swing", "max_error": s.bound}],
        }[self.setting]
        cfg = {
            "service": "bench",
            "devices": [
                {
                    "name": _unit_name(u),
                    "connector": "modbus",
                    "profile": profile,
                    "protocols": {
                        "modbus-tcp": {
                            "Address": "127.0.0.1",
                            "Port": s.modbus_port,
                            "UnitID": u,
                            "Timeout": 2,
                        }
                    },
                    "autoEvents": [{"interval": f"{int(s.interval_s * 1000)}ms", "sourceName": "all"}],
                }
                for u in range(1, s.devices + 1)
            ],
            "pipelines": [{"name": "p", "match": {}, "rules": rules}] if rules else [],
            "uplink": {
                "type": "mqtt",
                "url": f"mqtt://127.0.0.1:{s.broker_port}",
                "outbox": {"path": str(self.rundir / "outbox.sqlite")},
                **({"batching": {"max_delay": "1s"}} if self.setting in EDGEFLOW_ONLY else {}),
            },
        }
        path = self.rundir / "edgeflow.json"
        path.write_text(json.dumps(cfg, indent=1))
        py = ROOT / ".venv" / "bin" / "python"
        exe = str(py if py.exists() else sys.executable)
        if self.profile:
            prof = str(self.rundir / "edgeflow.prof")
            return [exe, "-m", "cProfile", "-o", prof, "-m", "edgeflow", "run", str(path)], {}
        return [exe, "-m", "edgeflow", "run", str(path)], {}

    def _decoded(self, messages: list[tuple[float, str, bytes]]) -> list[Any]:
        seen: set[tuple[str, int]] = set()
        out = []
        for _, topic, payload in messages:
            if not topic.startswith(self.telemetry_prefix):
                continue
            b = decode(payload)
            if (b.stream_id, b.seq) in seen:
                continue
            seen.add((b.stream_id, b.seq))
            out.append(b)
        out.sort(key=lambda b: (b.stream_id, b.seq))
        return out

    def readings(
        self, messages: list[tuple[float, str, bytes]]
    ) -> dict[tuple[int, int], list[tuple[int, float]]]:
        merged = merge_points(self._decoded(messages))
        out: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for (dev, res), s in merged.items():
            if not dev.startswith("dev") or not res.startswith("r"):
                continue
            out[(int(dev[3:]), int(res[1:]))] = list(zip(s.origins.tolist(), s.values.tolist(), strict=True))
        return out

    def committed_after_kill(self) -> dict[str, int] | None:
        """Each stream's next sequence number in the outbox as the SIGKILL left it: every batch numbered
        below it was committed. Read from a copy of the SQLite files (database + WAL), so the restart
        that follows opens the originals untouched. The readings staged then (committed, their message
        not yet cut: ``batching.max_delay``) are kept in :attr:`staged_at_kill`, by series and origin."""
        src = self.rundir / "outbox.sqlite"
        self.staged_at_kill: set[tuple[str, str, int]] = set()
        if not src.exists():
            return {}
        with tempfile.TemporaryDirectory() as tmp:
            for suffix in ("", "-wal"):
                f = Path(str(src) + suffix)
                if f.exists():
                    shutil.copyfile(f, Path(tmp) / ("outbox.sqlite" + suffix))
            db = sqlite3.connect(Path(tmp) / "outbox.sqlite")
            try:
                rows = db.execute("SELECT stream_id, next_seq FROM streams").fetchall()
                has_staged = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'staged'"
                ).fetchone()
                staged = db.execute("SELECT payload FROM staged").fetchall() if has_staged else []
            finally:
                db.close()
        table = SeriesTable()
        for (blob,) in staged:
            batch, _ = unpack_staged(bytes(blob), table)
            for sid, origin in zip(batch.series.tolist(), batch.origins.tolist(), strict=True):
                info = table.info(sid)
                self.staged_at_kill.add((info.device, info.resource, origin))
        return {str(sid): int(n) for sid, n in rows}

    def committed_delivered(
        self, messages: list[tuple[float, str, bytes]], committed: dict[str, int]
    ) -> dict[str, int]:
        """Of the batches committed before the kill (seq below the stream's next_seq; a stream starts at
        0): how many, how many arrived, how many readings they carried; of the readings staged then:
        how many, how many arrived (in later batches)."""
        batches = {(b.stream_id, b.seq): b for b in self._decoded(messages)}
        total = sum(committed.values())
        arrived = [b for (sid, seq), b in batches.items() if seq < committed.get(sid, 0)]
        staged = getattr(self, "staged_at_kill", set())
        later = {
            (s.info.device, s.info.resource, origin)
            for (sid, seq), b in batches.items()
            if seq >= committed.get(sid, 0)
            for s in b.series
            for origin in s.origins.tolist()
        }
        staged_arrived = len(staged & later)
        return {
            "committed_batches": total,
            "committed_batches_delivered": len(arrived),
            "lost_committed_batches": total - len(arrived),
            "staged_at_kill": len(staged),
            "lost_staged_readings": len(staged) - staged_arrived,
            "committed_readings_delivered": sum(len(s) for b in arrived for s in b.series) + staged_arrived,
        }

    def interpolation(self, messages: list[tuple[float, str, bytes]]) -> dict[tuple[int, int], str]:
        merged = merge_points(self._decoded(messages))
        return {
            (int(dev[3:]), int(res[1:])): s.interpolation
            for (dev, res), s in merged.items()
            if dev.startswith("dev") and res.startswith("r")
        }


class ThingsBoard(Peer):
    name = "thingsboard"
    telemetry_prefix = "v1/gateway/telemetry"
    python: Path | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        s = self.setup
        assert self.python is not None
        strategy = {"none": "ON_RECEIVED", "batched": "ON_RECEIVED"}.get(self.setting, "ON_CHANGE")
        conf = self.rundir / "config"
        conf.mkdir(exist_ok=True)
        pkg_conf = next(
            self.python.parent.parent.glob("lib/python3*/site-packages/thingsboard_gateway/config")
        )
        logs = json.loads((pkg_conf / "logs.json").read_text())
        for lg in logs.get("loggers", {}).values():
            lg["level"] = "WARNING"
        for h in logs.get("handlers", {}).values():
            if "filename" in h:
                h["filename"] = str(self.rundir / "logs" / Path(h["filename"]).name)
        (self.rundir / "logs").mkdir(exist_ok=True)
        (conf / "logs.json").write_text(json.dumps(logs))
        gw = {
            "thingsboard": {
                "host": "127.0.0.1",
                "port": s.broker_port,
                "remoteShell": False,
                "remoteConfiguration": False,
                "latencyDebugMode": False,
                "statistics": {
                    "enable": False,
                    "statsSendPeriodInSeconds": 3600,
                    "customStatsSendPeriodInSeconds": 3600,
                },
                "deviceFiltering": {"enable": False},
                "maxPayloadSizeBytes": 8196,
                "minPackSendDelayMS": 50,
                "minPackSizeToSend": 500,
                "checkConnectorsConfigurationInSeconds": 3600,
                "handleDeviceRenaming": False,
                "security": {"type": "accessToken", "accessToken": "bench"},
                "qos": 1,
                "reportStrategy": {"type": strategy},
                "checkingDeviceActivity": {"checkDeviceInactivity": False},
            },
            "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 100000},
            "grpc": {"enabled": False},
            "connectors": [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}],
        }
        (conf / "tb_gateway.json").write_text(json.dumps(gw, indent=1))
        slaves = [
            {
                "host": "127.0.0.1",
                "port": s.modbus_port,
                "type": "tcp",
                "method": "socket",
                "unitId": u,
                "deviceName": _unit_name(u),
                "deviceType": "default",
                "timeout": 2,
                "byteOrder": "BIG",
                "wordOrder": "BIG",
                "retries": 1,
                "retryOnEmpty": True,
                "retryOnInvalid": True,
                "pollPeriod": int(s.interval_s * 1000),
                "connectAttemptTimeMs": 500,
                "connectAttemptCount": 5,
                "waitAfterFailedAttemptsMs": 1000,
                "attributes": [],
                "timeseries": [
                    {"tag": f"r{i}", "type": "16int", "functionCode": 3, "objectsCount": 1, "address": i}
                    for i in range(s.registers)
                ],
                "attributeUpdates": [],
                "rpc": [],
            }
            for u in range(1, s.devices + 1)
        ]
        (conf / "modbus.json").write_text(json.dumps({"master": {"slaves": slaves}}, indent=1))
        code = "from thingsboard_gateway.tb_gateway import daemon; daemon()"
        return [str(self.python), "-W", "ignore", "-c", code], {"TB_GW_CONFIG_DIR": str(conf)}

    def readings(
        self, messages: list[tuple[float, str, bytes]]
    ) -> dict[tuple[int, int], list[tuple[int, float]]]:
        out: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for arrival, topic, payload in messages:
            if topic != "v1/gateway/telemetry":
                continue
            for dev, entries in orjson.loads(payload).items():
                if not dev.startswith("dev"):
                    continue
                u = int(dev[3:])
                for e in entries if isinstance(entries, list) else [entries]:
                    ts = int(e.get("ts", arrival * 1000)) * 1_000_000
                    for k, v in e.get("values", {}).items():
                        out.setdefault((u, int(k[1:])), []).append((ts, float(v)))
        for pts in out.values():
            pts.sort()
        return out


class NodeRed(Peer):
    name = "nodered"
    telemetry_prefix = "nodered/"
    red: Path | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        s = self.setup
        assert self.red is not None
        nodes: list[dict[str, Any]] = [
            {"id": "tab", "type": "tab", "label": "bench"},
            {
                "id": "broker",
                "type": "mqtt-broker",
                "name": "bench",
                "broker": "127.0.0.1",
                "port": str(s.broker_port),
                "clientid": "nodered-bench",
                "autoConnect": True,
                "usetls": False,
                "protocolVersion": "4",
                "keepalive": "60",
                "cleansession": True,
            },
        ]
        func = {"none": None, "batched": None, "on_change": "rbe"}.get(self.setting, "deadband")
        tail = "fmt"
        if func is not None:
            nodes.append(
                {
                    "id": "filter",
                    "type": "rbe",
                    "z": "tab",
                    "name": "",
                    "func": func,
                    "gap": str(s.bound) if func == "deadband" else "",
                    "start": "",
                    "inout": "out",
                    "septopics": True,
                    "property": "payload",
                    "topi": "topic",
                    "wires": [["fmt"]],
                }
            )
            tail = "filter"
        nodes.append(
            {
                "id": "fmt",
                "type": "function",
                "z": "tab",
                "name": "json",
                "outputs": 1,
                "func": "msg.payload = JSON.stringify({device: msg.device, resource: msg.resource, "
                "value: msg.payload, ts: msg.ts});\nmsg.topic = 'nodered/telemetry';\nreturn msg;",
                "wires": [["out"]],
            }
        )
        nodes.append(
            {
                "id": "out",
                "type": "mqtt out",
                "z": "tab",
                "topic": "",
                "qos": "1",
                "retain": "false",
                "broker": "broker",
                "wires": [],
            }
        )
        for u in range(1, s.devices + 1):
            nodes.append(
                {
                    "id": f"client{u}",
                    "type": "modbus-client",
                    "name": f"c{u}",
                    "clienttype": "tcp",
                    "bufferCommands": True,
                    "stateLogEnabled": False,
                    "queueLogEnabled": False,
                    "failureLogEnabled": False,
                    "tcpHost": "127.0.0.1",
                    "tcpPort": str(s.modbus_port),
                    "tcpType": "DEFAULT",
                    "unit_id": str(u),
                    "commandDelay": "1",
                    "clientTimeout": "2000",
                    "reconnectOnTimeout": True,
                    "reconnectTimeout": "1000",
                    "parallelUnitIdsAllowed": True,
                }
            )
            nodes.append(
                {
                    "id": f"read{u}",
                    "type": "modbus-read",
                    "z": "tab",
                    "name": _unit_name(u),
                    "topic": "",
                    "showStatusActivities": False,
                    "logIOActivities": False,
                    "showErrors": False,
                    "unitid": str(u),
                    "dataType": "HoldingRegister",
                    "adr": "0",
                    "quantity": str(s.registers),
                    "rate": str(int(s.interval_s * 1000)),
                    "rateUnit": "ms",
                    "delayOnStart": False,
                    "startDelayTime": "",
                    "server": f"client{u}",
                    "useIOFile": False,
                    "ioFile": "",
                    "useIOForPayload": False,
                    "emptyMsgOnFail": False,
                    "wires": [[f"split{u}"], []],
                }
            )
            nodes.append(
                {
                    "id": f"split{u}",
                    "type": "function",
                    "z": "tab",
                    "name": "split",
                    "outputs": 1,
                    "func": "const ts = Date.now(); const out = [];\n"
                    "for (let i = 0; i < msg.payload.length; i++) {\n"
                    f"  out.push({{topic: '{_unit_name(u)}/r' + i, device: '{_unit_name(u)}', resource: 'r' + i, "
                    "payload: msg.payload[i], ts: ts});\n}\nreturn [out];",
                    "wires": [[tail]],
                }
            )
        flows = self.rundir / "flows.json"
        flows.write_text(json.dumps(nodes, indent=1))
        port = free_port()
        settings = self.rundir / "settings.js"
        settings.write_text(
            "module.exports = {\n"
            f"  uiPort: {port}, uiHost: '127.0.0.1', flowFile: {json.dumps(str(flows))},\n"
            f"  userDir: {json.dumps(str(self.red.parents[2]))},\n"
            "  credentialSecret: false, httpAdminRoot: false, httpNodeRoot: false,\n"
            "  logging: { console: { level: 'warn', metrics: false, audit: false } },\n"
            "  editorTheme: { projects: { enabled: false } }\n};\n"
        )
        return ["node", str(self.red), "--settings", str(settings)], {}

    def readings(
        self, messages: list[tuple[float, str, bytes]]
    ) -> dict[tuple[int, int], list[tuple[int, float]]]:
        out: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for _, topic, payload in messages:
            if not topic.startswith(self.telemetry_prefix):
                continue
            m = orjson.loads(payload)
            out.setdefault((int(m["device"][3:]), int(m["resource"][1:])), []).append(
                (int(m["ts"]) * 1_000_000, float(m["value"]))
            )
        for pts in out.values():
            pts.sort()
        return out


# ------------------------------------------------------------------------------------------ sampling


class Sampler:
    """CPU (user+system, the process tree; children that exit keep their last count) and RSS."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0
        self.stop_evt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def sample(self) -> float:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            procs = []
        rss = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                self.cpu[p.pid] = t.user + t.system
                rss += p.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        return sum(self.cpu.values())

    def _run(self) -> None:
        while not self.stop_evt.wait(0.5):
            self.sample()

    def stop(self) -> None:
        self.stop_evt.set()
        self.thread.join()


# ------------------------------------------------------------------------------------------ one run


@dataclass
class Env:
    csv: Path
    series: np.ndarray
    setup: Setup
    counter: Counter
    step: float = 1.0
    scale: float = 100.0
    results: list[dict[str, Any]] = field(default_factory=list)


def start_server(env: Env, rundir: Path) -> tuple[subprocess.Popen[bytes], float, Path]:
    rundir.mkdir(parents=True, exist_ok=True)
    ready, stats = rundir / "server-ready.json", rundir / "server-stats.json"
    py = ROOT / ".venv" / "bin" / "python"
    proc = subprocess.Popen(
        [
            str(py if py.exists() else sys.executable),
            str(HERE / "replay_server.py"),
            "--csv",
            str(env.csv),
            "--port",
            str(env.setup.modbus_port),
            "--devices",
            str(env.setup.devices),
            "--registers",
            str(env.setup.registers),
            "--step",
            str(env.step),
            "--scale",
            str(env.scale),
            "--stats",
            str(stats),
            "--ready",
            str(ready),
        ],
        stdout=(rundir / "server.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"replay server did not start; see {rundir / 'server.log'}")
        time.sleep(0.05)
    time.sleep(0.05)
    return proc, float(json.loads(ready.read_text())["t0"]), stats


def stop_server(proc: subprocess.Popen[bytes], stats: Path) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return dict(json.loads(stats.read_text())) if stats.exists() else {"reads": {}, "registers_read": {}}


def stop_peer(peer: Peer, sig: int, timeout: float = 30.0) -> tuple[bool, float]:
    """Send ``sig``; returns (hung, seconds to exit). A peer still running after ``timeout`` is killed."""
    assert peer.proc is not None
    t0 = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.kill(peer.proc.pid, sig)
    try:
        peer.proc.wait(timeout)
        hung = False
    except subprocess.TimeoutExpired:
        hung = True
    # whatever is left of the process group (a hung peer, or children of a killed one)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(peer.proc.pid, signal.SIGKILL)
    peer.proc.wait()
    return hung, time.monotonic() - t0


def abandon(peer: Peer, server: subprocess.Popen[bytes], stats: Path) -> None:
    """A run interrupted: kill the peer and stop the Modbus server, whatever is still running."""
    if peer.proc is not None and peer.proc.poll() is None:
        stop_peer(peer, signal.SIGKILL)
    if server.poll() is None:
        stop_server(server, stats)


def first_telemetry(
    env: Env, peer: Peer, server: subprocess.Popen[bytes], stats: Path, timeout: float = 60.0
) -> bool:
    """Wait for the peer's first telemetry at the broker. If it exits or stays silent for ``timeout`` s,
    the peer and the Modbus server are stopped and False is returned."""
    assert peer.proc is not None
    deadline = time.time() + timeout
    while not env.counter.last_arrival(peer.telemetry_prefix):
        if peer.proc.poll() is not None or time.time() > deadline:
            stop_peer(peer, signal.SIGKILL)
            stop_server(server, stats)
            return False
        time.sleep(0.1)
    return True


def wait_quiet(counter: Counter, prefix: str, quiet: float, at_most: float) -> None:
    deadline = time.time() + at_most
    while time.time() < deadline:
        last = counter.last_arrival(prefix)
        if last and time.time() - last > quiet:
            return
        time.sleep(0.2)


def missed_polls(reads: list[float], w0: float, w1: float, interval: float) -> int:
    starts: list[float] = []
    for t in sorted(reads):
        if t < w0 - interval or t > w1 + interval:
            continue
        if not starts or t - starts[-1] > 0.5 * interval:
            starts.append(t)
    if not starts:
        return int((w1 - w0) / interval)
    edges = [w0, *starts, w1]
    missed = 0
    for a, b in itertools.pairwise(edges):
        gap = b - a
        if gap > 1.5 * interval:
            missed += round(gap / interval) - 1
    return missed


def errors(
    env: Env, peer: Peer, messages: list[tuple[float, str, bytes]], t0: float, t_end: float
) -> tuple[float | None, float | None, int]:
    """Max and mean |error| (register units) at the middle of each replayed step the run covered."""
    pts = peer.readings(messages)
    interp = peer.interpolation(messages)
    s = env.setup
    errs = []
    series_seen = 0
    for u in range(1, s.devices + 1):
        for r in range(s.registers):
            p = pts.get((u, r))
            if not p:
                continue
            series_seen += 1
            origins = np.asarray([o for o, _ in p], dtype=np.int64)
            values = np.asarray([v for _, v in p])
            k_first = int((origins[0] / 1e9 - t0) // env.step) + 1
            k_last = int((t_end - t0) // env.step) - 1
            if k_last < k_first:
                continue
            ks = np.arange(k_first, k_last + 1)
            at = ((t0 + (ks + 0.5) * env.step) * 1e9).astype(np.int64)
            recon = reconstruct(origins, values, at, interp.get((u, r), "hold"))  # type: ignore[arg-type]
            src = source_value(env.series, env.scale, u, r, s.registers, ks)
            ok = np.isfinite(recon)
            errs.append(np.abs(recon[ok] - src[ok]))
    if not errs:
        return None, None, series_seen
    allerr = np.concatenate(errs)
    return float(allerr.max()), float(allerr.mean()), series_seen


def count(peer: Peer, messages: list[tuple[float, str, bytes]], w0: float, w1: float) -> dict[str, Any]:
    tele = [(t, tp, pl) for t, tp, pl in messages if tp.startswith(peer.telemetry_prefix)]
    window = [m for m in tele if w0 <= m[0] < w1]
    # every message first: the window's compact messages refer to the series table an earlier one carried
    readings_all = sum(len(v) for v in peer.readings(tele).values())
    readings_window = sum(len(v) for v in peer.readings(window).values())
    return {
        "messages": len(window),
        "bytes": sum(publish_size(tp, pl, peer.mqtt5) for _, tp, pl in window),
        "readings": readings_window,
        "readings_all": readings_all,
    }


def one_run(env: Env, cls: type[Peer], setting: str, seconds: float, rundir: Path) -> dict[str, Any]:
    s = env.setup
    env.counter.take()
    server, t0, stats_path = start_server(env, rundir)
    peer = cls(s, rundir, setting)
    row: dict[str, Any] = {"peer": cls.name, "setting": setting, "seconds": seconds}
    try:
        peer.start()
        assert peer.proc is not None
        sampler = Sampler(peer.proc.pid)
        if not first_telemetry(env, peer, server, stats_path):
            sampler.stop()
            tail = (rundir / "peer.log").read_text(errors="replace").strip().splitlines()[-3:]
            return {**row, "error": f"no telemetry within 60 s: {' | '.join(tail)}"}
        time.sleep(2.0)  # settle: connections made, first bursts out
        load0 = os.getloadavg()
        w0, c0 = time.time(), sampler.sample()
        time.sleep(seconds)
        w1, c1 = time.time(), sampler.sample()
        load1 = os.getloadavg()
        sampler.stop()
        hung, stop_s = stop_peer(peer, signal.SIGINT)
        stats = stop_server(server, stats_path)
        wait_quiet(env.counter, peer.telemetry_prefix, 2.0, 10.0)
    except BaseException:
        abandon(peer, server, stats_path)
        raise
    messages = env.counter.take()
    c = count(peer, messages, w0, w1)
    reads = stats["reads"]
    requests = sum(1 for v in reads.values() for t in v if w0 <= t < w1)
    missed = sum(missed_polls(v, w0, w1, s.interval_s) for v in reads.values())
    served = sum(int(v) for v in stats["registers_read"].values())
    emax, emean, nseries = errors(env, peer, messages, t0, w1)
    row.update(
        {
            "bytes": c["bytes"],
            "messages": c["messages"],
            "readings": c["readings"],
            "modbus_requests": requests,
            "missed_polls": missed,
            "expected_polls": round((w1 - w0) / s.interval_s) * s.devices,
            "cpu_s": round(c1 - c0, 3),
            "cpu_share": round((c1 - c0) / (w1 - w0), 4),
            "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
            "max_error": emax,
            "mean_error": emean,
            "max_error_over_e": None if emax is None else round(emax / s.bound, 4),
            "series_delivered": nseries,
            "hung_on_sigint": hung,
            "stop_seconds": round(stop_s, 2),
            "lost_on_sigint": (served - c["readings_all"]) if setting in ("none", "batched") else None,
            "load_before": [round(x, 2) for x in load0],
            "load_after": [round(x, 2) for x in load1],
        }
    )
    return row


def lost_tail(
    reads: dict[str, list[float]],
    served: dict[str, int],
    delivered: dict[int, int],
    registers: int,
    interval: float,
    t_kill: float,
) -> dict[str, Any]:
    """Where the readings lost on a SIGKILL were, per unit: how many of the unit's last polls were never
    delivered, and how long before the kill the oldest of them was answered (server time)."""
    units = 0
    most_polls = 0
    oldest = 0.0
    for u, times in reads.items():
        lost = int(served.get(u, 0)) - delivered.get(int(u), 0)
        if lost <= 0:
            continue
        units += 1
        starts: list[float] = []
        for t in sorted(times):
            if not starts or t - starts[-1] > 0.5 * interval:
                starts.append(t)
        k = -(-lost // registers)  # polls, rounded up
        most_polls = max(most_polls, k)
        if starts:
            oldest = max(oldest, t_kill - starts[-min(k, len(starts))])
    return {
        "units_with_loss": units,
        "most_polls_lost_per_unit": most_polls,
        "oldest_lost_s": round(oldest, 3),
    }


def kill_run(
    env: Env, cls: type[Peer], seconds: float, rundir: Path, setting: str = "none"
) -> dict[str, Any]:
    """SIGKILL while shipping, Modbus server stopped, the peer started again to ship what it kept.

    ``lost_on_sigkill`` = register values the server served − readings delivered in the end. For edgeflow
    the outbox (a copy of its SQLite files taken after the kill, before the restart) says what it had
    committed: its stream's next sequence number. That splits the loss into ``lost_committed`` (readings
    in batches numbered below it that never arrived: must be 0, the outbox's promise) and
    ``uncommitted_at_kill`` (answered by the server, not yet in a committed batch: the window between a
    device's answer and the commit, which no durable store can close — a reading in memory dies with the
    process). ``oldest_lost_s``: how long before the kill the oldest lost poll was answered."""
    env.counter.take()
    server, _, stats_path = start_server(env, rundir)
    peer = cls(env.setup, rundir, setting)
    peer.start()
    if not first_telemetry(env, peer, server, stats_path):
        return {"peer": cls.name, "setting": setting, "error": "no telemetry within 60 s"}
    # a random phase, so the kill does not fall at the same point of a batching cycle every time
    time.sleep(seconds + random.Random(f"{cls.name}-{setting}-{rundir.name}").uniform(0.0, 1.0))
    t_kill = time.time()
    stop_peer(peer, signal.SIGKILL)
    stats = stop_server(server, stats_path)
    committed = peer.committed_after_kill()
    peer2 = cls(env.setup, rundir, setting)
    peer2.start()
    time.sleep(5.0)
    wait_quiet(env.counter, peer.telemetry_prefix, 3.0, 40.0)
    hung, _ = stop_peer(peer2, signal.SIGINT)
    wait_quiet(env.counter, peer.telemetry_prefix, 2.0, 10.0)
    messages = [m for m in env.counter.take() if m[1].startswith(peer.telemetry_prefix)]
    per_series = peer.readings(messages)
    delivered = sum(len(v) for v in per_series.values())
    per_unit: dict[int, int] = {}
    for (u, _r), v in per_series.items():
        per_unit[u] = per_unit.get(u, 0) + len(v)
    served = sum(int(v) for v in stats["registers_read"].values())
    out: dict[str, Any] = {
        "peer": cls.name,
        "setting": setting,
        "served": served,
        "delivered": delivered,
        "lost_on_sigkill": served - delivered,
        "hung_on_restart_stop": hung,
    }
    out.update(
        lost_tail(
            stats["reads"],
            stats["registers_read"],
            per_unit,
            env.setup.registers,
            env.setup.interval_s,
            t_kill,
        )
    )
    if committed is not None:
        out.update(peer.committed_delivered(messages, committed))
        out["uncommitted_at_kill"] = served - out["committed_readings_delivered"]
    return out


# ------------------------------------------------------------------------------------------ thin link

#: Bytes per reading of each peer's ``none`` setting at defaults (the peer table), to start the search.
LINK_ESTIMATE = {"edgeflow": 14.0, "thingsboard": 17.0, "nodered": 89.0}
LINK_ESTIMATE_BATCHED = 1.2  # edgeflow with max_delay: 1s


def link_trial(
    env: Env,
    cls: type[Peer],
    rate: float,
    seconds: float,
    rundir: Path,
    proxy: LinkProxy,
    setting: str = "none",
) -> dict[str, Any]:
    """The peer (a lossless setting: ``none``, or edgeflow's ``batched``) publishing through ``proxy`` at
    ``rate`` readings/s (the poll period stretched: every unit, every register, every
    ``devices * registers / rate`` s). Sustained: every register value the server served is delivered
    (within 20 s after the server stops) and the backlog does not grow: the median latency (arrival −
    the reading's timestamp) over the last third of the run exceeds that over the middle third by at
    most 3 % of the time between them + 0.1 s, and the p99 over the last third is at most 5 s."""
    s = env.setup
    interval = max(0.1, s.devices * s.registers / rate)
    setup = replace(s, interval_s=interval, broker_port=proxy.port)
    env.counter.take()
    up0 = proxy.bytes_up
    t_started = time.time()
    server, _, stats_path = start_server(env, rundir)
    peer = cls(setup, rundir, setting)
    row: dict[str, Any] = {
        "peer": cls.name,
        "setting": setting,
        "link_kbit": proxy.rate_kbit,
        "target_rate": rate,
    }
    try:
        peer.start()
        if not first_telemetry(env, peer, server, stats_path):
            return {**row, "error": "no telemetry within 60 s", "sustained": False}
        w0 = time.time()
        time.sleep(seconds)
        w1 = time.time()
        stats = stop_server(server, stats_path)
        t_stopped = time.time()
        wait_quiet(env.counter, peer.telemetry_prefix, 3.0, 20.0)
        hung, _ = stop_peer(peer, signal.SIGINT)
        wait_quiet(env.counter, peer.telemetry_prefix, 2.0, 10.0)
    except BaseException:
        abandon(peer, server, stats_path)
        raise
    messages = [m for m in env.counter.take() if m[1].startswith(peer.telemetry_prefix)]
    served = sum(int(v) for v in stats["registers_read"].values())
    delivered = sum(len(v) for v in peer.readings(messages).values())
    # latency of each reading: arrival of its message − its timestamp, by the third of the run it was read in
    lat_mid: list[float] = []
    lat_last: list[float] = []
    span = w1 - w0
    for arrival, topic, payload in messages:
        for pts in peer.readings([(arrival, topic, payload)]).values():
            for origin, _ in pts:
                t = origin / 1e9
                if w0 + span / 3 <= t < w0 + 2 * span / 3:
                    lat_mid.append(arrival - t)
                elif w0 + 2 * span / 3 <= t < w1:
                    lat_last.append(arrival - t)
    m_mid = float(np.median(lat_mid)) if lat_mid else None
    m_last = float(np.median(lat_last)) if lat_last else None
    p99 = float(np.quantile(lat_last, 0.99)) if lat_last else None
    bounded = (
        m_mid is not None
        and m_last is not None
        and p99 is not None
        and m_last <= m_mid + 0.03 * span / 3 + 0.1
        and p99 <= 5.0
    )
    first = min((t for v in stats["reads"].values() for t in v), default=t_started)
    row.update(
        {
            "interval_s": round(interval, 4),
            "rate": round(served / max(1e-9, t_stopped - first), 1),
            "served": served,
            "delivered": delivered,
            "lost": served - delivered,
            "link_bytes_up": proxy.bytes_up - up0,
            "link_bytes_per_reading": round((proxy.bytes_up - up0) / delivered, 2) if delivered else None,
            "latency_median_mid_s": m_mid,
            "latency_median_last_s": m_last,
            "latency_p99_last_s": p99,
            "hung_on_sigint": hung,
            "load": round(os.getloadavg()[0], 2),
            "sustained": bool(bounded and served == delivered),
        }
    )
    return row


def link_search(
    env: Env,
    cls: type[Peer],
    kbit: float,
    seconds: float,
    runs: Path,
    max_rate: float,
    setting: str = "none",
) -> dict[str, Any]:
    """The highest reading rate ``cls`` sustains through a ``kbit`` token-bucket link (doubling from an
    estimate until a trial fails, then bisecting twice); capped at ``max_rate`` (the poll setup's)."""
    proxy = LinkProxy(("127.0.0.1", env.setup.broker_port), rate_kbit=kbit)
    proxy.start()
    trials: list[dict[str, Any]] = []

    def run(rate: float) -> dict[str, Any]:
        r = link_trial(
            env, cls, rate, seconds, runs / f"{cls.name}-{setting}-link{kbit:g}-{len(trials)}", proxy, setting
        )
        trials.append(r)
        print(
            f"  link {kbit:g} kbit/s {cls.name:<12}{setting:<8} {r.get('rate', 0):>7.0f}/s sustained={r['sustained']} "
            f"lost={r.get('lost')} latency mid/last {r.get('latency_median_mid_s')}/{r.get('latency_median_last_s')}"
            f" load {r.get('load')}",
            flush=True,
        )
        return r

    try:
        estimate = LINK_ESTIMATE[cls.name] if setting == "none" else LINK_ESTIMATE_BATCHED
        rate = min(max_rate, max(10.0, kbit * 125 / estimate * 0.7))
        good: dict[str, Any] | None = None
        bad: dict[str, Any] | None = None
        r = run(rate)
        if r["sustained"]:
            good = r
            while good["target_rate"] < max_rate:
                r = run(min(max_rate, good["target_rate"] * 2))
                if not r["sustained"]:
                    bad = r
                    break
                good = r
        else:
            bad = r
            while bad["target_rate"] > 10.0:
                r = run(max(10.0, bad["target_rate"] / 2))
                if r["sustained"]:
                    good = r
                    break
                bad = r
        if good is not None and bad is not None:
            for _ in range(2):
                r = run((good["target_rate"] + bad["target_rate"]) / 2)
                if r["sustained"]:
                    good = r
                else:
                    bad = r
    finally:
        proxy.stop()
    best = good or {}
    return {
        "peer": cls.name,
        "setting": setting,
        "link_kbit": kbit,
        "sustained_rate": best.get("rate"),
        "capped": bool(good is not None and bad is None),
        "link_bytes_per_reading": best.get("link_bytes_per_reading"),
        "latency_median_s": best.get("latency_median_last_s"),
        "latency_p99_s": best.get("latency_p99_last_s"),
        "trials": trials,
    }


# ------------------------------------------------------------------------------------------ summary


def _med(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _spread(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{min(xs):.3g}..{max(xs):.3g}"


def summarize(
    rows: list[dict[str, Any]], kills: list[dict[str, Any]], unavailable: dict[str, str]
) -> list[dict[str, Any]]:
    out = []
    for peer in PEERS:
        for setting in SETTINGS:
            rs = [r for r in rows if r["peer"] == peer and r["setting"] == setting]
            if not rs and (peer not in unavailable or setting in EDGEFLOW_ONLY):
                continue
            ok = [r for r in rs if "error" not in r]
            ks = [
                k
                for k in kills
                if k["peer"] == peer and k.get("setting", "none") == setting and "error" not in k
            ]
            summary: dict[str, Any] = {"peer": peer, "setting": setting, "reps": len(ok)}
            if peer in unavailable:
                summary["unavailable"] = unavailable[peer]
            elif not ok:
                summary["unavailable"] = "; ".join(r.get("error", "") for r in rs)
            else:
                for key in (
                    "bytes",
                    "messages",
                    "readings",
                    "modbus_requests",
                    "missed_polls",
                    "cpu_s",
                    "cpu_share",
                    "peak_rss_mb",
                    "max_error",
                    "mean_error",
                    "max_error_over_e",
                    "lost_on_sigint",
                    "stop_seconds",
                ):
                    vals = [r.get(key) for r in ok]
                    summary[key] = _med(vals)  # type: ignore[arg-type]
                    summary[key + "_spread"] = _spread(vals)  # type: ignore[arg-type]
                summary["hung_on_sigint"] = sum(1 for r in ok if r.get("hung_on_sigint"))
                for key in (
                    "lost_on_sigkill",
                    "lost_committed_batches",
                    "lost_staged_readings",
                    "uncommitted_at_kill",
                    "oldest_lost_s",
                ):
                    vals = [k.get(key) for k in ks]
                    summary[key] = _med(vals) if ks else None  # type: ignore[arg-type]
                    summary[key + "_spread"] = _spread(vals)  # type: ignore[arg-type]
                summary["load_after"] = _med([r["load_after"][0] for r in ok])
            out.append(summary)
    ef = {s["setting"]: s for s in out if s["peer"] == "edgeflow" and "unavailable" not in s}
    for s in out:
        if s["peer"] == "edgeflow" or "unavailable" in s or s["setting"] not in ef:
            continue
        e = ef[s["setting"]]
        s["ratio_bytes"] = e["bytes"] / s["bytes"] if s.get("bytes") else None
        s["ratio_cpu"] = e["cpu_s"] / s["cpu_s"] if s.get("cpu_s") else None
        for own, theirs in EDGEFLOW_ONLY.items():
            if s["setting"] == theirs and own in ef:
                b = ef[own]
                s[f"ratio_bytes_{own}"] = b["bytes"] / s["bytes"] if s.get("bytes") else None
                s[f"ratio_cpu_{own}"] = b["cpu_s"] / s["cpu_s"] if s.get("cpu_s") else None
    return out


def print_table(summary: list[dict[str, Any]]) -> None:
    head = (
        f"{'peer':<12}{'setting':<10}{'bytes':>10}{'msgs':>7}{'readings':>9}{'requests':>9}{'missed':>7}"
        f"{'CPU s':>8}{'core%':>7}{'RSS MB':>8}{'err/E':>9}{'lostINT':>8}{'lostKILL':>9}{'hung':>5}"
        f"{'B ef/peer':>10}{'CPU ef/peer':>12}"
    )
    print(head)
    for s in summary:
        if "unavailable" in s:
            print(f"{s['peer']:<12}{s['setting']:<10}  not run: {s['unavailable']}")
            continue

        def f(v: Any, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        print(
            f"{s['peer']:<12}{s['setting']:<10}{f(s['bytes'], '.0f'):>10}{f(s['messages'], '.0f'):>7}"
            f"{f(s['readings'], '.0f'):>9}{f(s['modbus_requests'], '.0f'):>9}{f(s['missed_polls'], '.0f'):>7}"
            f"{f(s['cpu_s'], '.2f'):>8}{f(100 * s['cpu_share'], '.1f'):>7}{f(s['peak_rss_mb'], '.0f'):>8}"
            f"{f(s['max_error_over_e'], '.3f'):>9}{f(s['lost_on_sigint'], '.0f'):>8}{f(s['lost_on_sigkill'], '.0f'):>9}"
            f"{s['hung_on_sigint']:>5}{f(s.get('ratio_bytes'), '.3f'):>10}{f(s.get('ratio_cpu'), '.3f'):>12}"
        )
    for s in summary:
        for own, theirs in EDGEFLOW_ONLY.items():
            if s.get(f"ratio_bytes_{own}") is not None:
                print(
                    f"edgeflow {own} (max_delay 1s) / {s['peer']} {theirs}: "
                    f"bytes {s[f'ratio_bytes_{own}']:.3f}, CPU {s[f'ratio_cpu_{own}']:.3f}"
                )
    for s in summary:
        if s.get("lost_on_sigkill") is None:
            continue
        line = (
            f"SIGKILL {s['peer']} {s['setting']}: lost {s['lost_on_sigkill']:.0f} "
            f"({s['lost_on_sigkill_spread']}), the oldest answered {s['oldest_lost_s']:.3f} s before the kill"
        )
        if s.get("lost_committed_batches") is not None:
            line += (
                f"; committed batches lost {s['lost_committed_batches']:.0f}, staged readings lost "
                f"{s.get('lost_staged_readings') or 0:.0f}, answered but not yet "
                f"committed {s['uncommitted_at_kill']:.0f} ({s['uncommitted_at_kill_spread']})"
            )
        print(line)
    print(
        "err/E: max |error| of the receiver's reconstruction over E (E = 1 % of range); "
        "spreads (min..max over reps) are in the JSON."
    )


# ------------------------------------------------------------------------------------------ main


def link_main(
    args: argparse.Namespace,
    env: Env,
    classes: list[type[Peer]],
    link_kbit: list[float],
    runs: Path,
    broker: Broker,
    settings: list[str],
) -> None:
    s = env.setup
    max_rate = s.devices * s.registers / 0.1
    load0 = [round(x, 2) for x in os.getloadavg()]
    results: list[dict[str, Any]] = []
    try:
        for kbit in link_kbit:
            for cls in classes:
                for setting in ("none", "batched") if cls is Edgeflow else ("none",):
                    if setting in settings:
                        results.append(
                            link_search(env, cls, kbit, args.link_seconds, runs, max_rate, setting)
                        )
    finally:
        env.counter.stop()
        broker.stop()
    load1 = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\n{'peer':<12}{'setting':<9}{'link kbit/s':>12}{'readings/s':>12}{'link B/rd':>10}{'lat med s':>10}{'lat p99 s':>10}"
    )
    for r in results:

        def f(v: Any, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        rate = f(r["sustained_rate"], ".0f") + ("+" if r["capped"] else "")
        print(
            f"{r['peer']:<12}{r['setting']:<9}{r['link_kbit']:>12g}{rate:>12}{f(r['link_bytes_per_reading'], '.2f'):>10}"
            f"{f(r['latency_median_s'], '.2f'):>10}{f(r['latency_p99_s'], '.2f'):>10}"
        )
    print(
        f"+: the poll setup's cap ({max_rate:.0f} readings/s: {s.devices} units x {s.registers} registers every 0.1 s)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": "python benchmarks/peers/run.py " + shlex.join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "load_before": load0, "load_after": load1},
        "setup": vars(s) | {"series": env.csv.name},
        "results": results,
    }
    (args.out / "peers-link.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    keys = [
        "peer",
        "setting",
        "link_kbit",
        "sustained_rate",
        "capped",
        "link_bytes_per_reading",
        "latency_median_s",
        "latency_p99_s",
    ]
    with (args.out / "peers-link.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in results:
            w.writerow(r)
    print(f"\nwrote {args.out / 'peers-link.json'} and {args.out / 'peers-link.csv'}; load after {load1}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument(
        "--kill-seconds", type=float, default=15.0, help="shipping time before the SIGKILL (0: no kill runs)"
    )
    p.add_argument(
        "--kill-settings",
        default="none,batched",
        help="settings of the SIGKILL runs (the peers run only their own: none)",
    )
    p.add_argument(
        "--link-kbit",
        default="",
        help="instead of the table: the highest reading rate each peer (setting none) sustains through a "
        "token-bucket link of these kbit/s (comma-separated); writes peers-link.json + .csv",
    )
    p.add_argument("--link-seconds", type=float, default=30.0, help="seconds per link trial")
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--registers", type=int, default=10)
    p.add_argument("--interval", type=float, default=0.1, help="poll period, seconds")
    p.add_argument("--data", type=Path, default=shared_data())
    p.add_argument(
        "--profile",
        action="store_true",
        help="run edgeflow under cProfile (edgeflow.prof in each run folder)",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="keep the runs of peers/settings not run now from the existing peers.json (and its kill runs)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # interruptible even when started in the background
    peers = [x for x in args.peers.split(",") if x]
    settings = [x for x in args.settings.split(",") if x]
    for x in peers:
        if x not in PEERS:
            p.error(f"--peers: unknown peer {x!r}; known: {', '.join(PEERS)}")
    kill_settings = [x for x in args.kill_settings.split(",") if x]
    for opt, xs in (("--settings", settings), ("--kill-settings", kill_settings)):
        for x in xs:
            if x not in SETTINGS:
                p.error(f"{opt}: unknown setting {x!r}; known: {', '.join(SETTINGS)}")
    csv_path = args.data / "timeseries" / "nab_machine_temperature_system_failure.csv"
    if not csv_path.is_file():
        raise SystemExit(f"{csv_path} is absent: the replay needs the shared NAB series")
    WORK.mkdir(parents=True, exist_ok=True)

    Edgeflow.profile = args.profile
    unavailable: dict[str, str] = {}
    classes: dict[str, type[Peer]] = {"edgeflow": Edgeflow, "thingsboard": ThingsBoard, "nodered": NodeRed}
    if "thingsboard" in peers:
        py, why = install_thingsboard()
        ThingsBoard.python = py
        if why:
            unavailable["thingsboard"] = why
    if "nodered" in peers:
        red, why = install_nodered()
        NodeRed.red = red
        if why:
            unavailable["nodered"] = why
    for name, why in unavailable.items():
        print(f"{name}: not run: {why}")

    series = load_series(csv_path)
    scale = 100.0
    bound = round(0.01 * float(series.max() - series.min()) * scale, 3)
    runs = WORK / "runs" / time.strftime("%Y%m%dT%H%M%S")
    broker = Broker(runs / "broker")
    counter = Counter(broker.port)
    setup = Setup(args.devices, args.registers, args.interval, free_port(), broker.port, bound)
    env = Env(csv_path, series, setup, counter, scale=scale)
    machine = {
        "cores": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
    }
    print(
        f"peers: {args.devices} units x {args.registers} Int16 registers every {args.interval:g} s, "
        f"{args.seconds:g} s x {args.reps} reps, E = 1 % of range = {bound} register units; "
        f"{machine['cores']} cores, load {machine['load_before']}"
    )
    link_kbit = [float(x) for x in args.link_kbit.split(",") if x]
    if link_kbit:
        link_settings = [x for x in settings if x in ("none", "batched")]
        link_main(
            args,
            env,
            [classes[n] for n in peers if n not in unavailable],
            link_kbit,
            runs,
            broker,
            link_settings,
        )
        return
    rows: list[dict[str, Any]] = []
    kills: list[dict[str, Any]] = []
    try:
        for rep in range(args.reps):
            for name in peers:
                if name in unavailable:
                    continue
                for setting in settings:
                    if setting in EDGEFLOW_ONLY and name != "edgeflow":
                        continue  # the peers have no batching setting: edgeflow's is compared with their "none"
                    rundir = runs / f"{name}-{setting}-{rep}"
                    row = one_run(env, classes[name], setting, args.seconds, rundir)
                    row["rep"] = rep
                    rows.append(row)
                    print(
                        f"  rep {rep} {name:<12}{setting:<10}"
                        + (
                            row["error"]
                            if "error" in row
                            else f"bytes {row['bytes']}, readings {row['readings']}, CPU {row['cpu_s']} s, "
                            f"missed {row['missed_polls']}, max err {row['max_error']}, "
                            f"lost on SIGINT {row['lost_on_sigint']}, load {row['load_after'][0]}"
                        ),
                        flush=True,
                    )
                for setting in kill_settings if args.kill_seconds > 0 else []:
                    if setting in EDGEFLOW_ONLY and name != "edgeflow":
                        continue
                    k = kill_run(
                        env, classes[name], args.kill_seconds, runs / f"{name}-kill-{setting}-{rep}", setting
                    )
                    k["rep"] = rep
                    kills.append(k)
                    print(f"  rep {rep} {name:<12}SIGKILL {setting:<8} {k}", flush=True)
    finally:
        counter.stop()
        broker.stop()
    machine["load_after"] = [round(x, 2) for x in os.getloadavg()]
    commands = ["python benchmarks/peers/run.py " + shlex.join(sys.argv[1:])]
    if args.append and (args.out / "peers.json").exists():
        old = json.loads((args.out / "peers.json").read_text())
        done = {(r["peer"], r["setting"]) for r in rows}
        rows = [r for r in old["runs"] if (r["peer"], r["setting"]) not in done] + rows
        redone = {(k["peer"], k.get("setting", "none")) for k in kills}
        kills = [k for k in old["kill_runs"] if (k["peer"], k.get("setting", "none")) not in redone] + kills
        old_cmds = old.get("commands") or [old["command"]]
        commands = old_cmds + commands
        machine["earlier"] = old["machine"]
    summary = summarize(rows, kills, unavailable)
    print()
    print_table(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " && ".join(commands),
        "commands": commands,
        "machine": machine,
        "setup": vars(setup) | {"series": csv_path.name, "scale": scale, "step_s": env.step},
        "versions": {
            "thingsboard-gateway": TB_VERSION,
            "node-red": NODE_RED,
            "node-red-contrib-modbus": NODE_RED_MODBUS,
        },
        "summary": summary,
        "runs": rows,
        "kill_runs": kills,
        "stand_in": "answers getSessionLimits on v1/devices/me/rpc/response/<id> with no rate limits",
    }
    (args.out / "peers.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    keys = sorted({k for s in summary for k in s})
    with (args.out / "peers.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for s in summary:
            w.writerow(s)
    print(
        f"\nwrote {args.out / 'peers.json'} and {args.out / 'peers.csv'}; load after {machine['load_after']}"
    )


if __name__ == "__main__":
    main()
