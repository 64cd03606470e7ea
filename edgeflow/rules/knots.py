"""Where a bounded-error compressor puts a segment's point inside the window of values it may take.

When a swing segment closes, every end value in ``[y0 + l·dt, y0 + u·dt]`` keeps each reading of the
segment within E; a PMC-MR segment may hold any value in ``[max - E, min + E]``. The papers take the
middle. The middle is a float with a full mantissa, which the compact encoding ships as raw bytes; a value
with few digits after the decimal point travels as a small delta-coded integer (one or two bytes). So
``knots: shortest`` takes the value of the window with the fewest digits after the point, the one nearest
the middle among those, and ``knots: middle`` keeps the middle.

Floating point: the window's ends are computed in floats, a few units in the last place (ulp) from the
exact ends. The shortest value is looked for only inside the window shrunk by :data:`MARGIN_ULPS` ulps of
the largest magnitude involved, and every candidate is compared with those shrunk ends before it is taken.
When the shrunk window is empty (the window is narrower than the rounding margin), or no decimal with at
most :data:`MAX_DIGITS` digits lies in it, the middle is kept, exactly as ``knots: middle`` computes it.
So a chosen value is either the middle or at least the margin inside the window's ends, and it never has
more digits than the middle.
"""

from __future__ import annotations

import math
from math import ceil as _ceil
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "MARGIN_ULPS",
    "MAX_DIGITS",
    "Knots",
    "decimal_digits",
    "shortest_decimal",
    "shortest_decimals",
]

Knots = Literal["shortest", "middle"]

MAX_DIGITS: Final = 15
"""Most digits after the point a chosen value may have (beyond, the middle is kept)."""

MARGIN_ULPS: Final = 16
"""How far inside the float window, in ulps of its largest magnitude (at least), a chosen value must lie."""

_POWERS: Final = tuple(10.0**k for k in range(MAX_DIGITS + 1))
_EXACT: Final = 2.0**52  # beyond, x·10^k has no fractional part to round away
_MARGIN: Final = MARGIN_ULPS * 2.0**-52  # times |x|: at least MARGIN_ULPS ulps of x, less than twice that


def shortest_decimal(lo: float, hi: float, mid: float, scale: float = 0.0) -> float:
    """The value in ``[lo, hi]`` (shrunk by the rounding margin) with the fewest digits after the decimal
    point, the nearest to ``mid`` among those; ``mid`` when there is none. ``scale``: the largest magnitude
    that entered the computation of ``lo`` and ``hi`` (widens the margin)."""
    margin = _MARGIN * max(lo, -lo, hi, -hi, scale, -scale)
    a = lo + margin
    b = hi - margin
    if not a <= b:  # narrower than the margin (or NaN)
        return mid
    for s in _POWERS:
        x = a * s
        if not -_EXACT < x < _EXACT:
            break
        c = _ceil(x) / s  # the least value with this many digits at or above a
        if c <= b:
            r = round(mid * s) / s  # the nearest to mid with this many digits
            if a <= r <= b:
                return r
            if a <= c:  # mid was off-centre
                return c
    return mid


def shortest_decimals(
    lo: npt.NDArray[np.float64],
    hi: npt.NDArray[np.float64],
    mid: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """:func:`shortest_decimal` of each element, in numpy: the same float operations in the same order
    (``ceil``, and ``rint``, which rounds half to even as Python's ``round`` does; ``+ 0.0`` makes their
    ``-0.0`` the ``0`` Python's integers give), so every element is bit for bit what the scalar function
    gives for finite input (the tests check it)."""
    margin = _MARGIN * np.maximum(np.maximum(np.abs(lo), np.abs(hi)), np.abs(scale))
    a = lo + margin
    b = hi - margin
    out = mid.copy()
    pending = a <= b  # else narrower than the margin (or NaN): the middle
    for s in _POWERS:
        if not pending.any():
            break
        x = a * s
        pending &= (x > -_EXACT) & (x < _EXACT)  # beyond: no shorter value to find, the middle
        c = (np.ceil(x) + 0.0) / s
        found = pending & (c <= b)
        if not found.any():
            continue
        r = (np.rint(mid * s) + 0.0) / s
        near = found & (a <= r) & (r <= b)
        out[near] = r[near]
        low = found & ~near & (a <= c)  # mid was off-centre
        out[low] = c[low]
        pending &= ~(near | low)
    return out


def decimal_digits(x: float) -> int:
    """Digits after the point of ``x`` as the compact encoding counts them (``round(x·10^k)/10^k == x``);
    ``MAX_DIGITS + 1`` when it has more, or is not finite."""
    if not math.isfinite(x):
        return MAX_DIGITS + 1
    for k, s in enumerate(_POWERS):
        y = x * s
        if not abs(y) < _EXACT:
            break
        if round(y) / s == x:
            return k
    return MAX_DIGITS + 1
