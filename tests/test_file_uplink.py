from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeflow.errors import UplinkError
from edgeflow.model import Reading, ReadingBatch, SeriesTable, ValueType, batch_from_readings, decode_event
from edgeflow.uplink import FileUplink, Uplink, create_uplink
from edgeflow.uplink.spec import FileUplinkSpec


async def test_each_event_is_one_add_event_request_line(tmp_path: Path) -> None:
    table = SeriesTable()
    a = table.intern("d1", "T", "P", ValueType.FLOAT64, "degC", source="Both")
    b = table.intern("d1", "H", "P", ValueType.INT16, source="Both")
    t0 = 1_700_000_000_000_000_000
    batch = ReadingBatch.from_columns(table, [t0, t0, t0 + 1], [21.5, 40, 22.0], [a, b, a])
    up = create_uplink(FileUplinkSpec(type="file", path=tmp_path / "sub" / "out.jsonl"), service="svc")
    assert isinstance(up, Uplink)
    await up.start()
    await up.send(batch)
    await up.send(
        batch_from_readings(table, [Reading("d2", "S", "P", ValueType.STRING, "hi", t0 + 5)]), alarm=True
    )
    await up.stop()
    lines = (tmp_path / "sub" / "out.jsonl").read_bytes().splitlines()
    events = [decode_event(line) for line in lines]
    assert [(e.device_name, e.origin, len(e.readings)) for e in events] == [
        ("d1", t0, 2),
        ("d1", t0 + 1, 1),
        ("d2", t0 + 5, 1),
    ]
    assert events[0].readings[0].units == "degC"
    assert events[0].readings[1].value == 40
    stream = events[0].tags["edgeflowStream"]
    assert [e.tags["edgeflowSeq"] for e in events] == [0, 1, 2]
    assert {e.tags["edgeflowStream"] for e in events} == {stream}
    assert events[2].tags["edgeflowAlarm"] is True
    assert "edgeflowAlarm" not in events[0].tags
    assert up.stats()["acked_readings"] == 4
    assert b'"value":"2.150000e+01"' in lines[0]


async def test_appends_across_restarts_and_refuses_unwritable_paths(tmp_path: Path) -> None:
    table = SeriesTable()
    sid = table.intern("d", "r")
    spec = FileUplinkSpec(type="file", path=tmp_path / "out.jsonl", fsync=True)
    for _ in range(2):
        up = FileUplink(spec)
        await up.start()
        await up.send(ReadingBatch.from_columns(table, np.array([1]), np.array([1.0]), np.array([sid])))
        await up.stop()
    assert len((tmp_path / "out.jsonl").read_bytes().splitlines()) == 2
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(UplinkError, match="cannot open"):
        await FileUplink(FileUplinkSpec(type="file", path=tmp_path / "dir.jsonl")).start()
