"""One MQTT client that outlives its connections: the device connector's (and any subscriber's) link.

:class:`MqttSession` owns reconnection, as the connector contract asks of exactly one layer: it
connects, subscribes to each of its topic filters at that filter's own QoS (0, 1 or 2), hands every
message to one handler, and when the connection is lost connects again with capped, jittered
backoff and subscribes again. With a persistent session (``clean_start=False``) the broker keeps the
subscriptions and queues QoS 1/2 messages while the client is away; when it says it kept the
session on a reconnection, nothing is re-subscribed (which would replay retained messages). The first
connection of a process always subscribes, so a changed configuration takes effect.

A broker that is down when the session starts is not an error: it keeps trying in the background.
A refused login or a failed TLS handshake is an error at start (TLS never falls back to plaintext);
later, it is logged and retried.

The uplink and the receiver keep their own connection loops (they tie reconnection to their outbox
and their acknowledgements); this is the loop for clients that only need a link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Literal

from edgeflow.errors import TransportSecurityError, UplinkError
from edgeflow.mqtt.connection import Backoff, ConnectParams, MessageHandler, MqttConnection
from edgeflow.mqtt.spec import ReconnectSpec

__all__ = ["MqttSession", "SubscriptionSpec"]

log = logging.getLogger(__name__)

QoS = Literal[0, 1, 2]
#: ``(topic filter, qos)``.
SubscriptionSpec = tuple[str, QoS]


class MqttSession:
    """A reconnecting MQTT client with a fixed set of subscriptions.

    ``on_link(up)`` is called with ``True`` after every connection (subscribed) and ``False`` when one
    is lost.
    """

    def __init__(
        self,
        params: ConnectParams,
        subscriptions: Sequence[SubscriptionSpec],
        on_message: MessageHandler,
        *,
        reconnect: ReconnectSpec | None = None,
        on_link: Callable[[bool], None] | None = None,
        name: str = "mqtt",
    ) -> None:
        self.params = params
        self.subscriptions = list(subscriptions)
        self._on_message = on_message
        rc = reconnect or ReconnectSpec()
        self._backoff = Backoff(rc.initial_delay, rc.max_delay, rc.multiplier)
        self._on_link = on_link
        self.name = name
        self._conn: MqttConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._stopping = False
        #: QoS the broker granted per filter on the last subscription.
        self.granted: dict[str, int] = {}
        self.last_error: BaseException | None = None
        self.counts = {"connects": 0, "connection_losses": 0, "connect_failures": 0, "resubscribes": 0}

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed.done()

    async def start(self) -> None:
        """Connect and subscribe once; then keep the link in the background. Raises
        :class:`TransportSecurityError` on a TLS or login failure; an unreachable broker is retried."""
        self._stopping = False
        conn: MqttConnection | None = None
        try:
            conn = await self._connect()
        except TransportSecurityError:
            raise
        except UplinkError as exc:
            log.warning("%s: %s; retrying in the background", self.name, exc)
        self._task = asyncio.get_running_loop().create_task(self._run(conn), name=f"{self.name}-link")

    async def stop(self) -> None:
        self._stopping = True
        conn = self._conn
        if conn is not None:
            await conn.disconnect()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._conn = None
        self._up.clear()

    async def wait_connected(self) -> None:
        """Until the session is connected and subscribed (again)."""
        await self._up.wait()

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> int:
        """Publish now; raises :class:`UplinkError` when not connected (nothing is queued)."""
        conn = self._conn
        if conn is None or conn.closed.done():
            raise UplinkError(f"{self.name}: not connected to {self.params.where}")
        return conn.publish(topic, payload, qos)

    async def _connect(self) -> MqttConnection:
        conn = MqttConnection(self.params, on_message=self._on_message)
        try:
            await conn.connect()
        except UplinkError as exc:
            self.counts["connect_failures"] += 1
            self.last_error = exc
            raise
        try:
            if conn.session_present and not self.params.clean_start and self.counts["connects"]:
                # Subscribed on an earlier connection of this process: the broker kept them.
                log.info("%s: the broker kept the session; subscriptions stand", self.name)
            else:
                for topic, qos in self.subscriptions:
                    self.granted[topic] = await conn.subscribe(topic, qos)
                    if self.granted[topic] < qos:
                        log.warning(
                            "%s: broker granted QoS %d for %r (asked %d)",
                            self.name,
                            self.granted[topic],
                            topic,
                            qos,
                        )
                if self.counts["connects"]:
                    self.counts["resubscribes"] += 1
        except BaseException as exc:
            if isinstance(exc, UplinkError):
                self.counts["connect_failures"] += 1
                self.last_error = exc
            await conn.disconnect()
            raise
        self.counts["connects"] += 1
        self._conn = conn
        self._up.set()
        if self._on_link is not None:
            self._on_link(True)
        return conn

    async def _run(self, conn: MqttConnection | None) -> None:
        while not self._stopping:
            if conn is None:
                await asyncio.sleep(self._backoff.next_delay())
                try:
                    conn = await self._connect()
                except TransportSecurityError as exc:
                    log.error("%s: %s (not falling back to plaintext; retrying)", self.name, exc)
                    continue
                except UplinkError as exc:
                    log.info("%s: %s", self.name, exc)
                    continue
            if self._stopping:  # stop() came while this connection was being made: it is ours to close
                await conn.disconnect()
                return
            self._backoff.reset()
            reason = await asyncio.shield(conn.closed)
            self._conn = None
            self._up.clear()
            conn = None
            if self._stopping:
                return
            self.counts["connection_losses"] += 1
            self.last_error = reason
            if self._on_link is not None:
                self._on_link(False)
