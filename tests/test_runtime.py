"""The runtime end to end: virtual devices → service → bus → pipelines → file uplink, on real sockets
for the metrics endpoint. AutoEvents run on a manual clock, so the counts are exact."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import orjson
import pytest
from runtime_support import sensors

from edgeflow import runtime
from edgeflow.config import parse_config
from edgeflow.errors import ConfigError
from edgeflow.model import decode_event
from edgeflow.rules.base import series_from_rows
from edgeflow.runtime import Runtime
from edgeflow.testing import MS, ManualClock
from tests._rulecases import sorted_state


def config(tmp_path: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "service": "edge-test",
        "devices": sensors(["Device1", "Device10"], "10ms", "50ms"),
        "uplink": {"type": "file", "path": str(tmp_path / "out.jsonl")},
    }
    cfg.update(over)
    return cfg


async def run_for(rt: Runtime, clock: ManualClock, ns: int) -> None:
    """Start ``rt``, let ``ns`` of clock time go by (every AutoEvent poll due in it happens), stop."""
    await rt.start()
    try:
        await clock.run_for(ns)
    finally:
        await rt.stop()


def shipped(tmp_path: Path) -> list[Any]:
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines()
    return [decode_event(line) for line in lines]


async def test_every_reading_read_is_shipped_once_in_order(tmp_path: Path) -> None:
    clock = ManualClock(1_700_000_000 * 10**9)
    rt = Runtime(parse_config(config(tmp_path), environ={}), clock=clock)
    await run_for(rt, clock, 400 * MS)
    events = shipped(tmp_path)
    stats = rt.stats()
    published = stats["bus"]["published_readings"]
    assert published == 2 * (41 + 9)  # two devices: Temp every 10 ms, Label every 50 ms, 0..400 ms
    assert sum(len(e.readings) for e in events) == published
    # No pipelines: every reading is unrouted, and `unrouted: ship` (the default) ships it as read.
    assert stats["ledger"]["router"]["unrouted_shipped"] == published
    assert stats["ledger_problems"] == []
    for dev in ("Device1", "Device10"):
        origins = [e.origin for e in events if e.device_name == dev and e.source_name == "Temp"]
        assert origins == [1_700_000_000 * 10**9 + i * 10 * MS for i in range(41)]
    labels = [r.value for e in events for r in e.readings if r.resource_name == "Label"]
    assert labels and set(labels) == {"ok"}
    temp = next(r for e in events for r in e.readings if r.resource_name == "Temp")
    assert temp.units == "degC" and temp.profile_name == "Sensor"


async def test_match_globs_are_anchored(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        pipelines=[{"name": "one", "match": {"device": "Device1", "resource": "Temp"}}],
        unrouted="drop",
    )
    clock = ManualClock()
    rt = Runtime(parse_config(cfg, environ={}), clock=clock)
    await run_for(rt, clock, 200 * MS)
    events = shipped(tmp_path)
    assert len(events) == 21
    assert {e.device_name for e in events} == {"Device1"}  # not Device10
    assert {r.resource_name for e in events for r in e.readings} == {"Temp"}
    led = rt.ledger()
    assert led["router"]["unrouted_dropped"] > 0  # Device10 and the labels: counted, not silently gone
    assert led["router"]["routed"] == led["pipelines"]["one"]["in"] == led["pipelines"]["one"]["out"]
    assert rt.ledger_problems() == []


async def test_unrouted_readings_ship_by_default_and_are_counted(tmp_path: Path) -> None:
    cfg = config(tmp_path, pipelines=[{"name": "one", "match": {"device": "Device1", "resource": "Temp"}}])
    rt = Runtime(parse_config(cfg, environ={}))
    await rt.run(duration=0.2)
    events = shipped(tmp_path)
    led = rt.ledger()
    assert {e.device_name for e in events} == {"Device1", "Device10"}
    assert led["router"]["unrouted_shipped"] == sum(
        len(e.readings) for e in events if e.device_name == "Device10" or e.source_name == "Label"
    )
    assert rt.ledger_problems() == []


async def test_two_pipelines_may_take_the_same_reading_when_they_write_different_series(
    tmp_path: Path,
) -> None:
    cfg = config(
        tmp_path,
        pipelines=[
            {"name": "a", "match": {"device": "Device1"}},
            {
                "name": "b",
                "match": {"device": "Device*", "resource": ["Temp"]},
                "rules": [{"type": "window", "kind": "tumbling", "size": "50ms", "aggregates": ["mean"]}],
            },
        ],
    )
    clock = ManualClock()
    rt = Runtime(parse_config(cfg, environ={}), clock=clock)
    await run_for(rt, clock, 200 * MS)
    stats = rt.stats()["pipelines"]
    # 0..200 ms: Temp read 21 times and Label 5 times per device
    assert (stats["a"]["readings_in"], stats["b"]["readings_in"]) == (21 + 5, 2 * 21)
    names = {r.resource_name for e in shipped(tmp_path) for r in e.readings}
    assert "Temp.b.0.mean" in names  # a derived series names its pipeline and rule


def _refused(tmp_path: Path, pipelines: list[dict[str, Any]]) -> str:
    with pytest.raises(ConfigError, match="two pipelines would write the same series") as info:
        Runtime(parse_config(config(tmp_path, pipelines=pipelines), environ={}))
    return str(info.value)


def test_two_pipelines_that_would_write_one_series_are_a_config_error(tmp_path: Path) -> None:
    text = _refused(
        tmp_path,
        [
            {"name": "raw", "match": {"device": "Device1"}},
            {
                "name": "reduced",
                "match": {"resource": "Temp"},
                "rules": [{"type": "deadband", "absolute": 1}],
            },
        ],
    )
    assert "pipelines[1]: pipeline 'raw' (input) and pipeline 'reduced' (input)" in text
    assert "Device1/Temp" in text
    # two windows given the same name write the same derived series
    window = {"type": "window", "kind": "tumbling", "size": "1s", "aggregates": ["mean"], "name": "1s"}
    text = _refused(
        tmp_path,
        [
            {"name": "p", "match": {"device": "Device1", "resource": "Temp"}, "rules": [window]},
            {"name": "q", "match": {"device": "Device1", "resource": "Temp"}, "rules": [window]},
        ],
    )
    assert "pipelines[1].rules" in text and "Device1/Temp.1s.mean" in text and "rule 0 (window)" in text
    # alarms named alike in two pipelines, on one resource
    alarm = {"type": "alarm", "name": "hot", "above": 90, "pass_through": False}
    text = _refused(
        tmp_path,
        [
            {"name": "p", "match": {"resource": "Temp"}, "rules": [alarm]},
            {"name": "q", "match": {"device": "Device10"}, "rules": [alarm]},
        ],
    )
    assert "Device10/Temp.hot" in text


def test_derived_series_without_a_name_never_collide(tmp_path: Path) -> None:
    window = {"type": "window", "kind": "tumbling", "size": "1s", "aggregates": ["mean"]}
    alarm = {"type": "alarm", "above": 90, "pass_through": False}
    cfg = config(
        tmp_path,
        pipelines=[
            {"name": "fast", "match": {"resource": "Temp"}, "rules": [alarm, window]},
            {"name": "slow", "match": {"device": "Device1", "resource": "Label"}},
        ],
    )
    rt = Runtime(parse_config(cfg, environ={}))
    assert [r.label for r in rt.routes[0].pipeline.rules] == ["fast.0", "fast.1"]  # type: ignore[attr-defined]


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_metrics_and_health_endpoints(tmp_path: Path) -> None:
    cfg = config(tmp_path, metrics={"listen": "127.0.0.1:0"})
    clock = ManualClock()
    rt = Runtime(parse_config(cfg, environ={}), clock=clock)
    await rt.start()
    try:
        await clock.run_for(0)  # the first reads happen at start
        assert rt.metrics_server is not None
        port = rt.metrics_server.port
        status, body = await http_get(port, "/metrics")
        assert status == 200
        text = body.decode()
        assert 'edgeflow_device_up{device="Device1"} 1.0' in text
        assert "edgeflow_bus_published_readings_total" in text
        status, body = await http_get(port, "/readyz")
        assert status == 200 and orjson.loads(body)["devices"]["Device1"]["health"] == "UP"
        status, _ = await http_get(port, "/healthz")
        assert status == 200
        status, _ = await http_get(port, "/nothing")
        assert status == 404
    finally:
        await rt.stop()


def _outbox_state(tmp_path: Path, key: str) -> Any:
    """The rule state committed under ``key`` in the file uplink's commit log, read as another process
    would: the head, with each rule kept as rows given its series back (sorted by series key)."""
    import sqlite3

    db = sqlite3.connect(tmp_path / "out.jsonl.outbox.sqlite")
    try:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        rows = db.execute(
            "SELECT key, value FROM state WHERE key > ? AND key < ?", (key + "\x1f", key + "\x20")
        ).fetchall()
    finally:
        db.close()
    if row is None:
        return None
    head = orjson.loads(row[0])
    named: dict[int, list[tuple[str, bytes]]] = {}
    for k, v in rows:
        index, _, name = k[len(key) + 1 :].partition("\x1f")  # rows of the rule: k<n>, s<n>
        named.setdefault(int(index), []).append((name, v))
    series = {i: series_from_rows(rs, f"rule {i}")[0] for i, rs in named.items()}
    for i, rule in enumerate(head["rules"]):
        if rule.pop("rows", False):
            rule["state"]["series"] = sorted(series.pop(i, []))
    assert series == {}, "rows of a rule that keeps none"
    return head


async def test_rule_state_is_committed_with_the_batches_and_survives_a_restart(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        pipelines=[
            {"name": "temps", "match": {"resource": "Temp"}, "rules": [{"type": "swing", "max_error": 0.5}]}
        ],
        state={"on_stop": "keep"},
        unrouted="drop",
    )
    rt = Runtime(parse_config(cfg, environ={}))
    await rt.start()
    await asyncio.sleep(0.3)
    # committed while running, in the same database as the batches
    assert _outbox_state(tmp_path, "pipeline:temps")["rules"][0]["type"] == "swing"
    await rt.stop()
    saved = _outbox_state(tmp_path, "pipeline:temps")
    state = sorted_state(rt.routes[0].pipeline.snapshot())
    series = saved["rules"][0]["state"]["series"]  # the swing rule's series, as rows hold them
    assert series and [k for k, _ in series] == [k for k, _ in state["rules"][0]["state"]["series"]]
    # with on_stop: keep, a stop does not flush the open segments: the next run continues them
    rt2 = Runtime(parse_config(cfg, environ={}))
    await rt2.uplink.start()
    await rt2._restore_state()
    assert sorted_state(rt2.routes[0].pipeline.snapshot()) == state
    await rt2.uplink.stop()


async def test_a_node_of_its_own_freezes_what_start_and_the_first_reads_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run(freeze_gc=True)`` (``edgeflow run``): frozen at start, off while the first reads build the
    rule state, then one collection and frozen again, young collections rarer; the collector as it was
    after the run."""
    monkeypatch.setattr(runtime, "GC_SETTLE", 0.3)
    rt = Runtime(parse_config(config(tmp_path), environ={}))
    before = gc.get_threshold()
    run = asyncio.create_task(rt.run(duration=1.0, freeze_gc=True))
    for _ in range(500):
        if rt._started:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    at_start = gc.get_freeze_count()
    assert at_start > 0 and gc.get_threshold()[0] == runtime.GC_YOUNG
    assert not gc.isenabled()  # while the node settles: no collection scans what the first reads build
    built = [[i] for i in range(1000)]  # built after start (as rule states are): frozen at the settle
    await asyncio.sleep(0.4)
    assert gc.get_freeze_count() >= at_start + len(built)
    assert gc.isenabled()
    await run
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0 and gc.isenabled()


