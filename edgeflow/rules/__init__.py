"""Rules that drop, reduce and aggregate readings at the edge. One module per rule family, over one shared
per-series frame (:mod:`~edgeflow.rules.frame`: split by series, the nan / non_numeric / backwards policies):

* :mod:`~edgeflow.rules.exception`: deadband, on-change, minimum interval, heartbeat;
* :mod:`~edgeflow.rules.swing`, :mod:`~edgeflow.rules.pmc`, :mod:`~edgeflow.rules.sdt`: bounded-error
  compression (swing filter, PMC-MR, swinging door);
* :mod:`~edgeflow.rules.simpiece`, :mod:`~edgeflow.rules.auto`: segment-merging compression (Sim-Piece,
  Mix-Piece) and the automatic choice among the bounded compressors;
* :mod:`~edgeflow.rules.window`: tumbling, hopping, sliding and count windows;
* :mod:`~edgeflow.rules.filters` (with :mod:`~edgeflow.rules.expr`): name, range and expression filters;
* :mod:`~edgeflow.rules.alarm`: threshold alarms with hysteresis;
* :mod:`~edgeflow.rules.pipeline`: rules in order; :mod:`~edgeflow.rules.reconstruct`: the cloud's side.
"""

from __future__ import annotations

from edgeflow.rules.base import Interpolation, Rule, RuleOutput, RuleStats
from edgeflow.rules.filters import SeriesMatcher
from edgeflow.rules.pipeline import Pipeline, PipelineOutput, build_pipeline, build_rule
from edgeflow.rules.reconstruct import reconstruct, series_points
from edgeflow.rules.spec import DeadbandSpec, MatchSpec, RuleSpec

__all__ = [
    "DeadbandSpec",
    "Interpolation",
    "MatchSpec",
    "Pipeline",
    "PipelineOutput",
    "Rule",
    "RuleOutput",
    "RuleSpec",
    "RuleStats",
    "SeriesMatcher",
    "build_pipeline",
    "build_rule",
    "reconstruct",
    "series_points",
]
