"""The commit log, at the bytes level: batches, stream positions and states in one transaction; the
outbox side: order, acknowledgement, bounds and policies, crashes. Every call runs on the log's thread."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from edgeflow.commitlog import ROW_OVERHEAD, CommitLog, OutboxItem
from edgeflow.errors import OutboxError


async def opened(path: Path, **kw: object) -> CommitLog:
    kw.setdefault("max_bytes", 1 << 20)
    log = CommitLog(path, **kw)  # type: ignore[arg-type]
    await log.open()
    return log


def item(
    seq: int, *, alarm: bool = False, size: int = 100, stream: str = "s1", readings: int = 10
) -> OutboxItem:
    return OutboxItem(
        stream_id=stream,
        seq=seq,
        topic="t/x",
        payload=seq.to_bytes(4, "big") * (size // 4),
        alarm=alarm,
        readings=readings,
        encoding="compact",
    )


async def test_roundtrip_alarms_first_then_insertion_order(tmp_path: Path) -> None:
    ob = await opened(tmp_path / "o.sqlite", max_bytes=1 << 20)
    await ob.commit([item(0), item(1), item(2, alarm=True), item(3)])
    await ob.commit([item(4, alarm=True)])
    got = await ob.take(10)
    assert [(r.seq, r.alarm) for r in got] == [(2, True), (4, True), (0, False), (1, False), (3, False)]
    assert got[0].payload == item(2).payload
    assert got[0].topic == "t/x"
    assert got[0].readings == 10
    assert got[0].encoding == "compact"
    assert await ob.take(10) == []  # everything is in flight
    await ob.ack(got[:2])
    assert ob.stats()["queued_batches"] == 3
    assert ob.stats()["acked_readings"] == 20
    # connection lost: what is in flight comes back, in the same order
    assert await ob.release() == 3
    assert [r.seq for r in await ob.take(10)] == [0, 1, 3]
    await ob.close()


async def test_take_respects_limit_and_new_alarm_jumps_the_queue(tmp_path: Path) -> None:
    ob = await opened(tmp_path / "o.sqlite", max_bytes=1 << 20)
    await ob.commit([item(i) for i in range(5)])
    assert [r.seq for r in await ob.take(2)] == [0, 1]
    await ob.commit([item(99, alarm=True)])
    assert [r.seq for r in await ob.take(2)] == [99, 2]
    assert [r.seq for r in await ob.take(5)] == [3, 4]
    await ob.close()


async def test_committed_batches_survive_reopen_and_acked_ones_do_not(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = await opened(path, max_bytes=1 << 20)
    await ob.commit([item(i) for i in range(6)])
    taken = await ob.take(3)
    await ob.ack(taken[:2])  # seq 2 stays in flight, unacknowledged
    await ob.close()
    ob2 = await opened(path, max_bytes=1 << 20)
    assert ob2.stats()["recovered_batches"] == 4
    assert ob2.stats()["queued_readings"] == 40
    assert [r.seq for r in await ob2.take(10)] == [2, 3, 4, 5]
    await ob2.close()


CRASHER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from edgeflow.commitlog import CommitLog, OutboxItem
    async def main():
        ob = CommitLog(sys.argv[1], max_bytes=1 << 24)
        await ob.open()
        for i in range(200):
            state = {"pipeline:p": b"after %d" % i}
            await ob.commit([OutboxItem("s", i, "t", bytes(300), readings=5)], [("k", "s", i + 1)], state)
            if i == 150:
                await ob.ack(await ob.take(10))  # 0..9 confirmed
                await ob.take(5)           # 10..14 in flight when we die
        os.kill(os.getpid(), signal.SIGKILL)
    asyncio.run(main())
    """
)


async def test_everything_committed_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHER, str(path), cwd=Path(__file__).parents[1]
    )
    assert await proc.wait() == -signal.SIGKILL
    ob = await opened(path, max_bytes=1 << 24)
    seqs = [r.seq for r in await ob.take(1000)]
    assert seqs == list(range(10, 200))  # acked gone; in-flight and the rest kept, in order
    assert await ob.stream_state("k") == ("s", 200)
    assert await ob.load_state("pipeline:p") == b"after 199"
    await ob.close()


