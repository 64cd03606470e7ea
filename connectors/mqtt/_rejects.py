"""Messages the connector could not use: counted per device and reason, logged once per interval.

A device that sends garbage a thousand times a second must cost a counter increment per message,
not a log line: the first message of a kind (device, reason) is logged at once, the next ones are
counted, and the count is logged with the latest example once the interval has passed. Counters of
messages that name no known device are kept under the device ``""``, so a flood of invented names
cannot grow memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from edgeflow.errors import ConnectorError

__all__ = ["PayloadError", "Reason", "Rejects"]

log = logging.getLogger("connectors.mqtt")


class Reason(StrEnum):
    """Why a message was dropped."""

    NOT_JSON = "not_json"  # the payload is not JSON where JSON is needed
    WRONG_TYPE = "wrong_type"  # a value does not fit its resource's valueType
    UNKNOWN_RESOURCE = "unknown_resource"  # the topic or mapping names no readable resource or command
    MISSING_VALUE = "missing_value"  # the payload lacks a value the source or mapping needs
    OVERSIZE = "oversize"  # larger than max_payload
    UNKNOWN_DEVICE = "unknown_device"  # names a device this connector does not serve
    BAD_TOPIC = "bad_topic"  # the topic does not have the levels its scheme needs
    BAD_ORIGIN = "bad_origin"  # the origin the mapping names is missing or not a time
    NOT_SUBSCRIBED = "not_subscribed"  # a served device nobody subscribed (LOCKED)
    REJECTED = "rejected"  # the device service refused the values (transform, assertion)
    UNKNOWN_REPLY = "unknown_reply"  # a command reply with no command of that id
    ERROR = "error"  # an unexpected error in edgeflow itself (logged with its traceback once)


class PayloadError(ConnectorError):
    """A message that cannot become readings, with the :class:`Reason`."""

    def __init__(self, reason: Reason, message: str, *, device: str | None = None) -> None:
        self.reason = reason
        super().__init__(message, device=device)


@dataclass(slots=True)
class _Kind:
    count: int = 0
    unlogged: int = 0
    logged_at: float = float("-inf")
    example: str = ""


class Rejects:
    """Counters of dropped messages, by ``(device, reason)``."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._kinds: dict[tuple[str, Reason], _Kind] = {}

    def add(self, device: str, reason: Reason, detail: str, topic: str) -> None:
        key = (device, reason)
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = _Kind()
        kind.count += 1
        now = self._clock()
        if now - kind.logged_at >= self.interval:
            more = f" ({kind.unlogged} more like it since the last report)" if kind.unlogged else ""
            log.warning(
                "mqtt: dropped a message from %s (%s) on %r: %s%s",
                repr(device) if device else "an unknown device",
                reason.value,
                topic[:200],
                detail[:300],
                more,
            )
            kind.logged_at = now
            kind.unlogged = 0
        else:
            kind.unlogged += 1
            kind.example = f"{topic[:200]!r}: {detail[:300]}"

    def flush(self) -> None:
        """Log what was counted but not yet reported (at close)."""
        for (device, reason), kind in self._kinds.items():
            if kind.unlogged:
                log.warning(
                    "mqtt: dropped %d more messages from %s (%s), the last on %s",
                    kind.unlogged,
                    repr(device) if device else "unknown devices",
                    reason.value,
                    kind.example,
                )
                kind.unlogged = 0
                kind.logged_at = self._clock()

    def counts(self) -> dict[tuple[str, str], int]:
        """``{(device, reason): dropped}``."""
        return {(d, r.value): k.count for (d, r), k in self._kinds.items()}

    @property
    def total(self) -> int:
        return sum(k.count for k in self._kinds.values())
