"""A proposal, measured: swing-filter points at the shortest decimal inside the allowed window.

    python benchmarks/swing_decimals.py [--data ../shared/data] [--batch 1000]

When a swing segment closes, any end value between ``y0 + l·dt`` and ``y0 + u·dt`` keeps every reading
of the segment within E (that is what the slope bounds mean). The middle is a float with a full 52-bit
mantissa, which the compact encoding can only ship as ~7 bytes. Taking the value with the fewest decimal
digits in that window keeps the bound at E, and the compact encoding's decimal coding ships it in one or
two bytes. ``edgeflow.rules.swing`` now does this itself (``knots: shortest``, the default; ``knots:
middle`` keeps the middle; see ``edgeflow.rules.knots``); this script stays as an independent check of
the idea, without the rule's rounding margin.

This script carries its own swing filter (the algorithm of ``edgeflow.rules.swing``, with ``backwards:
reset``), run twice on NAB machine temperature at E = 1 % of range: ``middle`` (as the rule does) and
``shortest decimal``. Each run's points go through the real compact encoder and decoder and the real
reconstruction; printed: points, bytes, measured max |error| / E, and the ratio to the peer baseline
(deadband + batched JSON + zlib, from ``benchmarks/savings.py``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's edgeflow, not an installed one

from edgeflow.codec import decode, make_encoder, merge_points, reconstruct
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.replay import read_csv

NAB = "timeseries/nab_machine_temperature_system_failure.csv"


def middle(lo: float, hi: float) -> float:
    return (lo + hi) / 2


def shortest_decimal(lo: float, hi: float) -> float:
    """The value in [lo, hi] with the fewest digits after the point (nearest the middle)."""
    mid = (lo + hi) / 2
    for k in range(12):
        s = 10.0**k
        for c in (round(mid * s) / s, math.ceil(lo * s) / s):
            if lo <= c <= hi:
                return c
    return mid


def swing(
    t: list[int], v: list[float], e: float, pick: Callable[[float, float], float]
) -> list[tuple[int, int, float]]:
    """(input position, origin, value) points; a reading not after the last starts a new run."""
    out: list[tuple[int, int, float]] = []
    has = False
    t0 = tp = n = 0
    y0 = u = lo = 0.0

    def close(pos: int) -> None:
        nonlocal y0, t0, n
        if has and n > 0:
            y0 = pick(y0 + lo * (tp - t0), y0 + u * (tp - t0))
            t0 = tp
            n = 0
            out.append((pos, t0, y0))

    for i, (ti, vi) in enumerate(zip(t, v, strict=True)):
        if has and ti <= tp:
            close(i)
            has = False
        if not has:
            has, t0, tp, y0, n = True, ti, ti, vi, 0
            out.append((i, ti, vi))
            continue
        dt = ti - t0
        hi, lw = (vi + e - y0) / dt, (vi - e - y0) / dt
        if n == 0:
            u, lo, n = hi, lw, 1
        elif max(lw, lo) > min(hi, u):
            close(i)
            dt = ti - t0
            u, lo, n = (vi + e - y0) / dt, (vi - e - y0) / dt, 1
        else:
            u, lo, n = min(hi, u), max(lw, lo), n + 1
        tp = ti
    close(len(t))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    data = args.data
    if not (data / NAB).is_file():
        data = Path(__file__).resolve().parents[1].parent.parent / "shared" / "data"
    d = read_csv(data / NAB, sep=",", time_column="timestamp", value_columns=["value"])
    t, v = d.times, d.values[:, 0]
    e = 0.01 * float(v.max() - v.min())
    print(
        f"NAB machine temperature, {len(v)} readings, E = {e:.6g}, compact encoding, {args.batch} rows/message"
    )
    for name, pick in (
        ("middle (knots: middle)", middle),
        ("shortest decimal (knots: shortest)", shortest_decimal),
    ):
        pts = swing(t.tolist(), v.tolist(), e, pick)
        table = SeriesTable()
        sid = table.intern("machine", "value", "replay")
        enc = make_encoder("compact", stream_id="bench")
        pos = np.array([p[0] for p in pts])
        messages = []
        for lo in range(0, len(t), args.batch):  # ship each point with the input batch that closed it
            sel = (pos >= lo) & (pos < lo + args.batch) if lo + args.batch < len(t) else pos >= lo
            if sel.any():
                part = [p for p, s in zip(pts, sel.tolist(), strict=True) if s]
                b = ReadingBatch.from_columns(
                    table, [p[1] for p in part], [p[2] for p in part], [sid] * len(part)
                )
                messages += enc.encode(b, {sid: "linear"})
        s = merge_points(decode(m.payload) for m in messages)[("machine", "value")]
        y = reconstruct(s.origins, s.values, t, "linear")
        err = float(np.max(np.abs(y - v)))
        print(f"  {name:<34} {len(pts):>6} points {enc.stats.bytes:>7} B   max err/E {err / e:.6f}")


if __name__ == "__main__":
    main()
