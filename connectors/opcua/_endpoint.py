"""One OPC-UA server endpoint: its client link and the task that connects, subscribes, watches and
reconnects.

**This layer owns reconnection; asyncua's is off** (``auto_reconnect=False``; asyncua's supervisor only
reports a lost connection). The task connects, creates the subscriptions, and watches: a closed socket,
a failed server-state probe, a subscription the server drops or that goes silent past its keep-alive
all count as lost. Then the connector is told (every device on the endpoint goes ``DOWN`` at once), the
client is thrown away, and a new one is built after a capped exponential backoff (``reconnect_min``
doubling up to ``reconnect_max``), with its subscriptions created afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from connectors.opcua._asyncua import (
    ItemRequest,
    LinkClosed,
    LinkError,
    LinkSecurity,
    LinkTimeout,
    Sample,
    UaLink,
)
from connectors.opcua._config import Deadband, EndpointSpec
from connectors.opcua._nodes import Point
from edgeflow.profiles import AutoEvent, DeviceResource

__all__ = ["Endpoint", "Group", "Item", "LinkState"]

log = logging.getLogger(__name__)


class LinkState(StrEnum):
    NEW = "new"  # no attempt finished yet
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


@dataclass(eq=False)
class Group:
    """An onChange AutoEvent of a device, served by monitored items."""

    device: str
    auto_event: AutoEvent
    publishing_ms: float
    items: list[Item]
    link: UaLink | None = None  # the link its items live on
    live: bool = False  # its items are all monitored: the AutoEvent is pushed, not polled
    pending: bool = False  # its items are being created (initial values may arrive first)
    refused: str = ""


@dataclass(eq=False)
class Item:
    """One monitored item: a resource of a group, with the connector's handle for it."""

    handle: int
    resource: DeviceResource
    point: Point
    sampling_ms: float
    queue_size: int
    deadband: Deadband | None
    group: Group | None = None


#: Told (with the endpoint) when it went up or down.
StateCallback = Callable[["Endpoint"], None]
#: A notification message's data changes, routed to their items.
DataCallback = Callable[[list[tuple[Item, Sample]]], None]
#: The server refused a group's subscription or one of its items (why).
RefusedCallback = Callable[[Group, str], None]