async def test_drop_oldest_keeps_the_newest_and_counts(tmp_path: Path) -> None:
    one = item(0).size
    ob = await opened(tmp_path / "o.sqlite", max_bytes=10 * one, overflow="drop-oldest")
    for i in range(25):
        assert (await ob.commit([item(i)])).stored_batches == 1
    st = ob.stats()
    assert st["queued_batches"] == 10
    assert st["queued_bytes"] <= 10 * one
    assert st["dropped_batches"] == 15
    assert st["dropped_readings"] == 150
    assert st["dropped_bytes"] == 15 * one
    assert [r.seq for r in await ob.take(100)] == list(range(15, 25))
    await ob.close()


async def test_drop_oldest_spares_batches_in_flight_and_alarms_until_last(tmp_path: Path) -> None:
    one = item(0).size
    ob = await opened(tmp_path / "o.sqlite", max_bytes=4 * one, overflow="drop-oldest")
    await ob.commit([item(0, alarm=True), item(1), item(2), item(3)])
    inflight = await ob.take(2)  # alarm 0 and batch 1
    await ob.commit([item(4)])  # must drop 2, the oldest plain batch not in flight
    assert ob.stats()["dropped_batches"] == 1
    await ob.ack(inflight)
    assert [r.seq for r in await ob.take(10)] == [3, 4]
    await ob.close()


async def test_drop_newest_refuses_new_batches_and_counts(tmp_path: Path) -> None:
    one = item(0).size
    ob = await opened(tmp_path / "o.sqlite", max_bytes=10 * one, overflow="drop-newest")
    stored = 0
    for i in range(25):
        stored += (await ob.commit([item(i)])).stored_batches
    assert stored == 10
    st = ob.stats()
    assert (st["queued_batches"], st["dropped_batches"], st["dropped_readings"]) == (10, 15, 150)
    assert [r.seq for r in await ob.take(100)] == list(range(10))
    await ob.close()


async def test_block_waits_for_acknowledgements(tmp_path: Path) -> None:
    one = item(0).size
    ob = await opened(tmp_path / "o.sqlite", max_bytes=3 * one, overflow="block")
    await ob.commit([item(0), item(1), item(2)])
    pending = asyncio.create_task(ob.commit([item(3)], [("k", "s", 4)], {"st": b"x"}))
    await asyncio.sleep(0.05)
    assert not pending.done()
    await ob.ack(await ob.take(1))
    assert ob.blocked
    assert await ob.load_state("st") is None  # nothing of a waiting commit is written
    assert (await asyncio.wait_for(pending, 2)).stored_batches == 1
    assert await ob.load_state("st") == b"x"
    st = ob.stats()
    assert st["dropped_batches"] == 0
    assert [r.seq for r in await ob.take(10)] == [1, 2, 3]
    await ob.close()


async def test_batch_larger_than_the_whole_bound_is_dropped_and_counted(tmp_path: Path) -> None:
    ob = await opened(tmp_path / "o.sqlite", max_bytes=1000, overflow="block")
    res = await ob.commit([item(0, size=2000), item(1, size=100)])
    assert (res.stored_batches, res.refused_batches, res.refused_readings) == (1, 1, 10)
    assert ob.stats()["dropped_batches"] == 1
    await ob.close()


async def test_disk_stays_bounded_at_the_bound(tmp_path: Path) -> None:
    """Hours at the bound, compressed: the file stops growing once SQLite reuses freed pages."""
    max_bytes = 2 << 20
    ob = await opened(tmp_path / "o.sqlite", max_bytes=max_bytes, overflow="drop-oldest")
    sizes = []
    for round_ in range(40):
        await ob.commit([item(round_ * 100 + i, size=2000) for i in range(100)])
        sizes.append(ob.stats()["file_bytes"])
    st = ob.stats()
    assert st["queued_bytes"] <= max_bytes
    assert st["dropped_batches"] > 2000
    # database + WAL: bounded by the records plus page slack plus the WAL limit, and flat at the end
    assert max(sizes) < 2 * max_bytes + (8 << 20)
    assert sizes[-1] <= max(sizes[20:30]) * 1.1
    await ob.close()


