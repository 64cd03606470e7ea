"""A simulated EdgeX device-mqtt device: it publishes data and answers get/set commands, as device
firmware written for EdgeX does. For tests, benchmarks and trying the connector without hardware.

::

    sim = MqttDeviceSimulator("mqtt://127.0.0.1:1883", "MQTT-test-device", values={"randfloat32": 1.5})
    await sim.start()
    await sim.publish("randfloat32", 2.5)                 # incoming/data/MQTT-test-device/randfloat32
    await sim.publish("allValues", {"randfloat32": 1.0, "randfloat64": 2.0, "message": "hi"})
    await sim.stop()

Commands arrive on ``{command_topic}/{resource}/{get|set}/{uuid}``: a get is answered with
``{resource: value}`` from :attr:`values`, a set stores the value and answers ``{}``, both on
``{response_prefix}/{uuid}``. ``answer=False`` makes a device that never answers; ``delay`` one that
answers late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson

from edgeflow.mqtt.connection import ConnectParams, MqttConnection, connect_params
from edgeflow.mqtt.topics import escape_level, unescape_level

__all__ = ["MqttDeviceSimulator"]

log = logging.getLogger(__name__)


class MqttDeviceSimulator:
    """One device on a broker (plaintext or TLS, through :func:`connect_params`)."""

    def __init__(
        self,
        url: str,
        device: str,
        *,
        values: dict[str, Any] | None = None,
        command_topic: str | None = None,
        incoming_prefix: str = "incoming/data",
        response_prefix: str = "command/response",
        answer: bool = True,
        delay: float = 0.0,
        qos: int = 1,
        client_id: str | None = None,
        params: ConnectParams | None = None,
    ) -> None:
        self.device = device
        self.values: dict[str, Any] = dict(values or {})
        self.command_topic = command_topic or f"command/{escape_level(device)}"
        self.incoming_prefix = incoming_prefix
        self.response_prefix = response_prefix
        self.answer = answer
        self.delay = delay
        self.qos = qos
        self.params = params or connect_params(url, client_id=client_id or f"sim-{escape_level(device)}")
        #: Commands received, as ``(method, resource, payload)``, and the topics they came on.
        self.commands: list[tuple[str, str, Any]] = []
        self.command_topics: list[str] = []
        self._conn: MqttConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unacked: set[int] = set()
        self._acked = asyncio.Event()

    async def start(self) -> None:
        conn = MqttConnection(self.params, on_message=self._on_command, on_ack=self._on_ack)
        await conn.connect()
        await conn.subscribe(f"{self.command_topic}/#", 1)
        self._conn = conn

    def _on_ack(self, mid: int, ok: bool, reason: str = "") -> None:
        self._unacked.discard(mid)
        self._acked.set()

    async def drain(self) -> None:
        """Until the broker has acknowledged every QoS 1/2 message published so far."""
        while self._unacked:
            self._acked.clear()
            await self._acked.wait()

    async def stop(self) -> None:
        """Stop, once the broker has every message published (QoS 1/2)."""
        if self._conn is not None and not self._conn.closed.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10.0):
                    await self.drain()
        for t in list(self._tasks):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None

    def data_topic(self, source: str) -> str:
        return f"{self.incoming_prefix}/{escape_level(self.device)}/{escape_level(source)}"

    async def publish(self, source: str, value: Any, *, raw: bool = False) -> None:
        """Publish ``value`` (JSON-encoded unless ``raw`` bytes) as the device's data for ``source``."""
        payload = value if raw else orjson.dumps(value)
        self.publish_raw(self.data_topic(source), payload)
        await asyncio.sleep(0)

    def publish_raw(self, topic: str, payload: bytes, qos: int | None = None) -> int:
        """Publish any payload on any topic (a misbehaving device)."""
        if self._conn is None:
            raise RuntimeError("simulator is not started")
        q = self.qos if qos is None else qos
        mid = self._conn.publish(topic, payload, q)
        if q:
            self._unacked.add(mid)
        return mid

    def _on_command(self, topic: str, payload: bytes) -> None:
        rest = topic[len(self.command_topic) + 1 :].split("/")
        if len(rest) != 3:
            return
        resource, method, cid = unescape_level(rest[0]), rest[1], rest[2]
        body: Any = orjson.loads(payload) if payload else None
        self.commands.append((method, resource, body))
        self.command_topics.append(topic)
        if method == "set" and isinstance(body, dict):
            self.values.update(body)
        if not self.answer:
            return
        reply = {resource: self.values.get(resource)} if method == "get" else {}
        task = asyncio.get_running_loop().create_task(self._reply(cid, orjson.dumps(reply)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, cid: str, payload: bytes) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._conn is not None and not self._conn.closed.done():
            self._conn.publish(f"{self.response_prefix}/{cid}", payload, 1)
