"""The core-data bus: in-process publish/subscribe keyed by EdgeX topics.

Topics follow EdgeX's message bus, ``edgex/events/device/{service}/{profile}/{device}/{source}``
(:func:`event_topic`), and subscriptions take MQTT-style wildcards: ``+`` matches one level, ``#``
(last) matches any number of levels, including none.

Every subscription has a bounded queue, measured in readings, and a declared overflow policy:

* ``block``: the publisher waits (``await bus.publish``) until the subscriber has room — at most
  ``block_timeout`` seconds when one is set, after which the message is dropped for that subscriber
  and counted (``timed_out``), so no publisher waits forever on a stuck subscriber;
* ``drop-oldest``: the oldest queued messages make room for the new one;
* ``drop-newest``: the new message is refused for that subscriber.

Every drop is counted, per subscription, in messages and readings. A message is anything with a
``len()`` (a :class:`~edgeflow.model.ReadingBatch` or an :class:`~edgeflow.model.Event`), so one
hand-off can carry many readings. A single message larger than the capacity is accepted into an
empty queue, so no batch size can wedge a subscriber.

The bus lives on one asyncio loop and is not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Sized
from dataclasses import dataclass
from typing import Generic, TypeVar, get_args

from edgeflow.errors import BusClosedError, BusError
from edgeflow.model import OverflowPolicy

__all__ = [
    "EVENTS_PREFIX",
    "Bus",
    "BusFullError",
    "OverflowPolicy",
    "Subscription",
    "SubscriptionStats",
    "event_topic",
    "topic_matches",
    "validate_pattern",
]

log = logging.getLogger(__name__)

EVENTS_PREFIX = "edgex/events/device"

P = TypeVar("P", bound=Sized)


_POLICIES: frozenset[str] = frozenset(get_args(OverflowPolicy))


class BusFullError(BusError):
    """``publish_nowait`` met a full ``block`` subscription; use ``await publish`` to wait."""


_ESCAPES = str.maketrans({"/": "%2F", "+": "%2B", "#": "%23", "%": "%25"})


def escape_level(name: str) -> str:
    """A name as one topic level: ``/``, ``+``, ``#`` and ``%`` percent-encoded."""
    return name.translate(_ESCAPES)


def event_topic(service: str, profile: str, device: str, source: str) -> str:
    """``edgex/events/device/{service}/{profile}/{device}/{source}``, each name escaped to one level."""
    return "/".join(
        (
            EVENTS_PREFIX,
            escape_level(service),
            escape_level(profile),
            escape_level(device),
            escape_level(source),
        )
    )


