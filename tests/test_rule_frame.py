"""The per-series frame the stateful rules share: split by series, nan / non_numeric / backwards policies,
counters, clean runs handed on. Checked against a naive per-reading reference on random batches."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeflow.errors import RuleError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType, batch_from_values
from edgeflow.rules.base import RuleStats
from edgeflow.rules.frame import SeriesFrame, policies
from edgeflow.testing import CollectingSink, ListSource, run
from tests._rulecases import pipeline, specs

# One reading: (series index, origin, typed value). Series 0-2 are Float64, 3 is Bool, 4 is String.
_TYPES = [ValueType.FLOAT64, ValueType.FLOAT64, ValueType.FLOAT64, ValueType.BOOL, ValueType.STRING]


def _value(i: int) -> st.SearchStrategy[Any]:
    if _TYPES[i] is ValueType.BOOL:
        return st.one_of(st.booleans(), st.booleans().map(np.bool_))
    if _TYPES[i] is ValueType.STRING:
        return st.sampled_from(["on", "off", ""])
    return st.one_of(
        st.floats(-1e6, 1e6),
        st.sampled_from([math.nan, math.inf, -math.inf]),
        st.sampled_from(["fault", "n/a"]),  # a string where a number is declared: an object
    )


@st.composite
def readings(draw: st.DrawFn) -> list[tuple[int, int, Any]]:
    n = draw(st.integers(0, 60))
    out = []
    t = 1_000
    for _ in range(n):
        i = draw(st.integers(0, len(_TYPES) - 1))
        t += draw(st.integers(-5, 10))  # time steps back, repeats, and moves on
        out.append((i, t, draw(_value(i))))
    return out


@dataclass
class Log:
    """Per series: the readings handed on, as ``("r", origin, value, position)``, and resets, as
    ``("reset", position, last origin)``, in the order they happened."""

    events: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)

    def feed(self, sid: int, ts: list[int], vs: list[Any], pos: list[int], offset: int = 0) -> None:
        assert ts, "no empty runs"
        assert len(ts) == len(vs) == len(pos)
        self.events.setdefault(sid, []).extend(
            ("r", t, v, p + offset) for t, v, p in zip(ts, vs, pos, strict=True)
        )

    def reset(self, sid: int, pos: int, last: int, offset: int = 0) -> None:
        self.events.setdefault(sid, []).append(("reset", pos + offset, last))


def _reference(
    rows: list[tuple[int, int, Any]],
    sids: list[int],
    *,
    nan: str,
    non_numeric: str,
    backwards: str | None,
    numeric_only: bool,
    finite: bool,
) -> tuple[Log, list[int], list[int], dict[str, int], dict[int, int]]:
    """The policies one reading at a time, written from their description."""
    log = Log()
    passed: list[int] = []
    late: list[int] = []
    c = {"nan": 0, "non_numeric": 0, "dropped": 0, "backwards": 0, "late": 0}
    last_t: dict[int, int] = {}
    for pos, (i, t, v) in enumerate(rows):
        sid = sids[i]
        vt = _TYPES[i]
        is_object = isinstance(v, str)
        column = float(v) if not is_object else None  # what the numeric column holds
        if numeric_only and (is_object or vt is ValueType.BOOL):
            c["non_numeric"] += 1
            policy: str | None = non_numeric
        elif column is not None and (math.isnan(column) or (finite and math.isinf(column))):
            c["nan"] += 1
            policy = nan
        else:
            policy = None
        if policy == "pass":
            passed.append(pos)
            continue
        if policy == "drop":
            c["dropped"] += 1
            continue
        if backwards is not None:
            last = last_t.get(sid)
            if last is not None and t <= last:
                c["backwards"] += 1
                if backwards == "late":
                    c["late"] += 1
                    late.append(pos)
                    continue
                if backwards == "drop":
                    c["dropped"] += 1
                    continue
                if backwards == "reset":
                    log.reset(sid, pos, last)
                    last_t[sid] = t
            else:
                last_t[sid] = t
        log.feed(sid, [t], [v if is_object else column], [pos])
    return log, passed, late, c, last_t


@settings(max_examples=300, deadline=None)
@given(
    rows=readings(),
    chunk=st.integers(1, 25),
    nan=st.sampled_from(["pass", "drop"]),
    non_numeric=st.sampled_from(["pass", "drop"]),
    backwards=st.sampled_from(["late", "drop", "reset", "accept", None]),
    numeric_only=st.booleans(),
    finite=st.booleans(),
)
def test_frame_matches_a_per_reading_reference(
    rows: list[tuple[int, int, Any]],
    chunk: int,
    nan: str,
    non_numeric: str,
    backwards: str | None,
    numeric_only: bool,
    finite: bool,
) -> None:
    table = SeriesTable()
    sids = [table.intern(f"dev{i}", "r", value_type=vt) for i, vt in enumerate(_TYPES)]
    stats = RuleStats(index=0, type="test")
    frame = SeriesFrame(
        stats, nan=nan, non_numeric=non_numeric, backwards=backwards, numeric_only=numeric_only, finite=finite
    )
    log = Log()
    passed: list[int] = []
    late: list[int] = []
    for a in range(0, len(rows), chunk):
        part = rows[a : a + chunk]
        batch = batch_from_values(
            table, [r[1] for r in part], [r[2] for r in part], [sids[r[0]] for r in part]
        )
        routed = frame.route(
            batch,
            lambda sid, ts, vs, pos, a=a: log.feed(sid, ts, vs, pos, a),
            lambda sid, pos, last, a=a: log.reset(sid, pos, last, a),
        )
        passed.extend(p + a for p in routed.passed)
        late.extend(p + a for p in routed.late)
        lb = routed.late_batch(batch)
        assert (lb is None) == (not routed.late)
        if lb is not None:
            assert lb.origins.tolist() == [part[p][1] for p in sorted(routed.late)]
    want_log, want_passed, want_late, counts, last_t = _reference(
        rows,
        sids,
        nan=nan,
        non_numeric=non_numeric,
        backwards=backwards,
        numeric_only=numeric_only,
        finite=finite,
    )
    assert log.events == want_log.events
    assert sorted(passed) == want_passed
    assert sorted(late) == want_late
    got = {k: getattr(stats, k) for k in counts}
    assert got == counts
    assert frame.last_t == last_t


def test_a_clean_series_is_one_run_per_batch_and_series_are_split() -> None:
    table = SeriesTable()
    a = table.intern("d", "a")
    b = table.intern("d", "b")
    batch = ReadingBatch.from_columns(table, [1, 1, 2, 2, 3], [1.0, 9.0, 2.0, 8.0, 3.0], [a, b, a, b, a])
    calls: list[tuple[int, list[int], list[Any], list[int]]] = []
    frame = SeriesFrame(RuleStats(0, "t"))
    frame.route(batch, lambda *c: calls.append(c))
    assert calls == [(a, [1, 2, 3], [1.0, 2.0, 3.0], [0, 2, 4]), (b, [1, 2], [9.0, 8.0], [1, 3])]
    assert frame.last_t == {a: 3, b: 2}
    # the next batch must go on after each series' last accepted origin
    again = ReadingBatch.from_columns(table, [3, 4], [5.0, 6.0], [a, a])
    calls.clear()
    routed = frame.route(again, lambda *c: calls.append(c))
    assert calls == [(a, [4], [6.0], [1])]
    assert routed.late == [0]


def test_reset_ends_the_run_before_it_and_starts_the_next() -> None:
    table = SeriesTable()
    a = table.intern("d", "a")
    batch = ReadingBatch.from_columns(table, [10, 20, 15, 16], [1.0, 2.0, 3.0, 4.0], [a] * 4)
    seen: list[tuple[Any, ...]] = []
    stats = RuleStats(0, "t")
    frame = SeriesFrame(stats, backwards="reset")
    frame.route(batch, lambda *c: seen.append(("feed", *c)), lambda *c: seen.append(("reset", *c)))
    assert seen == [
        ("feed", a, [10, 20], [1.0, 2.0], [0, 1]),
        ("reset", a, 2, 20),
        ("feed", a, [15, 16], [3.0, 4.0], [2, 3]),
    ]
    assert (stats.backwards, stats.late, stats.dropped) == (1, 0, 0)
    assert frame.last_t == {a: 16}


def test_rules_that_take_any_value_get_objects_and_bools_in_their_runs() -> None:
    table = SeriesTable()
    s = table.intern("d", "s", value_type=ValueType.STRING)
    f = table.intern("d", "f", value_type=ValueType.BOOL)
    batch = batch_from_values(table, [1, 2, 3, 4], ["on", True, "off", np.bool_(False)], [s, f, s, f])
    calls: list[tuple[int, list[int], list[Any], list[int]]] = []
    SeriesFrame(RuleStats(0, "t"), numeric_only=False).route(batch, lambda *c: calls.append(c))
    assert calls == [(s, [1, 3], ["on", "off"], [0, 2]), (f, [2, 4], [1.0, 0.0], [1, 3])]
    # a numeric rule gets neither: both pass on by the non_numeric policy, counted
    stats = RuleStats(0, "t")
    calls.clear()
    routed = SeriesFrame(stats).route(batch, lambda *c: calls.append(c))
    assert calls == []
    assert sorted(routed.passed) == [0, 1, 2, 3]
    assert stats.non_numeric == 4


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"nan": "keep"}, "test: nan policy 'keep' is not pass or drop"),
        ({"non_numeric": "coerce"}, "non_numeric policy 'coerce'"),
        ({"backwards": "rewind"}, "backwards policy 'rewind' is not late, drop, reset or accept"),
    ],
)
def test_unknown_policies_are_refused(kwargs: dict[str, str], needle: str) -> None:
    with pytest.raises(RuleError, match=needle):
        SeriesFrame(RuleStats(0, "test"), **kwargs)  # type: ignore[arg-type]


def test_policies_are_read_from_any_rule_spec() -> None:
    deadband, on_change, minimum, swing = specs(
        {"type": "deadband", "absolute": 1, "backwards": "reset", "nan": "drop", "non_numeric": "drop"},
        {"type": "on_change", "backwards": "accept"},
        {"type": "min_interval", "interval": 1},
        {"type": "swing", "max_error": 1},
    )
    assert policies(deadband) == {"backwards": "reset", "nan": "drop", "non_numeric": "drop"}
    assert policies(on_change) == {"backwards": "accept", "nan": "pass"}
    assert policies(minimum) == {"backwards": "late"}
    assert policies(swing) == {"backwards": "late", "nan": "pass", "non_numeric": "pass"}


# --------------------------------------------------------------------------------------------------
# A Bool is a state, not a quantity: numeric rules leave it to their non_numeric policy
# --------------------------------------------------------------------------------------------------

_PUMP = [True, True, False, np.bool_(False), True, False]


def _pump_run(rule: dict[str, Any]) -> tuple[CollectingSink, RuleStats]:
    table = SeriesTable()
    src = ListSource(table)
    src.add("d", "pump", range(len(_PUMP)), _PUMP, value_type=ValueType.BOOL)
    pipe = pipeline(table, rule)
    return run(pipe, src.batches(4)), pipe.stats()[0]


@pytest.mark.parametrize(
    "rule",
    [
        {"type": "deadband", "absolute": 0.5},
        {"type": "swing", "max_error": 0.1},
        {"type": "pmc_mr", "max_error": 0.1},
        {"type": "sdt", "comp_dev": 0.1},
        {"type": "window", "kind": "count", "count": 2, "aggregates": ["mean"]},
        {"type": "range", "min": 0.5, "max": 2},
    ],
)
def test_numeric_rules_pass_or_drop_bools_by_the_non_numeric_policy(rule: dict[str, Any]) -> None:
    sink, stats = _pump_run(rule)
    values = sink.values("d", "pump")
    assert values == [True, True, False, False, True, False]  # unchanged, never compressed into 0.5s
    assert all(type(v) is bool for v in values)
    assert len(sink.batch) == len(_PUMP)  # nothing derived: no window results, no points
    assert stats.non_numeric == len(_PUMP)
    dropped, stats = _pump_run({**rule, "non_numeric": "drop"})
    assert len(dropped.batch) == 0
    assert stats.dropped == len(_PUMP)


def test_alarms_and_on_change_on_bools() -> None:
    sink, _ = _pump_run({"type": "alarm", "above": 0.5})
    assert len(sink.alarms) == 0  # a threshold is for quantities
    assert len(sink.batch) == len(_PUMP)
    sink, stats = _pump_run({"type": "on_change"})  # states change: on_change is the rule for them
    assert sink.points("d", "pump") == [(0, True), (2, False), (4, True), (5, False)]
    assert stats.non_numeric == 0