async def test_unreadable_state_is_set_aside_and_the_rules_start_afresh(tmp_path: Path) -> None:
    import sqlite3

    cfg = config(
        tmp_path,
        pipelines=[
            {"name": "temps", "match": {"resource": "Temp"}, "rules": [{"type": "swing", "max_error": 0.5}]}
        ],
    )
    rt = Runtime(parse_config(cfg, environ={}))
    await rt.run(duration=0.1)
    db = sqlite3.connect(tmp_path / "out.jsonl.outbox.sqlite")
    db.execute("UPDATE state SET value = ? WHERE key = 'pipeline:temps'", (b"{not json",))
    db.commit()
    db.close()
    rt = Runtime(parse_config(cfg, environ={}))
    await rt.run(duration=0.1)
    assert _outbox_state(tmp_path, "pipeline:temps")["rules"][0]["type"] == "swing"
    db = sqlite3.connect(tmp_path / "out.jsonl.outbox.sqlite")
    aside = db.execute("SELECT value FROM state WHERE key = 'pipeline:temps.unreadable'").fetchone()
    db.close()
    assert aside == (b"{not json",)
    assert rt._counters.state_discarded == 1


async def test_late_readings_are_shipped_as_their_own_series(tmp_path: Path) -> None:
    from edgeflow.model import ReadingBatch, ValueType

    cfg = config(
        tmp_path, devices=[], pipelines=[{"name": "p", "rules": [{"type": "swing", "max_error": 0.1}]}]
    )
    rt = Runtime(parse_config(cfg, environ={}))
    await rt.start()
    sid = rt.table.intern("d", "T", "P", ValueType.FLOAT64, "degC")
    t0 = 1_700_000_000_000_000_000
    s = 1_000_000_000
    await rt.bus.publish(
        "edgex/events/device/s/P/d/T",
        ReadingBatch.from_columns(rt.table, [t0, t0 + s], [1.0, 2.0], [sid, sid]),
    )
    await rt.bus.publish(
        "edgex/events/device/s/P/d/T", ReadingBatch.from_columns(rt.table, [t0 + s // 2], [9.0], [sid])
    )
    await rt.stop()
    readings = [r for e in shipped(tmp_path) for r in e.readings]
    late = [r for r in readings if r.resource_name == "T@late.p"]
    assert [(r.origin, r.value) for r in late] == [(t0 + s // 2, 9.0)]
    assert late[0].units == "degC"
    on_time = [r.origin for r in readings if r.resource_name == "T"]
    assert on_time == sorted(on_time)
    assert rt.stats()["pipelines"]["p"]["late"] == 1


def test_scheduler_settings_reach_every_device_service(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg["scheduler"] = {"pushCapacity": 123, "pushLinger": "20ms", "readTimeout": "3s"}
    rt = Runtime(parse_config(cfg, environ={}))
    (service,) = rt.services.values()
    s = service.settings
    assert (s.push_capacity, s.push_linger, s.read_timeout) == (123, 0.02, 3.0)


def test_edgex_sizes_of_a_fleet_are_the_sizes_of_each_series() -> None:
    # sized once per resource and name length where the name is written as it is; each as its own else
    from edgeflow.model import SeriesTable, ValueType

    table = SeriesTable()
    names = ["dev-00001", "dev-00002", "pump/7", "x", 'quo"te', "back\\slash", "tab\there", "ünï", "dev-0000"]
    for name in names:
        for res, vt in (("temp", ValueType.FLOAT64), ("count", ValueType.INT32), ("on", ValueType.BOOL)):
            table.intern(name, res, "p", vt, "C", "All")
    infos = [table.info(sid) for sid in range(len(table))]
    assert runtime._edgex_event_sizes(infos) == [runtime._edgex_event_size(i) for i in infos]


def test_the_uplink_takes_twice_the_bus_before_it_holds_the_router(tmp_path: Path) -> None:
    # a big fleet's tick (the bus's worth of readings) waiting for one slow commit must not hold the router
    cfg = config(tmp_path)
    cfg["bus"] = {"capacity": 150_000}
    rt = Runtime(parse_config(cfg, environ={}))
    assert rt.uplink.pending_min == 300_000
