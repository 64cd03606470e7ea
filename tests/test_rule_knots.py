"""Segment points at the shortest decimal (``knots: shortest``): the chooser on its own, and the points the
swing filter and PMC-MR emit checked against each segment's exact window (rational arithmetic)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeflow.rules.knots import MAX_DIGITS, decimal_digits, shortest_decimal, shortest_decimals
from tests._rulecases import run_one, series

REL = 1e-9  # how far inside the exact window a shorter decimal must be for the test to demand it


def test_decimal_digits_counts_like_the_compact_encoding() -> None:
    assert decimal_digits(2.0) == 0
    assert decimal_digits(-0.5) == 1
    assert decimal_digits(4.36) == 2
    assert decimal_digits(0.1 + 0.2) == MAX_DIGITS + 1  # 0.30000000000000004
    assert decimal_digits(math.nan) == MAX_DIGITS + 1
    assert decimal_digits(1e300) == MAX_DIGITS + 1


def test_hand_worked_choices() -> None:
    assert shortest_decimal(1.1, 3.1, 2.1) == 2.0  # an integer inside
    assert shortest_decimal(4.22, 4.5, 4.36) == 4.4  # none; one digit, nearest the middle
    assert shortest_decimal(-2.74, -2.71, -2.725) == -2.72  # two digits (-2.73 is as near; half to even)
    assert shortest_decimal(0.99, 1.02, 1.005) == 1.0  # off the middle, still the only integer
    assert shortest_decimal(3.0, 3.0, 3.0) == 3.0  # a point window is its own value
    assert shortest_decimal(1.0, 1.0 + 1e-15, 1.0 + 5e-16) == 1.0 + 5e-16  # narrower than the margin: middle
    # an end exactly on a window edge is not taken (float rounding could put it a hair outside)
    assert shortest_decimal(4.0, 4.5, 4.25) == 4.2


_finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(_finite, st.floats(min_value=0, max_value=1e3), st.floats(0, 1), _finite),
        min_size=1,
        max_size=40,
    ),
    st.integers(-12, 2),
)
def test_the_array_chooser_is_the_scalar_one_bit_for_bit(
    rows: list[tuple[float, float, float, float]], exp: int
) -> None:
    # windows of every width from 1e-12 to 1e5 around values of every size, the middle anywhere inside
    lo = np.asarray([m for m, _, _, _ in rows])
    hi = lo + np.asarray([w for _, w, _, _ in rows]) * 10.0**exp
    mid = lo + (hi - lo) * np.asarray([f for _, _, f, _ in rows])
    scale = np.asarray([s for _, _, _, s in rows])
    got = shortest_decimals(lo, hi, mid, scale)
    want = [shortest_decimal(*map(float, x)) for x in zip(lo, hi, mid, scale, strict=True)]
    assert got.tobytes() == np.asarray(want, dtype=np.float64).tobytes()


def test_the_array_chooser_on_hand_worked_windows() -> None:
    cases = [(1.1, 3.1, 2.1), (4.22, 4.5, 4.36), (-2.74, -2.71, -2.725), (0.99, 1.02, 1.005), (3.0, 3.0, 3.0)]
    cases += [(1.0, 1.0 + 1e-15, 1.0 + 5e-16), (4.0, 4.5, 4.25), (-0.4, 0.3, -0.05), (math.nan, 1.0, 0.5)]
    lo, hi, mid = (np.asarray(c, dtype=np.float64) for c in zip(*cases, strict=True))
    got = shortest_decimals(lo, hi, mid, np.zeros(len(cases)))
    want = [shortest_decimal(*c) for c in cases]
    assert got.tobytes() == np.asarray(want, dtype=np.float64).tobytes()  # 0.0, not -0.0, as Python's


def _fewer_digits_inside(lo: Fraction, hi: Fraction, k: int) -> bool:
    """Whether a decimal with fewer than k digits after the point lies in [lo, hi] (exact)."""
    for j in range(k):
        s = 10**j
        if math.ceil(lo * s) <= math.floor(hi * s):
            return True
    return False


finite = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(a=finite, width=st.one_of(st.floats(0, 10.0), st.floats(0, 1e-6)), short=st.integers(0, 8))
def test_choice_is_inside_no_longer_than_the_middle_and_shortest(a: float, width: float, short: int) -> None:
    lo = round(a, short) if short < 8 else a  # often itself a short decimal, so edges get exercised
    hi = lo + width
    mid = (lo + hi) * 0.5
    c = shortest_decimal(lo, hi, mid)
    assert lo <= c <= hi
    assert decimal_digits(c) <= decimal_digits(mid)
    tol = Fraction(REL * max(1.0, abs(lo), abs(hi)))
    assert not _fewer_digits_inside(Fraction(lo) + tol, Fraction(hi) - tol, decimal_digits(c))


def _check_points(
    emitted: list[tuple[int, float]], windows: list[tuple[Fraction, Fraction] | None], short: bool
) -> None:
    """Each emitted value against its exact window: inside (up to float rounding); for ``shortest``, no
    longer than the middle and no shorter decimal comfortably inside."""
    for (_, y), w in zip(emitted, windows, strict=True):
        if w is None:
            continue
        lo, hi = w
        scale = max(1.0, abs(float(lo)), abs(float(hi)))
        slack = Fraction(1e-12 * scale)
        assert lo - slack <= Fraction(y) <= hi + slack, (y, float(lo), float(hi))
        if not short:
            continue
        tol = Fraction(REL * scale)
        if hi - lo > 2 * tol:
            assert decimal_digits(y) <= decimal_digits(float((lo + hi) / 2)), (y, float(lo), float(hi))
        assert not _fewer_digits_inside(lo + tol, hi - tol, decimal_digits(y)), (y, float(lo), float(hi))


@pytest.mark.parametrize("knots", ["shortest", "middle"])
@settings(max_examples=100, deadline=None)
@given(data=series(), e=st.floats(0.001, 20), chunk=st.integers(1, 60))
def test_swing_end_values_against_the_exact_window(
    knots: str, data: tuple[list[int], list[float]], e: float, chunk: int
) -> None:
    t, v = data
    sink, _, _ = run_one({"type": "swing", "max_error": e, "knots": knots}, t, v, chunk=chunk)
    pts = sink.points("d", "r")
    ee = Fraction(e)
    windows: list[tuple[Fraction, Fraction] | None] = [None]
    if knots == "middle":
        assert pts[0] == (t[0], v[0])  # the first reading as is
    else:  # the first point: the shortest decimal within E of the first reading
        assert pts[0][0] == t[0]
        windows = [(Fraction(v[0]) - ee, Fraction(v[0]) + ee)]
    for (ta, ya), (tb, _) in itertools.pairwise(pts):
        # every reading in (ta, tb] must lie within E of the line from (ta, ya) to (tb, end value)
        y0 = Fraction(ya)
        lo = hi = None
        for ti, vi in zip(t, v, strict=True):
            if ta < ti <= tb:
                f = Fraction(tb - ta, ti - ta)
                a = y0 + (Fraction(vi) - ee - y0) * f
                b = y0 + (Fraction(vi) + ee - y0) * f
                lo = a if lo is None or a > lo else lo
                hi = b if hi is None or b < hi else hi
        assert lo is not None and hi is not None
        windows.append((lo, hi))
    _check_points(pts, windows, knots == "shortest")


@pytest.mark.parametrize("knots", ["shortest", "middle"])
@settings(max_examples=100, deadline=None)
@given(data=series(), e=st.floats(0.0, 20), chunk=st.integers(1, 60))
def test_pmc_values_against_the_exact_window(
    knots: str, data: tuple[list[int], list[float]], e: float, chunk: int
) -> None:
    t, v = data
    sink, _, _ = run_one({"type": "pmc_mr", "max_error": e, "knots": knots}, t, v, chunk=chunk)
    pts = sink.points("d", "r")
    ee = Fraction(e)
    ends = [p[0] for p in pts[1:]] + [t[-1] + 1]
    windows: list[tuple[Fraction, Fraction] | None] = []
    for (ta, _), tb in zip(pts, ends, strict=True):
        seg = [Fraction(vi) for ti, vi in zip(t, v, strict=True) if ta <= ti < tb]
        windows.append((max(seg) - ee, min(seg) + ee))
    _check_points(pts, windows, knots == "shortest")
