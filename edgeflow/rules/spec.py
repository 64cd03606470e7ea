"""What a user writes to declare a rule: one pydantic model per rule ``type`` (a discriminated union).

Durations accept a number of seconds (``30``, ``0.5``) or a string with a unit (``"250ms"``, ``"1m30s"``,
``"1.5h"``, ``"1d"``), read by :func:`edgeflow.parsing.parse_duration`; they are held as integer
nanoseconds. Zero is refused where it means nothing (intervals, heartbeats, window sizes, ``comp_max``) and
allowed where it means "off" (``min_interval``, ``comp_min``, ``allowed_lateness``).

A gap or error bound is either absolute (``absolute`` / ``max_error`` / ``comp_dev``) or a percent of a
configured ``span`` (``percent`` / ``max_error_percent`` / ``comp_dev_percent`` plus ``span``); the deadband
can also take Node-RED's percent of the previous value, only when asked with ``percent_of: previous``.

Shared policies:

* ``backwards``: what a rule does with a reading whose origin is not after the last one it accepted in
  that series: ``late`` (route it to the pipeline's ``late`` output, counted; the default), ``drop``
  (discard it, counted), ``reset`` (forget the series' state and start again from it, counted), and for
  rules that do not need ordered time, ``accept`` (process it in arrival order, counted).
* ``nan``: ``pass`` (a NaN reading goes through unchanged and leaves the state alone; the default) or
  ``drop`` (discarded, counted).
* ``non_numeric``: for numeric-only rules, ``pass`` (strings, bools-as-objects, binary, arrays go through
  unchanged, never coerced; the default) or ``drop`` (counted).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from edgeflow.errors import RuleError
from edgeflow.parsing import NonNegativeNanoseconds, PositiveNanoseconds
from edgeflow.rules.expr import compile_expression

__all__ = [
    "AlarmSpec",
    "AutoSpec",
    "BackwardsPolicy",
    "DeadbandSpec",
    "ExpressionSpec",
    "FilterSpec",
    "HeartbeatSpec",
    "MatchSpec",
    "MinIntervalSpec",
    "MixPieceSpec",
    "NanPolicy",
    "NonNumericPolicy",
    "OnChangeSpec",
    "PmcSpec",
    "RangeSpec",
    "RuleSpec",
    "SdtSpec",
    "SimPieceSpec",
    "SwingSpec",
    "WindowSpec",
]

BackwardsPolicy = Literal["late", "drop", "reset", "accept"]
NanPolicy = Literal["pass", "drop"]
NonNumericPolicy = Literal["pass", "drop"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _bound(absolute: float | None, percent: float | None, span: float | None, what: str) -> float:
    if (absolute is None) == (percent is None):
        raise ValueError(f"give exactly one of {what} (absolute) or {what}_percent (with span)")
    if percent is not None:
        if span is None:
            raise ValueError(f"{what}_percent needs span (the series' max - min in its units)")
        return percent * span / 100.0
    assert absolute is not None
    return absolute


# --------------------------------------------------------------------------------------------------
# Report by exception
# --------------------------------------------------------------------------------------------------


class DeadbandSpec(_Spec):
    """Report by exception (Node-RED ``filter``/``rbe`` deadband modes, PI's exception test).

    ``mode``: ``deadband`` passes when |v - ref| > gap, ``deadbandEq`` when >= gap, ``narrowband`` when
    <= gap (blocks outliers), ``narrowbandEq`` when < gap. ``compare``: ``out`` (ref = last value sent;
    the classic deadband, hold error <= gap) or ``in`` (ref = last value received; no error bound).
    The gap is ``absolute``, or ``percent`` of ``span``, or (``percent_of: previous``) Node-RED's
    |ref * percent / 100|. The first value of a series always passes (narrowband: unless ``start``).
    ``min_interval`` suppresses a pass sooner than that after the last one sent; ``heartbeat`` re-sends
    the last value sent, with its original origin, when nothing was sent for that long.
    """

    type: Literal["deadband"]
    absolute: float | None = Field(default=None, ge=0)
    percent: float | None = Field(default=None, ge=0)
    span: float | None = Field(default=None, gt=0)
    percent_of: Literal["span", "previous"] = "span"
    mode: Literal["deadband", "deadbandEq", "narrowband", "narrowbandEq"] = "deadband"
    compare: Literal["out", "in"] = "out"
    start: float | None = None
    min_interval: NonNegativeNanoseconds | None = None
    heartbeat: PositiveNanoseconds | None = None
    backwards: BackwardsPolicy = "late"
    nan: NanPolicy = "pass"
    non_numeric: NonNumericPolicy = "pass"

    @model_validator(mode="after")
    def _check(self) -> DeadbandSpec:
        if (self.absolute is None) == (self.percent is None):
            raise ValueError("give exactly one of absolute or percent")
        if self.percent is not None and self.percent_of == "span" and self.span is None:
            raise ValueError("percent of span needs span (the series' max - min in its units)")
        if self.start is not None and not self.mode.startswith("narrowband"):
            raise ValueError("start applies to the narrowband modes only")
        return self


class OnChangeSpec(_Spec):
    """Pass a reading when its value differs from the last one passed (Node-RED ``rbe``), or ignore the
    first value of each series too (``rbei``). Works on any value type: strings, arrays and objects
    compare by equality, never coerced. ``min_interval`` and ``heartbeat`` as for the deadband."""

    type: Literal["on_change"]
    mode: Literal["rbe", "rbei"] = "rbe"
    min_interval: NonNegativeNanoseconds | None = None
    heartbeat: PositiveNanoseconds | None = None
    backwards: BackwardsPolicy = "late"
    nan: NanPolicy = "pass"


class MinIntervalSpec(_Spec):
    """Pass a reading only if at least ``interval`` passed (in event time) since the last one passed."""

    type: Literal["min_interval"]
    interval: PositiveNanoseconds
    backwards: BackwardsPolicy = "late"


class HeartbeatSpec(_Spec):
    """Pass every reading; when a series sent nothing for ``interval`` (seen at a later reading or at
    :meth:`Pipeline.advance`), re-send its last reading with its original origin (an idempotent
    duplicate: the receiver dedups on series + origin and learns the series is alive)."""

    type: Literal["heartbeat"]
    interval: PositiveNanoseconds
    backwards: BackwardsPolicy = "accept"


# --------------------------------------------------------------------------------------------------
# Bounded-error compression
# --------------------------------------------------------------------------------------------------


class _Bounded(_Spec):
    """``knots``: which value a closed segment's point takes among those that keep the bound:
    ``shortest`` (the default; the one with the fewest digits after the decimal point, nearest the
    middle, which the compact encoding ships in a byte or two) or ``middle`` (the papers' choice)."""

    max_error: float | None = Field(default=None, ge=0)
    max_error_percent: float | None = Field(default=None, ge=0)
    span: float | None = Field(default=None, gt=0)
    knots: Literal["shortest", "middle"] = "shortest"
    backwards: Literal["late", "drop", "reset"] = "late"
    nan: NanPolicy = "pass"
    non_numeric: NonNumericPolicy = "pass"

    @model_validator(mode="after")
    def _check(self) -> _Bounded:
        _bound(self.max_error, self.max_error_percent, self.span, "max_error")
        return self

    @property
    def bound(self) -> float:
        """The absolute error bound."""
        return _bound(self.max_error, self.max_error_percent, self.span, "max_error")


class SwingSpec(_Bounded):
    """Swing filter (Elmeleegy et al., PVLDB 2009): connected line segments; linear interpolation between
    the points it emits is within ``max_error`` of every reading."""

    type: Literal["swing"]


class PmcSpec(_Bounded):
    """PMC-MR (Lazaridis & Mehrotra, ICDE 2003): constant segments at the midrange, each point at its
    segment's first origin; holding each point until the next is within ``max_error`` of every reading."""

    type: Literal["pmc_mr"]


class _Pieces(_Bounded):
    """``horizon``: closed segments a series holds before it hands them out, grouped, in one message (more
    segments per hand-out share more); ``max_hold``: also hand out when a reading (or the watermark)
    comes this long after the first one held (default: no time limit; a flush hands out everything)."""

    horizon: int = Field(default=100, ge=1)
    max_hold: PositiveNanoseconds | None = None


class SimPieceSpec(_Pieces):
    """Sim-Piece (Kitsios et al., PVLDB 2023): line segments from start values quantised to the bound's
    grid, segments of one start value sharing a slope in groups; linear interpolation between the points
    it emits (each segment's start and end) is within ``max_error`` of every reading."""

    type: Literal["sim_piece"]


class MixPieceSpec(_Pieces):
    """Mix-Piece (Kitsios et al., VLDB Journal 2024): Sim-Piece whose groups also share slopes across
    start values."""

    type: Literal["mix_piece"]


class AutoSpec(_Pieces):
    """Per series and hand-out, whichever of swing, PMC-MR, Sim-Piece and Mix-Piece at ``max_error``
    travels smallest in the compact encoding (estimated); every choice ships ``linear`` points.
    ``max_readings``: a series holding this many readings hands out everything (bounds memory)."""

    type: Literal["auto"]
    max_readings: int = Field(default=10_000, ge=2)


class SdtSpec(_Spec):
    """Swinging-door trending with PI's parameters. Archived points are real readings; linear
    interpolation between them is within **2 x comp_dev** of every reading that was not skipped by
    ``comp_min`` (the doors bound the slope, not the line drawn to the next archived point)."""

    type: Literal["sdt"]
    comp_dev: float | None = Field(default=None, ge=0)
    comp_dev_percent: float | None = Field(default=None, ge=0)
    span: float | None = Field(default=None, gt=0)
    comp_min: NonNegativeNanoseconds = 0
    comp_max: PositiveNanoseconds | None = None
    backwards: Literal["late", "drop", "reset"] = "late"
    nan: NanPolicy = "pass"
    non_numeric: NonNumericPolicy = "pass"

    @model_validator(mode="after")
    def _check(self) -> SdtSpec:
        _bound(self.comp_dev, self.comp_dev_percent, self.span, "comp_dev")
        if self.comp_max is not None and self.comp_max <= self.comp_min:
            raise ValueError("comp_max must be longer than comp_min")
        return self

    @property
    def deviation(self) -> float:
        return _bound(self.comp_dev, self.comp_dev_percent, self.span, "comp_dev")


# --------------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------------

_AGG = re.compile(r"^(min|max|mean|sum|count|first|last|stddev|p(100|[1-9]?[0-9](\.[0-9]+)?))$")


class WindowSpec(_Spec):
    """Aggregate each series over windows: ``tumbling`` (``size``), ``hopping`` (``size``, ``hop``),
    ``sliding`` (one result per reading over the ``size`` before it), ``count`` (``count`` readings,
    stepping by ``hop_count``). Results go to derived series ``<resource>.<name>.<aggregate>`` of the same
    device, where ``name`` is yours or, when left out, ``<pipeline>.<rule index>`` (so two windows never
    write one series; outside a pipeline, ``<resource>.<aggregate>``); each result's origin is the window
    end, its start the window start. Event time: a time window closes
    when the series' newest origin (or :meth:`Pipeline.advance`) passes its end + ``allowed_lateness``;
    a reading for a closed window is late (counted, routed to ``late``)."""

    type: Literal["window"]
    #: Names the derived series (``<resource>.<name>.<aggregate>``); default ``<pipeline>.<rule index>``.
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]+$")
    kind: Literal["tumbling", "hopping", "sliding", "count"]
    size: PositiveNanoseconds | None = None
    hop: PositiveNanoseconds | None = None
    count: int | None = Field(default=None, gt=0)
    hop_count: int | None = Field(default=None, gt=0)
    aggregates: list[str] = Field(default_factory=lambda: ["mean", "min", "max", "count"], min_length=1)
    allowed_lateness: NonNegativeNanoseconds = 0
    keep_input: bool = False
    nan: NanPolicy = "drop"
    non_numeric: NonNumericPolicy = "pass"
    #: At most this many readings held per series (sliding) or per open window (tumbling, hopping); the
    #: oldest leave early, counted as ``evicted``.
    max_readings: int = Field(default=1_000_000, gt=0)
    #: Sliding windows: percentiles from a sketch within this relative error (e.g. 0.01) instead of exact.
    percentile_accuracy: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> WindowSpec:
        for a in self.aggregates:
            if not _AGG.match(a):
                raise ValueError(
                    f"unknown aggregate {a!r}; use min, max, mean, sum, count, first, last, stddev or pNN"
                )
        if self.kind == "count":
            if self.count is None:
                raise ValueError("a count window needs count")
            if self.size is not None or self.hop is not None:
                raise ValueError("a count window takes count and hop_count, not size or hop")
        else:
            if self.size is None:
                raise ValueError(f"a {self.kind} window needs size")
            if self.count is not None or self.hop_count is not None:
                raise ValueError(f"a {self.kind} window takes size (and hop), not count")
            if self.kind == "hopping":
                if self.hop is None:
                    raise ValueError("a hopping window needs hop")
                if self.size % self.hop:
                    raise ValueError("a hopping window's size must be a multiple of its hop")
            elif self.hop is not None:
                raise ValueError(f"a {self.kind} window takes no hop")
        return self


# --------------------------------------------------------------------------------------------------
# Filters and alarms
# --------------------------------------------------------------------------------------------------

Patterns = Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]


