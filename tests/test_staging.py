"""Batching without a window of loss: with ``max_delay`` a reading is committed (staged) as soon as a
group takes it, and the message that carries it is cut later, in the transaction that removes the
staged rows it carries. What a ``kill -9`` leaves — a copy of the database taken between two commits —
is read back by a new committer and shipped first. (The whole edge process killed at random moments,
staged, is in ``test_crash_consistency``.)"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from uplink_support import make_batch, table

from edgeflow.codec import decode, make_encoder, merge_points
from edgeflow.commitlog import CommitLog, Committer, OutboxItem, Shipment
from edgeflow.commitlog._staging import UnstageableError, pack, unpack
from edgeflow.errors import OutboxError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
from edgeflow.uplink.encoding import UplinkEncoder


async def opened(path: Path) -> CommitLog:
    log = CommitLog(path, max_bytes=64 << 20)
    await log.open()
    return log


def committer(log: CommitLog, *, max_delay: float, states: dict[str, bytes] | None = None) -> Committer:
    enc = UplinkEncoder(
        make_encoder("compact", stream_id="edge-1", first_seq=0),
        stream_key="uplink:s:compact",
        service="s",
        topic="edgeflow/s/batches",
    )
    source = (lambda: dict(states)) if states is not None else None
    return Committer(log, enc, max_delay=max_delay, states=source)


def crash_copy(path: Path, dest: Path) -> Path:
    """What a kill -9 would leave now: every committed transaction, nothing else."""
    src = sqlite3.connect(path)
    out = sqlite3.connect(dest)
    src.backup(out)
    src.close()
    out.close()
    return dest


def shipped(records: list[Any]) -> dict[tuple[str, str], Any]:
    return merge_points(decode(r.payload) for r in sorted(records, key=lambda r: r.seq))


# -- the store -------------------------------------------------------------------------------------


async def test_staged_rows_and_the_batch_that_carries_them_commit_together_or_not_at_all(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    ob = await opened(path)
    res = await ob.commit([], [], {"st": b"1"}, stage=[(10, b"a"), (5, b"b")])
    assert len(res.staged_ids) == 2
    assert await ob.load_staged() == [(res.staged_ids[0], b"a"), (res.staged_ids[1], b"b")]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a write lock: the cut fails whole
    item = OutboxItem("s1", 0, "t/x", b"batch", readings=15, encoding="compact")
    with pytest.raises(OutboxError, match="database is locked"):
        await ob.commit([item], [("k", "s1", 1)], None, unstage=res.staged_ids)
    other.execute("ROLLBACK")
    other.close()
    assert len(await ob.load_staged()) == 2 and await ob.take(10) == []
    await ob.commit([item], [("k", "s1", 1)], None, unstage=res.staged_ids)
    assert await ob.load_staged() == []
    assert [r.seq for r in await ob.take(10)] == [0]
    await ob.close()


async def test_an_outbox_of_schema_version_2_gains_the_staged_table(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        """
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, alarm INTEGER NOT NULL,
            stream_id TEXT NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL, encoding TEXT NOT NULL,
            readings INTEGER NOT NULL, size INTEGER NOT NULL, payload BLOB NOT NULL);
        CREATE INDEX outbox_lane ON outbox (alarm, id);
        CREATE TABLE streams (key TEXT PRIMARY KEY, stream_id TEXT NOT NULL, next_seq INTEGER NOT NULL);
        CREATE TABLE state (key TEXT PRIMARY KEY, value BLOB NOT NULL);
        INSERT INTO outbox (alarm, stream_id, seq, topic, encoding, readings, size, payload)
            VALUES (0, 's1', 7, 't/x', 'compact', 3, 90, x'00');
        PRAGMA user_version=2;
        """
    )
    db.close()
    ob = await opened(path)
    assert await ob.load_staged() == []
    assert [r.seq for r in await ob.take(10)] == [7]
    await ob.commit([], stage=[(1, b"x")])
    assert [p for _, p in await ob.load_staged()] == [b"x"]
    await ob.close()


# -- a staged row ----------------------------------------------------------------------------------

_objects = st.one_of(
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.integers(-(2**70), 2**70), max_size=3),
    st.dictionaries(st.text(max_size=3), st.floats(allow_nan=False), max_size=2),
    st.integers(2**64, 2**80),
)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=30),
    objects=st.one_of(st.none(), st.lists(_objects, min_size=30, max_size=30)),
    with_starts=st.booleans(),
    data=st.data(),
)
def test_a_staged_row_reads_back_to_the_same_readings_in_another_processs_table(
    values: list[float], objects: list[Any] | None, with_starts: bool, data: st.DataObject
) -> None:
    n = len(values)
    here = SeriesTable()
    sids = [here.intern(f"dev-{i}", "temp", "P", ValueType.FLOAT64, "C", "all") for i in range(3)]
    sids.append(here.intern("dev-x", "label", "P", ValueType.STRING))
    series = np.asarray(data.draw(st.lists(st.sampled_from(sids), min_size=n, max_size=n)), np.int32)
    origins = np.asarray(data.draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n)), np.int64)
    obj = None
    if objects is not None:
        obj = np.empty(n, dtype=object)
        for i in range(n):
            obj[i] = objects[i]
    starts = origins - 5 if with_starts else None
    batch = ReadingBatch(here, origins, np.asarray(values, np.float64), series, obj, starts)
    interp = {sids[0]: "linear", sids[1]: "hold", 999: "linear"}  # 999: a series not in the batch

    there = SeriesTable()
    there.intern("other", "thing", "Q")  # ids differ from those of the process that staged them
    back, back_interp = unpack(pack(batch, interp), there)

    assert back.table is there and len(back) == n
    names = [
        (i.device, i.resource, i.profile, i.value_type, i.units, i.source) for i in map(here.info, series)
    ]
    assert [
        (i.device, i.resource, i.profile, i.value_type, i.units, i.source)
        for i in map(there.info, back.series)
    ] == names
    assert back.origins.tolist() == origins.tolist()
    assert back.values.tobytes() == batch.values.tobytes()  # every bit, NaN included
    assert (back.starts is None) == (starts is None)
    if starts is not None:
        assert back.starts is not None and back.starts.tolist() == starts.tolist()
    if obj is None:
        assert back.objects is None
    else:
        assert back.objects is not None and back.objects.tolist() == obj.tolist()
    present = {there.info(int(s)).device: kind for s, kind in (back_interp or {}).items()}
    want = {here.info(s).device: k for s, k in interp.items() if s in set(series.tolist())}
    assert present == want


def test_a_value_marshal_cannot_write_is_refused_not_mangled() -> None:
    t = SeriesTable()
    sid = t.intern("d", "blob", "P", ValueType.STRING)
    obj = np.empty(1, dtype=object)
    obj[0] = object()
    batch = ReadingBatch(
        t, np.asarray([1], np.int64), np.asarray([math.nan]), np.asarray([sid], np.int32), obj
    )
    with pytest.raises(UnstageableError):
        pack(batch, None)


# -- the committer ---------------------------------------------------------------------------------


async def test_a_reading_is_durable_when_send_returns_and_its_message_comes_after_a_kill(
    tmp_path: Path,
) -> None:
    """Staged with the states that made it; the copy a kill leaves holds both, and a new committer
    ships the staged readings first, in order, under the next sequence numbers."""
    log = await opened(tmp_path / "o.sqlite")
    states = {"pipeline:p": b"after-batch-1"}
    c = committer(log, max_delay=3600, states=states)
    c.start()
    t = table()
    await c.wait_committed(c.submit(Shipment(make_batch(t, 0), {0: "linear"})))
    await c.flush()  # batch 0 into the outbox: seq 0
    for i in (1, 2):
        await c.wait_committed(c.submit(Shipment(make_batch(t, i), {0: "linear"})))
    assert c.stats()["staged_readings"] == 200 and len(await log.take(10)) == 1
    crashed = crash_copy(tmp_path / "o.sqlite", tmp_path / "crashed.sqlite")
    await c.stop()
    await log.close()

    log2 = await opened(crashed)
    assert await log2.load_state("pipeline:p") == b"after-batch-1"
    again = SeriesTable()
    c2 = committer(log2, max_delay=3600)
    c2.encoder.next_seq = 1  # (the uplink resumes it from the stream state)
    assert await c2.recover(again) == 200
    c2.start()
    await c2.flush()
    records = await log2.take(10)
    assert [r.seq for r in records] == [0, 1]  # batch 0 from before, then what was staged, at once
    series = shipped(records)
    assert len(series) == 4
    want = np.concatenate([make_batch(t, i).origins[make_batch(t, i).series == 0] for i in range(3)])
    assert series[("pump-0", "pressure")].origins.tolist() == want.tolist()
    assert series[("pump-0", "pressure")].interpolation == "linear"
    assert await log2.load_staged() == []
    await c2.stop()
    await log2.close()


async def test_the_message_is_cut_at_max_delay_from_the_oldest_staged_reading(tmp_path: Path) -> None:
    log = await opened(tmp_path / "o.sqlite")
    c = committer(log, max_delay=0.3)
    c.start()
    t = table()
    await c.wait_committed(c.submit(Shipment(make_batch(t, 0))))
    assert await log.take(10) == [] and c.staged_readings == 100
    await c.wait_committed(c.submit(Shipment(make_batch(t, 1))))
    for _ in range(100):
        records = await log.take(10)
        if records:
            break
        await asyncio.sleep(0.02)
    assert [r.readings for r in records] == [200]  # one message for both
    assert c.staged_readings == 0 and await log.load_staged() == []
    await c.stop()
    await log.close()


def objects_batch(device: str, resource: str, vt: ValueType, values: list[Any]) -> ReadingBatch:
    """One series of non-numeric readings, 1 ns apart."""
    t = SeriesTable()
    sid = t.intern(device, resource, "P", vt)
    n = len(values)
    obj = np.empty(n, dtype=object)
    for i, v in enumerate(values):
        obj[i] = v
    return ReadingBatch(t, np.arange(n, dtype=np.int64), np.full(n, math.nan), np.full(n, sid, np.int32), obj)


async def test_numpy_values_are_staged_as_the_encoder_writes_them(tmp_path: Path) -> None:
    log = await opened(tmp_path / "o.sqlite")
    c = committer(log, max_delay=3600)
    c.start()
    values = [
        np.asarray([1.5, 2.5], np.float32),
        [np.int64(3), np.bool_(True), bytearray(b"x")],
        {"k": np.float64(0.25)},
    ]
    await c.wait_committed(c.submit(Shipment(objects_batch("d", "arr", ValueType.FLOAT32_ARRAY, values))))
    assert c.staged_readings == 3
    await c.flush()
    records = await log.take(10)
    objects = shipped(records)[("d", "arr")].objects
    assert objects is not None
    assert objects.tolist() == [[1.5, 2.5], [3, True, b"x"], {"k": 0.25}]
    await c.stop()
    await log.close()


async def test_a_value_no_encoding_can_write_is_counted_not_staged(tmp_path: Path) -> None:
    log = await opened(tmp_path / "o.sqlite")
    c = committer(log, max_delay=3600)
    c.start()
    batch = objects_batch("d", "blob", ValueType.STRING, [object()])
    await c.wait_committed(c.submit(Shipment(batch)))  # tried as a message at once: dropped, counted
    assert (c.staged_readings, c.stats()["encode_failed_readings"]) == (0, 1)
    assert await log.take(10) == [] and await log.load_staged() == []
    await c.stop()
    await log.close()
