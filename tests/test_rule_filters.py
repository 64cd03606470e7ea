"""Filters: anchored name patterns, value range, safe expressions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgeflow.errors import RuleError
from edgeflow.model import SeriesTable, ValueType
from edgeflow.rules import MatchSpec, SeriesMatcher
from edgeflow.rules.expr import compile_expression
from edgeflow.testing import ListSource, run
from tests._rulecases import SEC, pipeline, run_one, specs


def _fleet() -> tuple[SeriesTable, ListSource]:
    table = SeriesTable()
    src = ListSource(table)
    src.add("Device1", "temp", [1], [20.0], profile="Pump", source="Read")
    src.add("Device10", "temp", [1], [21.0], profile="Pump", source="Read")
    src.add("Device2", "pressure", [1], [3.0], profile="Valve", source="Poll")
    src.add("xDevice1", "temp", [1], [22.0], profile="Pump", source="Read")
    return table, src


def _devices(sink) -> list[str]:  # type: ignore[no-untyped-def]
    b = sink.batch
    return [b.table.info(s).device for s in b.series.tolist()]


def test_globs_are_anchored_device1_never_matches_device10() -> None:
    table, src = _fleet()
    sink = run(pipeline(table, {"type": "filter", "device": "Device1"}), src.batches())
    assert _devices(sink) == ["Device1"]
    table, src = _fleet()
    sink = run(pipeline(table, {"type": "filter", "device": "Device1*"}), src.batches())
    assert _devices(sink) == ["Device1", "Device10"]


def test_regex_is_anchored_too() -> None:
    table, src = _fleet()
    sink = run(pipeline(table, {"type": "filter", "device": "Device1", "syntax": "regex"}), src.batches())
    assert _devices(sink) == ["Device1"]
    table, src = _fleet()
    sink = run(pipeline(table, {"type": "filter", "device": r"Device\d", "syntax": "regex"}), src.batches())
    assert _devices(sink) == ["Device1", "Device2"]


def test_fields_combine_with_and_lists_with_or_and_drop_inverts() -> None:
    table, src = _fleet()
    sink = run(
        pipeline(table, {"type": "filter", "profile": ["Pump", "Valve"], "resource": "temp"}), src.batches()
    )
    assert _devices(sink) == ["Device1", "Device10", "xDevice1"]
    table, src = _fleet()
    sink = run(pipeline(table, {"type": "filter", "source": "Poll", "action": "drop"}), src.batches())
    assert _devices(sink) == ["Device1", "Device10", "xDevice1"]


def test_matcher_caches_per_series_and_sees_new_series() -> None:
    table = SeriesTable()
    m = SeriesMatcher(MatchSpec(device="pump-?"))
    src = ListSource(table)
    src.add("pump-1", "t", [1], [1.0])
    assert m.mask(src.batch()).tolist() == [True]
    src.add("pump-12", "t", [1], [1.0])
    assert m.mask(src.batch()).tolist() == [True, False]


def test_bad_regex_is_a_clear_error_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="device"):
        specs({"type": "filter", "device": "([", "syntax": "regex"})


def test_range_keeps_inside_inclusive_and_passes_non_numeric() -> None:
    sink, pipe, _ = run_one(
        {"type": "range", "min": 0, "max": 10}, range(6), [-1.0, 0.0, 10.0, 10.5, "text", float("nan")]
    )
    assert sink.values("d", "r") == [0.0, 10.0, "text"]
    st = pipe.stats()[0]
    assert (st.dropped, st.nan, st.non_numeric) == (3, 1, 1)
    sink, _, _ = run_one({"type": "range", "max": 0, "action": "drop"}, range(3), [-1.0, 0.0, 1.0])
    assert sink.values("d", "r") == [1.0]


def test_expression_over_value_names_and_time() -> None:
    table, src = _fleet()
    expr = "value > 20.5 and device in ['Device10', 'xDevice1'] and t >= 0"
    sink = run(pipeline(table, {"type": "expression", "expr": expr}), src.batches())
    assert _devices(sink) == ["Device10", "xDevice1"]
    sink, _, _ = run_one(
        {"type": "expression", "expr": "abs(value - 5) <= 1 if origin < 3 * 1e9 else value > 100"},
        [0, SEC, 2 * SEC, 3 * SEC, 4 * SEC],
        [4.0, 7.0, 5.5, 50.0, 150.0],
    )
    assert sink.values("d", "r") == [4.0, 5.5, 150.0]
    sink, _, _ = run_one(
        {"type": "expression", "expr": "0 < value < 2 and not isnan(value)"},
        range(4),
        [1.0, 2.0, float("nan"), 0.5],
    )
    assert sink.values("d", "r") == [1.0, 0.5]


def test_expression_on_non_numeric_values_evaluates_per_reading_and_counts_errors() -> None:
    sink, pipe, _ = run_one(
        {"type": "expression", "expr": "value == 'open' or value > 3"}, range(4), ["open", "shut", 1.0, 4.0]
    )
    assert sink.values("d", "r") == ["open", 4.0]
    assert pipe.stats()[0].errors == 1  # 'shut' > 3 cannot be evaluated: dropped (on_error: drop), counted
    sink, _, _ = run_one(
        {"type": "expression", "expr": "value > 3", "on_error": "pass"}, range(3), ["shut", 1.0, 4.0]
    )
    assert sink.values("d", "r") == ["shut", 4.0]


def test_expression_sees_value_type_and_units() -> None:
    table = SeriesTable()
    src = ListSource(table)
    src.add("d", "flag", [1, 2], [True, False], value_type=ValueType.BOOL)
    src.add("d", "x", [1], [1.0])
    sink = run(
        pipeline(table, {"type": "expression", "expr": "value_type == 'Bool' and value == 1"}), src.batches()
    )
    assert sink.values("d", "flag") == [True]
    assert sink.values("d", "x") == []


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('true')",
        "value.__class__",
        "[x for x in (1, 2)]",
        "open('/etc/passwd')",
        "lambda: 1",
        "value[0]",
        "device in resource",
        "secret > 1",
        "value if",
        "abs(value, key=1)",
    ],
)
def test_unsafe_or_unknown_expressions_are_refused_when_compiled(expr: str) -> None:
    with pytest.raises(RuleError, match="expression"):
        compile_expression(expr)
    with pytest.raises(ValidationError):
        specs({"type": "expression", "expr": expr})


def test_number_literals_are_floats_so_powers_overflow_instead_of_growing() -> None:
    sink, pipe, _ = run_one({"type": "expression", "expr": "9 ** 9 ** 9 > value"}, range(1), ["x"])
    assert sink.values("d", "r") == []
    assert pipe.stats()[0].errors == 1
