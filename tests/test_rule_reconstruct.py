"""The cloud's reconstruction from shipped points: hold, linear, runs, NaN points, duplicates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeflow.rules import reconstruct

T0 = 1_700_000_000_000_000_000


def test_hold_is_the_last_point_at_or_before() -> None:
    r = reconstruct([0, 5, 10, 15, 20], [5, 15], [1.0, 2.0], "hold")
    assert math.isnan(r[0])
    assert r[1:].tolist() == [1.0, 1.0, 2.0, 2.0]


def test_linear_between_points_and_nan_outside() -> None:
    r = reconstruct([0, 10, 15, 20, 30], [10, 20], [1.0, 3.0], "linear")
    assert math.isnan(r[0])
    assert math.isnan(r[4])
    assert r[1:4].tolist() == [1.0, 2.0, 3.0]


def test_epoch_sized_origins_keep_nanosecond_precision() -> None:
    r = reconstruct([T0 + 1, T0 + 2], [T0, T0 + 4], [0.0, 4.0], "linear")
    assert r.tolist() == [1.0, 2.0]


def test_runs_pair_up_when_time_goes_backwards() -> None:
    # points of a reset series: run 1 over 10..30, run 2 from 15
    r = reconstruct([10, 20, 30, 15, 25], [10, 30, 15, 25], [0.0, 2.0, 5.0, 5.0], "linear")
    assert r.tolist() == [0.0, 1.0, 2.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="runs"):
        reconstruct([10, 20, 5, 30, 1], [10, 30, 15, 25], [0.0, 2.0, 5.0, 5.0], "linear")


def test_nan_points_are_exact_and_take_no_part_in_interpolation() -> None:
    r = reconstruct([0, 5, 10], [0, 5, 10], [0.0, np.nan, 10.0], "linear")
    assert r[0] == 0.0
    assert math.isnan(r[1])
    assert r[2] == 10.0
    assert reconstruct([6], [0, 5, 10], [0.0, np.nan, 10.0], "linear").tolist() == [6.0]


def test_heartbeat_duplicates_count_once() -> None:
    r = reconstruct([0, 5, 10], [0, 0, 0, 10], [1.0, 1.0, 1.0, 3.0], "linear")
    assert r.tolist() == [1.0, 2.0, 3.0]


def test_bad_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="hold"):
        reconstruct([0], [0], [0.0], "step")  # type: ignore[arg-type]