class MatchSpec(_Spec):
    """Select series by name. Each field is one pattern or a list (any may match); a field left out
    matches everything. Patterns are anchored: the whole name must match (``Device1`` never matches
    ``Device10``). ``syntax``: ``glob`` (``*``, ``?``, ``[abc]``) or ``regex`` (Python ``re``, full match)."""

    device: Patterns | None = None
    profile: Patterns | None = None
    source: Patterns | None = None
    resource: Patterns | None = None
    syntax: Literal["glob", "regex"] = "glob"

    @model_validator(mode="after")
    def _check_regex(self) -> MatchSpec:
        if self.syntax == "regex":
            for field in ("device", "profile", "source", "resource"):
                for p in getattr(self, field) or []:
                    try:
                        re.compile(p)
                    except re.error as exc:
                        raise ValueError(f"{field}: {p!r} is not a regex: {exc}") from None
        return self


class FilterSpec(MatchSpec):
    """Keep (or, with ``action: drop``, drop) the readings of the series that match."""

    type: Literal["filter"]
    action: Literal["keep", "drop"] = "keep"


class RangeSpec(_Spec):
    """Keep (or drop) numeric readings with ``min <= value <= max`` (either bound may be left out)."""

    type: Literal["range"]
    min: float | None = None
    max: float | None = None
    action: Literal["keep", "drop"] = "keep"
    nan: NanPolicy = "drop"
    non_numeric: NonNumericPolicy = "pass"

    @model_validator(mode="after")
    def _check(self) -> RangeSpec:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class ExpressionSpec(_Spec):
    """Keep readings for which ``expr`` is true. A small safe language (no ``eval``): numbers, strings,
    ``value``, ``origin`` (ns), ``t`` (seconds), ``device``, ``resource``, ``profile``, ``source``,
    ``value_type``, ``units``; ``+ - * / // % **``, comparisons, ``and or not``, ``in``, ``x if c else y``;
    functions ``abs min max round isnan isfinite``. A reading the expression cannot evaluate (a string
    where a number is needed) is handled by ``on_error`` (``drop`` or ``pass``) and counted."""

    type: Literal["expression"]
    expr: str = Field(min_length=1)
    on_error: Literal["drop", "pass"] = "drop"

    @model_validator(mode="after")
    def _check(self) -> ExpressionSpec:
        try:
            compile_expression(self.expr)
        except RuleError as exc:
            raise ValueError(str(exc)) from None
        return self


