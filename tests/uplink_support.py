"""Helpers shared by the uplink, receiver and outage tests (and the edge process they start)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeflow.codec import DecodedSeries
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.uplink import Uplink
from edgeflow.uplink.spec import MqttUplinkSpec

#: Readings per series per batch and series per batch in :func:`make_batch`.
SERIES = 4
STEP_NS = 1_000_000


def table() -> SeriesTable:
    t = SeriesTable()
    for i in range(SERIES):
        t.intern(f"pump-{i}", "pressure", "pump-profile", source="pressure")
    return t


def make_batch(t: SeriesTable, index: int, per_series: int = 25) -> ReadingBatch:
    """Batch ``index``: ``per_series`` readings of each series, origins continuing from batch
    ``index - 1``; values encode (series, origin) so the receiver can check every one."""
    k = np.arange(index * per_series, (index + 1) * per_series, dtype=np.int64)
    origins = np.repeat(k, SERIES) * STEP_NS + 1_700_000_000_000_000_000
    series = np.tile(np.arange(SERIES, dtype=np.int32), per_series)
    values = expected_value(series, origins)
    return ReadingBatch(t, origins, values, series)


def expected_value(series: Any, origins: Any) -> Any:
    return np.asarray(series, np.float64) * 1000.0 + (np.asarray(origins) // STEP_NS % 100_000) / 8.0


def expected_origins(batches: range, per_series: int = 25) -> np.ndarray[Any, Any]:
    k = np.arange(batches.start * per_series, batches.stop * per_series, dtype=np.int64)
    return k * STEP_NS + 1_700_000_000_000_000_000


def check_series(series: dict[tuple[str, str], DecodedSeries], batches: range, per_series: int = 25) -> None:
    """Every series holds exactly the readings of ``batches``, in order, with the right values."""
    want = expected_origins(batches, per_series)
    assert sorted(series) == [(f"pump-{i}", "pressure") for i in range(SERIES)]
    for (device, _), s in series.items():
        sid = int(device.split("-")[1])
        np.testing.assert_array_equal(s.origins, want)
        np.testing.assert_allclose(s.values, expected_value(sid, want))


def uplink_spec(url: str, path: Path, **kw: Any) -> MqttUplinkSpec:
    """A spec for tests: outbox at ``path``, quick reconnects, a message per ``send`` (``max_delay``
    0: these tests count messages; the default batching has tests of its own); ``kw`` overrides (dicts
    are merged)."""
    doc: dict[str, Any] = {
        "type": "mqtt",
        "url": url,
        "outbox": {"path": str(path)},
        "reconnect": {"initial_delay": 0.1, "max_delay": 1.0},
        "keepalive": 5,
        "batching": {"max_delay": 0},
    }
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(doc.get(k), dict):
            doc[k] = {**doc[k], **v}
        else:
            doc[k] = v
    return MqttUplinkSpec.model_validate(doc)


async def wait_for(cond: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.05)


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class Producer:
    """Sends ``make_batch(table(), n)`` for n = 0, 1, 2, … every 50 ms while :meth:`run` runs;
    ``sent`` is how many batches were sent (and committed) so far."""

    def __init__(self, up: Uplink) -> None:
        self.up = up
        self.table = table()
        self.sent = 0

    async def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await self.up.send(make_batch(self.table, self.sent))
            self.sent += 1
            await asyncio.sleep(0.05)
