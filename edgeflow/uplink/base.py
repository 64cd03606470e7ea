"""What every northbound transport offers the runtime."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from edgeflow.model import ReadingBatch

__all__ = ["Uplink"]


@runtime_checkable
class Uplink(Protocol):
    """A northbound transport. ``send`` returns once the batch is durable on the edge side (written to
    the file, committed to the outbox); alarms (``alarm=True``) go ahead of queued batches."""

    async def start(self) -> None: ...

    async def stop(self, *, flush_timeout: float = 5.0) -> None: ...

    async def send(
        self,
        batch: ReadingBatch,
        interpolation: Mapping[int, str] | None = None,
        *,
        alarm: bool = False,
    ) -> None: ...

    def stats(self) -> dict[str, int | float]: ...