class AlarmSpec(_Spec):
    """Raise an alarm when a value goes above ``above`` (or below ``below``); clear it once it is back by
    ``hysteresis`` (below ``above - hysteresis`` / above ``below + hysteresis``). Alarm readings go to the
    ``alarms`` output, on the derived series ``<resource>.<name>`` (Int8: 1 above, -1 below, 0 cleared;
    ``name`` defaults to ``<pipeline>.<rule index>``, outside a pipeline to ``alarm``),
    at the origin of the crossing reading. Readings pass on unchanged unless ``pass_through`` is false."""

    type: Literal["alarm"]
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]+$")
    above: float | None = None
    below: float | None = None
    hysteresis: float = Field(default=0.0, ge=0)
    pass_through: bool = True

    @model_validator(mode="after")
    def _check(self) -> AlarmSpec:
        if self.above is None and self.below is None:
            raise ValueError("give above, below or both")
        if self.above is not None and self.below is not None and self.below + self.hysteresis >= self.above:
            raise ValueError("below + hysteresis must be less than above")
        return self


RuleSpec = Annotated[
    DeadbandSpec
    | OnChangeSpec
    | MinIntervalSpec
    | HeartbeatSpec
    | SwingSpec
    | PmcSpec
    | SimPieceSpec
    | MixPieceSpec
    | AutoSpec
    | SdtSpec
    | WindowSpec
    | FilterSpec
    | RangeSpec
    | ExpressionSpec
    | AlarmSpec,
    Field(discriminator="type"),
]
