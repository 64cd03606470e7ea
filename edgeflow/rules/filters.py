"""Filters: by series name (anchored globs or regexes), by value range, by a safe expression.

Name patterns are **anchored**: a pattern must match the whole name, so ``Device1`` matches ``Device1``
and never ``Device10`` (EdgeX's unanchored regex filter does the latter; we do not copy it). Globs use
``*``, ``?`` and ``[...]`` (``fnmatch``, case-sensitive); regexes are Python ``re`` with ``fullmatch``.
Name matching is decided once per series and cached, so a batch is filtered with one numpy take.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeflow.model import ReadingBatch, SeriesInfo, SeriesTable
from edgeflow.rules.base import Rule, RuleOutput
from edgeflow.rules.expr import compile_expression
from edgeflow.rules.spec import ExpressionSpec, FilterSpec, MatchSpec, RangeSpec

__all__ = ["ExpressionRule", "FilterRule", "RangeRule", "SeriesMatcher"]


class SeriesMatcher:
    """Compiled :class:`~edgeflow.rules.spec.MatchSpec`: which series a selector takes."""

    def __init__(self, spec: MatchSpec) -> None:
        def comp(patterns: Sequence[str] | None) -> list[re.Pattern[str]] | None:
            if patterns is None:
                return None
            if spec.syntax == "glob":
                return [re.compile(fnmatch.translate(p)) for p in patterns]
            return [re.compile(p) for p in patterns]

        self._fields = [
            (name, pats)
            for name, pats in (
                ("device", comp(spec.device)),
                ("profile", comp(spec.profile)),
                ("source", comp(spec.source)),
                ("resource", comp(spec.resource)),
            )
            if pats is not None
        ]
        self._cache = np.zeros(0, dtype=bool)

    def matches(self, info: SeriesInfo) -> bool:
        return all(any(p.fullmatch(getattr(info, name)) for p in pats) for name, pats in self._fields)

    def mask(self, batch: ReadingBatch) -> npt.NDArray[np.bool_]:
        """One bool per reading of ``batch``: does its series match."""
        table = batch.table
        if len(self._cache) < len(table):
            extra = [self.matches(table.info(s)) for s in range(len(self._cache), len(table))]
            self._cache = np.concatenate([self._cache, np.asarray(extra, dtype=bool)])
        return self._cache[batch.series]


class FilterRule(Rule):
    kind = "filter"

    def __init__(self, spec: FilterSpec, table: SeriesTable, index: int = 0) -> None:
        super().__init__(table, index)
        self.matcher = SeriesMatcher(spec)
        self.keep = spec.action == "keep"

    @classmethod
    def from_spec(cls, spec: FilterSpec, table: SeriesTable, index: int = 0) -> FilterRule:
        return cls(spec, table, index)

    def _process(self, batch: ReadingBatch) -> RuleOutput:
        m = self.matcher.mask(batch)
        if not self.keep:
            m = ~m
        out = batch if m.all() else batch.take(m)
        self.stats.dropped += len(batch) - len(out)
        return RuleOutput(out)


class RangeRule(Rule):
    """Keep (or drop) numeric readings inside ``[min, max]``; NaN and non-numeric readings (Bools included,
    see :meth:`~edgeflow.model.ReadingBatch.numeric_mask`) by policy."""

    kind = "range"

    def __init__(self, spec: RangeSpec, table: SeriesTable, index: int = 0) -> None:
        super().__init__(table, index)
        self.spec = spec

    @classmethod
    def from_spec(cls, spec: RangeSpec, table: SeriesTable, index: int = 0) -> RangeRule:
        return cls(spec, table, index)

    def _process(self, batch: ReadingBatch) -> RuleOutput:
        spec = self.spec
        v = batch.values
        obj = ~batch.numeric_mask()
        nan = np.isnan(v) & ~obj
        inside = np.ones(len(batch), dtype=bool)
        if spec.min is not None:
            inside &= v >= spec.min
        if spec.max is not None:
            inside &= v <= spec.max
        keep = inside if spec.action == "keep" else ~inside
        keep &= ~nan & ~obj
        n_nan, n_obj = int(nan.sum()), int(obj.sum())
        self.stats.nan += n_nan
        self.stats.non_numeric += n_obj
        if spec.nan == "pass":
            keep |= nan
        if spec.non_numeric == "pass":
            keep |= obj
        out = batch if keep.all() else batch.take(keep)
        self.stats.dropped += len(batch) - len(out)
        return RuleOutput(out)


class ExpressionRule(Rule):
    """Keep readings for which a safe expression is true (see :mod:`edgeflow.rules.expr`)."""

    kind = "expression"

    def __init__(self, spec: ExpressionSpec, table: SeriesTable, index: int = 0) -> None:
        super().__init__(table, index)
        self.fn = compile_expression(spec.expr)
        self.on_error_pass = spec.on_error == "pass"
        self._names: dict[str, npt.NDArray[np.object_]] = {}
        self._names_len = -1

    @classmethod
    def from_spec(cls, spec: ExpressionSpec, table: SeriesTable, index: int = 0) -> ExpressionRule:
        return cls(spec, table, index)

    def _name_columns(self) -> dict[str, npt.NDArray[np.object_]]:
        table = self.table
        if self._names_len != len(table):
            infos = list(table)
            cols: dict[str, npt.NDArray[np.object_]] = {}
            for name in ("device", "resource", "profile", "source", "value_type", "units"):
                arr = np.empty(len(infos), dtype=object)
                if name == "value_type":
                    arr[:] = [i.value_type.value for i in infos]
                else:
                    arr[:] = [getattr(i, name) for i in infos]
                cols[name] = arr
            self._names = cols
            self._names_len = len(table)
        return self._names

    def _env(self, batch: ReadingBatch, sel: npt.NDArray[np.intp]) -> dict[str, Any]:
        cols = self._name_columns()
        series = batch.series[sel]
        origins = batch.origins[sel]
        env: dict[str, Any] = {name: col[series] for name, col in cols.items()}
        env["value"] = batch.values[sel]
        env["origin"] = origins
        env["t"] = origins / 1e9
        return env

    def _eval_one(self, batch: ReadingBatch, i: int) -> bool:
        info = self.table.info(int(batch.series[i]))
        o = int(batch.origins[i])
        env = {
            "value": batch.value_at(i),
            "origin": o,
            "t": o / 1e9,
            "device": info.device,
            "resource": info.resource,
            "profile": info.profile,
            "source": info.source,
            "value_type": info.value_type.value,
            "units": info.units,
        }
        try:
            with np.errstate(all="ignore"):
                return bool(np.asarray(self.fn(env)).all())
        except (TypeError, ValueError, ArithmeticError):
            self.stats.errors += 1
            return self.on_error_pass

    def _process(self, batch: ReadingBatch) -> RuleOutput:
        n = len(batch)
        if n == 0:
            return RuleOutput(batch)
        obj = batch.object_mask()
        keep = np.zeros(n, dtype=bool)
        num = np.flatnonzero(~obj)
        if len(num):
            try:
                with np.errstate(all="ignore"):
                    r = np.asarray(self.fn(self._env(batch, num)))
                keep[num] = np.broadcast_to(r.astype(bool), (len(num),))
            except (TypeError, ValueError, ArithmeticError):
                for i in num.tolist():
                    keep[i] = self._eval_one(batch, i)
        for i in np.flatnonzero(obj).tolist():
            keep[i] = self._eval_one(batch, i)
        out = batch if keep.all() else batch.take(keep)
        self.stats.dropped += n - len(out)
        return RuleOutput(out)
