"""Compact version 2: whole-message columns, the stream's series table by hash, and what a receiver does
when the message that carried the table was dropped or the edge restarted."""

from __future__ import annotations

import contextlib
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeflow.cloud.receiver import Receiver
from edgeflow.codec import MissingTable, SeriesTables, batch_table, decode, make_encoder
from edgeflow.codec._compact import decode_compact
from edgeflow.errors import CodecError
from edgeflow.model import ReadingBatch, SeriesTable


def _fleet(devices: int, resources: int = 3) -> tuple[SeriesTable, list[int]]:
    table = SeriesTable()
    tag = uuid.uuid4().hex[:8]  # a table no other test has sent to this process
    sids = [
        table.intern(f"dev-{tag}-{d:04d}", f"R{r}", "Walk", units="u")
        for d in range(devices)
        for r in range(resources)
    ]
    return table, sids


def _message(table: SeriesTable, sids: list[int], k: int, rng: np.random.Generator) -> ReadingBatch:
    s = np.asarray(sids, dtype=np.int32)
    origins = 10**18 + k * 10**9 + rng.integers(0, 10**6, len(s))
    values = np.round(rng.uniform(0, 100, len(s)), 2)
    return ReadingBatch(table, origins.astype(np.int64), values, s)


def _same(a: ReadingBatch, b: ReadingBatch) -> None:
    ka = np.lexsort((a.origins, a.series))
    kb = np.lexsort((b.origins, b.series))
    assert a.series[ka].tolist() == b.series[kb].tolist()
    assert a.origins[ka].tolist() == b.origins[kb].tolist()
    assert a.values[ka].view(np.uint64).tolist() == b.values[kb].view(np.uint64).tolist()


def test_a_fleet_message_refers_to_the_table_and_decodes_exactly() -> None:
    table, sids = _fleet(40)
    rng = np.random.default_rng(1)
    enc = make_encoder("compact", stream_id="fleet", series_table=True)
    batches = [_message(table, sids, k, rng) for k in range(3)]
    msgs = [enc.encode(b)[0] for b in batches]
    assert batch_table(msgs[0].payload) is not None  # the first message carries the table
    assert batch_table(msgs[1].payload) is None
    assert len(msgs[1].payload) < len(msgs[0].payload)
    for b, m in zip(batches, msgs, strict=True):
        _same(decode(m.payload).to_batch(table), b)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 39),
            st.integers(-(10**12), 10**12),
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True),
                st.integers(-(10**6), 10**6).map(lambda i: i / 100),
            ),
        ),
        min_size=1,
        max_size=200,
    )
)
def test_round_trip_is_exact(rows: list[tuple[int, int, float]]) -> None:
    table, sids = _fleet(40, 1)
    s = np.asarray([sids[i] for i, _, _ in rows], dtype=np.int32)
    o = np.asarray([10**18 + t for _, t, _ in rows], dtype=np.int64)
    v = np.asarray([x for _, _, x in rows], dtype=np.float64)
    batch = ReadingBatch(table, o, v, s)
    enc = make_encoder("compact", series_table=True, table_min_series=1)
    interp = {sids[0]: "linear"}
    (m,) = enc.encode(batch, interp)
    got = decode(m.payload)
    back = got.to_batch(table)
    # per series, the points keep their order (time may go backwards)
    for sid in np.unique(s).tolist():
        assert back.origins[back.series == sid].tolist() == o[s == sid].tolist()
        assert (
            back.values[back.series == sid].view(np.uint64).tolist() == v[s == sid].view(np.uint64).tolist()
        )
    modes = {x.key: x.interpolation for x in got.series}
    for sid in np.unique(s).tolist():
        i = table.info(sid)
        assert modes[(i.device, i.resource)] == ("linear" if sid == sids[0] else "hold")


def test_a_message_whose_table_was_dropped_waits_for_the_table() -> None:
    table, sids = _fleet(40)
    rng = np.random.default_rng(2)
    enc = make_encoder("compact", stream_id="fleet", series_table=True)
    first = enc.encode(_message(table, sids, 0, rng))[0]  # carries the table: the outbox drops it
    later = [enc.encode(_message(table, sids, k, rng))[0] for k in (1, 2)]
    with pytest.raises(MissingTable):
        decode_compact(later[0].payload, SeriesTables())
    rx = Receiver("mqtt://127.0.0.1:1", ["x"], keep=True)
    assert rx.handle("x", later[0].payload) is None
    assert rx.handle("x", later[1].payload) is None
    assert rx.counts["awaiting_table"] == 2 and rx.counts["batches"] == 0
    enc.resend_table()  # what table_interval does: the table comes round again
    again = enc.encode(_message(table, sids, 3, rng))[0]
    assert batch_table(again.payload) == batch_table(first.payload)
    assert rx.handle("x", again.payload) is not None
    assert rx.counts["batches"] == 3  # the two held messages decoded too
    assert sorted(b.seq for b in rx._kept.values()) == [1, 2, 3]


