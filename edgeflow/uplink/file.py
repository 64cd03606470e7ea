"""The ``file`` uplink: each shipped event as one EdgeX v3 ``AddEventRequest`` JSON line.

It is the debugging sink and what tests read: ``jq`` can follow it, and
:func:`edgeflow.model.decode_event` reads each line back. Events carry edgeflow's stream id and
sequence number in their tags (``edgeflowStream``, ``edgeflowSeq``; alarms ``edgeflowAlarm``), so a
reader can drop the lines written twice when the process was killed between writing a batch and
acknowledging it.

Like every uplink it ships through the commit log: the transport takes batches from the outbox,
appends them (in a worker thread: no disk I/O on the event loop), fsyncs when asked, then acknowledges
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import IO

from edgeflow.backoff import Backoff
from edgeflow.commitlog import CommitLog, OutboxRecord
from edgeflow.errors import OutboxError, UplinkError
from edgeflow.uplink.base import Uplink, commit_log_for
from edgeflow.uplink.spec import FileUplinkSpec

__all__ = ["FileTransport", "FileUplink"]

log = logging.getLogger(__name__)

_TAKE = 256


class FileTransport:
    """Appends the outbox's payloads to a file, one per line."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._file: IO[bytes] | None = None
        self._log: CommitLog | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self.last_error: BaseException | None = None
        self.failing = False
        self._c = {"events": 0, "bytes_written": 0, "alarms": 0, "write_failures": 0}

    async def start(self, commit_log: CommitLog) -> None:
        self._log = commit_log
        self._file = await asyncio.to_thread(self._open)
        self._task = asyncio.get_running_loop().create_task(self._pump(), name=f"file uplink {self.path}")

    def _open(self) -> IO[bytes]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self.path.open("ab")
        except OSError as exc:
            raise UplinkError(f"cannot open {self.path} for appending: {exc.strerror}") from exc

    async def stop(self, *, flush_timeout: float = 5.0) -> None:
        if self._task is None:
            return
        if flush_timeout > 0 and not self.failing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    while self._log is not None and self._log.queued_batches:
                        self._idle.clear()
                        self._wake.set()
                        await self._idle.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
            self._file = None

    def wake(self) -> None:
        self._wake.set()

    def _write(self, data: bytes) -> None:
        f = self._file
        assert f is not None
        f.write(data)
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())

    async def _pump(self) -> None:
        commit_log = self._log
        assert commit_log is not None
        backoff = Backoff(0.2, 10.0)
        while True:
            try:
                records = await commit_log.take(_TAKE)
            except OutboxError as exc:
                self._fail(exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            if not records:
                self._idle.set()
                self._wake.clear()
                if commit_log.queued_batches:
                    continue
                await self._wake.wait()
                continue
            data = b"".join(r.payload + b"\n" for r in records)
            try:
                await asyncio.to_thread(self._write, data)
            except OSError as exc:
                self._c["write_failures"] += 1
                self._fail(UplinkError(f"cannot write {self.path}: {exc.strerror or exc}"))
                with contextlib.suppress(OutboxError):
                    await commit_log.release()
                await asyncio.sleep(backoff.next_delay())
                continue
            self._count(records, len(data))
            while True:  # written: acknowledge, or the lines would be written twice
                try:
                    await commit_log.ack(records)
                    break
                except OutboxError as exc:
                    self._fail(exc)
                    await asyncio.sleep(backoff.next_delay())
            if self.failing:
                log.info("file uplink %s works again", self.path)
            self.failing = False
            backoff.reset()

    def _fail(self, exc: BaseException) -> None:
        if not self.failing:
            log.error("file uplink %s: %s; keeping the events in the outbox and retrying", self.path, exc)
        self.last_error = exc
        self.failing = True

    def _count(self, records: list[OutboxRecord], size: int) -> None:
        self._c["events"] += len(records)
        self._c["bytes_written"] += size
        self._c["alarms"] += sum(1 for r in records if r.alarm)

    def health(self) -> tuple[bool, str]:
        if self.failing:
            return False, str(self.last_error)
        return True, ""

    def stats(self) -> dict[str, int | float]:
        return dict(self._c)


class FileUplink(Uplink):
    """An :class:`~edgeflow.uplink.base.Uplink` to a JSON-lines file, from an ``uplink: {type: file}`` spec."""

    def __init__(self, spec: FileUplinkSpec, *, service: str = "edgeflow") -> None:
        self.spec = spec
        super().__init__(
            service=service,
            encoding="edgex-json",
            topic="",
            envelope="none",
            commit_log=commit_log_for(spec.outbox_spec),
            transport=FileTransport(spec.path, fsync=spec.fsync),
        )
