"""Sim-Piece and Mix-Piece: hand-worked segments and groups, the bound as a property (with NaN and time
going backwards), hand-outs, snapshot/restore mid-stream, configuration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeflow.codec import decode, make_encoder, merge_points, reconstruct
from edgeflow.errors import ConfigError
from edgeflow.model import SeriesTable
from edgeflow.rules.pipeline import rule_specs
from edgeflow.rules.simpiece import grid_step, segment_value
from edgeflow.testing import ListSource
from tests._rulecases import SEC, T0, check_compressor, check_restart_mid_stream, pipeline, run_one, series

KINDS = ["sim_piece", "mix_piece"]
ALL = [*KINDS, "auto"]  # auto segments as Sim-Piece does, and ships whichever compressor is smallest


def _segments(points: list[tuple[int, float]]) -> list[tuple[int, float, float]]:
    """(start, start value, slope per second) of each emitted pair."""
    out = []
    for (t0, b), (x, e) in zip(points[0::2], points[1::2], strict=True):
        out.append((t0, b, (e - b) / ((x - t0) / SEC) if x > t0 else 0.0))
    return out


def test_grid_is_the_bound_to_two_significant_digits() -> None:
    assert grid_step(1.0642) == (1.0, 1)
    assert grid_step(0.3712) == (0.37, 2)
    assert grid_step(25.0) == (25.0, 0)
    assert grid_step(0.0) == (0.0, 0)
    for e in (0.001, 0.0999, 1.0, 3.33, 1e6):
        g, _ = grid_step(e)
        assert 0.9 * e <= g <= e


@pytest.mark.parametrize("kind", KINDS)
def test_hand_worked_two_segments(kind: str) -> None:
    # E = 1, grid 1.0. Segment 0 starts at (0 s, 0.5): b = 0.0. Slope windows [(v-1)/t, (v+1)/t]:
    # t=1 [0.5, 2.5], t=2 [0.75, 1.75], t=3 [0.833, 1.5]; t=4 (10.2) asks [2.3, 2.8]: disjoint, so the
    # segment closes and 10.2 starts segment 1 at b = 10.0: t=5 [-0.8, 1.2], t=6 [-0.4, 0.6]. Slopes: the
    # shortest decimal of each window nearest its middle, 1.0 and 0.0. Segment 0 ends 1 ns before 4 s.
    t = [k * SEC for k in range(7)]
    sink, _, _ = run_one({"type": kind, "max_error": 1.0}, t, [0.5, 1.5, 2.5, 3.5, 10.2, 10.2, 10.2])
    end = 4 * SEC - 1
    assert sink.points("d", "r") == [
        (0, 0.0),
        (end, segment_value(0.0, 1.0, end)),
        (4 * SEC, 10.0),
        (6 * SEC, 10.0),
    ]


def test_segments_of_one_start_value_share_one_slope() -> None:
    # a sawtooth: every tooth starts near 0.2 (b = 0.0) and rises by 1 a second, so every segment's slope
    # window holds 1.0 and one group serves them all
    t, v = [], []
    for k in range(40):
        t.append(k * SEC)
        v.append(0.2 + (k % 4) * 1.0)
    sink, _, _ = run_one({"type": "sim_piece", "max_error": 0.1}, t, v)
    segs = _segments(sink.points("d", "r"))
    assert len(segs) == 10
    assert {b for _, b, _ in segs} == {0.2}
    assert {round(a, 9) for _, _, a in segs} == {1.0}


def test_mix_piece_shares_slopes_across_start_values() -> None:
    # teeth at different heights with the same rise: Sim-Piece needs one slope per start value, Mix-Piece
    # one slope in all
    t, v = [], []
    for k in range(40):
        t.append(k * SEC)
        v.append(10.0 * (k // 4 % 3) + (k % 4) * 1.0)
    sim = _segments(run_one({"type": "sim_piece", "max_error": 0.3}, t, v)[0].points("d", "r"))
    mix = _segments(run_one({"type": "mix_piece", "max_error": 0.3}, t, v)[0].points("d", "r"))
    assert len({b for _, b, _ in sim}) == 3
    assert len({round(a, 9) for _, _, a in mix}) == 1


@settings(max_examples=120, deadline=None)
@given(
    data=series(),
    e=st.floats(0.001, 20),
    chunk=st.integers(1, 60),
    kind=st.sampled_from(ALL),
    horizon=st.integers(1, 8),
)
def test_reconstruction_within_max_error(
    data: tuple[list[int], list[float]], e: float, chunk: int, kind: str, horizon: int
) -> None:
    t, v = data
    check_compressor({"type": kind, "max_error": e, "horizon": horizon}, "linear", e, t, v, chunk)


@settings(max_examples=150, deadline=None)
@given(
    data=series(backwards=True, nan=True),
    e=st.floats(0.0, 20),
    chunk=st.integers(1, 60),
    policy=st.sampled_from(["late", "drop", "reset"]),
    kind=st.sampled_from(ALL),
    knots=st.sampled_from(["shortest", "middle"]),
    horizon=st.integers(1, 8),
)
def test_bound_holds_with_nan_and_backwards_time(
    data: tuple[list[int], list[float]],
    e: float,
    chunk: int,
    policy: str,
    kind: str,
    knots: str,
    horizon: int,
) -> None:
    t, v = data
    rule = {"type": kind, "max_error": e, "backwards": policy, "knots": knots, "horizon": horizon}
    check_compressor(rule, "linear", e, t, v, chunk)


def test_hand_out_every_horizon_segments_and_the_rest_at_flush() -> None:
    t = [k * SEC for k in range(40)]
    v = [float(k % 2) * 10 for k in range(40)]  # at E = 1, every segment is two readings (a rise of 10)
    table = SeriesTable()
    src = ListSource(table)
    src.add("d", "r", t, v)
    pipe = pipeline(table, {"type": "sim_piece", "max_error": 1.0, "horizon": 5})
    sizes = [len(pipe.process(b).batch) for b in src.batches(5)]
    # 5 closed segments are held when reading 10 starts the 6th: 10 points go out, and every 10 readings
    assert sizes == [0, 0, 10, 0, 10, 0, 10, 0]
    assert len(pipe.flush().batch) == 10


def test_max_hold_hands_out_at_a_later_reading_or_the_watermark() -> None:
    rule = {"type": "sim_piece", "max_error": 0.5, "horizon": 1000, "max_hold": "30s"}
    table = SeriesTable()
    src = ListSource(table)
    src.add("d", "r", [T0, T0 + SEC, T0 + 2 * SEC], [0.0, 5.0, 0.0])  # the third starts segment 2
    pipe = pipeline(table, rule)
    out = [pipe.process(b) for b in src.batches(3)]
    assert sum(len(o.batch) for o in out) == 0
    assert len(pipe.advance(T0 + 10 * SEC).batch) == 0
    handed = pipe.advance(T0 + 31 * SEC).batch
    assert handed.origins.tolist() == [T0, T0 + 2 * SEC - 1]  # the closed segment; the open one stays
    assert pipe.flush().batch.origins.tolist() == [T0 + 2 * SEC, T0 + 2 * SEC]


@settings(max_examples=40, deadline=None)
@given(
    data=series(backwards=True, nan=True),
    cut=st.integers(0, 150),
    chunk=st.integers(1, 40),
    kind=st.sampled_from(ALL),
)
def test_snapshot_restore_mid_stream_gives_identical_output(
    data: tuple[list[int], list[float]], cut: int, chunk: int, kind: str
) -> None:
    t, v = data
    cut = min(cut, len(t))
    check_restart_mid_stream({"type": kind, "max_error": 0.5, "backwards": "reset", "horizon": 3}, t, v, cut, chunk)


def test_malformed_snapshot_is_refused() -> None:
    from edgeflow.errors import RuleError

    table = SeriesTable()
    pipe = pipeline(table, {"type": "sim_piece", "max_error": 1.0})
    snap = pipe.snapshot()
    snap["rules"][0]["state"] = {"series": [[["d", "r", "", "Float64", "", ""], {"algo": {"open": 3}}]]}
    with pytest.raises(RuleError, match="malformed"):
        pipe.restore(snap)


@pytest.mark.parametrize("kind", ALL)
def test_config_unknown_keys_and_bad_values_are_errors(kind: str) -> None:
    with pytest.raises(ConfigError, match="horizn"):
        rule_specs([{"type": kind, "max_error": 1.0, "horizn": 5}])
    with pytest.raises(ConfigError, match="horizon"):
        rule_specs([{"type": kind, "max_error": 1.0, "horizon": 0}])
    with pytest.raises(ConfigError, match="max_error"):
        rule_specs([{"type": kind}])
    with pytest.raises(ConfigError, match="backwards"):
        rule_specs([{"type": kind, "max_error": 1.0, "backwards": "accept"}])
    (spec,) = rule_specs([{"type": kind, "max_error_percent": 1.0, "span": 50.0, "max_hold": "1m30s"}])
    assert spec.bound == 0.5  # type: ignore[union-attr]
    assert spec.max_hold == 90 * SEC  # type: ignore[union-attr]


def test_constant_series_is_one_segment() -> None:
    t = [T0 + k * SEC for k in range(500)]
    sink, _, _ = run_one({"type": "sim_piece", "max_error": 0.01}, t, [21.5] * 500, chunk=64)
    pts = sink.points("d", "r")
    assert pts == [(T0, 21.5), (T0 + 499 * SEC, 21.5)]
    assert all(math.isfinite(v) for _, v in pts)


def test_auto_config() -> None:
    (spec,) = rule_specs([{"type": "auto", "max_error": 1.0, "max_readings": 500}])
    assert spec.max_readings == 500  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="max_readings"):
        rule_specs([{"type": "auto", "max_error": 1.0, "max_readings": 1}])
    with pytest.raises(ConfigError, match="max_readings"):
        rule_specs([{"type": "sim_piece", "max_error": 1.0, "max_readings": 500}])


def _plant(n: int = 3000) -> tuple[list[int], list[float]]:
    """Stretches that favour different compressors: noisy plateaus, ramps, a sawtooth."""
    rng = np.random.default_rng(3)
    k = np.arange(n)
    v = np.where(
        k % 1500 < 500,
        np.round(20 + rng.normal(0, 0.05, n), 2),  # a plateau with noise: constant segments
        np.where(k % 1500 < 1000, 0.37 * (k % 500) + 5, (k % 7) * 2.0 + 40.0),  # a ramp; a sawtooth
    )
    return [T0 + i * SEC for i in range(n)], v.tolist()


def test_auto_chooses_per_hand_out_and_every_choice_keeps_the_bound() -> None:
    t, v = _plant()
    rule = {"type": "auto", "max_error": 0.3, "horizon": 20}
    sink, pipe, _ = run_one(rule, t, v, chunk=250)
    chosen = pipe.rules[0].chosen  # type: ignore[attr-defined]
    assert len(chosen) >= 2, chosen
    check_compressor(rule, "linear", 0.3, t, v, 250)
    # and through the wire: every output, whatever it chose, decodes and rebuilds within the bound
    enc = make_encoder("compact", stream_id="auto")
    payloads = [m.payload for out in sink.outputs for m in enc.encode(out.batch, out.interpolation)]
    (s,) = merge_points(decode(p) for p in payloads).values()
    assert s.interpolation == "linear"
    err = np.abs(reconstruct(s.origins, s.values, t, "linear") - np.asarray(v))
    assert err.max() <= 0.3 * (1 + 1e-9)


def test_auto_hands_out_everything_at_max_readings() -> None:
    t = [T0 + i * SEC for i in range(1000)]
    rule = {"type": "auto", "max_error": 0.1, "max_readings": 100}
    table = SeriesTable()
    src = ListSource(table)
    src.add("d", "r", t, [5.0] * 1000)  # one segment forever: only max_readings hands it out
    pipe = pipeline(table, rule)
    sizes = [len(pipe.process(b).batch) for b in src.batches(50)]
    assert sizes == [0, 2] * 10
    assert len(pipe.flush().batch) == 0
