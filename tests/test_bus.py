from __future__ import annotations

import asyncio
from typing import get_args

import numpy as np
import pytest

from edgeflow.bus import (
    Bus,
    BusFullError,
    OverflowPolicy,
    event_topic,
    topic_matches,
    validate_pattern,
)
from edgeflow.errors import BusClosedError, BusError
from edgeflow.model import ReadingBatch, SeriesTable


def batch(n: int, table: SeriesTable | None = None) -> ReadingBatch:
    t = table or SeriesTable()
    sid = t.intern("dev", "temp")
    return ReadingBatch.from_columns(t, np.arange(n), np.arange(n, dtype=float), np.full(n, sid))


def test_event_topic_escapes_each_name_to_one_level() -> None:
    assert event_topic("svc", "prof", "dev", "Temp") == "edgex/events/device/svc/prof/dev/Temp"
    topic = event_topic("svc", "a/b", "dev#1", "x+y")
    assert topic == "edgex/events/device/svc/a%2Fb/dev%231/x%2By"
    assert len(topic.split("/")) == 7


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a/b/c", "a/b/c", True),
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/#", "a", True),  # MQTT: '#' also matches the parent level
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
        ("edgex/events/device/+/+/Device1/#", "edgex/events/device/s/p/Device10/x", False),
        ("edgex/events/device/+/+/Device1/#", "edgex/events/device/s/p/Device1/x", True),
    ],
)
def test_topic_matches(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize("pattern", ["", "a/#/b", "a/b+", "a#"])
def test_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(BusError):
        validate_pattern(pattern)
    with pytest.raises(BusError):
        Bus[ReadingBatch]().subscribe(pattern)


async def test_publish_reaches_every_matching_subscriber_once() -> None:
    bus: Bus[ReadingBatch] = Bus()
    all_ = bus.subscribe("edgex/events/device/#")
    one = bus.subscribe("edgex/events/device/+/+/d1/+")
    other = bus.subscribe("edgex/events/device/+/+/d2/+")
    b = batch(10)
    assert bus.publish_nowait(event_topic("s", "p", "d1", "temp"), b) == 2
    assert (await all_.get())[1] is b
    assert (await one.get())[1] is b
    assert other.get_nowait() is None
    assert bus.published_readings == 10


async def test_unrouted_messages_are_counted() -> None:
    bus: Bus[ReadingBatch] = Bus()
    assert bus.publish_nowait("nowhere", batch(3)) == 0
    assert bus.unrouted_messages == 1


async def test_drop_oldest_keeps_newest_within_capacity_and_counts() -> None:
    bus: Bus[ReadingBatch] = Bus()
    sub = bus.subscribe("t", capacity=25, policy="drop-oldest")
    batches = [batch(10) for _ in range(4)]
    for b in batches:
        bus.publish_nowait("t", b)
    got = [m for _, m in sub.drain()]
    assert got == batches[2:]
    s = sub.stats()
    assert (s.dropped_messages, s.dropped_readings) == (2, 20)
    assert (s.received_readings, s.delivered_readings, s.queued_readings) == (40, 20, 0)


async def test_drop_newest_refuses_new_and_counts() -> None:
    bus: Bus[ReadingBatch] = Bus()
    sub = bus.subscribe("t", capacity=25, policy="drop-newest")
    batches = [batch(10) for _ in range(4)]
    for b in batches:
        bus.publish_nowait("t", b)
    assert [m for _, m in sub.drain()] == batches[:2]
    assert sub.stats().dropped_readings == 20


async def test_a_batch_larger_than_capacity_enters_an_empty_queue() -> None:
    bus: Bus[ReadingBatch] = Bus()
    sub = bus.subscribe("t", capacity=5, policy="drop-newest")
    big = batch(50)
    bus.publish_nowait("t", big)
    bus.publish_nowait("t", batch(1))
    assert [m for _, m in sub.drain()] == [big]
    assert sub.stats().dropped_messages == 1


async def test_block_policy_makes_publisher_wait_and_loses_nothing() -> None:
    bus: Bus[ReadingBatch] = Bus()
    sub = bus.subscribe("t", capacity=20, policy="block")
    batches = [batch(10) for _ in range(10)]
    with pytest.raises(BusFullError):
        for b in batches[:3]:
            bus.publish_nowait("t", b)
    sub.drain()

    async def producer() -> None:
        for b in batches:
            await bus.publish("t", b)

    task = asyncio.create_task(producer())
    received: list[ReadingBatch] = []
    while len(received) < len(batches):
        assert sub.stats().queued_readings <= 20
        for _, m in await sub.get_many():
            received.append(m)
    await task
    assert received == batches
    assert sub.stats().dropped_messages == 0


async def test_close_ends_iteration_after_queued_messages() -> None:
    bus: Bus[ReadingBatch] = Bus()
    sub = bus.subscribe("t")
    b1, b2 = batch(1), batch(2)
    bus.publish_nowait("t", b1)
    bus.publish_nowait("t", b2)
    bus.close()
    got = [m async for _, m in sub]
    assert got == [b1, b2]
    with pytest.raises(BusClosedError):
        bus.publish_nowait("t", b1)


async def test_waiting_getter_wakes_on_close() -> None:
    bus: Bus[ReadingBatch] = Bus()
    sub = bus.subscribe("t")
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(BusClosedError):
        await waiter


async def test_unsubscribed_pattern_no_longer_receives() -> None:
    bus: Bus[ReadingBatch] = Bus()
    sub = bus.subscribe("t")
    bus.publish_nowait("t", batch(1))
    sub.close()
    assert bus.publish_nowait("t", batch(1)) == 0
    assert sub.stats().received_messages == 1


def test_unknown_overflow_policy_is_refused() -> None:
    assert set(get_args(OverflowPolicy)) == {"block", "drop-oldest", "drop-newest"}
    with pytest.raises(BusError, match="'drop-all': expected block, drop-newest, drop-oldest"):
        Bus().subscribe("t", policy="drop-all")  # type: ignore[arg-type]
