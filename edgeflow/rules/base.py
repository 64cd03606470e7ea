"""What every rule shares: its output, its counters, and series keys for snapshots (the per-series
policies live in :mod:`edgeflow.rules.frame`).

A rule is a small stateful object over :class:`~edgeflow.model.ReadingBatch`:

* ``process(batch)`` takes readings in and returns a :class:`RuleOutput`;
* ``flush()`` emits what it holds (open segments, open windows) at the end of a stream;
* ``advance(now_ns)`` tells it event time moved on without readings (closes windows, sends heartbeats);
* ``snapshot()`` / ``restore()`` give its state as plain JSON values, keyed by series *name* (device and
  resource), never by the process-local series id, so a restarted process with a differently ordered
  :class:`~edgeflow.model.SeriesTable` restores the right state;
* optionally ``snapshot_changes()``: the same state as :class:`SeriesChanges`, only the rows of
  series that changed since its last call, so the commit log keeps the state in rows and rewrites only
  those
  (a rule without it is stored whole, from ``snapshot()``, whenever its pipeline ran).

Time comes only from the readings' origins (or ``advance``), never from the wall clock.
"""

from __future__ import annotations

import base64
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np
import orjson

from edgeflow.errors import RuleError
from edgeflow.model import Interpolation, ReadingBatch, SeriesTable, ValueType

__all__ = [
    "STATE_ROW_SERIES",
    "Interpolation",
    "Rule",
    "RuleOutput",
    "RuleStats",
    "SeriesChanges",
    "decode_value",
    "encode_value",
    "restore_series",
    "series_from_key",
    "series_from_rows",
    "series_key",
    "snapshot_series",
]


@dataclass
class RuleStats:
    """Counters of one rule in a pipeline. ``readings_out`` counts what the rule emitted into the batch
    (points, window results and heartbeats included); the other counters say why readings did not go on."""

    index: int
    type: str
    readings_in: int = 0
    readings_out: int = 0
    late: int = 0
    backwards: int = 0
    dropped: int = 0
    nan: int = 0
    non_numeric: int = 0
    heartbeats: int = 0
    alarms: int = 0
    errors: int = 0
    #: Readings a window let go of early because it held its ``max_readings``.
    evicted: int = 0


@dataclass
class RuleOutput:
    """What one call of a rule produced. ``None`` means empty."""

    batch: ReadingBatch
    alarms: ReadingBatch | None = None
    late: ReadingBatch | None = None


#: Series per state row of a rule that keeps its state in rows (see :class:`SeriesChanges`).
STATE_ROW_SERIES: Final = 64


@dataclass(frozen=True, slots=True)
class SeriesChanges:
    """A rule's state as changes since its last :meth:`Rule.snapshot_changes`: ``rest`` is its
    snapshot without the ``"series"`` list (given whole each time), ``rows`` the state rows that changed,
    by name.

    The rule numbers its series in the order their state began. Series ``n·STATE_ROW_SERIES`` onwards
    make up chunk ``n``, stored as two rows: ``k<n>``, the JSON list of their keys (:func:`series_key`),
    given again only when the chunk gains a series; and ``s<n>``, ``[[last_t, ...], [state, ...]]``, given
    again whenever one of its series changed. A row is built whole, by orjson, with no per-series JSON
    in Python: writing the state of a fleet's 10,000 series a second costs a few hundred rows, not
    10,000 entries. :func:`series_from_rows` reads the rows back."""

    rest: dict[str, Any]
    rows: dict[str, bytes]


def series_from_rows(rows: Iterable[tuple[str, bytes]], kind: str) -> tuple[list[list[Any]], bool]:
    """The ``[series key, [last_t, state]]`` entries a rule's state rows (:class:`SeriesChanges`) hold,
    in the order the rule numbered its series, and whether numbering them afresh in that order gives
    the same chunks (if not, the rows must be written anew)."""
    keys: dict[int, Any] = {}
    states: dict[int, Any] = {}
    for name, blob in rows:
        tag, number = name[:1], name[1:]
        if tag not in ("k", "s") or not number.isdigit():
            raise RuleError(f"{kind} state row {name!r} is not k<chunk> or s<chunk>")
        (keys if tag == "k" else states)[int(number)] = orjson.loads(blob)
    if set(keys) != set(states):
        odd = sorted(set(keys) ^ set(states))
        raise RuleError(f"{kind} state rows: chunks {odd} have keys without states or states without keys")
    entries: list[list[Any]] = []
    exact = True
    for n in sorted(keys):
        ks, st = keys[n], states[n]
        if not (
            isinstance(ks, list)
            and isinstance(st, list)
            and len(st) == 2
            and isinstance(st[0], list)
            and isinstance(st[1], list)
            and len(ks) == len(st[0]) == len(st[1])
        ):
            raise RuleError(f"{kind} state rows of chunk {n} are not [keys] and [[last_t...], [state...]]")
        exact = exact and len(entries) == n * STATE_ROW_SERIES and len(ks) <= STATE_ROW_SERIES
        entries.extend([k, [t, v]] for k, t, v in zip(ks, st[0], st[1], strict=True))
    return entries, exact