async def test_stream_state_is_saved_with_the_batches(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = await opened(path, max_bytes=1 << 20)
    assert await ob.stream_state("k") is None
    await ob.commit([item(0), item(1)], [("k", "stream-a", 2)])
    await ob.commit([], [("k", "stream-a", 3)])
    await ob.close()
    ob = await opened(path, max_bytes=1 << 20)
    assert await ob.stream_state("k") == ("stream-a", 3)
    await ob.close()


async def test_corrupt_file_is_an_outbox_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(OutboxError, match=r"broken\.sqlite.*not a database"):
        await opened(path, max_bytes=1 << 20)


async def test_unopenable_path_is_an_outbox_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "a-directory"
    path.mkdir()
    with pytest.raises(OutboxError, match="a-directory"):
        await opened(path, max_bytes=1 << 20)


async def test_bad_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutboxError, match="overflow policy 'drop-all'"):
        await opened(tmp_path / "o.sqlite", overflow="drop-all")


async def test_commits_run_on_the_logs_own_thread_in_order(tmp_path: Path) -> None:
    import threading

    ob = await opened(tmp_path / "o.sqlite", synchronous="full")
    seen: set[str] = set()
    store = ob._s()
    real = store.commit

    def spy(*a: object) -> object:
        seen.add(threading.current_thread().name)
        return real(*a)  # type: ignore[arg-type]

    store.commit = spy  # type: ignore[method-assign]
    await asyncio.gather(*(ob.commit([item(i)]) for i in range(20)))
    assert [r.seq for r in await ob.take(100)] == list(range(20))  # one thread: in submission order
    assert len(seen) == 1 and next(iter(seen)).startswith("edgeflow-commitlog")
    assert threading.current_thread().name not in seen
    await ob.close()


async def test_batches_stream_positions_and_states_commit_together_or_not_at_all(tmp_path: Path) -> None:
    """Another writer holds the database: the whole commit fails, nothing of it is written; then it
    succeeds whole."""
    import sqlite3

    path = tmp_path / "o.sqlite"
    ob = await opened(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a write lock: our commit gets SQLITE_BUSY after its busy timeout
    with pytest.raises(OutboxError, match="database is locked"):
        await ob.commit([item(0)], [("k", "s", 1)], {"st": b"1"})
    other.execute("ROLLBACK")
    other.close()
    assert await ob.take(10) == []
    assert await ob.stream_state("k") is None and await ob.load_state("st") is None
    await ob.commit([item(0)], [("k", "s", 1)], {"st": b"1"})
    assert [r.seq for r in await ob.take(10)] == [0]
    assert await ob.stream_state("k") == ("s", 1) and await ob.load_state("st") == b"1"
    await ob.close()


def test_item_size_counts_payload_topic_stream_and_overhead() -> None:
    it = OutboxItem("abc", 0, "t/1", b"x" * 10)
    assert it.size == 10 + 3 + 3 + ROW_OVERHEAD


async def test_a_drained_outbox_gives_its_disk_back(tmp_path: Path) -> None:
    ob = await opened(tmp_path / "o.sqlite", max_bytes=64 << 20)
    for start in range(0, 400, 50):
        await ob.commit([item(i, size=50_000) for i in range(start, start + 50)])
    full = ob.stats()["file_bytes"]
    assert full > 15 << 20  # 400 batches of 50 kB were written
    while got := await ob.take(100):
        await ob.ack(got)
    assert ob.stats()["queued_batches"] == 0
    assert ob.stats()["file_bytes"] < 2 << 20, (full, ob.stats()["file_bytes"])
    # and it still works
    await ob.commit([item(1000)])
    assert [r.seq for r in await ob.take(1)] == [1000]
    await ob.close()
