"""The durable outbox, at the bytes level: order, acknowledgement, bounds and policies, crashes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeflow.errors import OutboxError
from edgeflow.outbox import ROW_OVERHEAD, Outbox, OutboxItem


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


def test_roundtrip_alarms_first_then_insertion_order(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20)
    ob.put_nowait([item(0), item(1), item(2, alarm=True), item(3)])
    ob.put_nowait([item(4, alarm=True)])
    got = ob.take(10)
    assert [(r.seq, r.alarm) for r in got] == [(2, True), (4, True), (0, False), (1, False), (3, False)]
    assert got[0].payload == item(2).payload
    assert got[0].topic == "t/x"
    assert got[0].readings == 10
    assert got[0].encoding == "compact"
    assert ob.take(10) == []  # everything is in flight
    ob.ack(got[:2])
    assert ob.stats()["queued_batches"] == 3
    assert ob.stats()["acked_readings"] == 20
    # connection lost: what is in flight comes back, in the same order
    assert ob.release() == 3
    assert [r.seq for r in ob.take(10)] == [0, 1, 3]
    ob.close()


def test_take_respects_limit_and_new_alarm_jumps_the_queue(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20)
    ob.put_nowait([item(i) for i in range(5)])
    assert [r.seq for r in ob.take(2)] == [0, 1]
    ob.put_nowait([item(99, alarm=True)])
    assert [r.seq for r in ob.take(2)] == [99, 2]
    assert [r.seq for r in ob.take(5)] == [3, 4]
    ob.close()


def test_committed_batches_survive_reopen_and_acked_ones_do_not(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = Outbox(path, max_bytes=1 << 20)
    ob.put_nowait([item(i) for i in range(6)])
    taken = ob.take(3)
    ob.ack(taken[:2])  # seq 2 stays in flight, unacknowledged
    ob.close()
    ob2 = Outbox(path, max_bytes=1 << 20)
    assert ob2.stats()["recovered_batches"] == 4
    assert ob2.stats()["queued_readings"] == 40
    assert [r.seq for r in ob2.take(10)] == [2, 3, 4, 5]
    ob2.close()


CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from edgeflow.outbox import Outbox, OutboxItem
    ob = Outbox(sys.argv[1], max_bytes=1 << 24)
    for i in range(200):
        ob.put_nowait([OutboxItem("s", i, "t", bytes(300), readings=5)], ("k", "s", i + 1))
        if i == 150:
            ob.ack(ob.take(10))  # 0..9 confirmed
            ob.take(5)           # 10..14 in flight when we die
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_everything_committed_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER, str(path)], cwd=Path(__file__).parents[1], check=False
    )
    assert proc.returncode == -signal.SIGKILL
    ob = Outbox(path, max_bytes=1 << 24)
    seqs = [r.seq for r in ob.take(1000)]
    assert seqs == list(range(10, 200))  # acked gone; in-flight and the rest kept, in order
    assert ob.stream_state("k") == ("s", 200)
    ob.close()


def test_drop_oldest_keeps_the_newest_and_counts(tmp_path: Path) -> None:
    one = item(0).size
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=10 * one, overflow="drop-oldest")
    for i in range(25):
        assert ob.put_nowait([item(i)]) == 1
    st = ob.stats()
    assert st["queued_batches"] == 10
    assert st["queued_bytes"] <= 10 * one
    assert st["dropped_batches"] == 15
    assert st["dropped_readings"] == 150
    assert st["dropped_bytes"] == 15 * one
    assert [r.seq for r in ob.take(100)] == list(range(15, 25))
    ob.close()


def test_drop_oldest_spares_batches_in_flight_and_alarms_until_last(tmp_path: Path) -> None:
    one = item(0).size
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=4 * one, overflow="drop-oldest")
    ob.put_nowait([item(0, alarm=True), item(1), item(2), item(3)])
    inflight = ob.take(2)  # alarm 0 and batch 1
    ob.put_nowait([item(4)])  # must drop 2, the oldest plain batch not in flight
    assert ob.stats()["dropped_batches"] == 1
    ob.ack(inflight)
    assert [r.seq for r in ob.take(10)] == [3, 4]
    ob.close()


def test_drop_newest_refuses_new_batches_and_counts(tmp_path: Path) -> None:
    one = item(0).size
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=10 * one, overflow="drop-newest")
    stored = sum(ob.put_nowait([item(i)]) for i in range(25))
    assert stored == 10
    st = ob.stats()
    assert (st["queued_batches"], st["dropped_batches"], st["dropped_readings"]) == (10, 15, 150)
    assert [r.seq for r in ob.take(100)] == list(range(10))
    ob.close()


async def test_block_waits_for_acknowledgements(tmp_path: Path) -> None:
    one = item(0).size
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=3 * one, overflow="block")
    await ob.put([item(0), item(1), item(2)])
    with pytest.raises(OutboxError, match="is full"):
        ob.put_nowait([item(3)])
    pending = asyncio.create_task(ob.put([item(3)]))
    await asyncio.sleep(0.05)
    assert not pending.done()
    ob.ack(ob.take(1))
    assert await asyncio.wait_for(pending, 2) == 1
    st = ob.stats()
    assert st["dropped_batches"] == 0
    assert [r.seq for r in ob.take(10)] == [1, 2, 3]
    ob.close()


def test_batch_larger_than_the_whole_bound_is_dropped_and_counted(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=1000, overflow="block")
    assert ob.put_nowait([item(0, size=2000), item(1, size=100)]) == 1
    assert ob.stats()["dropped_batches"] == 1
    ob.close()


def test_disk_stays_bounded_at_the_bound(tmp_path: Path) -> None:
    """Hours at the bound, compressed: the file stops growing once SQLite reuses freed pages."""
    max_bytes = 2 << 20
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=max_bytes, overflow="drop-oldest")
    sizes = []
    for round_ in range(40):
        ob.put_nowait([item(round_ * 100 + i, size=2000) for i in range(100)])
        sizes.append(ob.file_bytes())
    st = ob.stats()
    assert st["queued_bytes"] <= max_bytes
    assert st["dropped_batches"] > 2000
    # database + WAL: bounded by the records plus page slack plus the WAL limit, and flat at the end
    assert max(sizes) < 2 * max_bytes + (8 << 20)
    assert sizes[-1] <= max(sizes[20:30]) * 1.1
    ob.close()


def test_stream_state_is_saved_with_the_batches(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = Outbox(path, max_bytes=1 << 20)
    assert ob.stream_state("k") is None
    ob.put_nowait([item(0), item(1)], ("k", "stream-a", 2))
    ob.put_nowait([], ("k", "stream-a", 3))
    ob.close()
    assert Outbox(path, max_bytes=1 << 20).stream_state("k") == ("stream-a", 3)


def test_corrupt_file_is_an_outbox_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(OutboxError, match=r"broken\.sqlite.*not a database"):
        Outbox(path, max_bytes=1 << 20)


def test_unopenable_path_is_an_outbox_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "a-directory"
    path.mkdir()
    with pytest.raises(OutboxError, match="a-directory"):
        Outbox(path, max_bytes=1 << 20)


def test_bad_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutboxError, match="overflow policy 'drop-all'"):
        Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20, overflow="drop-all")  # type: ignore[arg-type]


def test_full_synchronous_mode_commits_in_a_worker_thread(tmp_path: Path) -> None:
    async def main() -> list[int]:
        ob = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20, synchronous="full")
        await asyncio.gather(*(ob.put([item(i)]) for i in range(20)))
        seqs = sorted(r.seq for r in ob.take(100))
        ob.close()
        return seqs

    assert asyncio.run(main()) == list(range(20))


def test_item_size_counts_payload_topic_stream_and_overhead() -> None:
    it = OutboxItem("abc", 0, "t/1", b"x" * 10)
    assert it.size == 10 + 3 + 3 + ROW_OVERHEAD


def test_a_drained_outbox_gives_its_disk_back(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=64 << 20)
    for start in range(0, 400, 50):
        ob.put_nowait([item(i, size=50_000) for i in range(start, start + 50)])
    full = ob.file_bytes()
    assert full > 15 << 20  # 400 batches of 50 kB were written
    while got := ob.take(100):
        ob.ack(got)
    assert ob.stats()["queued_batches"] == 0
    assert ob.file_bytes() < 2 << 20, (full, ob.file_bytes())
    # and it still works
    ob.put_nowait([item(1000)])
    assert [r.seq for r in ob.take(1)] == [1000]
    ob.close()
