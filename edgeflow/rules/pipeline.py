"""A pipeline: an ordered list of rules over columnar batches, with one output per call.

Each rule's batch output is the next rule's input; alarms and late readings of every rule are collected
beside the batch. :meth:`Pipeline.flush` and :meth:`Pipeline.advance` let each rule emit what it holds
and push that through the rules after it, so nothing held upstream skips a downstream rule.

``interpolation`` says how the cloud rebuilds each series of the output batch: the mode of the last rule
in the pipeline that sets one (swing and swinging door ``linear``; deadband, on-change, PMC-MR and
windows ``hold``), ``hold`` when none does (raw readings are exact at their own origins either way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from edgeflow.errors import ConfigError, RuleError
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.parsing import config_error
from edgeflow.rules.alarm import AlarmRule
from edgeflow.rules.auto import AutoRule
from edgeflow.rules.base import Interpolation, Rule, RuleOutput, RuleStats
from edgeflow.rules.exception import DeadbandRule, HeartbeatRule, MinIntervalRule, OnChangeRule
from edgeflow.rules.filters import ExpressionRule, FilterRule, RangeRule
from edgeflow.rules.pmc import PmcRule
from edgeflow.rules.sdt import SdtRule
from edgeflow.rules.simpiece import MixPieceRule, SimPieceRule
from edgeflow.rules.spec import (
    AlarmSpec,
    AutoSpec,
    DeadbandSpec,
    ExpressionSpec,
    FilterSpec,
    HeartbeatSpec,
    MinIntervalSpec,
    MixPieceSpec,
    OnChangeSpec,
    PmcSpec,
    RangeSpec,
    RuleSpec,
    SdtSpec,
    SimPieceSpec,
    SwingSpec,
    WindowSpec,
)
from edgeflow.rules.swing import SwingRule
from edgeflow.rules.window import WindowRule

__all__ = [
    "Interpolation",
    "Pipeline",
    "PipelineChanges",
    "PipelineOutput",
    "RuleStats",
    "build_pipeline",
    "build_rule",
    "derived_label",
    "late_name",
    "output_names",
    "rule_specs",
]

SNAPSHOT_VERSION = 1

_RULE_LIST: TypeAdapter[list[RuleSpec]] = TypeAdapter(list[RuleSpec])


@dataclass(frozen=True)
class PipelineOutput:
    """What one call of a pipeline produced."""

    batch: ReadingBatch
    """Readings and points to ship (same :class:`~edgeflow.model.SeriesTable` as the input)."""
    alarms: ReadingBatch
    """Alarm readings, to ship at once, ahead of batches."""
    late: ReadingBatch
    """Readings routed aside as late or backwards in time (counted), never silently dropped."""
    interpolation: Mapping[int, Interpolation]
    """Series id → how the cloud reconstructs it, for each series in ``batch``."""


def derived_label(spec: RuleSpec, pipeline: str, index: int) -> str:
    """What names the series a window or alarm derives: the rule's ``name``, else ``<pipeline>.<index>``
    (empty outside a pipeline)."""
    name = getattr(spec, "name", None)
    if name:
        return str(name)
    return f"{pipeline}.{index}" if pipeline else ""


def late_name(resource: str, pipeline: str) -> str:
    """The series a pipeline ships a series' late readings on: ``<resource>@late.<pipeline>`` (each
    pipeline judges lateness by its own rules' state), ``<resource>@late`` outside a pipeline."""
    return f"{resource}@late.{pipeline}" if pipeline else f"{resource}@late"


def output_names(specs: Sequence[RuleSpec], pipeline: str, resource: str) -> dict[str, str]:
    """The series names a pipeline of ``specs`` can write for input series ``resource``, each with the
    rule that writes it (``"input"`` for the series itself, passed on). Worked out from the specs alone,
    so two pipelines that would write one series are found before anything runs."""
    current = {resource: "input"}
    out: dict[str, str] = {}
    for i, spec in enumerate(specs):
        where = f"rule {i} ({spec.type})"
        if getattr(spec, "backwards", None) == "late" or isinstance(spec, WindowSpec):
            out.update({late_name(n, pipeline): where for n in current})  # what this rule routes late
        if isinstance(spec, WindowSpec):
            label = derived_label(spec, pipeline, i)
            made = {
                (f"{n}.{label}.{a}" if label else f"{n}.{a}"): where for n in current for a in spec.aggregates
            }
            current = {**(current if spec.keep_input else {}), **made}
        elif isinstance(spec, AlarmSpec):
            label = derived_label(spec, pipeline, i) or "alarm"
            out.update({f"{n}.{label}": where for n in current})
            if not spec.pass_through:
                current = {}
    out.update(current)
    return out


