"""What several benchmark scripts share: a quiet Mosquitto of their own on a free loopback port.

Benchmarks that measure edgeflow's CPU want a broker that costs little beside it (nothing persisted,
nothing logged); the tests' broker (``tests/conftest.py``: persistence, every packet logged, restarts on
the same port) is for what a test asserts about the broker itself.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from edgeflow.demo.localbroker import find_mosquitto


def start_mosquitto(workdir: Path, *settings: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start Mosquitto listening on a free 127.0.0.1 port, with these extra config lines (e.g.
    ``"max_inflight_messages 1000"``); returns the process and the port once it accepts connections.
    Exits the script with a message when Mosquitto is missing or does not start."""
    exe = find_mosquitto()
    if exe is None:
        sys.exit("mosquitto is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = workdir / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        *settings,
        "log_dest none",
    ]
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("mosquitto did not start")


def stop_mosquitto(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not gone within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