def validate_pattern(pattern: str) -> None:
    """Raise :class:`BusError` unless ``pattern`` is a valid MQTT-style subscription filter."""
    if not pattern:
        raise BusError("empty topic filter")
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            if i != len(levels) - 1:
                raise BusError(f"'#' must be the last level in {pattern!r}")
        elif level != "+" and ("+" in level or "#" in level):
            raise BusError(f"wildcards must fill a whole level in {pattern!r}")


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT-style filter ``pattern``."""
    p = pattern.split("/")
    t = topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(p) == len(t)


@dataclass(slots=True)
class SubscriptionStats:
    name: str
    pattern: str
    policy: str
    capacity: int
    queued_messages: int
    queued_readings: int
    received_messages: int
    received_readings: int
    delivered_messages: int
    delivered_readings: int
    dropped_messages: int
    dropped_readings: int
    timed_out_messages: int
    timed_out_readings: int


class Subscription(Generic[P]):
    """One subscriber's bounded queue. Iterate it (``async for topic, msg in sub``) or ``await get()``;
    ``drain()`` takes everything queued at once."""

    def __init__(
        self,
        bus: Bus[P],
        pattern: str,
        capacity: int,
        policy: OverflowPolicy,
        name: str,
        block_timeout: float | None = None,
    ) -> None:
        self._bus = bus
        self.pattern = pattern
        self.capacity = capacity
        self.policy = policy
        self.block_timeout = block_timeout
        self.name = name or pattern
        self._queue: deque[tuple[str, P, int]] = deque()
        self._readings = 0
        self._getter: asyncio.Future[None] | None = None
        self._space: asyncio.Event = asyncio.Event()
        self._space.set()
        self.closed = False
        self.received_messages = 0
        self.received_readings = 0
        self.delivered_messages = 0
        self.delivered_readings = 0
        self.dropped_messages = 0
        self.dropped_readings = 0
        self.timed_out_messages = 0
        self.timed_out_readings = 0

    # -- publisher side -------------------------------------------------------------------------

    def _has_room(self, n: int) -> bool:
        return self._readings + n <= self.capacity or not self._queue

    def _offer(self, topic: str, msg: P, n: int) -> bool:
        """Queue ``msg`` under the policy; False only for a full ``block`` subscription."""
        if self.closed:
            return True
        if not self._has_room(n):
            if self.policy == "block":
                self._space.clear()
                return False
            if self.policy == "drop-newest":
                self._refuse(n)
                return True
            while self._queue and not self._has_room(n):
                _, _, old = self._queue.popleft()
                self._readings -= old
                self.dropped_messages += 1
                self.dropped_readings += old
        self._queue.append((topic, msg, n))
        self._readings += n
        self.received_messages += 1
        self.received_readings += n
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)
        return True

    def _refuse(self, n: int) -> None:
        """A message this subscription received but could not queue: counted as dropped."""
        self.received_messages += 1
        self.received_readings += n
        self.dropped_messages += 1
        self.dropped_readings += n

    async def _offer_waiting(self, topic: str, msg: P, n: int) -> None:
        """``block``: wait for room, at most ``block_timeout`` seconds; then drop and count."""
        loop = asyncio.get_running_loop()
        deadline = None if self.block_timeout is None else loop.time() + self.block_timeout
        while not self._offer(topic, msg, n):
            if deadline is None:
                await self._space.wait()
            else:
                left = deadline - loop.time()
                try:
                    if left <= 0:
                        raise TimeoutError
                    async with asyncio.timeout(left):
                        await self._space.wait()
                except TimeoutError:
                    self._refuse(n)
                    self.timed_out_messages += 1
                    self.timed_out_readings += n
                    if self.timed_out_messages == 1 or self.timed_out_messages % 1000 == 0:
                        log.warning(
                            "bus subscription %r stayed full for %.1f s: dropped %d messages so far",
                            self.name,
                            self.block_timeout,
                            self.timed_out_messages,
                        )
                    return
            if self._bus.closed:
                raise BusClosedError("the bus is closed")

    # -- subscriber side ------------------------------------------------------------------------

    def _took(self, n_msgs: int, n_readings: int) -> None:
        self._readings -= n_readings
        self.delivered_messages += n_msgs
        self.delivered_readings += n_readings
        if not self._space.is_set() and self._readings < self.capacity:
            self._space.set()

    def get_nowait(self) -> tuple[str, P] | None:
        """The oldest queued message, or None."""
        if not self._queue:
            return None
        topic, msg, n = self._queue.popleft()
        self._took(1, n)
        return topic, msg

    @property
    def queued_messages(self) -> int:
        """Messages queued now."""
        return len(self._queue)

    def drain(self, max_messages: int | None = None) -> list[tuple[str, P]]:
        """Everything queued (up to ``max_messages``), oldest first."""
        out: list[tuple[str, P]] = []
        readings = 0
        q = self._queue
        while q and (max_messages is None or len(out) < max_messages):
            topic, msg, n = q.popleft()
            readings += n
            out.append((topic, msg))
        if out:
            self._took(len(out), readings)
        return out

    async def wait(self) -> None:
        """Return when at least one message is queued; raise BusClosedError once closed and empty."""
        while not self._queue:
            if self.closed:
                raise BusClosedError(f"subscription {self.name!r} is closed")
            loop = asyncio.get_running_loop()
            self._getter = loop.create_future()
            try:
                await self._getter
            finally:
                self._getter = None

    async def get(self) -> tuple[str, P]:
        """The oldest message, waiting for one."""
        await self.wait()
        item = self.get_nowait()
        assert item is not None
        return item

    async def get_many(self, max_messages: int | None = None) -> list[tuple[str, P]]:
        """Wait for at least one message, then take all that are queued (up to ``max_messages``)."""
        await self.wait()
        return self.drain(max_messages)

    def __aiter__(self) -> AsyncIterator[tuple[str, P]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[str, P]]:
        while True:
            try:
                yield await self.get()
            except BusClosedError:
                return

    def close(self) -> None:
        """Stop receiving. Messages already queued can still be taken."""
        if self.closed:
            return
        self.closed = True
        self._bus._remove(self)
        self._space.set()
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    def stats(self) -> SubscriptionStats:
        return SubscriptionStats(
            name=self.name,
            pattern=self.pattern,
            policy=self.policy,
            capacity=self.capacity,
            queued_messages=len(self._queue),
            queued_readings=self._readings,
            received_messages=self.received_messages,
            received_readings=self.received_readings,
            delivered_messages=self.delivered_messages,
            delivered_readings=self.delivered_readings,
            dropped_messages=self.dropped_messages,
            dropped_readings=self.dropped_readings,
            timed_out_messages=self.timed_out_messages,
            timed_out_readings=self.timed_out_readings,
        )


class Bus(Generic[P]):
    """The in-process core-data bus. ``P`` is the message type (``ReadingBatch`` in the runtime)."""

    def __init__(self) -> None:
        self._subs: list[Subscription[P]] = []
        self._routes: dict[str, tuple[Subscription[P], ...]] = {}
        self.closed = False
        self.published_messages = 0
        self.published_readings = 0
        self.unrouted_messages = 0

    def subscribe(
        self,
        pattern: str,
        *,
        capacity: int = 100_000,
        policy: OverflowPolicy = "block",
        name: str = "",
        block_timeout: float | None = None,
    ) -> Subscription[P]:
        """Subscribe to ``pattern``; ``capacity`` counts readings; ``block_timeout`` bounds how long a
        publisher waits on this subscription under ``block`` (None: as long as it takes)."""
        if self.closed:
            raise BusClosedError("the bus is closed")
        validate_pattern(pattern)
        if capacity < 1:
            raise BusError(f"capacity must be at least 1, not {capacity}")
        if policy not in _POLICIES:
            raise BusError(f"overflow policy {policy!r}: expected {', '.join(sorted(_POLICIES))}")
        if block_timeout is not None and block_timeout < 0:
            raise BusError(f"block_timeout must not be negative, not {block_timeout}")
        sub = Subscription(self, pattern, capacity, policy, name, block_timeout)
        self._subs.append(sub)
        self._routes.clear()
        return sub

    def _remove(self, sub: Subscription[P]) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            self._routes.clear()

    def _route(self, topic: str) -> tuple[Subscription[P], ...]:
        subs = self._routes.get(topic)
        if subs is None:
            if len(self._routes) > 65_536:
                self._routes.clear()
            subs = tuple(s for s in self._subs if topic_matches(s.pattern, topic))
            self._routes[topic] = subs
        return subs

    def _routes_for(self, topic: str, msg: P) -> tuple[tuple[Subscription[P], ...], int]:
        """Count the publish and find its subscriptions (the part both publish calls share)."""
        if self.closed:
            raise BusClosedError("the bus is closed")
        n = len(msg)
        self.published_messages += 1
        self.published_readings += n
        subs = self._routes.get(topic)
        if subs is None:
            subs = self._route(topic)
        if not subs:
            self.unrouted_messages += 1
        return subs, n

    def publish_nowait(self, topic: str, msg: P) -> int:
        """Hand ``msg`` to every matching subscription without waiting; returns how many took it.

        Raises :class:`BusFullError` if a ``block`` subscription is full (subscriptions before it in
        order have already taken the message); use :meth:`publish` to wait instead."""
        subs, n = self._routes_for(topic, msg)
        for sub in subs:
            if not sub._offer(topic, msg, n):
                raise BusFullError(f"subscription {sub.name!r} is full ({sub.capacity} readings)")
        return len(subs)

    async def publish(self, topic: str, msg: P) -> int:
        """Hand ``msg`` to every matching subscription, waiting for room where the policy is ``block``."""
        subs, n = self._routes_for(topic, msg)
        for sub in subs:
            if not sub._offer(topic, msg, n):
                await sub._offer_waiting(topic, msg, n)
        return len(subs)

    def subscriptions(self) -> list[Subscription[P]]:
        return list(self._subs)

    def stats(self) -> list[SubscriptionStats]:
        return [s.stats() for s in self._subs]

    def close(self) -> None:
        """Close the bus and every subscription; queued messages can still be drained."""
        self.closed = True
        for sub in list(self._subs):
            sub.close()