#: The rule each spec type builds (windows and alarms also take the label of what they derive).
_RULES: dict[type, Callable[[Any, SeriesTable, int], Rule]] = {
    DeadbandSpec: DeadbandRule.from_spec,
    OnChangeSpec: OnChangeRule.from_spec,
    MinIntervalSpec: MinIntervalRule.from_spec,
    HeartbeatSpec: HeartbeatRule.from_spec,
    SwingSpec: SwingRule.from_spec,
    PmcSpec: PmcRule.from_spec,
    SdtSpec: SdtRule.from_spec,
    SimPieceSpec: SimPieceRule.from_spec,
    MixPieceSpec: MixPieceRule.from_spec,
    AutoSpec: AutoRule.from_spec,
    FilterSpec: FilterRule.from_spec,
    RangeSpec: RangeRule.from_spec,
    ExpressionSpec: ExpressionRule.from_spec,
}


def build_rule(spec: RuleSpec, table: SeriesTable, index: int = 0, pipeline: str = "") -> Rule:
    """The rule a spec declares (``pipeline`` names the series windows and alarms derive)."""
    if isinstance(spec, WindowSpec):
        return WindowRule.from_spec(spec, table, index, label=derived_label(spec, pipeline, index))
    if isinstance(spec, AlarmSpec):
        return AlarmRule.from_spec(spec, table, index, label=derived_label(spec, pipeline, index))
    make = _RULES.get(type(spec))
    if make is None:  # pragma: no cover - the union is closed
        raise RuleError(f"no rule for spec {type(spec).__name__}")
    return make(spec, table, index)


@dataclass(frozen=True, slots=True)
class PipelineChanges:
    """See :meth:`Pipeline.snapshot_changes`: ``rows`` maps a rule's index to the state rows it changed,
    by name (:class:`~edgeflow.rules.base.SeriesChanges`)."""

    head: dict[str, Any]
    rows: dict[int, dict[str, bytes]]


