"""Readings as the ``staged`` table keeps them: committed at once, cut into a batch later.

A staged row outlives the process that wrote it, and a series id lives only as long as its
:class:`~edgeflow.model.SeriesTable`, so a row names its series (device, resource, profile, value type,
units, source) and refers to them by position; :func:`unpack` interns them again in the table of the
process that reads it back. The columns are the batch's own arrays, byte for byte (``marshal`` of
built-in types only: nothing in a row can run code when it is read back).
"""

from __future__ import annotations

import marshal
from collections.abc import Mapping
from types import NoneType
from typing import Any

import numpy as np

from edgeflow.model import ReadingBatch, SeriesTable, ValueType

__all__ = ["UnstageableError", "pack", "unpack"]

_VERSION = 1


class UnstageableError(ValueError):
    """The readings hold a value ``marshal`` cannot write (an object of a type of its own); the
    committer then cuts them into a batch at once instead of staging them."""


def pack(batch: ReadingBatch, interpolation: Mapping[int, str] | None) -> bytes:
    """``batch`` and how the cloud rebuilds its series, as one staged row."""
    sids, local = np.unique(batch.series, return_inverse=True)
    info = batch.table.info
    names = [
        (i.device, i.resource, i.profile, i.value_type.value, i.units, i.source)
        for i in (info(int(s)) for s in sids.tolist())
    ]
    position = {int(s): k for k, s in enumerate(sids.tolist())}
    interp = {position[s]: kind for s, kind in (interpolation or {}).items() if s in position}
    try:
        return marshal.dumps(
            (
                _VERSION,
                names,
                local.astype("<i4").tobytes(),
                batch.origins.astype("<i8").tobytes(),
                batch.values.astype("<f8").tobytes(),
                None if batch.objects is None else [_plain(v) for v in batch.objects.tolist()],
                None if batch.starts is None else batch.starts.astype("<i8").tobytes(),
                interp,
            )
        )
    except ValueError as exc:
        raise UnstageableError(str(exc)) from exc


def _plain(value: Any) -> Any:
    """``value`` in built-in types, as the encoder would write it: numpy scalars as numbers, arrays
    and tuples as lists, ``bytearray``/``memoryview`` as bytes. Anything else stays (and ``marshal``
    refuses what it cannot write)."""
    if isinstance(value, str | float | int | bytes | NoneType):  # bool is an int
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def unpack(blob: bytes, table: SeriesTable) -> tuple[ReadingBatch, dict[int, str] | None]:
    """A staged row back as a batch whose series ids are ``table``'s, and its interpolation."""
    row = marshal.loads(blob)
    if not isinstance(row, tuple) or len(row) != 8 or row[0] != _VERSION:
        raise ValueError(f"staged row of an unknown layout ({type(row).__name__})")
    _, names, local, origins, values, objects, starts, interp = row
    sids = np.asarray(
        [table.intern(d, r, p, ValueType(vt), u, src) for d, r, p, vt, u, src in names] or [0],
        dtype=np.int32,
    )
    series = sids[np.frombuffer(local, dtype="<i4")]
    obj = None
    if objects is not None:
        obj = np.empty(len(objects), dtype=object)
        for i, v in enumerate(objects):  # one by one: a list value must stay one element
            obj[i] = v
    batch = ReadingBatch(
        table,
        np.frombuffer(origins, dtype="<i8").astype(np.int64),
        np.frombuffer(values, dtype="<f8").astype(np.float64),
        series.astype(np.int32),
        obj,
        None if starts is None else np.frombuffer(starts, dtype="<i8").astype(np.int64),
    )
    return batch, ({int(sids[k]): str(kind) for k, kind in interp.items()} or None)
