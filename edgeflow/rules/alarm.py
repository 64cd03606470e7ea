"""Alarms: threshold crossings with hysteresis, shipped at once ahead of batches.

Per series the rule keeps the alarm level: 0 (normal), 1 (above), -1 (below). A reading with
``value > above`` raises 1, ``value < below`` raises -1; an alarm clears (0) once the value is back past
the threshold by the hysteresis (``value < above - hysteresis`` / ``value > below + hysteresis``). Each
change of level is one reading on the derived series ``<resource>.<name>`` (Int8) at the crossing
reading's origin, in the ``alarms`` output. NaN and non-numeric readings (Bools too: a state, not a
quantity; see :meth:`~edgeflow.model.ReadingBatch.numeric_mask`) raise nothing; readings pass on
unchanged (unless ``pass_through`` is false). A batch with no reading past a threshold and no alarm
active is checked in one vectorised step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeflow.errors import RuleError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
from edgeflow.rules.base import Rule, RuleOutput, restore_series, snapshot_series
from edgeflow.rules.frame import split_series
from edgeflow.rules.spec import AlarmSpec

__all__ = ["AlarmRule"]


class AlarmRule(Rule):
    kind = "alarm"

    def __init__(self, spec: AlarmSpec, table: SeriesTable, index: int = 0, *, label: str = "") -> None:
        super().__init__(table, index)
        self.spec = spec
        #: The derived series is ``<resource>.<label>``.
        self.label = spec.name or label or "alarm"
        self.above = np.inf if spec.above is None else spec.above
        self.below = -np.inf if spec.below is None else spec.below
        self.hyst = spec.hysteresis
        self._level: dict[int, int] = {}
        self._derived: dict[int, int] = {}

    @classmethod
    def from_spec(cls, spec: AlarmSpec, table: SeriesTable, index: int = 0, *, label: str = "") -> AlarmRule:
        return cls(spec, table, index, label=label)

    def alarm_series(self, sid: int) -> int:
        d = self._derived.get(sid)
        if d is None:
            info = self.table.info(sid)
            d = self.table.intern(
                info.device,
                f"{info.resource}.{self.label}",
                info.profile,
                ValueType.INT8,
                "",
                info.source,
            )
            self._derived[sid] = d
        return d

    def _process(self, batch: ReadingBatch) -> RuleOutput:
        out = batch if self.spec.pass_through else self.empty()
        if len(batch) == 0:
            return RuleOutput(out)
        v = batch.values
        with np.errstate(invalid="ignore"):
            past = (v > self.above) | (v < self.below)
        if not past.any() and not any(self._level.values()):
            return RuleOutput(out)
        numeric = batch.numeric_mask()
        past &= numeric
        a_t: list[int] = []
        a_v: list[float] = []
        a_s: list[int] = []
        hi, lo, h = self.above, self.below, self.hyst
        split = split_series(batch.series)
        for g, sid in enumerate(split.sids):
            idx = split.positions(g)
            level = self._level.get(sid, 0)
            if level == 0 and not past[idx].any():
                continue
            ts = batch.origins[idx].tolist()
            vs = v[idx].tolist()
            num = numeric[idx].tolist()
            for k in range(len(ts)):
                x = vs[k]
                if x != x or not num[k]:
                    continue
                new = level
                if (level == 1 and x < hi - h) or (level == -1 and x > lo + h):
                    new = 0
                if new != level:
                    a_t.append(ts[k])
                    a_v.append(0.0)
                    a_s.append(self.alarm_series(sid))
                    level = 0
                if level == 0:
                    if x > hi:
                        level = 1
                    elif x < lo:
                        level = -1
                    if level != 0:
                        a_t.append(ts[k])
                        a_v.append(float(level))
                        a_s.append(self.alarm_series(sid))
            self._level[sid] = level
        self.stats.alarms += len(a_t)
        alarms = ReadingBatch.from_columns(self.table, a_t, a_v, a_s) if a_t else None
        return RuleOutput(out, alarms=alarms)

    def snapshot(self) -> dict[str, Any]:
        return {"series": snapshot_series(self.table, dict(self._level))}

    def restore(self, snap: Mapping[str, Any]) -> None:
        levels = restore_series(self.table, snap, self.kind)
        for lv in levels.values():
            if lv not in (-1, 0, 1):
                raise RuleError(f"alarm snapshot level {lv!r} is not -1, 0 or 1")
        self._level = {sid: int(lv) for sid, lv in levels.items()}
