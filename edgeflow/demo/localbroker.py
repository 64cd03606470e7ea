"""A throw-away MQTT broker on loopback, for the demo and for trying edgeflow out.

:class:`LocalBroker` starts Mosquitto when it is installed (on ``PATH``, or ``/usr/sbin/mosquitto`` as
Debian installs it), from a generated config on a free port with nothing persisted; otherwise an
embedded broker (amqtt, the ``demo`` extra). It never touches a broker that is already running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Literal

from edgeflow.errors import UplinkError

__all__ = ["LocalBroker", "find_mosquitto"]

log = logging.getLogger(__name__)

Kind = Literal["auto", "mosquitto", "embedded"]


def find_mosquitto() -> str | None:
    """The Mosquitto executable, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if Path(candidate).is_file():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    """``async with LocalBroker() as broker:`` → ``broker.url`` is ``mqtt://127.0.0.1:<port>``."""

    def __init__(self, kind: Kind = "auto") -> None:
        self.kind = kind
        self.host = "127.0.0.1"
        self.port = 0
        self.name = ""
        #: The newest MQTT version the broker speaks (the embedded one only 3.1.1).
        self.protocol: Literal["3.1.1", "5"] = "5"
        self._proc: asyncio.subprocess.Process | None = None
        self._embedded: Any = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        exe = find_mosquitto() if self.kind in ("auto", "mosquitto") else None
        if exe is None and self.kind == "mosquitto":
            raise UplinkError("mosquitto is not installed")
        self.port = _free_port()
        if exe is not None:
            await self._start_mosquitto(exe)
            await self._wait_listening()
        else:
            await self._start_embedded()  # listening once start() returns
        log.info("%s broker on %s", self.name, self.url)

    async def _start_mosquitto(self, exe: str) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="edgeflow-broker-")
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\nlog_dest none\n",
            encoding="utf-8",
        )
        self._proc = await asyncio.create_subprocess_exec(
            exe, "-c", str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        self.name = "mosquitto"

    async def _start_embedded(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise UplinkError(
                "no MQTT broker: install Mosquitto, or the embedded one with pip install 'edgeflow-iot[demo]'"
            ) from exc
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._embedded = Broker(config)
        await self._embedded.start()
        self.name = "embedded (amqtt)"
        self.protocol = "3.1.1"

    async def _wait_listening(self, within: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if self._proc is not None and self._proc.returncode is not None:
                err = (await self._proc.stderr.read()).decode(errors="replace") if self._proc.stderr else ""
                raise UplinkError(f"mosquitto exited with {self._proc.returncode}: {err.strip()}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if loop.time() > deadline:
                    raise UplinkError(f"broker did not listen on {self.url} within {within} s") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def stop(self) -> None:
        if self._proc is not None:
            if self._proc.returncode is None:
                self._proc.terminate()
                try:
                    async with asyncio.timeout(10):
                        await self._proc.wait()
                except TimeoutError:
                    self._proc.kill()
                    await self._proc.wait()
            self._proc = None
        if self._embedded is not None:
            await self._embedded.shutdown()
            self._embedded = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def __aenter__(self) -> LocalBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
