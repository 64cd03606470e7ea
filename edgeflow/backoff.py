"""Capped exponential backoff with jitter, for everything in edgeflow that retries.

A leaf module (it imports nothing of edgeflow), so the MQTT layer, the commit log and the connectors
share one retry policy.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """The n-th delay is uniform in [d/2, d] with ``d = min(max_delay, initial * multiplier**n)``;
    :meth:`reset` after a success."""

    def __init__(self, initial: float, max_delay: float, multiplier: float = 2.0) -> None:
        self.initial = initial
        self.max_delay = max_delay
        self.multiplier = multiplier
        self.attempt = 0

    def next_delay(self) -> float:
        d = min(self.max_delay, self.initial * self.multiplier ** min(self.attempt, 64))
        self.attempt += 1
        return random.uniform(d / 2, d)

    def reset(self) -> None:
        self.attempt = 0