def test_a_restarted_edge_sends_the_same_table() -> None:
    table, sids = _fleet(40)
    rng = np.random.default_rng(3)
    before = make_encoder("compact", series_table=True)
    before.encode(_message(table, sids, 0, rng))  # its table message is lost with the old process
    queued = before.encode(_message(table, sids, 1, rng))[0]
    # a new process: a new table of the same series, interned in another order
    table2 = SeriesTable()
    for sid in reversed(sids):
        i = table.info(sid)
        table2.intern(i.device, i.resource, i.profile, i.value_type, i.units, i.source)
    after = make_encoder("compact", series_table=True)
    fresh = after.encode(_message(table2, list(range(len(sids))), 2, rng))[0]
    tables = SeriesTables()
    with pytest.raises(MissingTable):
        decode_compact(queued.payload, tables)
    decode_compact(fresh.payload, tables)
    old = decode_compact(queued.payload, tables)
    assert {s.key for s in old.series} == {(table.info(s).device, table.info(s).resource) for s in sids}


def test_a_table_that_does_not_match_its_hash_is_refused() -> None:
    table, sids = _fleet(40)
    m = make_encoder("compact", level=1, series_table=True).encode(
        _message(table, sids, 0, np.random.default_rng(4))
    )[0]
    data = bytearray(m.payload)
    h = batch_table(bytes(data))
    assert h is not None
    i = bytes(data).index(h)
    data[i] ^= 0xFF
    with pytest.raises(CodecError, match=r"hash|table"):
        decode_compact(bytes(data), SeriesTables())


def test_truncated_and_corrupted_fleet_messages_raise_codec_errors() -> None:
    table, sids = _fleet(40)
    rng = np.random.default_rng(5)
    enc = make_encoder("compact", level=1, series_table=True)
    msgs = [enc.encode(_message(table, sids, k, rng))[0].payload for k in range(2)]
    decode(msgs[0])
    for payload in msgs:
        for cut in range(5, len(payload), max(1, len(payload) // 50)):
            with pytest.raises(CodecError):
                decode(payload[:cut])
        for _ in range(200):
            data = bytearray(payload)
            data[int(rng.integers(5, len(data)))] ^= int(rng.integers(1, 256))
            with contextlib.suppress(CodecError):
                decode(bytes(data))


def test_a_table_shared_as_bytes_is_learnt_back_by_another_decoder() -> None:
    """What a receiver puts into its sink (``SeriesTables.data``) is what another receiver learns the table
    from (``SeriesTables.add``): same hash, and the messages referring to it decode there."""
    table, sids = _fleet(200)
    rng = np.random.default_rng(5)
    enc = make_encoder("compact", stream_id="shared", series_table=True)
    first, second = (enc.encode(_message(table, sids, k, rng))[0].payload for k in range(2))
    mine = SeriesTables()
    decode_compact(first, mine)
    h = batch_table(first)
    assert h is not None
    shared = mine.data(h)
    assert shared is not None and shared[0] == 2  # the column-by-column layout
    theirs = SeriesTables()
    with pytest.raises(MissingTable):
        decode_compact(second, theirs)
    assert theirs.add(shared) == h
    assert decode_compact(second, theirs).readings == len(sids)
    for bad in (b"", b"\x07" + shared[1:], shared[:-3], shared + b"\x00"):
        with pytest.raises(CodecError):
            SeriesTables().add(bad)


def test_table_positions_ascending_or_not_both_decode() -> None:
    """Series interned in name order (a fleet polled by name) have ascending table positions, written as
    unsigned gaps (flag bit 6); interned in another order, as signed deltas."""
    tag = uuid.uuid4().hex[:8]
    for names in (["a", "b", "c", "d"], ["d", "c", "b", "a"]):
        table = SeriesTable()
        sids = [table.intern(f"dev-{tag}-{n}", "R", "Walk") for n in names]
        batch = ReadingBatch(
            table,
            np.arange(4, dtype=np.int64) + 10**18,
            np.array([1.5, 2.25, 3.0, 4.125]),
            np.asarray(sids, dtype=np.int32),
        )
        (m,) = make_encoder("compact", series_table=True, table_min_series=1).encode(batch)
        assert bool(m.payload[4] & 0x40) == (names == sorted(names))
        _same(decode(m.payload).to_batch(table), batch)


def test_a_batch_cut_in_several_messages_grows_the_table_once_and_sends_it_once() -> None:
    # A fleet's first tick: every series new, more readings than a message takes. The table grows once
    # for the whole batch, the first message carries it and the others refer to it.
    from edgeflow.uplink.encoding import UplinkEncoder

    table, sids = _fleet(100, 10)
    enc = UplinkEncoder(
        make_encoder("compact", stream_id="fleet", series_table=True),
        stream_key="k",
        service="s",
        topic="edgeflow/s/batches",
        max_readings=150,
    )
    batch = _message(table, sids, 0, np.random.default_rng(2))
    items = enc.encode(batch, None, alarm=False)
    assert len(items) == 7
    tables = [batch_table(i.payload) for i in items]
    assert tables[0] is not None and all(t is None for t in tables[1:])
    # the later messages decode with the table of the first: it holds every series of the batch
    parts = [decode(i.payload).to_batch(table) for i in items]
    _same(ReadingBatch.concat(table, parts), batch)