@dataclass(eq=False)
class Endpoint:
    """A server endpoint, its link and its groups. :meth:`start` runs the connection task."""

    spec: EndpointSpec
    reconnect_min: float
    reconnect_max: float
    watchdog: float
    max_nodes: int
    on_state: StateCallback
    on_data: DataCallback
    on_refused: RefusedCallback
    devices: list[str] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    link: UaLink | None = None
    state: LinkState = LinkState.NEW
    failures: int = 0  # connect attempts failed in a row
    retry_at: float = 0.0  # loop time of the next attempt
    last_error: str = ""
    insecure: bool = False  # the last failure was a security failure
    connects: int = 0
    losses: int = 0
    task: asyncio.Task[None] | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # set when a connect attempt ends
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    handles: dict[int, Item] = field(default_factory=dict)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name=f"opcua:{self.spec.url}")

    async def close(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        link, self.link = self.link, None
        if link is not None:
            await link.close()
        self.state = LinkState.NEW
        self.settled.clear()
        for g in self.groups:
            g.live = False
            g.link = None

    async def wait_attempt(self) -> None:
        """If a connect attempt is under way (start-up, after a loss), wait for it to end."""
        if self.state in (LinkState.NEW, LinkState.CONNECTING):
            try:
                async with asyncio.timeout(self.spec.timeout + 1.0):
                    await self.settled.wait()
            except TimeoutError:
                pass

    async def _run(self) -> None:
        """Connect, subscribe, watch; on loss start over after a capped backoff. Ends only when cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            self.state = LinkState.CONNECTING
            self.settled.clear()
            link = self._new_link()
            try:
                await link.connect()
            except LinkError as exc:
                self.failures += 1
                delay = min(self.reconnect_max, self.reconnect_min * 2 ** min(self.failures - 1, 30))
                self.retry_at = loop.time() + delay
                self.last_error = str(exc)
                self.insecure = isinstance(exc, LinkSecurity)
                self.state = LinkState.DOWN
                self.settled.set()
                level = logging.ERROR if self.insecure else logging.WARNING
                log.log(level, "%s (attempt %d; next in %.1f s)", exc, self.failures, delay)
                self.on_state(self)
                await asyncio.sleep(delay)
                continue
            if self.failures or self.losses:
                log.warning("%s: connected again (after %d failed attempts)", self.spec.url, self.failures)
            self.failures = 0
            self.insecure = False
            self.connects += 1
            self.link = link
            self.lost.clear()
            self.state = LinkState.UP
            await self.subscribe(self.groups)
            self.settled.set()
            self.on_state(self)
            await self._watch(link)
            # lost
            self.losses += 1
            self.link = None
            self.state = LinkState.DOWN
            self.retry_at = loop.time() + self.reconnect_min
            for g in self.groups:
                g.live = False
                g.link = None
            self.handles.clear()
            log.warning(
                "%s: %s; every device on it is offline until it is back", self.spec.url, self.last_error
            )
            self.on_state(self)
            await link.close()
            await asyncio.sleep(self.reconnect_min)

    def _new_link(self) -> UaLink:
        made: list[UaLink] = []
        link = UaLink(
            self.spec,
            watchdog=self.watchdog,
            max_per_request=self.max_nodes,
            on_lost=lambda reason: self._on_lost(made[0], reason),
        )
        made.append(link)
        return link

    def _on_lost(self, link: UaLink, reason: str) -> None:
        if self.link is link and not self.lost.is_set():
            self.last_error = reason
            self.lost.set()

    async def _watch(self, link: UaLink) -> None:
        """Until the link is lost, or a subscription has been silent past its keep-alive."""
        while True:
            try:
                async with asyncio.timeout(self.watchdog):
                    await self.lost.wait()
                return
            except TimeoutError:
                pass
            silent = link.silent_subscriptions()
            if silent:
                sid, secs = silent[0]
                self.last_error = f"subscription {sid} silent for {secs:.1f} s (no data, no keep-alive)"
                return

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(self, groups: Sequence[Group]) -> None:
        """Create subscriptions (one per publishing interval) and the items of ``groups`` not yet on
        this link. A group whose subscription or any item the server refuses is left to polling."""
        async with self.lock:
            link = self.link
            if link is None or not link.connected:
                return
            todo = [g for g in groups if g.link is not link]
            by_interval: dict[float, list[Group]] = {}
            for g in todo:
                g.link = link
                g.live = False
                g.pending = True
                by_interval.setdefault(g.publishing_ms, []).append(g)
            for publishing_ms, gs in by_interval.items():
                items = [it for g in gs for it in g.items]
                try:
                    sid = await link.subscribe(publishing_ms, self._route, self._status(link))
                    for it in items:
                        self.handles[it.handle] = it
                    statuses = await link.monitor(
                        sid,
                        [
                            ItemRequest(it.handle, it.point.node, it.sampling_ms, it.queue_size, it.deadband)
                            for it in items
                        ],
                    )
                except (LinkClosed, LinkTimeout) as exc:
                    for g in todo:
                        g.pending = False
                    self._on_lost(link, f"creating subscriptions: {exc}")
                    return
                except LinkError as exc:
                    for g in gs:
                        g.pending = False
                        self._refuse(g, f"the server refused a subscription ({exc})")
                    continue
                status_of = {it.handle: st for it, st in zip(items, statuses, strict=True)}
                for g in gs:
                    g.pending = False
                    bad = [(it, status_of[it.handle]) for it in g.items if status_of[it.handle] != "Good"]
                    if bad:
                        it, st = bad[0]
                        self._refuse(
                            g, f"the server refused monitoring {it.resource.name} ({it.point.node}): {st}"
                        )
                    else:
                        g.live = True
                        g.refused = ""

    def _refuse(self, group: Group, why: str) -> None:
        group.live = False
        group.refused = why
        self.on_refused(group, why)

    def _status(self, link: UaLink) -> Callable[[str], None]:
        def status(name: str) -> None:
            # BadTimeout: the server dropped the subscription; BadShutdown: the link is going
            self._on_lost(link, f"subscription status {name}")

        return status

    def _route(self, samples: list[tuple[int, Sample]]) -> None:
        """A notification message: each sample to its item, for groups live (or being created) on this link."""
        routed = []
        for handle, s in samples:
            it = self.handles.get(handle)
            g = None if it is None else it.group
            if it is None or g is None or g.link is not self.link or not (g.live or g.pending):
                continue
            routed.append((it, s))
        if routed:
            self.on_data(routed)