def series_key(table: SeriesTable, sid: int) -> list[str]:
    """A series' stable name for snapshots: device, resource, profile, value type, units, source."""
    info = table.info(sid)
    return [info.device, info.resource, info.profile, info.value_type.value, info.units, info.source]


def series_from_key(table: SeriesTable, key: Any) -> int:
    """The id in ``table`` of a series named by :func:`series_key` (interned if not yet seen)."""
    if not isinstance(key, list) or len(key) != 6 or not all(isinstance(k, str) for k in key):
        raise RuleError(
            f"snapshot series key {key!r} is not [device, resource, profile, type, units, source]"
        )
    return table.intern(key[0], key[1], key[2], ValueType.parse(key[3]), key[4], key[5])


class Rule(ABC):
    """Base of every rule. Subclasses set ``kind`` and ``interpolation``."""

    kind: ClassVar[str]
    #: How the cloud reconstructs what this rule emits; ``None`` leaves the upstream mode unchanged.
    interpolation: ClassVar[Interpolation | None] = None

    def __init__(self, table: SeriesTable, index: int = 0) -> None:
        self.table = table
        self.stats = RuleStats(index=index, type=self.kind)

    @abstractmethod
    def _process(self, batch: ReadingBatch) -> RuleOutput: ...

    def process(self, batch: ReadingBatch) -> RuleOutput:
        self.stats.readings_in += len(batch)
        out = self._process(batch)
        self.stats.readings_out += len(out.batch)
        return out

    def flush(self) -> RuleOutput:
        out = self._flush()
        self.stats.readings_out += len(out.batch)
        return out

    def advance(self, now_ns: int) -> RuleOutput:
        out = self._advance(int(now_ns))
        self.stats.readings_out += len(out.batch)
        return out

    def _flush(self) -> RuleOutput:
        return RuleOutput(ReadingBatch.empty(self.table))

    def _advance(self, now_ns: int) -> RuleOutput:
        return RuleOutput(ReadingBatch.empty(self.table))

    def snapshot(self) -> dict[str, Any]:
        """The rule's state as plain JSON values. Stateless rules return ``{}``."""
        return {}

    def snapshot_changes(self) -> SeriesChanges | None:
        """The state as changes since the last call (every series at the first call, and at the first
        call after :meth:`restore`), or ``None``: this rule only gives its state whole (:meth:`snapshot`).
        ``restore({**rest, "series": entries})`` must accept what the changes add up to."""
        return None

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Replace the rule's state with ``snap`` (from :meth:`snapshot`)."""
        if snap:
            raise RuleError(f"{self.kind} rule keeps no state, but the snapshot has {sorted(snap)}")

    def empty(self) -> ReadingBatch:
        return ReadingBatch.empty(self.table)


def snapshot_series(table: SeriesTable, states: Mapping[int, Any]) -> list[list[Any]]:
    """Per-series states as ``[[series key, state], ...]``."""
    return [[series_key(table, sid), st] for sid, st in states.items()]


def restore_series(table: SeriesTable, snap: Mapping[str, Any], kind: str) -> dict[int, Any]:
    """Inverse of :func:`snapshot_series` for ``snap["series"]``."""
    entries = snap.get("series")
    if not isinstance(entries, list):
        raise RuleError(f"{kind} snapshot has no 'series' list")
    out: dict[int, Any] = {}
    for entry in entries:
        if not isinstance(entry, list) or len(entry) != 2:
            raise RuleError(f"{kind} snapshot entry {entry!r} is not [series key, state]")
        out[series_from_key(table, entry[0])] = entry[1]
    return out


def encode_value(v: Any) -> Any:
    """A reading value as plain JSON: floats (non-finite as text), bytes as base64, JSON values as is."""
    if isinstance(v, float | np.floating):
        f = float(v)
        return {"f": f if math.isfinite(f) else repr(f)}
    if isinstance(v, bytes | bytearray):
        return {"b": base64.b64encode(bytes(v)).decode("ascii")}
    return {"o": v}


def decode_value(d: Any) -> Any:
    """Inverse of :func:`encode_value`."""
    if not isinstance(d, dict) or len(d) != 1:
        raise RuleError(f"snapshot value {d!r} is not an encoded value")
    ((k, v),) = d.items()
    if k == "f":
        return float(v)
    if k == "b":
        return base64.b64decode(v)
    if k == "o":
        return v
    raise RuleError(f"snapshot value {d!r} is not an encoded value")
