"""The bounded compressors against the peer baseline, on every value column of the shared real data.

    python benchmarks/compression.py [DATA_DIR] [--all-bounds] [--batch 1000]

DATA_DIR defaults to ``../shared/data`` (its ``timeseries/``: NAB machine temperature, the eight SKAB
channels); without it the script says so and exits 0. For each column, at max error E = 1 % of the
column's range (``--all-bounds``: also 0.5, 2 and 5 %):

* the baseline: deadband at E (compare with the last value sent), the kept readings as EdgeX v3 events
  (one reading each, as a device service publishes them, without the random ids) in JSON arrays of 100,
  each array zlib level 9 (EdgeX app-service ``BatchByCount(100)`` + ``CompressWithZLIB``);
* swing, PMC-MR, Sim-Piece, Mix-Piece and auto at E through the real path: the pipeline, the compact
  encoder (one message per ``--batch`` input rows and per hand-out), the decoder, ``merge_points`` and
  ``reconstruct`` at every input timestamp (``benchmarks/bandwidth.py``'s ``run_rules``);

and prints bytes, the ratio to the baseline (target <= 1/3 on every column) and the max |error| / E seen
in the receiver's reconstruction; the summary also gives the worst ratio to a leaner baseline, the same
kept readings as ``{"ts": ms, "value": v}`` JSON lines (``benchmarks/savings.py``'s peer form), batches
of 100, zlib-9. Writes ``benchmarks/results/compression.json`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout's edgeflow, not an installed one
sys.path.insert(0, str(HERE))

from bandwidth import Group, real_groups, rule_types, run_rules, write_results  # noqa: E402

from edgeflow.model import Event, Reading, ReadingBatch, SeriesTable, ValueType  # noqa: E402  # noqa: E402
from edgeflow.rules import build_pipeline  # noqa: E402

STRATEGIES = ("swing", "pmc_mr", "sim_piece", "mix_piece", "auto")
TARGET = 1 / 3


def baseline(g: Group, e: float, per: int = 100) -> tuple[int, int, int]:
    """(readings kept, bytes, bytes as ``{"ts", "value"}`` lines): deadband at ``e``, then EdgeX v3 events
    in JSON arrays of ``per``, zlib-9; and the same batches as savings.py's JSON lines, zlib-9."""
    table = SeriesTable()
    sid = table.intern(g.device, g.columns[0], "bench")
    pipeline = build_pipeline([{"type": "deadband", "absolute": e}], table)
    x = g.values[:, 0]
    out = pipeline.process(ReadingBatch.from_columns(table, g.times, x, np.full(len(x), sid))).batch
    col = g.columns[0]
    kept = list(zip(out.origins.tolist(), out.values.tolist(), strict=True))
    events = [
        Event(g.device, "bench", col, o, [Reading(g.device, col, "bench", ValueType.FLOAT64, v, o)]).to_dict(
            with_ids=False
        )
        for o, v in kept
    ]
    total = sum(len(zlib.compress(orjson.dumps(events[k : k + per]), 9)) for k in range(0, len(events), per))
    lines = sum(
        len(
            zlib.compress(
                b"\n".join(orjson.dumps({"ts": o // 1_000_000, "value": v}) for o, v in kept[k : k + per]), 9
            )
        )
        for k in range(0, len(kept), per)
    )
    return len(events), total, lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, nargs="?", default=HERE.parent.parent / "shared" / "data")
    p.add_argument("--all-bounds", action="store_true", help="also 0.5, 2 and 5 %% of range")
    p.add_argument("--batch", type=int, default=1000, help="input rows per pipeline call (and message)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    if not (args.data / "timeseries").is_dir():
        print(f"compression: {args.data / 'timeseries'} is absent; give the data dir (skipped)")
        return
    bounds = [0.5, 1.0, 2.0, 5.0] if args.all_bounds else [1.0]
    known = rule_types()
    names = [s for s in STRATEGIES if s in known]
    absent = [s for s in STRATEGIES if s not in known]
    load0 = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    print(
        f"compression: bounds {bounds} % of range, batch {args.batch}; {os.cpu_count()} cores, load {load0}"
    )
    if absent:
        print(f"  not in this checkout: {', '.join(absent)}")
    rows: list[dict[str, Any]] = []
    for pct in bounds:
        head = f"{'column':<22}{'baseline B':>11}"
        head += "".join(f"{n:>17}" for n in names)
        print(f"\nE = {pct:g} % of range: bytes (ratio to baseline) [max err / E]")
        print(head)
        for g in real_groups(args.data):
            e = pct / 100 * g.span
            kept, base, lines = baseline(g, e)
            line = f"{g.columns[0][:21]:<22}{base:>11}"
            for name in names:
                r = run_rules(g, [{"type": name, "max_error": e}], "compact", args.batch)
                err = None if r["max_error"] is None else r["max_error"] / e
                ratio = r["bytes"] / base
                ok = err is not None and err <= 1 + 1e-9 and r["unreconstructed"] == 0
                rows.append(
                    {
                        "dataset": g.dataset,
                        "column": g.columns[0],
                        "bound_pct": pct,
                        "bound": e,
                        "readings": len(g.times),
                        "strategy": name,
                        "points": r["kept"],
                        "bytes": r["bytes"],
                        "baseline_kept": kept,
                        "baseline_bytes": base,
                        "lines_baseline_bytes": lines,
                        "ratio_to_lines": r["bytes"] / lines,
                        "ratio": ratio,
                        "max_error_over_bound": err,
                        "unreconstructed": r["unreconstructed"],
                        "bound_held": ok,
                        "target_met": ok and ratio <= TARGET,
                    }
                )
                cell = f"{r['bytes']} ({ratio:.2f}){'' if ok else '!'}"
                line += f"{cell:>17}"
            print(line, flush=True)
    for pct in bounds:
        for name in names:
            rs = [r for r in rows if r["bound_pct"] == pct and r["strategy"] == name]
            met = sum(r["target_met"] for r in rs)
            worst = max(r["ratio"] for r in rs)
            worst_lines = max(r["ratio_to_lines"] for r in rs)
            err = max((r["max_error_over_bound"] or 0.0) for r in rs)
            print(
                f"  E={pct:g}% {name:<10} <= 1/3 of baseline on {met}/{len(rs)} columns; "
                f"worst ratio {worst:.3f} ({worst_lines:.3f} to ts/value lines); max err/E {err:.6f}"
            )
    load1 = [round(x, 2) for x in os.getloadavg()]
    doc = {
        "command": "python benchmarks/compression.py " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "load_before": load0, "load_after": load1},
        "absent": absent,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    write_results(args.out, "compression", doc, rows)
    print(f"\nwrote {args.out / 'compression.json'} and .csv; {doc['seconds']} s, load after {load1}")


if __name__ == "__main__":
    main()
