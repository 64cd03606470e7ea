"""Window rules: readings/s through a sliding window (incremental), and tumbling windows for comparison.

    python benchmarks/windows.py [--series 10] [--hz 10] [--size 600] [--minutes 60]

Feeds ``--minutes`` of ``--hz`` readings for each of ``--series`` series through one window rule, in
calls of ``--batch`` seconds of data (all series together, as the bus hands them over), and prints
readings/s and the results emitted. Rows: a sliding ``--size`` s window with count/mean/min/max/stddev
(large calls go vectorised, small calls reading by reading through the monotonic deques), the same with
p95 exact and p95 from the sketch (1 % relative error), and a tumbling window of the same size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(
    spec: dict[str, Any], series: int, hz: float, minutes: float, batch_s: float
) -> tuple[float, int, int]:
    from edgeflow.model import ReadingBatch, SeriesTable
    from edgeflow.rules import build_pipeline

    table = SeriesTable()
    sids = np.asarray([table.intern(f"dev-{i}", "temp") for i in range(series)], dtype=np.int32)
    pipe = build_pipeline([spec], table)
    rng = np.random.default_rng(1)
    per = max(1, int(hz * batch_s))
    calls = int(minutes * 60 / batch_s)
    step = int(1e9 / hz)
    level = np.zeros(series)
    t0_ns = 1_700_000_000 * 10**9
    batches = []
    for c in range(calls):
        t = t0_ns + (c * per + np.arange(per, dtype=np.int64)) * step
        steps = rng.normal(0, 0.1, (per, series)).cumsum(axis=0) + level
        level = steps[-1]
        batches.append(
            ReadingBatch(
                table,
                np.repeat(t, series),
                steps.ravel(),
                np.tile(sids, per),
            )
        )
    n = sum(len(b) for b in batches)
    out = 0
    start = time.perf_counter()
    for b in batches:
        out += len(pipe.process(b).batch)
    elapsed = time.perf_counter() - start
    return n / elapsed, n, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=10)
    p.add_argument("--hz", type=float, default=10.0)
    p.add_argument("--size", type=int, default=600, help="window size, seconds")
    p.add_argument("--minutes", type=float, default=60.0)
    args = p.parse_args()
    base = ["count", "mean", "min", "max", "stddev"]
    rows = [
        ("sliding, 60 s per call", {"kind": "sliding", "aggregates": base}, 60.0),
        ("sliding, 1 s per call", {"kind": "sliding", "aggregates": base}, 1.0),
        ("sliding + p95 exact, 60 s per call", {"kind": "sliding", "aggregates": [*base, "p95"]}, 60.0),
        (
            "sliding + p95 sketch 1 %, 60 s per call",
            {"kind": "sliding", "aggregates": [*base, "p95"], "percentile_accuracy": 0.01},
            60.0,
        ),
        ("tumbling, 60 s per call", {"kind": "tumbling", "aggregates": base}, 60.0),
    ]
    load = os.getloadavg()
    print(
        f"windows: {args.series} series x {args.hz:g} Hz, {args.minutes:g} min of data, window {args.size} s "
        f"({int(args.size * args.hz)} readings per series); load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'case':<42} {'readings/s':>12} {'readings':>10} {'results':>10}")
    for name, spec, batch_s in rows:
        minutes = args.minutes if "exact" not in name and "1 s" not in name else min(args.minutes, 10.0)
        rate, n, out = run(
            {"type": "window", "size": args.size, **spec}, args.series, args.hz, minutes, batch_s
        )
        print(f"{name:<42} {rate:>12,.0f} {n:>10,} {out:>10,}")


if __name__ == "__main__":
    main()
