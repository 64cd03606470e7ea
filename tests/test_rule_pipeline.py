"""Pipelines: rules in order, flush/advance through downstream rules, outputs, stats, snapshots."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeflow.errors import ConfigError, RuleError
from edgeflow.model import SeriesTable
from edgeflow.rules import PipelineOutput, build_pipeline
from edgeflow.testing import ListSource, run
from tests._rulecases import SEC, T0, pipeline, run_one, series, specs


def test_rules_run_in_order_and_count_in_and_out() -> None:
    table = SeriesTable()
    src = ListSource(table)
    src.add("Device1", "temp", range(6), [10.0, 10.2, 12.0, 30.0, 30.1, 12.0])
    src.add("Device10", "temp", range(6), [0.0] * 6)
    p = pipeline(
        table,
        {"type": "filter", "device": "Device1"},
        {"type": "deadband", "absolute": 1.0},
        {"type": "alarm", "above": 25, "hysteresis": 5},
    )
    sink = run(p, src.batches(4))
    assert sink.values("Device1", "temp") == [10.0, 12.0, 30.0, 12.0]
    assert sink.values("Device10", "temp") == []
    assert sink.points("Device1", "temp.alarm", which="alarms") == [(3, 1), (5, 0)]
    stats = p.stats()
    assert [(s.type, s.readings_in, s.readings_out) for s in stats] == [
        ("filter", 12, 6),
        ("deadband", 6, 4),
        ("alarm", 4, 4),
    ]
    assert stats[0].dropped == 6


def test_flush_pushes_held_points_through_the_rules_after() -> None:
    table = SeriesTable()
    src = ListSource(table)
    src.add("d", "r", range(5), [0.0, 1.0, 2.0, 3.0, 4.0])
    p = pipeline(table, {"type": "swing", "max_error": 0.1}, {"type": "range", "max": 3.5, "action": "drop"})
    out = p.process(src.batch())
    assert out.batch.values.tolist() == []  # the first point (0, 0.0) is below 3.5: dropped by range
    tail = p.flush()
    assert tail.batch.values.tolist() == [4.0]  # the open segment's end, through the range rule
    assert p.stats()[1].readings_in == 2


def test_advance_closes_windows_and_feeds_downstream() -> None:
    table = SeriesTable()
    src = ListSource(table)
    src.add("d", "r", [T0, T0 + SEC], [1.0, 3.0])
    p = pipeline(
        table,
        {"type": "window", "kind": "tumbling", "size": 60, "aggregates": ["mean"]},
        {"type": "alarm", "above": 1.5},
    )
    assert len(p.process(src.batch()).batch) == 0
    end = (T0 // (60 * SEC) + 1) * 60 * SEC
    out = p.advance(end)
    assert out.batch.values.tolist() == [2.0]
    assert out.alarms.values.tolist() == [1.0]
    assert out.batch.starts is not None
    assert out.batch.starts.tolist() == [end - 60 * SEC]


def test_late_readings_of_any_rule_are_collected() -> None:
    table = SeriesTable()
    src = ListSource(table)
    src.add("d", "r", [10, 20, 15, 30], [1.0, 2.0, 3.0, 4.0])
    p = pipeline(table, {"type": "deadband", "absolute": 0.0}, {"type": "swing", "max_error": 0.1})
    out = p.process(src.batch())
    assert out.late.origins.tolist() == [15]
    assert p.stats()[0].late == 1


@pytest.mark.parametrize(
    ("rules", "mode"),
    [
        ([{"type": "swing", "max_error": 1}], "linear"),
        ([{"type": "sdt", "comp_dev": 1}], "linear"),
        ([{"type": "pmc_mr", "max_error": 1}], "hold"),
        ([{"type": "deadband", "absolute": 1}], "hold"),
        ([{"type": "filter", "device": "*"}], "hold"),
        ([{"type": "swing", "max_error": 1}, {"type": "filter", "device": "*"}], "linear"),
        ([{"type": "swing", "max_error": 1}, {"type": "deadband", "absolute": 1}], "hold"),
    ],
)
def test_interpolation_is_the_last_reducing_rules(rules: list[dict[str, object]], mode: str) -> None:
    table = SeriesTable()
    src = ListSource(table)
    a = src.add("a", "r", [1, 2], [0.0, 5.0])
    b = src.add("b", "r", [1, 2], [0.0, 5.0])
    out = build_pipeline(specs(*rules), table).process(src.batch())
    assert isinstance(out, PipelineOutput)
    assert dict(out.interpolation) == {a: mode, b: mode}


def test_input_batches_are_not_modified_so_several_pipelines_can_take_them() -> None:
    table = SeriesTable()
    src = ListSource(table)
    src.add("d", "r", range(100), np.cumsum(np.ones(100)).tolist())
    batch = src.batch()
    before = (batch.origins.copy(), batch.values.copy(), batch.series.copy())
    p1 = pipeline(table, {"type": "swing", "max_error": 0.5})
    p2 = pipeline(table, {"type": "window", "kind": "count", "count": 10})
    p1.process(batch)
    p2.process(batch)
    assert all(
        np.array_equal(x, y) for x, y in zip(before, (batch.origins, batch.values, batch.series), strict=True)
    )


ALL_RULES = [
    {"type": "filter", "device": "d*"},
    {"type": "expression", "expr": "value > -1000"},
    {"type": "range", "min": -1000},
    {"type": "deadband", "percent": 0.5, "span": 100, "heartbeat": 30, "backwards": "reset"},
    {"type": "on_change"},
    {"type": "min_interval", "interval": "1ms"},
    {"type": "heartbeat", "interval": "1m"},
    {"type": "alarm", "above": 5, "below": -5, "hysteresis": 0.5},
    {"type": "pmc_mr", "max_error": 0.1},
    {"type": "swing", "max_error": 0.1},
    {"type": "sdt", "comp_dev": 0.1, "comp_max": 60},
    {
        "type": "window",
        "kind": "tumbling",
        "size": 10,
        "aggregates": ["mean", "p90", "stddev", "first", "last"],
    },
]


def test_snapshot_of_every_rule_is_strict_json_and_restores_to_identical_output() -> None:
    rng = np.random.default_rng(9)
    n = 600
    rows = [
        ("d1" if i % 3 else "d2", int(t), float(v))
        for i, (t, v) in enumerate(
            zip(T0 + np.cumsum(rng.integers(1, 2 * SEC, n)), np.cumsum(rng.normal(0, 1, n)), strict=True)
        )
    ]
    rows[17] = (rows[17][0], rows[17][1], float("nan"))

    def feed(p, table, part):  # type: ignore[no-untyped-def]
        src = ListSource(table)
        for dev, t, v in part:
            src.add(dev, "r", [t], [v])
        return run(p, src.batches(23), flush=False)

    def named(b):  # type: ignore[no-untyped-def]
        return [
            (b.table.info(s).device, b.table.info(s).resource, o, x)
            for s, o, x in zip(b.series.tolist(), b.origins.tolist(), b.values.tolist(), strict=True)
        ]

    table = SeriesTable()
    whole_p = pipeline(table, *ALL_RULES)
    whole = feed(whole_p, table, rows)
    whole_out = named(whole.batch) + named(whole_p.flush().batch)
    assert len(whole_out) > 50

    for cut in (1, 230, 599):  # multiples of the batch size keep the batches themselves identical
        cut = cut // 23 * 23
        t1 = SeriesTable()
        p1 = pipeline(t1, *ALL_RULES)
        first = feed(p1, t1, rows[:cut])
        text = json.dumps(p1.snapshot(), allow_nan=False)
        t2 = SeriesTable()
        t2.intern("zz", "zz")  # the restarted process numbers its series differently
        p2 = pipeline(t2, *ALL_RULES)
        p2.restore(json.loads(text))
        second = feed(p2, t2, rows[cut:])
        got = named(first.batch) + named(second.batch) + named(p2.flush().batch)
        assert np.array_equal(
            np.asarray([g[3] for g in got]), np.asarray([w[3] for w in whole_out]), equal_nan=True
        )
        assert [g[:3] for g in got] == [w[:3] for w in whole_out]


def test_restore_refuses_a_snapshot_of_another_pipeline() -> None:
    table = SeriesTable()
    p = pipeline(table, {"type": "swing", "max_error": 1})
    snap = p.snapshot()
    other = pipeline(table, {"type": "pmc_mr", "max_error": 1})
    with pytest.raises(RuleError, match="pmc_mr"):
        other.restore(snap)
    with pytest.raises(RuleError, match=r"2 rules|1 rules"):
        pipeline(table, {"type": "swing", "max_error": 1}, {"type": "on_change"}).restore(snap)
    with pytest.raises(RuleError, match="version"):
        p.restore({"version": 99, "rules": []})
    with pytest.raises(RuleError, match="series"):
        p.restore({"version": 1, "rules": [{"type": "swing", "state": {"series": [["d", "r"]]}}]})


@settings(max_examples=60, deadline=None)
@given(
    a=series(backwards=True, nan=True),
    b=series(backwards=True, nan=True),
    seed=st.integers(0, 2**32 - 1),
    chunk=st.integers(1, 50),
    rule=st.sampled_from(
        [
            {"type": "swing", "max_error": 0.5, "backwards": "reset"},
            {"type": "pmc_mr", "max_error": 0.5},
            {"type": "sdt", "comp_dev": 0.5, "backwards": "drop"},
            {"type": "deadband", "absolute": 0.5},
            {"type": "deadband", "absolute": 0.5, "heartbeat": 20, "backwards": "reset"},
        ]
    ),
)
def test_interleaved_series_give_what_each_gives_alone(
    a: tuple[list[int], list[float]],
    b: tuple[list[int], list[float]],
    seed: int,
    chunk: int,
    rule: dict[str, object],
) -> None:
    alone = [run_one(rule, t, v, chunk=chunk)[0].points("d", "r") for t, v in (a, b)]
    # interleave the two series at random, keeping each one's own order
    rng = np.random.default_rng(seed)
    tags = rng.permutation([0] * len(a[0]) + [1] * len(b[0])).tolist()
    pos = [0, 0]
    table = SeriesTable()
    src = ListSource(table)
    for k in tags:
        t, v = (a, b)[k]
        src.add(f"dev{k}", "r", [t[pos[k]]], [v[pos[k]]])
        pos[k] += 1
    sink = run(pipeline(table, rule), src.batches(chunk))
    together = [sink.points(f"dev{k}", "r") for k in (0, 1)]
    for got, want in zip(together, alone, strict=True):
        assert [p[0] for p in got] == [p[0] for p in want]
        assert np.array_equal(
            np.asarray([p[1] for p in got]), np.asarray([p[1] for p in want]), equal_nan=True
        )


def test_build_pipeline_takes_plain_dicts_as_in_yaml_and_spec_objects_alike() -> None:
    table = SeriesTable()
    src = ListSource(table)
    src.add("d", "r", range(5), [1.0, 1.2, 3.0, 3.1, 9.0])
    from_dicts = run(build_pipeline([{"type": "deadband", "absolute": 0.5}], table), src.batches())
    from_specs = run(build_pipeline(specs({"type": "deadband", "absolute": 0.5}), table), src.batches())
    assert from_dicts.values("d", "r") == from_specs.values("d", "r") == [1.0, 3.0, 9.0]
    mixed = build_pipeline([*specs({"type": "swing", "max_error": 1}), {"type": "on_change"}], table)
    assert [r.kind for r in mixed.rules] == ["swing", "on_change"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([{"type": "swing", "max_eror": 0.5}], ("[0].max_eror", "unknown key")),
        ([{"type": "deadband", "absolute": 1}, {"type": "deadband", "absolute": -1}], ("[1].absolute", "0")),
        ([{"type": "window", "kind": "tumbling"}], ("[0]", "a tumbling window needs size")),
        ([{"type": "nope"}], ("[0].type", "'nope'")),
        ({"type": "deadband", "absolute": 1}, ("", "")),  # one rule, not a list of them
    ],
)
def test_build_pipeline_names_the_key_path_of_a_bad_dict(raw: Any, problem: tuple[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        build_pipeline(raw, SeriesTable())
    err = info.value
    assert err.source == "<dict>"
    if problem == ("", ""):
        assert "rules must be a list" in str(err)
        return
    paths = [p for p, _ in err.problems]
    assert paths == [problem[0]]
    assert problem[1] in err.problems[0][1]
    assert f"  {problem[0]}: " in str(err)


def test_readme_rules_example_runs() -> None:
    """The README's rules example (a plain Python block, without asyncio) runs as written."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [
        b
        for b in re.findall(r"```python\n(.*?)```", readme, re.S)
        if "build_pipeline(" in b and "EDGEFLOW_PG_URL" not in b  # the cloud end's needs a database
    ]
    assert blocks, "the README shows build_pipeline"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
