"""Throughput of every rule over columnar batches, one core.

    python benchmarks/rules.py [--readings 1000000] [--batch 10000] [--series 10] [--nab CSV]

Input: a random walk per series (step N(0, 0.3)), 1 s sampling, series interleaved, fed in batches of
``--batch`` readings. Prints, per rule, readings in per second of wall time (best of ``--repeat`` runs,
a fresh pipeline each run) and the fraction of readings out. With ``--nab`` (the NAB machine-temperature
CSV), also each bounded rule's kept fraction and measured max reconstruction error at 1 % of the range,
with the error rebuilt from the shipped points by :func:`edgeflow.rules.reconstruct`. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's edgeflow, not an installed one

from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.rules import build_pipeline, reconstruct
from edgeflow.rules.spec import RuleSpec

RULES: list[tuple[str, list[dict[str, Any]]]] = [
    ("deadband absolute", [{"type": "deadband", "absolute": 1.0}]),
    ("deadband percent of span", [{"type": "deadband", "percent": 1.0, "span": 100.0}]),
    ("deadband + heartbeat 60 s", [{"type": "deadband", "absolute": 1.0, "heartbeat": 60}]),
    ("deadband compare=in", [{"type": "deadband", "absolute": 1.0, "compare": "in"}]),
    ("on_change", [{"type": "on_change"}]),
    ("min_interval 5 s", [{"type": "min_interval", "interval": 5}]),
    ("swing", [{"type": "swing", "max_error": 1.0}]),
    ("pmc_mr", [{"type": "pmc_mr", "max_error": 1.0}]),
    ("sdt", [{"type": "sdt", "comp_dev": 1.0}]),
    ("sim_piece", [{"type": "sim_piece", "max_error": 1.0}]),
    ("mix_piece", [{"type": "mix_piece", "max_error": 1.0}]),
    ("auto", [{"type": "auto", "max_error": 1.0}]),
    ("window tumbling 60 s mean/min/max/count", [{"type": "window", "kind": "tumbling", "size": 60}]),
    (
        "window hopping 60/30 s p95",
        [{"type": "window", "kind": "hopping", "size": 60, "hop": 30, "aggregates": ["p95"]}],
    ),
    ("window count 100 mean", [{"type": "window", "kind": "count", "count": 100, "aggregates": ["mean"]}]),
    ("window sliding 10 s mean", [{"type": "window", "kind": "sliding", "size": 10, "aggregates": ["mean"]}]),
    ("filter device glob", [{"type": "filter", "device": "dev[0-4]"}]),
    ("range", [{"type": "range", "min": -5, "max": 5}]),
    ("expression", [{"type": "expression", "expr": "abs(value) < 5 and device != 'dev3'"}]),
    ("alarm", [{"type": "alarm", "above": 20, "hysteresis": 1}]),
]


def make_batches(n: int, batch: int, n_series: int, table: SeriesTable) -> list[ReadingBatch]:
    rng = np.random.default_rng(7)
    sids = np.asarray([table.intern(f"dev{i}", "temp") for i in range(n_series)], dtype=np.int32)
    per = n // n_series
    walk = np.cumsum(rng.normal(0.0, 0.3, (per, n_series)), axis=0)
    values = walk.reshape(-1)
    series = np.tile(sids, per)
    origins = np.repeat(np.arange(per, dtype=np.int64) * 1_000_000_000 + 1_700_000_000_000_000_000, n_series)
    return [
        ReadingBatch(table, origins[a : a + batch], values[a : a + batch], series[a : a + batch])
        for a in range(0, len(values), batch)
    ]


def nab(path: Path, adapter: TypeAdapter[list[RuleSpec]]) -> None:
    origins: list[int] = []
    values: list[float] = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            dt = datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            origins.append(int(dt.timestamp()) * 1_000_000_000)
            values.append(float(row["value"]))
    e = 0.01 * (max(values) - min(values))
    print(f"\n{path.name}: {len(values)} readings, E = 1 % of range = {e:.4f}")
    print(f"{'rule':28} {'kept':>7} {'max err / E':>12} {'bound / E':>10} {'late':>5}")
    cases = [
        ("deadband (hold)", {"type": "deadband", "absolute": e}, "hold", 1.0),
        ("swing (linear)", {"type": "swing", "max_error": e}, "linear", 1.0),
        ("swing, backwards: reset", {"type": "swing", "max_error": e, "backwards": "reset"}, "linear", 1.0),
        ("pmc_mr (hold)", {"type": "pmc_mr", "max_error": e}, "hold", 1.0),
        ("sdt (linear)", {"type": "sdt", "comp_dev": e}, "linear", 2.0),
        ("sim_piece (linear)", {"type": "sim_piece", "max_error": e}, "linear", 1.0),
        ("mix_piece (linear)", {"type": "mix_piece", "max_error": e}, "linear", 1.0),
        ("auto (linear)", {"type": "auto", "max_error": e}, "linear", 1.0),
    ]
    for name, raw, mode, bound in cases:
        table = SeriesTable()
        sid = table.intern("machine", "temperature")
        o_all = np.asarray(origins, np.int64)
        v_all = np.asarray(values)
        s_all = np.full(len(values), sid, np.int32)
        pipe = build_pipeline(adapter.validate_python([raw]), table)
        parts = [
            pipe.process(ReadingBatch(table, o_all[a : a + 1000], v_all[a : a + 1000], s_all[a : a + 1000]))
            for a in range(0, len(values), 1000)
        ]
        parts.append(pipe.flush())
        pt = np.concatenate([p.batch.origins for p in parts])
        pv = np.concatenate([p.batch.values for p in parts])
        n_late = sum(len(p.late) for p in parts)
        # the readings the rule accepted: with `late`, those after every earlier accepted origin
        keep: list[int] = []
        last = None
        for i, t in enumerate(origins):
            if raw.get("backwards", "late") == "late" and last is not None and t <= last:
                continue
            keep.append(i)
            last = t
        rec = reconstruct([origins[i] for i in keep], pt, pv, mode)  # type: ignore[arg-type]
        err = float(np.nanmax(np.abs(rec - np.asarray([values[i] for i in keep]))))
        print(f"{name:28} {len(pt) / len(values):7.3f} {err / e:12.3f} {bound:10.1f} {n_late:5d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="run only rules whose name contains this")
    ap.add_argument("--nab", type=Path, default=None, help="NAB machine_temperature CSV for the error table")
    args = ap.parse_args()
    table = SeriesTable()
    batches = make_batches(args.readings, args.batch, args.series, table)
    n = sum(len(b) for b in batches)
    adapter = TypeAdapter(list[RuleSpec])
    print(f"{n} readings, {args.series} series interleaved, batches of {args.batch}, best of {args.repeat}")
    print(f"{'rule':45} {'readings/s':>14} {'out/in':>8}")
    for name, raw in RULES:
        if args.only and args.only not in name:
            continue
        specs = adapter.validate_python(raw)
        best = float("inf")
        out = 0
        for _ in range(args.repeat):
            pipe = build_pipeline(specs, table)
            t0 = time.perf_counter()
            out = 0
            for b in batches:
                out += len(pipe.process(b).batch)
            out += len(pipe.flush().batch)
            best = min(best, time.perf_counter() - t0)
        print(f"{name:45} {n / best:14,.0f} {out / n:8.3f}")
    if args.nab is not None:
        nab(args.nab, adapter)


if __name__ == "__main__":
    main()
