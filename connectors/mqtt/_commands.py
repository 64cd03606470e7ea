"""Commands in flight, correlated with their replies by id.

Each get or set carries a fresh uuid in its topic; the device answers on ``{response_prefix}/{uuid}``.
A reply whose command has timed out is *late*: counted per device and dropped. A reply with an id
this connector never sent (or has long forgotten) is *unknown*. Ids of timed-out commands are
remembered up to a bound, so a device that answers very late is still told apart from a stranger.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from enum import StrEnum

__all__ = ["Outcome", "Pending"]


class Outcome(StrEnum):
    ANSWERED = "answered"
    LATE = "late"
    UNKNOWN = "unknown"


class Pending:
    """Futures of commands awaiting a reply, by id."""

    def __init__(self, remember: int = 4096) -> None:
        self._waiting: dict[str, tuple[str, asyncio.Future[bytes]]] = {}
        self._expired: OrderedDict[str, str] = OrderedDict()
        self._remember = remember
        self.answered = 0
        self.timed_out = 0
        self.late: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def open(self, device: str) -> tuple[str, asyncio.Future[bytes]]:
        """A new command id for ``device`` and the future its reply will resolve."""
        cid = str(uuid.uuid4())
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = (device, fut)
        return cid, fut

    def close(self, cid: str, *, timed_out: bool) -> None:
        """The command ``cid`` is over: answered, failed to go out, or given up on (``timed_out``; a
        reply after this is late)."""
        entry = self._waiting.pop(cid, None)
        if entry is None:
            return
        device, fut = entry
        if not fut.done():
            fut.cancel()
        if timed_out:
            self.timed_out += 1
            self._expired[cid] = device
            while len(self._expired) > self._remember:
                self._expired.popitem(last=False)

    def resolve(self, cid: str, payload: bytes) -> tuple[Outcome, str]:
        """Hand a reply to its command; returns what it was and the device it belongs to ("" if none)."""
        entry = self._waiting.pop(cid, None)
        if entry is not None:
            device, fut = entry
            if not fut.done():
                fut.set_result(payload)
            self.answered += 1
            return Outcome.ANSWERED, device
        device_name = self._expired.pop(cid, None)
        if device_name is not None:
            self.late[device_name] = self.late.get(device_name, 0) + 1
            return Outcome.LATE, device_name
        return Outcome.UNKNOWN, ""
