"""Rule state kept as rows (per rule, chunks of STATE_ROW_SERIES series: their keys, and their states):
only the rows of chunks whose series changed are written again, keys only when a chunk gains a series,
the rows add up to the rule's whole state, they come back after a restart (rows of one device each, as
an earlier release wrote them, too), a changed pipeline of the same name leaves no stale row, and they
move with their state when it is set aside. (The kill -9 guarantee over them is in
``test_crash_consistency.py``.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeflow.commitlog import ROW_SEP, CommitLog, row_key
from edgeflow.config import parse_config
from edgeflow.errors import RuleError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
from edgeflow.rules.base import STATE_ROW_SERIES, series_from_rows
from edgeflow.runtime import Runtime
from tests._rulecases import pipeline, sorted_state

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000
SWING = {"name": "p", "rules": [{"type": "swing", "max_error": 0.1}]}


def _config(tmp_path: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "service": "edge-test",
        "devices": [],
        "uplink": {"type": "file", "path": str(tmp_path / "out.jsonl")},
        "pipelines": [SWING],
        "state": {"on_stop": "keep"},
    }
    cfg.update(over)
    return cfg


def _rows(out: dict[str, bytes | None], key: str) -> dict[str, Any]:
    """Rows of rule 0 written, by name (``k<n>``, ``s<n>``), decoded."""
    found: dict[str, Any] = {}
    for k, v in out.items():
        if k.startswith(key + ROW_SEP) and v is not None:
            index, _, name = k[len(key) + 1 :].partition(ROW_SEP)
            assert index == "0"  # rule 0 of the pipeline
            found[name] = orjson.loads(v)
    return found


async def test_only_the_rows_of_chunks_that_changed_are_written_again(tmp_path: Path) -> None:
    rt = Runtime(parse_config(_config(tmp_path), environ={}))
    await rt.uplink.start()
    try:
        n = STATE_ROW_SERIES + 10  # two chunks
        sids = [rt.table.intern(f"d{i // 10}", f"R{i % 10}", "P", ValueType.FLOAT64) for i in range(n)]
        key = "pipeline:p"
        fresh = dict(rt._snapshots())  # a pipeline that has seen nothing: clears what a former one left
        assert fresh[row_key(key, "")] is None
        rt._step(ReadingBatch.from_columns(rt.table, [T0] * n, [float(i) for i in range(n)], sids))
        first = dict(rt._snapshots())
        assert orjson.loads(first[key] or b"")["rules"] == [{"type": "swing", "state": {}, "rows": True}]
        rows = _rows(first, key)
        assert sorted(rows) == ["k0", "k1", "s0", "s1"]
        assert [k[:2] for k in rows["k0"] + rows["k1"]] == [[f"d{i // 10}", f"R{i % 10}"] for i in range(n)]
        assert [len(part) for part in rows["s1"]] == [10, 10]  # 10 last_t, 10 states
        assert rows["s1"][0] == [T0] * 10
        assert row_key(key, "") not in first
        rt._step(ReadingBatch.from_columns(rt.table, [T0 + S], [1.5], [sids[-1]]))
        second = _rows(dict(rt._snapshots()), key)
        assert sorted(second) == ["s1"]  # the chunk of the series read, whole; not chunk 0, no keys
        assert second["s1"][0] == [T0] * 9 + [T0 + S]
        new = rt.table.intern("z", "new", "P", ValueType.FLOAT64)
        rt._step(ReadingBatch.from_columns(rt.table, [T0], [7.0], [new]))
        third = _rows(dict(rt._snapshots()), key)
        assert sorted(third) == ["k1", "s1"]  # chunk 1 gained a series: its keys again
        assert third["k1"][-1][:2] == ["z", "new"] and len(third["s1"][1]) == 11
        assert dict(rt._snapshots()) == {}  # nothing ran: nothing to write
    finally:
        await rt.uplink.stop()


def test_rows_read_back_name_their_chunks_and_say_whether_they_are_laid_out_as_written() -> None:
    keys = [["d", "A", "P", "Float64", "", ""]]
    state = [[T0], [[T0, 1.0, 0.1, -0.1, 1, T0]]]
    entries, exact = series_from_rows([("k0", orjson.dumps(keys)), ("s0", orjson.dumps(state))], "swing")
    assert entries == [[keys[0], [T0, state[1][0]]]] and exact
    _, exact = series_from_rows([("k1", orjson.dumps(keys)), ("s1", orjson.dumps(state))], "swing")
    assert not exact  # chunk 1 alone: numbered afresh, its series would be in chunk 0
    with pytest.raises(RuleError, match="keys without states"):
        series_from_rows([("k0", orjson.dumps(keys))], "swing")
    with pytest.raises(RuleError, match="not k<chunk> or s<chunk>"):
        series_from_rows([("x0", b"[]")], "swing")
    with pytest.raises(RuleError, match="chunk 0"):
        series_from_rows([("k0", orjson.dumps(keys)), ("s0", b"[[], []]")], "swing")


async def test_rows_come_back_after_a_restart_and_are_not_written_again(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    rt = Runtime(parse_config(cfg, environ={}))
    rt.uplink.set_state_source(rt._snapshots)  # as Runtime.start does
    await rt.uplink.start()
    sids = [rt.table.intern("d", f"R{i}", "P", ValueType.FLOAT64) for i in range(50)]
    for k in range(5):  # the segments grow: only committed rows can give the state back
        values = [float((i * 7 + k * 3) % 11) for i in range(50)]
        rt._step(ReadingBatch.from_columns(rt.table, [T0 + k * S] * 50, values, sids))
        await rt.uplink.flush()
    await rt.uplink.stop()  # the committer commits the states that changed last
    saved = sorted_state(rt.routes[0].pipeline.snapshot())
    assert len(saved["rules"][0]["state"]["series"]) == 50

    rt2 = Runtime(parse_config(cfg, environ={}))
    await rt2.uplink.start()
    try:
        await rt2._restore_state()
        assert rt2._counters.state_restored == 1
        assert sorted_state(rt2.routes[0].pipeline.snapshot()) == saved
        assert dict(rt2._snapshots()) == {}  # what was read back is what is stored
        one = rt2.table.lookup("d", "R7")
        assert one is not None
        rt2._step(ReadingBatch.from_columns(rt2.table, [T0 + 9 * S], [4.0], [one]))
        out = _rows(dict(rt2._snapshots()), "pipeline:p")
        assert sorted(out) == ["s0"]  # R7's chunk again, with the 49 others as read back
        assert len(out["s0"][1]) == 50
    finally:
        await rt2.uplink.stop()


async def test_a_whole_state_from_before_rows_is_restored_then_written_as_rows(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    table = SeriesTable()
    old = pipeline(table, *SWING["rules"])
    sids = [table.intern("d", f"R{i}", "P", ValueType.FLOAT64) for i in range(3)]
    old.process(ReadingBatch.from_columns(table, [T0] * 3 + [T0 + S] * 3, [1.0, 2.0, 3.0] * 2, sids * 2))
    log = CommitLog(tmp_path / "out.jsonl.outbox.sqlite", max_bytes=1 << 24)
    await log.open()
    await log.commit([], [], {"pipeline:p": orjson.dumps(old.snapshot())})
    await log.close()

    rt = Runtime(parse_config(cfg, environ={}))
    await rt.uplink.start()
    try:
        await rt._restore_state()
        assert rt._counters.state_restored == 1
        assert sorted_state(rt.routes[0].pipeline.snapshot()) == sorted_state(old.snapshot())
        out = dict(rt._snapshots())
        assert [k[1] for k in _rows(out, "pipeline:p")["k0"]] == ["R0", "R1", "R2"]
        assert orjson.loads(out["pipeline:p"] or b"")["rules"][0]["rows"] is True
    finally:
        await rt.uplink.stop()


async def test_rows_of_one_device_each_are_restored_then_written_as_chunks(tmp_path: Path) -> None:
    """Rows as an earlier release wrote them (``0<SEP>"<device>"``: ``[[series, [last_t, state]], ...]``)
    come back, and the next commit clears them and writes the state as chunks."""
    cfg = _config(tmp_path)
    table = SeriesTable()
    old = pipeline(table, *SWING["rules"])
    sids = [table.intern(d, f"R{i}", "P", ValueType.FLOAT64) for d in ("d", "e") for i in range(2)]
    old.process(ReadingBatch.from_columns(table, [T0] * 4 + [T0 + S] * 4, [1.0, 2.0, 3.0, 4.0] * 2, sids * 2))
    whole = old.snapshot()
    head = {"version": whole["version"], "rules": [{"type": "swing", "state": {}, "rows": True}]}
    by_device: dict[str, list[Any]] = {}
    for series, entry in whole["rules"][0]["state"]["series"]:
        by_device.setdefault(series[0], []).append([series, [entry["last_t"], list(entry["algo"].values())]])
    log = CommitLog(tmp_path / "out.jsonl.outbox.sqlite", max_bytes=1 << 24)
    await log.open()
    rows = {
        row_key("pipeline:p", f"0{ROW_SEP}{orjson.dumps(d).decode()}"): orjson.dumps(e)
        for d, e in by_device.items()
    }
    await log.commit([], [], {"pipeline:p": orjson.dumps(head), **rows})
    await log.close()

    rt = Runtime(parse_config(cfg, environ={}))
    rt.uplink.set_state_source(rt._snapshots)
    await rt.uplink.start()
    try:
        await rt._restore_state()
        assert rt._counters.state_restored == 1
        assert sorted_state(rt.routes[0].pipeline.snapshot()) == sorted_state(whole)
    finally:
        await rt.uplink.stop()  # the committer writes the state: as chunks, the device rows gone
    log = CommitLog(tmp_path / "out.jsonl.outbox.sqlite", max_bytes=1 << 24)
    await log.open()
    try:
        assert [name for name, _ in await log.load_state_rows("pipeline:p")] == [
            f"0{ROW_SEP}k0",
            f"0{ROW_SEP}s0",
        ]
    finally:
        await log.close()

    rt2 = Runtime(parse_config(cfg, environ={}))
    await rt2.uplink.start()
    try:
        await rt2._restore_state()
        assert sorted_state(rt2.routes[0].pipeline.snapshot()) == sorted_state(whole)
        assert dict(rt2._snapshots()) == {}  # the chunks read back are what is stored
    finally:
        await rt2.uplink.stop()


async def test_rows_are_set_aside_with_their_state(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    rt = Runtime(parse_config(cfg, environ={}))
    rt.uplink.set_state_source(rt._snapshots)
    await rt.uplink.start()
    a = rt.table.intern("d", "A", "P", ValueType.FLOAT64)
    rt._step(ReadingBatch.from_columns(rt.table, [T0, T0 + S], [1.0, 2.0], [a, a]))
    await rt.uplink.stop()
    path = tmp_path / "out.jsonl.outbox.sqlite"
    db = sqlite3.connect(path)
    db.execute("UPDATE state SET value = ? WHERE key = ?", (b'{"rules": 3}', "pipeline:p"))
    db.commit()
    db.close()

    rt2 = Runtime(parse_config(cfg, environ={}))
    await rt2.uplink.start()
    try:
        await rt2._restore_state()
        assert rt2._counters.state_discarded == 1
        assert rt2.routes[0].pipeline.snapshot()["rules"][0]["state"] == {"series": []}
    finally:
        await rt2.uplink.stop()
    db = sqlite3.connect(path)
    keys = {k: v for k, v in db.execute("SELECT key, value FROM state")}
    db.close()
    aside = [k for k in keys if k.startswith("pipeline:p.unreadable" + ROW_SEP)]
    assert sorted(aside) == [f"pipeline:p.unreadable{ROW_SEP}0{ROW_SEP}{n}" for n in ("k0", "s0")]
    assert keys["pipeline:p.unreadable"] == b'{"rules": 3}'
    assert not [k for k in keys if k.startswith("pipeline:p" + ROW_SEP)]


async def test_a_state_of_none_deletes_it_and_an_empty_row_name_clears_the_rows(tmp_path: Path) -> None:
    log = CommitLog(tmp_path / "o.sqlite", max_bytes=1 << 20)
    await log.open()
    try:
        await log.commit([], [], {"k": b"head", row_key("k", "a"): b"1", row_key("k", "b"): b"2"})
        await log.commit([], [], {row_key("k", "a"): None, row_key("k", "c"): b"3"})
        assert await log.load_state_rows("k") == [("b", b"2"), ("c", b"3")]
        await log.commit([], [], {row_key("k", "d"): b"4", row_key("k", ""): None})  # clear, then write
        assert await log.load_state_rows("k") == [("d", b"4")]
        assert await log.load_state("k") == b"head"
        await log.commit([], [], {row_key("k", "d"): None, row_key("k", "b"): b"2", row_key("k", "c"): b"3"})
        assert await log.load_state_rows("k.unreadable") == []
        await log.set_state_aside("k")
        assert await log.load_state("k") is None and await log.load_state_rows("k") == []
        assert await log.load_state_rows("k.unreadable") == [("b", b"2"), ("c", b"3")]
    finally:
        await log.close()


@st.composite
def _steps(draw: st.DrawFn) -> list[list[tuple[int, int, float]]]:
    """Batches of (series, origin step, value) over 4 series, with time going backwards and NaN."""
    steps = []
    for _ in range(draw(st.integers(1, 8))):
        n = draw(st.integers(0, 6))
        steps.append(
            [
                (
                    draw(st.integers(0, 3)),
                    draw(st.integers(0, 20)),
                    draw(st.one_of(st.floats(-5, 5), st.just(float("nan")))),
                )
                for _ in range(n)
            ]
        )
    return steps


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _steps(),
    st.sampled_from(["swing", "pmc_mr", "sdt"]),
    st.sampled_from(["late", "reset", "drop"]),
    st.integers(0, 8),
)
def test_changes_add_up_to_the_whole_state(
    steps: list[list[tuple[int, int, float]]], kind: str, backwards: str, restart_at: int
) -> None:
    bound = {"comp_dev": 0.5} if kind == "sdt" else {"max_error": 0.5}
    rule = {"type": kind, **bound, "backwards": backwards}
    table = SeriesTable()
    sids = [table.intern("d", f"R{i}", "P", ValueType.FLOAT64) for i in range(4)]
    p = pipeline(table, rule)
    store: dict[tuple[int, str], bytes] = {}  # what the commit log would hold
    head: dict[str, Any] = {}

    def commit() -> None:
        nonlocal head
        changes = p.snapshot_changes()
        head = orjson.loads(orjson.dumps(changes.head))
        for i, named in changes.rows.items():
            for name, blob in named.items():
                store[(i, name)] = blob

    for k, batch in enumerate(steps):
        if batch:
            p.process(
                ReadingBatch.from_columns(
                    table,
                    [T0 + t * S for _, t, _ in batch],
                    [v for *_, v in batch],
                    [sids[s] for s, *_ in batch],
                )
            )
        if k % 3 == 2:
            p.flush()
        commit()
        whole = sorted_state(orjson.loads(orjson.dumps(p.snapshot())))
        entries, exact = series_from_rows([(n, b) for (_, n), b in store.items()], kind)
        assert exact
        rows = [(0, key, state) for key, state in entries]
        assert sorted(r[1] for r in rows) == sorted(key for key, _ in whole["rules"][0]["state"]["series"])
        # what the head and rows hold is the whole state: a new process restores exactly it
        table2 = SeriesTable()
        table2.intern("other", "series")  # its series numbered differently
        p2 = pipeline(table2, rule)
        p2.restore_changes(head, rows)
        assert sorted_state(orjson.loads(orjson.dumps(p2.snapshot()))) == whole
        if k == restart_at:  # a restart: the new process goes on from there
            table, p = table2, p2
            sids = [table.intern("d", f"R{i}", "P", ValueType.FLOAT64) for i in range(4)]
            p.snapshot_changes()  # the rows read back are what is stored
