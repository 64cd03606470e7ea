"""Rule specs: the YAML forms users write, durations, and clear errors naming the field."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from edgeflow.rules.spec import DeadbandSpec, SdtSpec, SwingSpec, WindowSpec
from tests._rulecases import specs

RULES_YAML = """
- type: filter
  device: ["pump-*", "Device1"]
  resource: temp
- type: expression
  expr: "value > -40 and value < 150"
- type: range
  min: -40
  max: 150
- type: deadband
  percent: 1
  span: 106.4
  mode: deadbandEq
  compare: out
  min_interval: 1s
  heartbeat: 15m
  backwards: late
  nan: pass
- type: on_change
  mode: rbei
- type: min_interval
  interval: 500ms
- type: heartbeat
  interval: 1h
- type: swing
  max_error_percent: 1
  span: 106.4
  backwards: reset
- type: pmc_mr
  max_error: 0.5
- type: sdt
  comp_dev: 0.5
  comp_min: 0
  comp_max: 8h
- type: window
  kind: hopping
  size: 10m
  hop: 5m
  aggregates: [mean, min, max, p95, stddev, count]
  allowed_lateness: 30s
- type: alarm
  name: overheat
  above: 100
  hysteresis: 2
"""


def test_the_documented_yaml_parses() -> None:
    parsed = specs(*yaml.safe_load(RULES_YAML))
    assert [s.type for s in parsed] == [
        "filter", "expression", "range", "deadband", "on_change", "min_interval", "heartbeat",
        "swing", "pmc_mr", "sdt", "window", "alarm",
    ]  # fmt: skip
    db = parsed[3]
    assert isinstance(db, DeadbandSpec)
    assert (db.min_interval, db.heartbeat) == (10**9, 15 * 60 * 10**9)
    sw = parsed[7]
    assert isinstance(sw, SwingSpec)
    assert sw.bound == pytest.approx(1.064)
    sdt = parsed[9]
    assert isinstance(sdt, SdtSpec)
    assert sdt.comp_max == 8 * 3600 * 10**9
    w = parsed[10]
    assert isinstance(w, WindowSpec)
    assert (w.size, w.hop) == (600 * 10**9, 300 * 10**9)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"type": "deadband"}, "absolute or percent"),
        ({"type": "deadband", "absolute": 1, "percent": 1}, "absolute or percent"),
        ({"type": "deadband", "percent": 1}, "span"),
        ({"type": "deadband", "absolute": -1}, "absolute"),
        ({"type": "deadband", "absolute": 1, "start": 3}, "narrowband"),
        ({"type": "deadband", "absolute": 1, "gap": 2}, "gap"),
        ({"type": "swing"}, "max_error"),
        ({"type": "swing", "max_error": 1, "backwards": "accept"}, "backwards"),
        ({"type": "sdt", "comp_dev": 1, "comp_min": 10, "comp_max": 5}, "comp_max"),
        ({"type": "window", "kind": "tumbling"}, "size"),
        ({"type": "window", "kind": "hopping", "size": 10}, "hop"),
        ({"type": "window", "kind": "hopping", "size": 10, "hop": 3}, "multiple"),
        ({"type": "window", "kind": "count"}, "count"),
        ({"type": "window", "kind": "tumbling", "size": 10, "aggregates": ["median"]}, "median"),
        ({"type": "range"}, "min, max"),
        ({"type": "expression", "expr": "os.system('x')"}, "only the functions"),
        ({"type": "expression", "expr": "value.real"}, "Attribute"),
        ({"type": "nope"}, "nope"),
        ({"type": "heartbeat", "interval": "soon"}, "interval"),
    ],
)
def test_errors_name_the_field(raw: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        specs(raw)


def test_pipeline_spec_takes_a_match_and_rules() -> None:
    from edgeflow.config import PipelineSpec

    p = PipelineSpec.model_validate(
        yaml.safe_load(
            "name: temps\nmatch: {device: 'pump-*', resource: temp}\nrules:\n  - {type: swing, max_error: 0.5}\n"
        )
    )
    assert p.match.device == ["pump-*"]
    assert isinstance(p.rules[0], SwingSpec)
    with pytest.raises(ValidationError, match=r"match\.devices"):
        PipelineSpec.model_validate({"name": "x", "match": {"devices": "a"}})
