"""The cloud end: subscribe, decode, de-duplicate, report gaps, reconstruct series.

:class:`Receiver` takes what edge nodes ship over MQTT (both encodings), drops duplicates by
``(stream_id, seq)``, tracks gaps per stream with :class:`StreamTracker`, hands each new batch to a
callback and/or writes its readings as JSON lines, and rebuilds every series.
"""

from __future__ import annotations

from edgeflow.cloud.receiver import BatchHandler, Receiver, StreamTracker

__all__ = ["BatchHandler", "Receiver", "StreamTracker"]
