"""The real clock stamps origins in whole microseconds; a wall function given to it is used as is."""

from __future__ import annotations

import time

from edgeflow.connector import SYSTEM_CLOCK, SystemClock, as_clock, time_us_ns


def test_origins_are_whole_microseconds_of_the_wall_clock() -> None:
    for clock in (SYSTEM_CLOCK, SystemClock()):
        before = time.time_ns()
        stamp = clock.time_ns()
        after = time.time_ns()
        assert stamp % 1000 == 0
        assert before - 1000 < stamp <= after
    assert time_us_ns() % 1000 == 0


def test_a_given_wall_function_is_used_as_is() -> None:
    assert as_clock(lambda: 1_234_567).time_ns() == 1_234_567
    assert SystemClock(lambda: 7).time_ns() == 7
