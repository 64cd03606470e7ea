"""Rule state kept as rows (one per rule and device): only the rows of devices whose series changed are
written again, the rows add up to the rule's whole state, they come back after a restart, a changed
pipeline of the same name leaves no stale row, and they move with their state when it is set aside.
(The kill -9 guarantee over them is in ``test_crash_consistency.py``.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeflow.commitlog import ROW_SEP, CommitLog, row_key
from edgeflow.config import parse_config
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
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


def _devices(out: dict[str, bytes | None], key: str) -> dict[str, list[str]]:
    """Rows written, by device: the resources of the series each holds."""
    rows = {k[len(key) + 1 :]: v for k, v in out.items() if k.startswith(key + ROW_SEP) and v is not None}
    found: dict[str, list[str]] = {}
    for name, blob in rows.items():
        index, _, device = name.partition(ROW_SEP)
        assert index == "0"  # rule 0 of the pipeline
        found[orjson.loads(device)] = sorted(entry[0][1] for entry in orjson.loads(blob or b""))
    return found


async def test_only_the_rows_of_devices_that_changed_are_written_again(tmp_path: Path) -> None:
    rt = Runtime(parse_config(_config(tmp_path), environ={}))
    await rt.uplink.start()
    try:
        a = rt.table.intern("d", "A", "P", ValueType.FLOAT64)
        b = rt.table.intern("d", "B", "P", ValueType.FLOAT64)
        c = rt.table.intern("e", "C", "P", ValueType.FLOAT64)
        key = "pipeline:p"
        fresh = dict(rt._snapshots())  # a pipeline that has seen nothing: clears what a former one left
        assert fresh[row_key(key, "")] is None
        rt._step(ReadingBatch.from_columns(rt.table, [T0, T0, T0], [1.0, 2.0, 3.0], [a, b, c]))
        first = dict(rt._snapshots())
        assert orjson.loads(first[key] or b"")["rules"] == [{"type": "swing", "state": {}, "rows": True}]
        assert _devices(first, key) == {"d": ["A", "B"], "e": ["C"]}
        assert row_key(key, "") not in first
        rt._step(ReadingBatch.from_columns(rt.table, [T0 + S], [1.5], [a]))
        second = dict(rt._snapshots())
        assert _devices(second, key) == {"d": ["A", "B"]}  # d's row again, with B as it was; not e's
        assert dict(rt._snapshots()) == {}  # nothing ran: nothing to write
    finally:
        await rt.uplink.stop()


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
        out = dict(rt2._snapshots())
        assert (
            len(_devices(out, "pipeline:p")["d"]) == 50
        )  # d's row again: R7 new, the 49 others as read back
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
        assert _devices(out, "pipeline:p") == {"d": ["R0", "R1", "R2"]}
        assert orjson.loads(out["pipeline:p"] or b"")["rules"][0]["rows"] is True
    finally:
        await rt.uplink.stop()


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
    assert len(aside) == 1 and keys["pipeline:p.unreadable"] == b'{"rules": 3}'
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
    store: dict[tuple[int, str], Any] = {}  # what the commit log would hold
    head: dict[str, Any] = {}

    def commit() -> None:
        nonlocal head
        changes = p.snapshot_changes()
        head = orjson.loads(orjson.dumps(changes.head))
        for i, series in changes.rows.items():
            for key, state in series:
                if state is None:
                    store.pop((i, key), None)
                else:
                    store[(i, key)] = orjson.loads(orjson.dumps(state))

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
        rows = [(i, orjson.loads(n), v) for (i, n), v in store.items()]
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
