"""Swinging door: hand-worked archive, PI's CompMax/CompMin, and the 2 x CompDev bound as a property."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeflow.rules import reconstruct
from tests._rulecases import check_compressor, run_one, series


def test_hand_worked_doors() -> None:
    # CompDev 1, pivot (0, 0). t=1 v=0: upper door slope (0-0-1)/1 = -1, lower (0-0+1)/1 = 1.
    # t=2 v=0: -0.5 / 0.5 → doors su=-0.5, sl=0.5. t=3 v=3: su=max(-0.5, 2/3)=0.667 > sl=min(0.5, 4/3)=0.5
    # → archive the previous reading (2, 0); from it t=3 gives su=2, sl=4. t=4 v=6: su=max(2, 2.5)=2.5,
    # sl=min(4, 3.5)=3.5: open. Flush archives the last reading (4, 6).
    sink, _, _ = run_one({"type": "sdt", "comp_dev": 1.0}, [0, 1, 2, 3, 4], [0.0, 0.0, 0.0, 3.0, 6.0])
    assert sink.points("d", "r") == [(0, 0.0), (2, 0.0), (4, 6.0)]
    assert sink.outputs[0].interpolation == {0: "linear"}


def test_archived_points_are_real_readings() -> None:
    rng = np.random.default_rng(3)
    v = np.cumsum(rng.normal(0, 1, 500)).tolist()
    sink, _, _ = run_one({"type": "sdt", "comp_dev": 1.5}, range(500), v, chunk=37)
    for t, x in sink.points("d", "r"):
        assert v[t] == x


def test_error_can_exceed_comp_dev_but_not_twice_it() -> None:
    # the bound is 2 x CompDev, and it is reached in practice: find a case above CompDev
    rng = np.random.default_rng(11)
    v = np.cumsum(rng.normal(0, 1, 2000))
    sink, _, _ = run_one({"type": "sdt", "comp_dev": 1.0}, range(2000), v.tolist())
    pts = sink.points("d", "r")
    rec = reconstruct(range(2000), [p[0] for p in pts], [p[1] for p in pts], "linear")
    worst = float(np.abs(rec - v).max())
    assert 1.0 < worst <= 2.0


def test_comp_max_forces_an_archive() -> None:
    # a flat line never opens the doors; CompMax 2.5 s archives the previous reading once a reading is
    # more than 2.5 s after the last archived one
    sec = 1_000_000_000
    t = [i * sec for i in range(7)]
    sink, _, _ = run_one({"type": "sdt", "comp_dev": 1.0, "comp_max": 2.5}, t, [0.0] * 7)
    assert [p[0] // sec for p in sink.points("d", "r")] == [0, 2, 4, 6]


def test_comp_min_skips_readings_too_soon_after_an_archive() -> None:
    sec = 1_000_000_000
    t = [0, sec // 2, sec, 2 * sec]
    sink, pipe, _ = run_one({"type": "sdt", "comp_dev": 1.0, "comp_min": 0.75}, t, [0.0, 50.0, 0.0, 0.0])
    assert sink.points("d", "r") == [(0, 0.0), (2 * sec, 0.0)]
    assert pipe.stats()[0].dropped == 1


@settings(max_examples=150, deadline=None)
@given(data=series(), e=st.floats(0.001, 20), chunk=st.integers(1, 60))
def test_reconstruction_within_twice_comp_dev(
    data: tuple[list[int], list[float]], e: float, chunk: int
) -> None:
    t, v = data
    check_compressor({"type": "sdt", "comp_dev": e}, "linear", 2 * e, t, v, chunk)


@settings(max_examples=150, deadline=None)
@given(
    data=series(backwards=True, nan=True),
    e=st.floats(0.001, 20),
    chunk=st.integers(1, 60),
    policy=st.sampled_from(["late", "drop", "reset"]),
    comp_max=st.sampled_from([None, 5, 30]),
)
def test_bound_holds_with_nan_backwards_time_and_comp_max(
    data: tuple[list[int], list[float]], e: float, chunk: int, policy: str, comp_max: int | None
) -> None:
    t, v = data
    rule = {"type": "sdt", "comp_dev": e, "backwards": policy, "comp_max": comp_max}
    check_compressor(rule, "linear", 2 * e, t, v, chunk)
