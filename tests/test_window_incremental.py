"""Incremental sliding windows against the naive computation, and the quantile sketch's error bound."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.rules import build_pipeline
from edgeflow.rules.incremental import QuantileSketch, SlidingAggregate
from edgeflow.rules.window import aggregate

AGGS = ["count", "sum", "mean", "min", "max", "stddev", "first", "last"]

values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([math.nan, 0.0, -0.0, 1.0]),
    st.integers(-1000, 1000).map(float),
)


def _naive(rows: list[tuple[int, float]], size: int, bound: int) -> list[tuple[int, dict[str, float]]]:
    """What a sliding window must give: NaN dropped, a reading older than the newest is late, one result
    per reading over (t - size, t]."""
    out = []
    held: list[tuple[int, float]] = []
    newest: int | None = None
    for t, v in rows:
        if math.isnan(v):
            continue
        if newest is not None and t < newest:
            continue
        newest = t
        held.append((t, v))
        held = [(a, b) for a, b in held if a > t - size][-bound:]
        ts = np.asarray([a for a, _ in held], dtype=np.int64)
        vs = np.asarray([b for _, b in held])
        out.append((t, {a: aggregate(a, ts, vs) for a in [*AGGS, "p50", "p90"]}))
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), values), min_size=1, max_size=200),
    st.integers(1, 20),
    st.integers(1, 4),
    st.sampled_from([3, 10_000]),
    st.booleans(),
)
def test_sliding_window_matches_the_naive_computation(
    rows: list[tuple[int, float]], size: int, chunks: int, bound: int, percentiles: bool
) -> None:
    """Small calls go reading by reading (deques), large ones vectorised; both must agree with naive."""
    table = SeriesTable()
    sid = table.intern("d", "x")
    aggs = [*AGGS, "p50", "p90"] if percentiles else AGGS
    pipe = build_pipeline(
        [{"type": "window", "kind": "sliding", "size": size, "aggregates": aggs, "max_readings": bound}],
        table,
    )
    got: list[ReadingBatch] = []
    rows_t = [(t * 10**9, v) for t, v in rows]  # seconds; times go backwards as often as not
    bounds = np.linspace(0, len(rows_t), chunks + 1).astype(int)
    for a, b in itertools.pairwise(bounds):
        part = rows_t[a:b]
        if part:
            got.append(
                pipe.process(
                    ReadingBatch.from_columns(
                        table, [t for t, _ in part], [v for _, v in part], [sid] * len(part)
                    )
                ).batch
            )
    out = ReadingBatch.concat(table, got)
    want = _naive(rows_t, size * 10**9, bound)
    for agg in aggs:
        dsid = table.lookup("d", f"x.{agg}")
        mine = out.values[out.series == dsid] if dsid is not None else np.empty(0)
        theirs = np.asarray([w[agg] for _, w in want])
        assert len(mine) == len(theirs), agg
        scale = max([1.0, *[abs(v) for _, v in rows if not math.isnan(v)]])
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-9 * scale * 120, err_msg=agg)
    assert (out.origins[out.series == table.lookup("d", "x.count")] == [t for t, _ in want]).all()
    seen = sum(1 for _, v in rows if not math.isnan(v))
    late = pipe.stats()[0].late
    assert late == seen - len(want)


def test_a_long_sliding_window_does_not_drift() -> None:
    rng = np.random.default_rng(7)
    agg = SlidingAggregate()
    vs = 1e6 + rng.normal(size=200_000)
    for i, v in enumerate(vs):
        agg.add(i, float(v))
        if len(agg) > 1000:
            agg.pop()
    tail = vs[-1000:]
    assert agg.value("mean") == pytest.approx(tail.mean(), rel=1e-12)
    assert agg.value("stddev") == pytest.approx(tail.std(), rel=1e-6)
    assert agg.value("min") == tail.min() and agg.value("max") == tail.max()


def test_the_memory_bound_evicts_the_oldest_and_counts_them() -> None:
    table = SeriesTable()
    sid = table.intern("d", "x")
    pipe = build_pipeline(
        [
            {
                "type": "window",
                "kind": "sliding",
                "size": 3600,
                "max_readings": 5,
                "aggregates": ["count", "min"],
            }
        ],
        table,
    )
    out = pipe.process(ReadingBatch.from_columns(table, list(range(12)), list(range(12)), [sid] * 12)).batch
    counts = out.values[out.series == table.lookup("d", "x.count")]
    mins = out.values[out.series == table.lookup("d", "x.min")]
    assert counts.tolist() == [1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5]
    assert mins.tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    assert pipe.stats()[0].evicted == 7
    # a large call goes vectorised: the same bound, the same count
    more = pipe.process(
        ReadingBatch.from_columns(table, list(range(12, 112)), list(range(12, 112)), [sid] * 100)
    ).batch
    assert more.values[more.series == table.lookup("d", "x.count")].tolist() == [5] * 100
    assert more.values[more.series == table.lookup("d", "x.min")].tolist() == list(range(8, 108))
    assert pipe.stats()[0].evicted == 107


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e9, 1e9, allow_nan=False).filter(lambda v: v == 0 or abs(v) > 1e-200), min_size=1),
    st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.99, 1.0]),
    st.sampled_from([0.01, 0.05]),
    st.integers(0, 5),
)
def test_sketch_quantiles_are_within_the_stated_relative_error(
    vs: list[float], q: float, alpha: float, removed: int
) -> None:
    sk = QuantileSketch(alpha)
    for v in vs:
        sk.add(v)
    removed = min(removed, len(vs) - 1)
    for v in vs[:removed]:
        sk.remove(v)
    kept = sorted(vs[removed:])
    want = kept[int(q * (len(kept) - 1))]
    assert abs(sk.quantile(q) - want) <= alpha * abs(want) * (1 + 1e-9)


def test_sketches_merge() -> None:
    a, b, both = QuantileSketch(0.01), QuantileSketch(0.01), QuantileSketch(0.01)
    for i in range(1, 500):
        (a if i % 2 else b).add(float(i))
        both.add(float(i))
    a.merge(b)
    assert [a.quantile(q) for q in (0, 0.5, 0.99)] == [both.quantile(q) for q in (0, 0.5, 0.99)]


def test_sketched_percentiles_in_a_window() -> None:
    table = SeriesTable()
    sid = table.intern("d", "x")
    pipe = build_pipeline(
        [
            {
                "type": "window",
                "kind": "sliding",
                "size": 1000,
                "aggregates": ["p95"],
                "percentile_accuracy": 0.01,
            }
        ],
        table,
    )
    vs = np.random.default_rng(1).uniform(1, 100, 3000)
    ts = [i * 10**9 for i in range(3000)]
    out = pipe.process(ReadingBatch.from_columns(table, ts, vs.tolist(), [sid] * 3000)).batch
    last = vs[-1000:]
    want = np.sort(last)[int(0.95 * 999)]
    assert abs(out.values[-1] - want) <= 0.01 * want


def test_an_open_tumbling_window_is_bounded_too() -> None:
    table = SeriesTable()
    sid = table.intern("d", "x")
    pipe = build_pipeline(
        [{"type": "window", "kind": "tumbling", "size": 3600, "max_readings": 4, "aggregates": ["count", "min"]}],
        table,
    )
    ts = [i * 10**9 for i in range(10)]
    pipe.process(ReadingBatch.from_columns(table, ts, [float(i) for i in range(10)], [sid] * 10))
    out = pipe.flush().batch
    assert out.values[out.series == table.lookup("d", "x.count")].tolist() == [4]
    assert out.values[out.series == table.lookup("d", "x.min")].tolist() == [6]
    assert pipe.stats()[0].evicted == 6
