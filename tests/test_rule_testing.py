"""edgeflow.testing is public API: its docstring example runs, and its helpers behave as documented."""

from __future__ import annotations

import doctest

import pytest

import edgeflow.testing
from edgeflow.model import SeriesTable, ValueType
from edgeflow.testing import ListSource, ManualClock


def test_docstring_example_runs() -> None:
    result = doctest.testmod(edgeflow.testing, raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_list_source_batches_keep_order_and_types() -> None:
    table = SeriesTable()
    src = ListSource(table)
    a = src.add("d", "flag", [1, 2], [True, False], value_type=ValueType.BOOL)
    b = src.add("d", "name", [3], ["pump"], value_type=ValueType.STRING)
    batches = list(src.batches(2))
    assert [len(x) for x in batches] == [2, 1]
    assert batches[0].series.tolist() == [a, a]
    assert [batches[0].value_at(0), batches[0].value_at(1)] == [True, False]
    assert batches[1].objects is not None
    assert batches[1].objects.tolist() == ["pump"]
    assert batches[1].series.tolist() == [b]
    with pytest.raises(ValueError, match="same length"):
        src.add("d", "x", [1, 2], [1.0])


def test_manual_clock() -> None:
    c = ManualClock(10)
    assert c.advance(5) == 15
    assert c.set(3) == 3
    with pytest.raises(ValueError, match="backwards"):
        c.advance(-1)
