"""Alarms: threshold crossings with hysteresis go to the alarms output, ahead of batches."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from edgeflow.model import SeriesTable, ValueType
from edgeflow.testing import ListSource, run
from tests._rulecases import pipeline, run_one, specs


def test_raise_and_clear_with_hysteresis() -> None:
    v = [50.0, 81.0, 82.0, 79.0, 77.9, 81.0, 50.0]
    sink, pipe, _ = run_one({"type": "alarm", "above": 80, "hysteresis": 2}, range(7), v)
    # raised at 81 (t=1); 79 is within the hysteresis, 77.9 < 78 clears (t=4); 81 raises again (t=5),
    # 50 clears (t=6). Readings pass unchanged.
    assert sink.points("d", "r.alarm", which="alarms") == [(1, 1), (4, 0), (5, 1), (6, 0)]
    assert sink.values("d", "r") == v
    assert pipe.stats()[0].alarms == 4
    sid = sink.table.lookup("d", "r.alarm")
    assert sid is not None
    assert sink.table.info(sid).value_type is ValueType.INT8


def test_low_alarm_and_direct_swing_from_high_to_low() -> None:
    v = [5.0, 11.0, -1.0, 0.5, 5.0]
    sink, _, _ = run_one(
        {"type": "alarm", "name": "band", "above": 10, "below": 0, "hysteresis": 1}, range(5), v
    )
    # 11 high; -1 clears the high and raises low at once; 0.5 is within hysteresis of 0; 5 clears
    assert sink.points("d", "r.band", which="alarms") == [(1, 1), (2, 0), (2, -1), (4, 0)]


def test_state_is_per_series_and_survives_restore() -> None:
    table = SeriesTable()
    src = ListSource(table)
    src.add("Device1", "t", [1], [100.0])
    src.add("Device10", "t", [1], [1.0])
    rule = {"type": "alarm", "above": 50, "pass_through": False}
    p = pipeline(table, rule)
    sink = run(p, src.batches(), flush=False)
    assert sink.points("Device1", "t.alarm", which="alarms") == [(1, 1)]
    assert sink.points("Device10", "t.alarm", which="alarms") == []
    assert len(sink.batch) == 0
    snap = json.loads(json.dumps(p.snapshot()))
    table2 = SeriesTable()
    p2 = pipeline(table2, rule)
    p2.restore(snap)
    src2 = ListSource(table2)
    src2.add("Device1", "t", [2, 3], [100.0, 10.0])
    sink2 = run(p2, src2.batches())
    assert sink2.points("Device1", "t.alarm", which="alarms") == [(3, 0)]  # no second raise at 2


def test_nan_and_non_numeric_raise_nothing() -> None:
    sink, _, _ = run_one({"type": "alarm", "above": 1}, range(3), [float("nan"), "high", 0.0])
    assert len(sink.alarms) == 0


def test_thresholds_must_leave_room_for_hysteresis() -> None:
    with pytest.raises(ValidationError, match="hysteresis"):
        specs({"type": "alarm", "above": 10, "below": 9, "hysteresis": 1})
    with pytest.raises(ValidationError, match="above, below"):
        specs({"type": "alarm"})
