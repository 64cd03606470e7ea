"""edgeflow.testing is public API: its docstring example runs, and its helpers behave as documented."""

from __future__ import annotations

import asyncio
import doctest

import pytest

import edgeflow.testing
from edgeflow.connector import Clock
from edgeflow.model import SeriesTable, ValueType
from edgeflow.testing import MS, SECOND, ListSource, ManualClock


def test_docstring_example_runs() -> None:
    result = doctest.testmod(edgeflow.testing, raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_list_source_batches_keep_order_and_types() -> None:
    table = SeriesTable()
    src = ListSource(table)
    a = src.add("d", "flag", [1, 2], [True, False], value_type=ValueType.BOOL)
    b = src.add("d", "name", [3], ["pump"], value_type=ValueType.STRING)
    batches = list(src.batches(2))
    assert [len(x) for x in batches] == [2, 1]
    assert batches[0].series.tolist() == [a, a]
    assert [batches[0].value_at(0), batches[0].value_at(1)] == [True, False]
    assert batches[1].objects is not None
    assert batches[1].objects.tolist() == ["pump"]
    assert batches[1].series.tolist() == [b]
    with pytest.raises(ValueError, match="same length"):
        src.add("d", "x", [1, 2], [1.0])


def test_manual_clock() -> None:
    c = ManualClock(10)
    assert c.advance(5) == 15
    assert c.set(3) == 3
    with pytest.raises(ValueError, match="backwards"):
        c.advance(-1)


# --------------------------------------------------------------------------------------------------
# ManualClock as the scheduler's clock
# --------------------------------------------------------------------------------------------------


def test_manual_clock_is_a_scheduler_clock() -> None:
    c = ManualClock(5 * SECOND)
    assert isinstance(c, Clock)
    assert c.monotonic_ns() == c.time_ns() == 5 * SECOND


async def test_sleepers_wake_at_their_deadlines_in_order() -> None:
    c = ManualClock()
    woke: list[tuple[str, int]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await c.sleep(seconds)
        woke.append((name, c.now_ns))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("b", 0.02), ("a", 0.01), ("c", 0.02)]]
    await c.run_for(15 * MS)
    assert woke == [("a", 10 * MS)]
    assert c.pending == 2
    await c.run_until(20 * MS)
    assert woke == [("a", 10 * MS), ("b", 20 * MS), ("c", 20 * MS)]  # ties in the order they slept
    await asyncio.gather(*tasks)
    with pytest.raises(ValueError, match="backwards"):
        await c.run_until(0)


async def test_a_sleep_chain_runs_step_by_step_within_one_run() -> None:
    c = ManualClock()
    ticks: list[int] = []

    async def ticker() -> None:
        for _ in range(5):
            await c.sleep_until(c.now_ns + 7 * MS)
            ticks.append(c.now_ns // MS)

    task = asyncio.create_task(ticker())
    await c.run_for(SECOND)
    assert ticks == [7, 14, 21, 28, 35]
    assert task.done() and c.now_ns == SECOND


async def test_a_cancelled_sleeper_leaves_no_timer() -> None:
    c = ManualClock()
    task = asyncio.create_task(c.sleep(10))
    await c.run_for(0)
    assert c.pending == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert c.pending == 0


async def test_timeout_fires_on_the_manual_clock_only() -> None:
    c = ManualClock()
    outcome: list[str] = []

    async def slow() -> None:
        try:
            async with c.timeout(1.0):
                await c.sleep(5)
            outcome.append("finished")
        except TimeoutError:
            outcome.append(f"timed out at {c.now_ns // MS} ms")

    async def quick() -> None:
        async with c.timeout(1.0):
            await c.sleep(0.5)
        outcome.append("quick finished")

    tasks = [asyncio.create_task(slow()), asyncio.create_task(quick())]
    await c.run_for(SECOND - 1)
    assert outcome == ["quick finished"]
    await c.run_for(1)
    assert outcome == ["quick finished", "timed out at 1000 ms"]
    await asyncio.gather(*tasks)
    assert c.pending == 0  # the slow sleep was cancelled, the quick timeout disarmed
