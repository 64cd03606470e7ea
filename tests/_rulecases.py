"""Shared helpers for the rule tests: build batches, run a pipeline, generate series for property tests,
and compute which readings a compressor accepts (independently of the rule's own code)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from pydantic import TypeAdapter

from edgeflow.model import SeriesTable
from edgeflow.rules import Pipeline, build_pipeline
from edgeflow.rules.spec import RuleSpec
from edgeflow.testing import CollectingSink, ListSource, run

T0 = 1_700_000_000_000_000_000  # an epoch-sized origin, so float time would lose precision
SEC = 1_000_000_000

_ADAPTER: TypeAdapter[list[RuleSpec]] = TypeAdapter(list[RuleSpec])


def specs(*raw: dict[str, Any]) -> list[RuleSpec]:
    return _ADAPTER.validate_python(list(raw))


def pipeline(table: SeriesTable, *raw: dict[str, Any]) -> Pipeline:
    return build_pipeline(specs(*raw), table)


def run_one(
    raw: dict[str, Any] | Sequence[dict[str, Any]],
    origins: Sequence[int],
    values: Sequence[Any],
    *,
    chunk: int | None = None,
    flush: bool = True,
) -> tuple[CollectingSink, Pipeline, int]:
    """One series ``d``/``r`` through a pipeline; returns the sink, the pipeline and the series id."""
    table = SeriesTable()
    src = ListSource(table)
    sid = src.add("d", "r", list(origins), list(values))
    rules = [raw] if isinstance(raw, dict) else list(raw)
    pipe = pipeline(table, *rules)
    return run(pipe, src.batches(chunk), flush=flush), pipe, sid


def accepted(origins: Sequence[int], values: Sequence[float], policy: str) -> list[int]:
    """Positions a compressor accepts under a backwards policy: finite values whose origin is after the
    last accepted origin (``late``/``drop``), or every finite value (``reset``)."""
    out: list[int] = []
    last: int | None = None
    for i, (t, v) in enumerate(zip(origins, values, strict=True)):
        if not math.isfinite(v):
            continue
        if policy != "reset" and last is not None and t <= last:
            continue
        out.append(i)
        last = t
    return out


@st.composite
def series(draw: st.DrawFn, *, backwards: bool = False, nan: bool = False) -> tuple[list[int], list[float]]:
    """A random walk, steps, spikes or a constant series, with optional backwards time and NaN."""
    n = draw(st.integers(1, 150))
    kind = draw(st.sampled_from(["walk", "steps", "spikes", "constant"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.01, 1.0, 100.0]))
    if kind == "walk":
        v = np.cumsum(rng.normal(0, scale, n))
    elif kind == "steps":
        v = np.repeat(rng.normal(0, 10 * scale, n // 5 + 1), 5)[:n]
    elif kind == "spikes":
        v = rng.normal(0, scale / 10, n)
        spikes = rng.random(n) < 0.1
        v[spikes] += rng.choice([-1, 1], spikes.sum()) * 50 * scale
    else:
        v = np.full(n, float(rng.normal(0, scale)))
    steps = rng.integers(1, 10 * SEC, n)
    if backwards:
        back = rng.random(n) < 0.1
        steps[back] = -rng.integers(1, 30 * SEC, back.sum())
    t = (T0 + np.cumsum(steps)).tolist()
    vals = v.tolist()
    if nan:
        for i in np.flatnonzero(rng.random(n) < 0.1).tolist():
            vals[i] = math.nan
    return t, vals


def tolerance(values: Sequence[float]) -> float:
    """Float rounding allowance for a bound check: 1e-9 relative to the magnitude of the values."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    return 1e-9 * max(1.0, max(finite, default=1.0))


def check_compressor(
    rule: dict[str, Any],
    mode: str,
    bound: float,
    origins: list[int],
    values: list[float],
    chunk: int,
) -> tuple[int, int]:
    """Run ``rule`` over one series in chunks, rebuild the accepted readings from the shipped points the
    way the cloud does, and assert every one is within ``bound``. Also: NaN readings come out as NaN
    points at their origin, late readings come out in ``late`` unchanged. Returns (accepted, points)."""
    from edgeflow.rules import reconstruct

    sink, _, sid = run_one(rule, origins, values, chunk=chunk)
    out = sink.batch
    m = out.series == sid
    pt, pv = out.origins[m], out.values[m]
    policy = rule.get("backwards", "late")
    acc = accepted(origins, values, policy)
    t_acc = np.asarray([origins[i] for i in acc], dtype=np.int64)
    v_acc = np.asarray([values[i] for i in acc])
    recon = reconstruct(t_acc, pt, pv, mode)  # type: ignore[arg-type]
    err = np.abs(recon - v_acc)
    assert not np.isnan(recon).any(), "every accepted reading must be reconstructable after flush"
    assert err.max(initial=0.0) <= bound + tolerance(values), (err.max(), bound)
    nan_in = [origins[i] for i, v in enumerate(values) if math.isnan(v)]
    nan_out = pt[np.isnan(pv)].tolist()
    assert sorted(nan_out) == sorted(nan_in)
    late = sink.late
    rejected = sorted(set(range(len(values))) - set(acc) - {i for i, v in enumerate(values) if math.isnan(v)})
    if policy == "late":
        assert late.origins.tolist() == [origins[i] for i in rejected]
        assert late.values.tolist() == [values[i] for i in rejected]
    else:
        assert len(late) == 0
    return len(acc), int((~np.isnan(pv)).sum())


def check_restart_mid_stream(rule: dict[str, Any], t: list[int], v: list[float], cut: int, chunk: int) -> None:
    """Run ``rule`` on the first ``cut`` readings, snapshot it through strict JSON, restore the snapshot in
    a new pipeline whose series ids differ, run it on the rest: the output is the whole run's, to the bit."""
    import json

    whole = run_one(rule, t, v, chunk=chunk)[0].batch
    table1 = SeriesTable()
    s1 = ListSource(table1)
    s1.add("d", "r", t[:cut], v[:cut])
    p1 = pipeline(table1, rule)
    first = run(p1, s1.batches(chunk), flush=False)
    snap = json.loads(json.dumps(p1.snapshot(), allow_nan=False))
    table2 = SeriesTable()
    table2.intern("other", "series")  # ids differ in the new process; the snapshot is keyed by name
    p2 = pipeline(table2, rule)
    p2.restore(snap)
    s2 = ListSource(table2)
    s2.add("d", "r", t[cut:], v[cut:])
    second = run(p2, s2.batches(chunk))
    got_t = first.batch.origins.tolist() + second.batch.origins.tolist()
    got_v = first.batch.values.tolist() + second.batch.values.tolist()
    assert got_t == whole.origins.tolist()
    np.testing.assert_array_equal(got_v, whole.values)


def sorted_state(snap: dict[str, Any]) -> dict[str, Any]:
    """A pipeline snapshot with each rule's series sorted by series key (the order a commit log's rows
    come back in)."""
    rules = [
        {**r, "state": {**r["state"], "series": sorted(r["state"]["series"])}}
        if "series" in r["state"]
        else r
        for r in snap["rules"]
    ]
    return {**snap, "rules": rules}
