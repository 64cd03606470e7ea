"""PMC-MR: hand-worked segments and the error bound as a property."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests._rulecases import check_compressor, run_one, series


def test_hand_worked_midrange_segments() -> None:
    # E = 1: [1, 2, 3] has range 2 = 2E → one segment, midrange 2.0, at its first origin 10.
    # 3.5 would widen it to 2.5 > 2 → new segment [3.5, 4, 5] (range 1.5), midrange 4.25 at 40.
    # 9 starts a third segment, emitted at flush: (70, 9.0).
    sink, pipe, _ = run_one(
        {"type": "pmc_mr", "max_error": 1.0}, [10, 20, 30, 40, 50, 60, 70], [1, 2, 3, 3.5, 4, 5, 9]
    )
    assert sink.points("d", "r") == [(10, 2.0), (40, 4.25), (70, 9.0)]
    assert sink.outputs[0].interpolation == {0: "hold"}
    assert pipe.stats()[0].readings_in == 7
    assert pipe.stats()[0].readings_out == 3


def test_constant_series_is_one_point() -> None:
    sink, _, _ = run_one({"type": "pmc_mr", "max_error": 0.0}, range(100), [5.0] * 100, chunk=7)
    assert sink.points("d", "r") == [(0, 5.0)]


def test_segment_point_goes_out_when_the_segment_closes() -> None:
    sink, pipe, _ = run_one({"type": "pmc_mr", "max_error": 0.5}, [1, 2, 3], [0.0, 0.2, 5.0], flush=False)
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


def test_nan_passes_through_without_breaking_the_segment() -> None:
    sink, pipe, _ = run_one({"type": "pmc_mr", "max_error": 1.0}, [1, 2, 3, 4], [1.0, float("nan"), 1.5, 1.2])
    pts = sink.points("d", "r")
    assert pts[0][0] == 2
    assert pts[0][1] != pts[0][1]
    assert pts[1:] == [(1, 1.25)]
    assert pipe.stats()[0].nan == 1
    sink, _, _ = run_one(
        {"type": "pmc_mr", "max_error": 1.0, "nan": "drop"}, [1, 2, 3], [1.0, float("nan"), 1.5]
    )
    assert sink.points("d", "r") == [(1, 1.25)]
