"""A thin, outage-capable backhaul in userspace: a token-bucket TCP proxy (no root needed).

    proxy = LinkProxy(("127.0.0.1", broker_port), rate_kbit=64)
    proxy.start()                      # listens on 127.0.0.1:proxy.port, in a thread of its own
    ...                                # point the client at proxy.port
    proxy.down()                       # the link drops: nothing passes (blackhole) ...
    proxy.up()                         # ... until it comes back; what was sent meanwhile follows
    proxy.set_rate(16)
    proxy.stop()

Each direction is one token bucket shared by every connection through the proxy (a link, not a
per-connection limit): ``rate_kbit`` kbit/s (1 kbit = 1000 bit) of TCP payload, with a bucket of
``burst`` bytes (default: 1/20 s of the rate, at least 512 B). What is counted is TCP payload, not
IP/TCP headers: a ``tc tbf`` qdisc on the same rate would let ~5-10 % fewer payload bytes through
for small packets.

``down(mode="blackhole")`` stops forwarding in both directions (connections stay open, bytes wait in
the socket buffers, new connections are accepted but not connected upstream until the link is up) —
what a radio link that drops looks like to TCP. ``down(mode="reset")`` closes every connection and
refuses new ones until ``up()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    rate: float  # bytes/s
    burst: float
    tokens: float = 0.0
    last: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def take(self, n: int) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)


class LinkProxy:
    """A token-bucket TCP proxy from ``127.0.0.1:port`` to ``upstream`` (see the module docstring)."""

    def __init__(
        self, upstream: tuple[str, int], rate_kbit: float, *, burst: int | None = None, port: int = 0
    ) -> None:
        if rate_kbit <= 0:
            raise ValueError("rate_kbit must be > 0")
        self.upstream = upstream
        self.rate_kbit = rate_kbit
        self._burst = burst
        self._port = port
        self.port = 0
        self.bytes_up = 0  # client -> upstream
        self.bytes_down = 0  # upstream -> client
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._link_up: asyncio.Event | None = None
        self._reset = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._buckets: dict[str, _Bucket] = {}
        self._started = threading.Event()
        self._error: BaseException | None = None

    # -- control (any thread) ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="linkproxy", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise self._error
        if not self.port:
            raise RuntimeError("link proxy did not start")

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            fut.result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def set_rate(self, rate_kbit: float) -> None:
        if rate_kbit <= 0:
            raise ValueError("rate_kbit must be > 0")
        self.rate_kbit = rate_kbit
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._apply_rate)

    def down(self, mode: str = "blackhole") -> None:
        if mode not in ("blackhole", "reset"):
            raise ValueError("mode must be 'blackhole' or 'reset'")
        loop = self._loop
        assert loop is not None, "not started"
        asyncio.run_coroutine_threadsafe(self._down(mode == "reset"), loop).result(10)

    def up(self) -> None:
        loop = self._loop
        assert loop is not None, "not started"
        asyncio.run_coroutine_threadsafe(self._up(), loop).result(10)

    @property
    def is_up(self) -> bool:
        return self._link_up is not None and self._link_up.is_set()

    # -- the loop's side ---------------------------------------------------------------------------

    def _bytes_per_s(self) -> float:
        return self.rate_kbit * 1000 / 8

    def _apply_rate(self) -> None:
        rate = self._bytes_per_s()
        burst = float(self._burst or max(512.0, rate / 20))
        for b in self._buckets.values():
            b.rate, b.burst = rate, burst

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:  # handed to start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        loop.run_forever()
        loop.close()

    async def _open(self) -> None:
        self._link_up = asyncio.Event()
        self._link_up.set()
        rate = self._bytes_per_s()
        burst = float(self._burst or max(512.0, rate / 20))
        self._buckets = {"up": _Bucket(rate, burst), "down": _Bucket(rate, burst)}
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self._port)
        sock: socket.socket = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    async def _down(self, reset: bool) -> None:
        assert self._link_up is not None
        self._link_up.clear()
        self._reset = reset
        if reset:
            for w in list(self._writers):
                with contextlib.suppress(Exception):
                    w.transport.abort()
            self._writers.clear()

    async def _up(self) -> None:
        assert self._link_up is not None
        self._reset = False
        self._link_up.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._link_up is not None
        if self._reset:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.add(writer)
        try:
            await self._link_up.wait()
            try:
                ur, uw = await asyncio.open_connection(*self.upstream)
            except OSError:
                writer.close()
                return
            self._writers.add(uw)
            await asyncio.gather(
                self._pump(reader, uw, "up"), self._pump(ur, writer, "down"), return_exceptions=True
            )
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, way: str) -> None:
        assert self._link_up is not None
        bucket = self._buckets[way]
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    await self._link_up.wait()
                    chunk = view[: max(1, min(len(view), int(bucket.burst)))]
                    await bucket.take(len(chunk))
                    await self._link_up.wait()
                    writer.write(chunk)
                    await writer.drain()
                    if way == "up":
                        self.bytes_up += len(chunk)
                    else:
                        self.bytes_down += len(chunk)
                    view = view[len(chunk) :]
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
