"""Counters, bandwidth accounting, Prometheus exposition and health endpoints.

Parts of the process register *collectors*: callables that return the current :class:`Sample` s.
Nothing is counted twice: a collector reads the counters its part already keeps. A scrape renders them
with ``prometheus_client`` (the ecosystem's exposition: ``# HELP`` and ``# TYPE`` for every family,
counters named ``*_total``), together with its process collector (``process_cpu_seconds_total``,
``process_resident_memory_bytes``, open files) and platform information. :class:`MetricsServer` serves

* ``GET /metrics``: the exposition;
* ``GET /healthz``: 200 while the event loop answers (liveness);
* ``GET /readyz``: 200 when the readiness check passes, else 503, with a JSON body saying why.

This module imports nothing of edgeflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = ["MetricsServer", "Registry", "Sample"]

log = logging.getLogger(__name__)

Collector = Callable[[], Iterable["Sample"]]
ReadyCheck = Callable[[], tuple[bool, dict[str, object]]]


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of a metric family. ``kind="counter"``: a total that only grows (rendered with the
    ``_total`` suffix, added when the name lacks it); ``help`` is the family's ``# HELP`` text (the
    first sample of a family that has one gives it; without, a text is made from the name)."""

    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()
    help: str = ""
    kind: Literal["counter", "gauge"] = "gauge"


def _family_name(sample: Sample) -> str:
    if sample.kind == "counter" and sample.name.endswith("_total"):
        return sample.name[: -len("_total")]
    return sample.name


class Registry:
    """Collectors of samples, rendered for Prometheus through ``prometheus_client``."""

    def __init__(self, prefix: str = "edgeflow_", *, process: bool = True) -> None:
        self.prefix = prefix
        self._collectors: list[Collector] = []
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)
        if process:
            ProcessCollector(registry=self._registry)
            PlatformCollector(registry=self._registry)

    def add_collector(self, collector: Collector) -> None:
        self._collectors.append(collector)

    def collect_samples(self) -> list[Sample]:
        out: list[Sample] = []
        for c in self._collectors:
            try:
                out.extend(c())
            except Exception:  # a broken collector must not break the scrape
                log.exception("metrics collector %r failed", c)
        return out

    def collect(self) -> Iterator[Metric]:
        """The ``prometheus_client`` collector protocol: one family per metric name."""
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        label_names: dict[str, tuple[str, ...]] = {}
        for s in self.collect_samples():
            name = self.prefix + _family_name(s)
            fam = families.get(name)
            keys = tuple(k for k, _ in s.labels)
            if fam is None:
                text = s.help or _family_name(s).replace("_", " ")
                cls = CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily
                fam = cls(name, text, labels=keys)
                families[name] = fam
                label_names[name] = keys
            if keys != label_names[name]:
                log.warning("metric %s: samples with different labels %s, %s", name, label_names[name], keys)
                continue
            fam.add_metric([v for _, v in s.labels], s.value)
        yield from (families[n] for n in sorted(families))

    def render(self) -> str:
        """The text exposition of every collector and the process's own metrics."""
        return generate_latest(self._registry).decode()


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
            return "200 OK", CONTENT_TYPE_LATEST, self.registry.render().encode()
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            ok, detail = self.ready()
            body = orjson.dumps({"status": "ready" if ok else "not ready", **detail}, default=str)
            return ("200 OK" if ok else "503 Service Unavailable"), "application/json", body
        return "404 Not Found", "text/plain", b"not found\n"
