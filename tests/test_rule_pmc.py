"""PMC-MR: hand-worked segments and the error bound as a property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._rulecases import check_compressor, run_one, series


def test_hand_worked_midrange_segments() -> None:
    # E = 1: [1, 2, 3] has range 2 = 2E → one segment, midrange 2.0, at its first origin 10.
    # 3.5 would widen it to 2.5 > 2 → new segment [3.5, 4, 5] (range 1.5), midrange 4.25 at 40.
    # 9 starts a third segment, emitted at flush: (70, 9.0).
    sink, pipe, _ = run_one(
        {"type": "pmc_mr", "max_error": 1.0, "knots": "middle"},
        [10, 20, 30, 40, 50, 60, 70],
        [1, 2, 3, 3.5, 4, 5, 9],
    )
    assert sink.points("d", "r") == [(10, 2.0), (40, 4.25), (70, 9.0)]
    assert sink.outputs[0].interpolation == {0: "hold"}
    assert pipe.stats()[0].readings_in == 7
    assert pipe.stats()[0].readings_out == 3


def test_hand_worked_shortest_decimal_segments() -> None:
    # The same cut as the midrange, E = 1, but each point takes the value of [max - 1, min + 1] with the
    # fewest digits after the point. [1.3, 2.1, 2.9] (range 1.6): window [1.9, 2.3] holds the integer 2.
    # 3.5 widens it to 2.2 > 2. [3.5, 4.0, 5.22]: window [4.22, 4.5] holds no integer; with one digit,
    # the nearest to the midrange 4.36 is 4.4. 9.1 starts a third segment, at flush: [8.1, 10.1] holds 9.
    t = [10, 20, 30, 40, 50, 60, 70]
    v = [1.3, 2.1, 2.9, 3.5, 4.0, 5.22, 9.1]
    sink, _, _ = run_one({"type": "pmc_mr", "max_error": 1.0}, t, v)
    assert sink.points("d", "r") == [(10, 2.0), (40, 4.4), (70, 9.0)]
    sink, _, _ = run_one({"type": "pmc_mr", "max_error": 1.0, "knots": "middle"}, t, v)
    assert [p[0] for p in sink.points("d", "r")] == [10, 40, 70]
    assert [p[1] for p in sink.points("d", "r")] == pytest.approx([2.1, 4.36, 9.1])


def test_shortest_keeps_the_midrange_when_the_window_is_a_point() -> None:
    # range exactly 2E: the window [max - E, min + E] is the midrange alone
    sink, _, _ = run_one({"type": "pmc_mr", "max_error": 0.125}, [1, 2, 3], [0.5, 0.75, 9.0])
    assert sink.points("d", "r") == [(1, 0.625), (3, 9.0)]


def test_constant_series_is_one_point() -> None:
    sink, _, _ = run_one({"type": "pmc_mr", "max_error": 0.0}, range(100), [5.0] * 100, chunk=7)
    assert sink.points("d", "r") == [(0, 5.0)]


def test_segment_point_goes_out_when_the_segment_closes() -> None:
    rule = {"type": "pmc_mr", "max_error": 0.5, "knots": "middle"}
    sink, pipe, _ = run_one(rule, [1, 2, 3], [0.0, 0.2, 5.0], flush=False)
    assert sink.points("d", "r") == [(1, 0.1)]
    assert pipe.flush().batch.values.tolist() == [5.0]


@settings(max_examples=150, deadline=None)
@given(data=series(), e=st.floats(0.0, 20), chunk=st.integers(1, 60))
def test_hold_reconstruction_within_max_error(
    data: tuple[list[int], list[float]], e: float, chunk: int
) -> None:
    t, v = data
    check_compressor({"type": "pmc_mr", "max_error": e}, "hold", e, t, v, chunk)


@settings(max_examples=150, deadline=None)
@given(
    data=series(backwards=True, nan=True),
    e=st.floats(0.001, 20),
    chunk=st.integers(1, 60),
    policy=st.sampled_from(["late", "drop", "reset"]),
)
def test_bound_holds_with_nan_and_backwards_time(
    data: tuple[list[int], list[float]], e: float, chunk: int, policy: str
) -> None:
    t, v = data
    check_compressor({"type": "pmc_mr", "max_error": e, "backwards": policy}, "hold", e, t, v, chunk)


@settings(max_examples=100, deadline=None)
@given(
    data=series(backwards=True, nan=True),
    e=st.floats(0.0, 20),
    chunk=st.integers(1, 60),
    policy=st.sampled_from(["late", "drop", "reset"]),
    knots=st.sampled_from(["shortest", "middle"]),
)
def test_bound_holds_with_either_knots(
    data: tuple[list[int], list[float]], e: float, chunk: int, policy: str, knots: str
) -> None:
    t, v = data
    rule = {"type": "pmc_mr", "max_error": e, "backwards": policy, "knots": knots}
    check_compressor(rule, "hold", e, t, v, chunk)


def test_nan_passes_through_without_breaking_the_segment() -> None:
    rule = {"type": "pmc_mr", "max_error": 1.0, "knots": "middle"}
    sink, pipe, _ = run_one(rule, [1, 2, 3, 4], [1.0, float("nan"), 1.5, 1.2])
    pts = sink.points("d", "r")
    assert pts[0][0] == 2
    assert pts[0][1] != pts[0][1]
    assert pts[1:] == [(1, 1.25)]
    assert pipe.stats()[0].nan == 1
    sink, _, _ = run_one(
        {"type": "pmc_mr", "max_error": 1.0, "nan": "drop", "knots": "middle"},
        [1, 2, 3],
        [1.0, float("nan"), 1.5],
    )
    assert sink.points("d", "r") == [(1, 1.25)]
