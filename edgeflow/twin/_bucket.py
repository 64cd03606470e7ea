"""A token bucket (``per_second`` sustained, ``burst`` at once), as EdgeCore's own limiters, and the
wait of a reporter (eventbus, DMI) that sends what the bucket lets through."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, per_second: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self.taken = 0
        self.refused = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.per_second)
        self._at = now

    def try_take(self) -> bool:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.taken += 1
            return True
        self.refused += 1
        return False

    def wait_time(self) -> float:
        """Seconds until a token is there (0 when one is)."""
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.per_second


async def wait_for_work(
    wake: asyncio.Event,
    bucket: TokenBucket,
    *,
    states_waiting: bool,
    ready_in: float | None,
    most: float = 0.25,
) -> None:
    """A reporter's sleep: until a token is due for what waits (states waiting, or a device ready in
    ``ready_in`` seconds), or ``wake`` is set (something changed), and at most ``most`` seconds (so
    heartbeats are checked)."""
    delay = most
    if states_waiting:
        delay = min(delay, max(bucket.wait_time(), 0.005))
    if ready_in is not None:
        delay = min(delay, max(ready_in, bucket.wait_time(), 0.005))
    wake.clear()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await wake.wait()
