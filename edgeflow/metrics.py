"""Counters, bandwidth accounting, Prometheus exposition and health endpoints.

Parts of the process register *collectors*: callables that return the current :class:`Sample` s.
Nothing is counted twice: a collector reads the counters its part already keeps. A scrape renders the
Prometheus text format (version 0.0.4). :class:`MetricsServer` serves

* ``GET /metrics``: the exposition;
* ``GET /healthz``: 200 while the event loop answers (liveness);
* ``GET /readyz``: 200 when the readiness check passes, else 503, with a JSON body saying why.

This module imports nothing of edgeflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import orjson

__all__ = ["MetricsServer", "Registry", "Sample"]

log = logging.getLogger(__name__)

Collector = Callable[[], Iterable["Sample"]]
ReadyCheck = Callable[[], tuple[bool, dict[str, object]]]


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()
    help: str = ""
    kind: Literal["counter", "gauge"] = "gauge"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(int(v)) if float(v).is_integer() and abs(v) < 2**63 else repr(float(v))


class Registry:
    """Collectors of samples, rendered for Prometheus."""

    def __init__(self, prefix: str = "edgeflow_") -> None:
        self.prefix = prefix
        self._collectors: list[Collector] = []

    def add_collector(self, collector: Collector) -> None:
        self._collectors.append(collector)

    def collect(self) -> list[Sample]:
        out: list[Sample] = []
        for c in self._collectors:
            try:
                out.extend(c())
            except Exception:  # a broken collector must not break the scrape
                log.exception("metrics collector %r failed", c)
        return out

    def render(self) -> str:
        by_name: dict[str, list[Sample]] = {}
        for s in self.collect():
            by_name.setdefault(s.name, []).append(s)
        lines: list[str] = []
        for name in sorted(by_name):
            samples = by_name[name]
            full = self.prefix + name
            if samples[0].help:
                lines.append(f"# HELP {full} {samples[0].help}")
            lines.append(f"# TYPE {full} {samples[0].kind}")
            for s in samples:
                label = ""
                if s.labels:
                    label = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in s.labels) + "}"
                lines.append(f"{full}{label} {_number(s.value)}")
        return "\n".join(lines) + "\n"


class MetricsServer:
    """A small HTTP/1.1 server for ``/metrics``, ``/healthz`` and ``/readyz`` on the event loop."""

    def __init__(self, registry: Registry, *, ready: ReadyCheck | None = None) -> None:
        self.registry = registry
        self.ready = ready or (lambda: (True, {}))
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (the real port when asked for port 0)."""
        assert self._server is not None
        name = self._server.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            status, ctype, body = self._respond(method, path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _respond(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/metrics":
            return "200 OK", "text/plain; version=0.0.4; charset=utf-8", self.registry.render().encode()
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            ok, detail = self.ready()
            body = orjson.dumps({"status": "ready" if ok else "not ready", **detail}, default=str)
            return ("200 OK" if ok else "503 Service Unavailable"), "application/json", body
        return "404 Not Found", "text/plain", b"not found\n"
