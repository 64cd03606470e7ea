"""The ``file`` uplink: each shipped event as one EdgeX v3 ``AddEventRequest`` JSON line.

It is the debugging sink and what tests read: ``jq`` can follow it, and
:func:`edgeflow.model.decode_event` reads each line back. Alarms are written as they come (a file has
no queue to jump) and tagged ``{"edgeflow.alarm": true}``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import IO

from edgeflow.errors import UplinkError
from edgeflow.model import ReadingBatch, encode_add_event_request
from edgeflow.uplink.spec import FileUplinkSpec

__all__ = ["FileUplink"]


class FileUplink:
    def __init__(self, spec: FileUplinkSpec, *, service: str = "edgeflow") -> None:
        self.spec = spec
        self.service = service
        self._file: IO[bytes] | None = None
        self._lock = asyncio.Lock()
        self.events = 0
        self.readings = 0
        self.bytes = 0
        self.alarms = 0

    async def start(self) -> None:
        path = self.spec.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("ab")
        except OSError as exc:
            raise UplinkError(f"cannot open {path} for appending: {exc.strerror}") from exc

    async def stop(self, *, flush_timeout: float = 5.0) -> None:
        async with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None

    async def send(
        self,
        batch: ReadingBatch,
        interpolation: Mapping[int, str] | None = None,
        *,
        alarm: bool = False,
    ) -> None:
        if not len(batch):
            return
        if self._file is None:
            raise UplinkError("file uplink is not started")
        lines = []
        for event in batch.to_events():
            if alarm:
                event.tags["edgeflow.alarm"] = True
            lines.append(encode_add_event_request(event))
            self.events += 1
        data = b"\n".join(lines) + b"\n"
        async with self._lock:
            try:
                self._file.write(data)
                self._file.flush()
                if self.spec.fsync:
                    os.fsync(self._file.fileno())
            except OSError as exc:
                raise UplinkError(f"cannot write {self.spec.path}: {exc.strerror}") from exc
        self.readings += len(batch)
        self.bytes += len(data)
        if alarm:
            self.alarms += len(batch)

    def stats(self) -> dict[str, int | float]:
        return {
            "events": self.events,
            "readings": self.readings,
            "bytes_shipped": self.bytes,
            "alarms": self.alarms,
        }
