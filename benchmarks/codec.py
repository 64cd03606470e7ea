"""Encode and decode throughput of both encodings, one core.

    python benchmarks/codec.py [--readings 200000] [--batch 1000] [--series 10]

Input: a random walk per series rounded to 3 decimals (step N(0, 0.3)), 1 s sampling, series
interleaved, in messages of ``--batch`` readings. Prints readings per second for encode and for decode
(best of 3) and bytes per reading. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's edgeflow, not an installed one

from edgeflow.codec import decode, make_encoder
from edgeflow.model import ReadingBatch, SeriesTable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--series", type=int, default=10)
    args = parser.parse_args()
    table = SeriesTable()
    sids = [table.intern("bench-device", f"sensor{i}", "bench") for i in range(args.series)]
    n = args.readings
    rng = np.random.default_rng(1)
    values = np.round(50 + np.cumsum(rng.normal(0, 0.3, n)), 3)
    origins = 1_700_000_000 * 10**9 + (np.arange(n) // args.series) * 10**9
    series = np.tile(np.asarray(sids, dtype=np.int32), n // args.series + 1)[:n]
    batches = [
        ReadingBatch(
            table, origins[lo : lo + args.batch], values[lo : lo + args.batch], series[lo : lo + args.batch]
        )
        for lo in range(0, n, args.batch)
    ]
    for name, limit in (("compact", n), ("edgex-json", min(n, 20_000))):
        use = batches[: max(1, limit // args.batch)]
        count = sum(len(b) for b in use)
        best_enc = best_dec = float("inf")
        payloads: list[bytes] = []
        for _ in range(3):
            enc = make_encoder(name)
            t0 = time.perf_counter()
            payloads = [m.payload for b in use for m in enc.encode(b)]
            best_enc = min(best_enc, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for p in payloads:
                decode(p)
            best_dec = min(best_dec, time.perf_counter() - t0)
        size = sum(len(p) for p in payloads)
        print(
            f"{name:<11} {count:>8} readings  encode {count / best_enc:>12,.0f}/s  decode {count / best_dec:>12,.0f}/s"
            f"  {size / count:7.2f} B/reading  ({len(payloads)} messages)"
        )


if __name__ == "__main__":
    main()
