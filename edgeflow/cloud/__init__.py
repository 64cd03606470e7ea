"""The cloud end: subscribe, decode, de-duplicate, store, report gaps, reconstruct series.

:class:`Receiver` takes what edge nodes ship over MQTT (both encodings), drops duplicates by
``(stream_id, seq)``, tracks gaps per stream with :class:`StreamTracker`, and stores each new batch in
a :class:`Sink` — :class:`JsonLinesSink` (a file) or :class:`edgeflow.cloud.postgres.PostgresStore`
(PostgreSQL/TimescaleDB, exactly-once by ``(stream, seq)`` across restarts and receiver groups; it
needs the ``cloud`` extra, psycopg 3, and is imported from its module) — acknowledging a message to the
broker only once its batch is stored.
"""

from __future__ import annotations

from edgeflow.cloud.receiver import BatchHandler, Receiver, StreamTracker
from edgeflow.cloud.sinks import JsonLinesSink, Sink, SinkError, SinkOpenError, StoreItem, jsonl_lines

__all__ = [
    "BatchHandler",
    "JsonLinesSink",
    "Receiver",
    "Sink",
    "SinkError",
    "SinkOpenError",
    "StoreItem",
    "StreamTracker",
    "jsonl_lines",
]
