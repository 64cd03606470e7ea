"""The commit log: the one owner of durability on the edge.

What must agree after a crash — the encoded batches the cloud will get, each stream's next sequence
number, and each pipeline's rule state (a head and rows, only the changed rows rewritten)
— is committed in **one** SQLite transaction, by **one** owner,
on the commit log's **own thread**:

* :class:`Committer` takes shipments from the pipelines, snapshots the rule states as it cuts a group,
  encodes (assigning sequence numbers: nowhere else are they assigned) and commits;
* :class:`CommitLog` runs every database call on its thread, so the event loop never waits on the
  disk; the outbox is its read side: transports :meth:`~CommitLog.take` batches and
  :meth:`~CommitLog.ack` them once delivered.

A ``kill -9`` at any instant restarts into a state where every rule resumes from the snapshot that
produced the batches in the outbox, so the cloud's reconstruction keeps every rule's bound and no
sequence number is used twice.

The outbox is bounded by bytes with a declared overflow policy, every drop counted: ``drop-oldest``
(delete the oldest unsent batches, plain before alarms), ``drop-newest`` (refuse the new batches) or
``block`` (the commit waits for acknowledgements to make room).
"""

from __future__ import annotations

from edgeflow.commitlog._log import CommitLog
from edgeflow.commitlog._staging import unpack as unpack_staged
from edgeflow.commitlog._store import (
    ROW_OVERHEAD,
    ROW_SEP,
    CommitResult,
    OutboxItem,
    OutboxRecord,
    OverflowPolicy,
    StreamState,
    row_key,
)
from edgeflow.commitlog.committer import BatchEncoder, Committer, Shipment, StateSource

__all__ = [
    "ROW_OVERHEAD",
    "ROW_SEP",
    "BatchEncoder",
    "CommitLog",
    "CommitResult",
    "Committer",
    "OutboxItem",
    "OutboxRecord",
    "OverflowPolicy",
    "Shipment",
    "StateSource",
    "StreamState",
    "row_key",
    "unpack_staged",
]
