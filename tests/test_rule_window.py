"""Windows: tumbling, hopping, sliding, count; aggregates; event time, lateness, late routing; state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgeflow.model import SeriesTable, ValueType
from edgeflow.testing import ListSource, ManualClock, run
from tests._rulecases import SEC, pipeline, run_one


def _results(sink, agg: str) -> list[tuple[int, int, float]]:  # type: ignore[no-untyped-def]
    b = sink.batch
    sid = b.table.lookup("d", f"r.{agg}")
    m = b.series == sid
    assert b.starts is not None
    return list(zip(b.starts[m].tolist(), b.origins[m].tolist(), b.values[m].tolist(), strict=True))


def test_tumbling_windows_close_when_event_time_passes_their_end() -> None:
    t = [0, 1 * SEC, 4 * SEC, 5 * SEC, 9 * SEC, 10 * SEC, 12 * SEC]
    v = [1.0, 3.0, 2.0, 10.0, 20.0, 7.0, 8.0]
    rule = {
        "type": "window",
        "kind": "tumbling",
        "size": 5,
        "aggregates": ["mean", "min", "max", "count", "first", "last", "sum"],
    }
    sink, pipe, _ = run_one(rule, t, v, flush=False)
    # [0,5) closes when 5 s arrives, [5,10) when 10 s arrives; [10,15) stays open
    assert _results(sink, "mean") == [(0, 5 * SEC, 2.0), (5 * SEC, 10 * SEC, 15.0)]
    assert [r[2] for r in _results(sink, "min")] == [1.0, 10.0]
    assert [r[2] for r in _results(sink, "max")] == [3.0, 20.0]
    assert [r[2] for r in _results(sink, "count")] == [3.0, 2.0]
    assert [r[2] for r in _results(sink, "first")] == [1.0, 10.0]
    assert [r[2] for r in _results(sink, "last")] == [2.0, 20.0]
    assert [r[2] for r in _results(sink, "sum")] == [6.0, 30.0]
    assert sink.table.info(sink.table.lookup("d", "r.count")).value_type is ValueType.INT64  # type: ignore[arg-type]
    tail = pipe.flush().batch
    assert tail.starts is not None
    assert sorted(set(zip(tail.starts.tolist(), tail.origins.tolist(), strict=True))) == [
        (10 * SEC, 15 * SEC)
    ]
    assert pipe.stats()[0].readings_in == 7


def test_stddev_and_percentiles() -> None:
    v = [float(x) for x in range(1, 11)]
    rule = {"type": "window", "kind": "count", "count": 10, "aggregates": ["stddev", "p50", "p90", "p100"]}
    sink, _, _ = run_one(rule, range(10), v)
    assert _results(sink, "stddev")[0][2] == pytest.approx(float(np.std(v)))
    assert _results(sink, "p50")[0][2] == 5.5
    assert _results(sink, "p90")[0][2] == pytest.approx(9.1)
    assert _results(sink, "p100")[0][2] == 10.0


def test_hopping_windows_overlap() -> None:
    t = [1 * SEC, 3 * SEC, 5 * SEC, 7 * SEC, 20 * SEC]
    v = [1.0, 3.0, 5.0, 7.0, 0.0]
    rule = {"type": "window", "kind": "hopping", "size": 4, "hop": 2, "aggregates": ["mean"]}
    sink, _, _ = run_one(rule, t, v, flush=False)
    # windows [-2,2) [0,4) [2,6) [4,8) [6,10): 1 | 1,3 | 3,5 | 5,7 | 7
    assert _results(sink, "mean") == [
        (-2 * SEC, 2 * SEC, 1.0),
        (0, 4 * SEC, 2.0),
        (2 * SEC, 6 * SEC, 4.0),
        (4 * SEC, 8 * SEC, 6.0),
        (6 * SEC, 10 * SEC, 7.0),
    ]


def test_allowed_lateness_accepts_stragglers_and_routes_the_rest_to_late() -> None:
    rule = {"type": "window", "kind": "tumbling", "size": 10, "allowed_lateness": 5, "aggregates": ["sum"]}
    t = [1 * SEC, 12 * SEC, 8 * SEC, 16 * SEC, 9 * SEC, 21 * SEC]
    v = [1.0, 10.0, 2.0, 20.0, 4.0, 100.0]
    sink, pipe, _ = run_one(rule, t, v, flush=False)
    # 8 s arrives while the watermark is 12-5 = 7 s: window [0,10) still open → counted in.
    # 16 s moves the watermark to 11 s: [0,10) closes with 1+2 = 3. 9 s is then late.
    assert _results(sink, "sum") == [(0, 10 * SEC, 3.0)]
    assert sink.points("d", "r", which="late") == [(9 * SEC, 4.0)]
    assert pipe.stats()[0].late == 1


def test_advance_closes_windows_without_readings() -> None:
    clock = ManualClock(0)
    rule = {"type": "window", "kind": "tumbling", "size": 60, "aggregates": ["count"]}
    sink, pipe, _ = run_one(rule, [1 * SEC, 2 * SEC], [1.0, 2.0], flush=False)
    assert len(sink.batch) == 0
    assert len(pipe.advance(clock.set(59 * SEC)).batch) == 0
    out = pipe.advance(clock.set(60 * SEC))
    assert out.batch.values.tolist() == [2.0]
    assert out.interpolation == {out.batch.series[0].item(): "hold"}


def test_sliding_window_emits_per_reading_over_the_size_before_it() -> None:
    rule = {"type": "window", "kind": "sliding", "size": 3, "aggregates": ["sum"]}
    t = [0, 1 * SEC, 2 * SEC, 3 * SEC, 10 * SEC, 2 * SEC]
    sink, pipe, _ = run_one(rule, t, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert _results(sink, "sum") == [
        (-3 * SEC, 0, 1.0),
        (-2 * SEC, 1 * SEC, 3.0),
        (-1 * SEC, 2 * SEC, 6.0),
        (0, 3 * SEC, 9.0),  # (0, 3] excludes the reading at 0
        (7 * SEC, 10 * SEC, 5.0),
    ]
    assert sink.origins("d", "r", which="late") == [2 * SEC]
    assert pipe.stats()[0].late == 1


def test_count_window_with_hop_and_partial_flush() -> None:
    rule = {"type": "window", "kind": "count", "count": 3, "hop_count": 2, "aggregates": ["mean"]}
    sink, _, _ = run_one(rule, range(6), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], chunk=4)
    # [1,2,3] → 2; hop 2 → [3,4,5] → 4; hop 2 → [5,6] left, flushed partial → 5.5
    assert [(s, e, m) for s, e, m in _results(sink, "mean")] == [(0, 2, 2.0), (2, 4, 4.0), (4, 5, 5.5)]


def test_non_numeric_pass_through_and_nan_is_dropped_by_default() -> None:
    rule = {"type": "window", "kind": "count", "count": 2, "aggregates": ["count"]}
    sink, pipe, _ = run_one(rule, range(4), [1.0, "alarm", float("nan"), 2.0])
    assert sink.values("d", "r") == ["alarm"]
    assert [r[2] for r in _results(sink, "count")] == [2.0]
    st = pipe.stats()[0]
    assert (st.nan, st.non_numeric, st.dropped) == (1, 1, 1)


def test_keep_input_ships_raw_readings_beside_the_results() -> None:
    rule = {"type": "window", "kind": "count", "count": 2, "aggregates": ["max"], "keep_input": True}
    sink, _, _ = run_one(rule, range(2), [1.0, 2.0])
    assert sink.values("d", "r") == [1.0, 2.0]
    assert [r[2] for r in _results(sink, "max")] == [2.0]


def test_series_get_their_own_windows_and_derived_names() -> None:
    table = SeriesTable()
    src = ListSource(table)
    src.add("pump1", "temp", [0, SEC, 10 * SEC], [1.0, 2.0, 0.0], profile="p", source="s")
    src.add("pump2", "temp", [0, 10 * SEC], [5.0, 0.0], profile="p", source="s")
    sink = run(
        pipeline(table, {"type": "window", "kind": "tumbling", "size": 10, "aggregates": ["mean"]}),
        src.batches(),
    )
    assert sink.values("pump1", "temp.mean")[0] == 1.5
    assert sink.values("pump2", "temp.mean")[0] == 5.0
    info = table.info(table.lookup("pump1", "temp.mean"))  # type: ignore[arg-type]
    assert (info.profile, info.source, info.value_type) == ("p", "s", ValueType.FLOAT64)


def test_snapshot_restore_mid_stream_gives_identical_output() -> None:
    rule = {
        "type": "window",
        "kind": "hopping",
        "size": 10,
        "hop": 5,
        "allowed_lateness": 3,
        "aggregates": ["mean", "p95", "count"],
    }
    rng = np.random.default_rng(2)
    t = (np.cumsum(rng.integers(0, 3 * SEC, 300)) - rng.integers(0, 4 * SEC, 300)).tolist()
    v = rng.normal(0, 1, 300).tolist()
    whole_sink = run_one(rule, t, v, chunk=17)[0]
    whole, whole_late = whole_sink.batch, whole_sink.late
    for cut in (0, 1, 150, 299):
        table = SeriesTable()
        s1 = ListSource(table)
        s1.add("d", "r", t[:cut], v[:cut])
        p1 = pipeline(table, rule)
        first = run(p1, s1.batches(17), flush=False)
        snap = json.loads(json.dumps(p1.snapshot()))
        table2 = SeriesTable()
        table2.intern("noise", "x")
        p2 = pipeline(table2, rule)
        p2.restore(snap)
        s2 = ListSource(table2)
        s2.add("d", "r", t[cut:], v[cut:])
        second = run(p2, s2.batches(17))
        got = [
            (table.info(s).resource, o, x)
            for s, o, x in zip(
                first.batch.series.tolist(),
                first.batch.origins.tolist(),
                first.batch.values.tolist(),
                strict=True,
            )
        ] + [
            (table2.info(s).resource, o, x)
            for s, o, x in zip(
                second.batch.series.tolist(),
                second.batch.origins.tolist(),
                second.batch.values.tolist(),
                strict=True,
            )
        ]
        want = [
            (whole.table.info(s).resource, o, x)
            for s, o, x in zip(
                whole.series.tolist(), whole.origins.tolist(), whole.values.tolist(), strict=True
            )
        ]
        assert got == want
        assert first.late.origins.tolist() + second.late.origins.tolist() == whole_late.origins.tolist()
        assert not any(math.isnan(x) for _, _, x in got)