class Pipeline:
    """An ordered list of rules. Build it with :func:`build_pipeline`."""

    def __init__(self, rules: Sequence[Rule], table: SeriesTable) -> None:
        self.rules = list(rules)
        self.table = table
        mode: Interpolation = "hold"
        for r in self.rules:
            if r.interpolation is not None:
                mode = r.interpolation
        self.mode: Interpolation = mode

    def _run(
        self, first: int, batch: ReadingBatch, alarms: list[ReadingBatch], late: list[ReadingBatch]
    ) -> ReadingBatch:
        cur = batch
        for rule in self.rules[first:]:
            if len(cur) == 0:
                break
            out = rule.process(cur)
            self._collect(out, alarms, late)
            cur = out.batch
        return cur

    @staticmethod
    def _collect(out: RuleOutput, alarms: list[ReadingBatch], late: list[ReadingBatch]) -> None:
        if out.alarms is not None and len(out.alarms):
            alarms.append(out.alarms)
        if out.late is not None and len(out.late):
            late.append(out.late)

    def _output(
        self, parts: list[ReadingBatch], alarms: list[ReadingBatch], late: list[ReadingBatch]
    ) -> PipelineOutput:
        batch = ReadingBatch.concat(self.table, [p for p in parts if len(p)])
        mode = self.mode
        interp = {int(s): mode for s in np.unique(batch.series).tolist()}
        return PipelineOutput(
            batch=batch,
            alarms=ReadingBatch.concat(self.table, alarms),
            late=ReadingBatch.concat(self.table, late),
            interpolation=interp,
        )

    def process(self, batch: ReadingBatch) -> PipelineOutput:
        """Run ``batch`` through every rule."""
        alarms: list[ReadingBatch] = []
        late: list[ReadingBatch] = []
        return self._output([self._run(0, batch, alarms, late)], alarms, late)

    def _drain(self, emit: Any) -> PipelineOutput:
        alarms: list[ReadingBatch] = []
        late: list[ReadingBatch] = []
        carry = ReadingBatch.empty(self.table)
        for rule in self.rules:
            parts: list[ReadingBatch] = []
            if len(carry):
                out = rule.process(carry)
                self._collect(out, alarms, late)
                parts.append(out.batch)
            out = emit(rule)
            self._collect(out, alarms, late)
            parts.append(out.batch)
            carry = ReadingBatch.concat(self.table, [p for p in parts if len(p)])
        return self._output([carry], alarms, late)

    def flush(self) -> PipelineOutput:
        """End of stream or shutdown: every rule emits what it holds (open segments, windows)."""
        return self._drain(lambda r: r.flush())

    def advance(self, watermark_ns: int) -> PipelineOutput:
        """Event time moved to ``watermark_ns`` without readings: windows close, heartbeats go out."""
        return self._drain(lambda r: r.advance(watermark_ns))

    def stats(self) -> list[RuleStats]:
        """A copy of each rule's counters, in pipeline order."""
        return [replace(r.stats) for r in self.rules]

    def snapshot(self) -> dict[str, Any]:
        """The state of every rule, as plain JSON values (survives a restart with :meth:`restore`)."""
        return {
            "version": SNAPSHOT_VERSION,
            "rules": [{"type": r.kind, "state": r.snapshot()} for r in self.rules],
        }

    def snapshot_changes(self) -> PipelineChanges:
        """The state as changes since the last call, for a store that keeps the series in rows: the
        head (as :meth:`snapshot`, with each rule that gives :meth:`~Rule.snapshot_changes` holding
        only its ``rest`` and ``"rows": true``; any other rule whole) and the rows that changed.
        :meth:`restore_changes` takes the head and every row stored."""
        rules: list[dict[str, Any]] = []
        rows: dict[int, dict[str, bytes]] = {}
        for i, r in enumerate(self.rules):
            changes = r.snapshot_changes()
            if changes is None:
                rules.append({"type": r.kind, "state": r.snapshot()})
                continue
            rules.append({"type": r.kind, "state": changes.rest, "rows": True})
            if changes.rows:
                rows[i] = changes.rows
        return PipelineChanges({"version": SNAPSHOT_VERSION, "rules": rules}, rows)

    def restore_changes(self, head: Mapping[str, Any], rows: Iterable[tuple[int, Any, Any]]) -> None:
        """Put back the state from a :meth:`snapshot_changes` head and its stored rows (``(rule index,
        series key, state)``); a head from :meth:`snapshot` (no rows) is restored as is."""
        entries = head.get("rules")
        if not isinstance(entries, list):
            raise RuleError("pipeline snapshot has no rules list")
        series: dict[int, list[list[Any]]] = {}
        for i, key, st in rows:
            if (
                not (0 <= i < len(entries))
                or not isinstance(entries[i], Mapping)
                or not entries[i].get("rows")
            ):
                raise RuleError(f"pipeline snapshot has a series row for rule {i}, which keeps none")
            series.setdefault(i, []).append([key, st])
        full: list[Any] = []
        for i, entry in enumerate(entries):
            if isinstance(entry, Mapping) and entry.get("rows"):
                state = entry.get("state")
                if not isinstance(state, Mapping):
                    raise RuleError(f"pipeline snapshot rule {i} has no state mapping")
                entry = {"type": entry.get("type"), "state": {**state, "series": series.get(i, [])}}
            full.append(entry)
        self.restore({**head, "rules": full})

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Put back the state from :meth:`snapshot`. The pipeline must declare the same rules, in order."""
        if snap.get("version") != SNAPSHOT_VERSION:
            raise RuleError(f"pipeline snapshot version {snap.get('version')!r} is not {SNAPSHOT_VERSION}")
        entries = snap.get("rules")
        if not isinstance(entries, list) or len(entries) != len(self.rules):
            n = len(entries) if isinstance(entries, list) else "no"
            raise RuleError(f"pipeline snapshot has {n} rules, the pipeline {len(self.rules)}")
        for i, (rule, entry) in enumerate(zip(self.rules, entries, strict=True)):
            if not isinstance(entry, Mapping) or entry.get("type") != rule.kind:
                got = entry.get("type") if isinstance(entry, Mapping) else entry
                raise RuleError(f"pipeline snapshot rule {i} is {got!r}, the pipeline's is {rule.kind!r}")
            state = entry.get("state")
            if not isinstance(state, Mapping):
                raise RuleError(f"pipeline snapshot rule {i} ({rule.kind}) has no state mapping")
            rule.restore(state)


def rule_specs(specs: Sequence[RuleSpec | Mapping[str, Any]], *, source: str = "<dict>") -> list[RuleSpec]:
    """Rule specs from spec objects or plain dicts as in YAML (``{"type": "deadband", "absolute": 0.5}``),
    validated by the same models as a config; a bad one raises :class:`~edgeflow.errors.ConfigError`
    naming each key path (``[0].max_eror: unknown key``)."""
    if isinstance(specs, Mapping | str | bytes):
        raise ConfigError("rules must be a list of rules", source=source)
    raw = list(specs)
    try:
        return _RULE_LIST.validate_python(raw)
    except ValidationError as exc:
        raise config_error("invalid rules", source, exc, data=raw, model=RuleSpec) from None


def build_pipeline(
    specs: Sequence[RuleSpec | Mapping[str, Any]], table: SeriesTable, *, name: str = ""
) -> Pipeline:
    """A pipeline of the rules ``specs`` declare (spec objects, or dicts as in YAML: see
    :func:`rule_specs`), in order, over series of ``table``. ``name`` (the pipeline's) names the series
    its windows and alarms derive, unless a rule names them itself."""
    return Pipeline([build_rule(s, table, i, name) for i, s in enumerate(rule_specs(specs))], table)
