"""Bytes per reading against the error the cloud sees: every strategy, every real series, four bounds.

    python benchmarks/bandwidth.py [--data ../shared/data] [--bounds 0.5,1,2,5] [--batch 1000] [--quick]

Data: every value column of ``timeseries/`` (NAB machine temperature; each SKAB channel) and a
deterministic synthetic plant (``--plant-devices`` series of 4,000 one-second samples, seed 16: slow
drift + noise, steps, rare spikes, flat lines and quantised sensors, each scaled to 0..100).

Bound E = 0.5, 1, 2, 5 % of each column's range (the plant: of 100). For each strategy the readings
kept, bytes shipped, bytes per input reading, savings against one EdgeX v3 AddEventRequest per reading,
and the max and mean |error| of what the receiver rebuilds at every input timestamp:

edgeflow's own rules go through the real path: the pipeline (``edgeflow.rules.build_pipeline``), the
compact encoder (``edgeflow.codec.make_encoder``, one message per ``--batch`` input rows), the decoder
(``edgeflow.codec.decode``), ``merge_points`` and ``reconstruct`` with the interpolation each series
ships with.

  edgex-json      one EdgeX v3 AddEventRequest per reading (``edgeflow.replay.edgex_json_baseline``,
                  the exact size), lossless — the baseline
  json+zlib       every reading as ``{"ts": ms, "value": v}`` lines, one zlib-9 block per batch, lossless
                  (a peer's batching + compression: EdgeX app-service ``BatchByCount`` + ``CompressWithZLIB``)
  compact         edgeflow compact, no rule (lossless)
  on_change       edgeflow ``on_change`` + compact (exact repeats only)
  deadband        edgeflow ``deadband`` absolute E (compare with the last sent) + compact
  fledge_delta    REIMPLEMENTATION of Fledge's ``delta`` filter semantics (fledge-iot/fledge-filter-delta
                  docs/index.rst: forward when the value changed by more than *Tolerance %* of the last
                  value forwarded): edgeflow ``deadband`` with ``percent_of: previous`` at
                  T = 100 * E / max|v| (so its error stays within E), shipped as json+zlib (a north
                  plugin's JSON batches, compressed)
  edgex_threshold REIMPLEMENTATION of EdgeX 4.0 AutoEvent ``onChangeThreshold`` (go-mod-core-contracts
                  #940, device-sdk-go #1644: send when |last sent − new| > threshold): edgeflow
                  ``deadband`` absolute E, shipped as one EdgeX AddEventRequest per kept reading
  sdt             edgeflow swinging door, comp_dev E/2 (bounded by twice its deviation) + compact
  pmc_mr          edgeflow PMC-MR at E + compact
  swing           edgeflow swing at E + compact
  window          edgeflow tumbling mean over 10 samples' time + compact (not bounded: error as measured)
  mix_piece, sim_piece, auto
                  the fleet issue's segment-merging compressor and automatic choice, at E, when the rule
                  types exist in this checkout (discovered at run time; otherwise listed as absent)

Peer strategies are rebuilt by the receiver as a peer's would: hold the last value received.

Prints the table at 1 % (all real columns together, and the plant), writes every row to
``benchmarks/results/bandwidth.json`` and ``bandwidth.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import typing
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's edgeflow, not an installed one

from edgeflow.codec import decode, make_encoder, merge_points, reconstruct  # noqa: E402
from edgeflow.model import ReadingBatch, SeriesTable  # noqa: E402
from edgeflow.replay import edgex_json_baseline, read_csv  # noqa: E402
from edgeflow.rules import build_pipeline  # noqa: E402
from edgeflow.rules.spec import RuleSpec  # noqa: E402

BOUNDS = (0.5, 1.0, 2.0, 5.0)
LOSSLESS = ("edgex-json", "json+zlib", "compact", "on_change")
FLEET = ("mix_piece", "sim_piece", "auto")


def shared_data() -> Path:
    for c in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"):
        if c.is_dir():
            return c
    return ROOT.parent / "shared" / "data"


def rule_types() -> set[str]:
    """The ``type`` of every rule this checkout knows."""
    union = typing.get_args(RuleSpec)[0]
    out = set()
    for model in typing.get_args(union):
        ann = model.model_fields["type"].annotation
        out.update(typing.get_args(ann))
    return out


@dataclass
class Group:
    """Series that share one bound: ``times`` (n,), ``values`` (n, m), one name per column."""

    dataset: str
    device: str
    columns: list[str]
    times: np.ndarray
    values: np.ndarray
    span: float
    peak: float  # max |v|, for the percent-of-previous tolerance


def real_groups(data: Path) -> list[Group]:
    out = []
    ts = data / "timeseries"
    for path in sorted(ts.glob("*.csv")):
        head = path.read_text(encoding="utf-8-sig").splitlines()[0]
        sep = ";" if head.count(";") > head.count(",") else ","
        cols = head.split(sep)
        tcol, vcols = cols[0], cols[1:]
        series = read_csv(path, sep=sep, time_column=tcol, value_columns=vcols)
        order = np.argsort(series.times, kind="stable")
        for j, col in enumerate(vcols):
            keep = order[series.present[order, j]]
            t, v = series.times[keep], series.values[keep, j]
            # one reading per timestamp (a recorder's duplicates would be late readings to the rules)
            t, first = np.unique(t, return_index=True)
            v = v[first]
            span = float(v.max() - v.min())
            if span <= 0:
                continue
            out.append(Group(path.stem, path.stem, [col], t, v[:, None], span, float(np.abs(v).max())))
    return out


def plant(devices: int, n: int = 4000, seed: int = 16) -> Group:
    """A deterministic plant: each series scaled to 0..100, one sample a second."""
    rng = np.random.default_rng(seed)
    t = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000_000
    cols, vals = [], []
    x = np.arange(n)
    for d in range(devices):
        kind = d % 5
        if kind == 0:  # slow drift + noise
            v = np.cumsum(rng.normal(0, 0.05, n)) + 0.3 * rng.normal(0, 1, n)
        elif kind == 1:  # steps
            v = np.repeat(rng.normal(0, 5, n // 200 + 1), 200)[:n] + 0.05 * rng.normal(0, 1, n)
        elif kind == 2:  # periodic + rare spikes
            v = np.sin(2 * np.pi * x / rng.integers(300, 1200)) + 0.02 * rng.normal(0, 1, n)
            spikes = rng.choice(n, 8, replace=False)
            v[spikes] += rng.choice([-4.0, 4.0], 8)
        elif kind == 3:  # flat lines with rare changes
            v = np.repeat(rng.integers(0, 5, n // 500 + 1).astype(float), 500)[:n]
        else:  # a quantised sensor (0.1 steps) on a slow ramp
            v = np.round(np.linspace(0, rng.uniform(2, 8), n) + 0.3 * rng.normal(0, 1, n), 1)
        lo, hi = float(v.min()), float(v.max())
        v = (v - lo) / (hi - lo) * 100 if hi > lo else np.zeros(n)
        cols.append(f"s{d:03d}")
        vals.append(np.round(v, 3))
    values = np.stack(vals, axis=1)
    return Group("plant", "plant", cols, t, values, 100.0, 100.0)


def _batches(g: Group, table: SeriesTable, sids: np.ndarray, batch: int) -> typing.Iterator[ReadingBatch]:
    n, m = g.values.shape
    for lo in range(0, n, batch):
        hi = min(lo + batch, n)
        yield ReadingBatch(
            table, np.repeat(g.times[lo:hi], m), g.values[lo:hi].ravel(), np.tile(sids, hi - lo)
        )


def run_rules(g: Group, specs: list[dict[str, Any]], wire: str, batch: int) -> dict[str, Any]:
    """Pipeline -> wire -> what the receiver rebuilds at every input timestamp."""
    table = SeriesTable()
    sids = np.asarray([table.intern(g.device, c, "bench") for c in g.columns], np.int32)
    pipeline = build_pipeline(specs, table) if specs else None
    enc = make_encoder("compact", stream_id="bw") if wire == "compact" else None
    payloads: list[bytes] = []
    kept: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    nbytes = 0
    n_kept = 0

    def ship(b: ReadingBatch, interp: typing.Mapping[int, str] | None) -> None:
        nonlocal nbytes, n_kept
        if len(b) == 0:
            return
        n_kept += len(b)
        if enc is not None:
            for eb in enc.encode(b, interp):  # type: ignore[arg-type]
                payloads.append(eb.payload)
                nbytes += len(eb.payload)
            return
        origins, values = b.origins, b.values
        names = np.asarray([table.info(int(s)).resource for s in b.series.tolist()])
        for name in np.unique(names).tolist():
            mask = names == name
            kept.setdefault(name, []).append((origins[mask], values[mask]))
        if wire == "json+zlib":
            lines = b"\n".join(
                orjson.dumps({"ts": o // 1_000_000, "value": v})
                for o, v in zip(origins.tolist(), values.tolist(), strict=True)
            )
            nbytes += len(zlib.compress(lines, 9))
        elif wire == "edgex-json":
            for name in np.unique(names).tolist():
                mask = names == name
                nbytes += edgex_json_baseline(g.device, "bench", name, origins[mask], values[mask])

    for b in _batches(g, table, sids, batch):
        if pipeline is None:
            ship(b, None)
        else:
            out = pipeline.process(b)
            ship(out.batch, out.interpolation)
    if pipeline is not None:
        out = pipeline.flush()
        ship(out.batch, out.interpolation)

    # the receiver
    recon_of: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
    if enc is not None:
        merged = merge_points(decode(p) for p in payloads)
        for (_dev, res), s in merged.items():
            base = res.split(".w.")[0]
            recon_of[base] = (np.asarray(s.origins), np.asarray(s.values), s.interpolation)
    else:
        for name, parts in kept.items():
            recon_of[name] = (
                np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]),
                "hold",
            )
    errs = []
    unrec = 0
    for j, col in enumerate(g.columns):
        x = g.values[:, j]
        if col not in recon_of:
            unrec += len(x)
            continue
        o, v, interp = recon_of[col]
        y = reconstruct(o, v, g.times, interp)  # type: ignore[arg-type]
        ok = np.isfinite(y)
        unrec += int((~ok).sum())
        errs.append(np.abs(y[ok] - x[ok]))
    e = np.concatenate(errs) if errs else np.zeros(0)
    return {
        "kept": n_kept,
        "bytes": nbytes,
        "max_error": float(e.max()) if len(e) else None,
        "mean_error": float(e.mean()) if len(e) else None,
        "unreconstructed": unrec,
    }


def strategies(g: Group, pct: float, known: set[str]) -> list[tuple[str, list[dict[str, Any]], str, str]]:
    """(name, rules, wire, note) at bound ``pct`` % of the group's span."""
    e = pct / 100 * g.span
    step = int(np.median(np.diff(g.times))) if len(g.times) > 1 else 1_000_000_000
    tol = 100 * e / g.peak if g.peak > 0 else pct
    out: list[tuple[str, list[dict[str, Any]], str, str]] = [
        ("deadband", [{"type": "deadband", "absolute": e}], "compact", ""),
        (
            "fledge_delta",
            [{"type": "deadband", "percent": tol, "percent_of": "previous"}],
            "json+zlib",
            "reimplemented: Fledge delta filter semantics",
        ),
        (
            "edgex_threshold",
            [{"type": "deadband", "absolute": e}],
            "edgex-json",
            "reimplemented: EdgeX onChangeThreshold semantics",
        ),
        ("sdt", [{"type": "sdt", "comp_dev": e / 2}], "compact", "comp_dev E/2"),
        ("pmc_mr", [{"type": "pmc_mr", "max_error": e}], "compact", ""),
        ("swing", [{"type": "swing", "max_error": e}], "compact", ""),
        (
            "window",
            [
                {
                    "type": "window",
                    "name": "w",
                    "kind": "tumbling",
                    "size": 10 * step / 1e9,
                    "aggregates": ["mean"],
                }
            ],
            "compact",
            "tumbling mean, 10 samples; not bounded",
        ),
    ]
    for name in FLEET:
        if name in known:
            out.append((name, [{"type": name, "max_error": e}], "compact", "fleet issue"))
    return out


def run_group(g: Group, bounds: list[float], batch: int, known: set[str]) -> list[dict[str, Any]]:
    n = g.values.size
    baseline = sum(
        edgex_json_baseline(g.device, "bench", c, g.times, g.values[:, j]) for j, c in enumerate(g.columns)
    )
    rows = []

    def row(name: str, pct: float | None, r: dict[str, Any], wire: str, note: str) -> dict[str, Any]:
        e = None if pct is None else pct / 100 * g.span
        return {
            "dataset": g.dataset,
            "column": g.columns[0] if len(g.columns) == 1 else f"{len(g.columns)} series",
            "strategy": name,
            "wire": wire,
            "bound_pct": pct,
            "readings_in": n,
            "kept": r["kept"],
            "bytes": r["bytes"],
            "bytes_per_reading": r["bytes"] / n,
            "savings_vs_edgex": 1 - r["bytes"] / baseline,
            "max_error": r["max_error"],
            "mean_error": r["mean_error"],
            "max_error_over_bound": (r["max_error"] / e) if (e and r["max_error"] is not None) else None,
            "unreconstructed": r["unreconstructed"],
            "note": note,
        }

    lossless = {
        "edgex-json": {
            "kept": n,
            "bytes": baseline,
            "max_error": 0.0,
            "mean_error": 0.0,
            "unreconstructed": 0,
        },
        "json+zlib": run_rules(g, [], "json+zlib", batch),
        "compact": run_rules(g, [], "compact", batch),
        "on_change": run_rules(g, [{"type": "on_change"}], "compact", batch),
    }
    for pct in bounds:
        for name, r in lossless.items():
            wire = {"edgex-json": "edgex-json", "json+zlib": "json+zlib"}.get(name, "compact")
            rows.append(row(name, pct, r, wire, "lossless"))
        for name, specs, wire, note in strategies(g, pct, known):
            rows.append(row(name, pct, run_rules(g, specs, wire, batch), wire, note))
    return rows


def summarize(rows: list[dict[str, Any]], pct: float, datasets: set[str]) -> list[dict[str, Any]]:
    out = []
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    for name in names:
        rs = [r for r in rows if r["strategy"] == name and r["bound_pct"] == pct and r["dataset"] in datasets]
        if not rs:
            continue
        n = sum(r["readings_in"] for r in rs)
        b = sum(r["bytes"] for r in rs)
        base = sum(r["bytes"] / (1 - r["savings_vs_edgex"]) for r in rs if r["savings_vs_edgex"] < 1)
        ratios = [r["max_error_over_bound"] for r in rs if r["max_error_over_bound"] is not None]
        out.append(
            {
                "strategy": name,
                "wire": rs[0]["wire"],
                "kept_share": sum(r["kept"] for r in rs) / n,
                "bytes_per_reading": b / n,
                "savings_vs_edgex": 1 - b / base if base else None,
                "max_error_over_bound": max(ratios) if ratios else None,
                "unreconstructed": sum(r["unreconstructed"] for r in rs),
                "note": rs[0]["note"],
            }
        )
    return out


def print_summary(title: str, summary: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"  {'strategy':<17}{'wire':<12}{'kept':>8}{'B/reading':>11}{'savings':>10}{'max err/E':>10}  note")
    for s in summary:
        err = "-" if s["max_error_over_bound"] is None else f"{s['max_error_over_bound']:.3f}"
        print(
            f"  {s['strategy']:<17}{s['wire']:<12}{s['kept_share']:>8.2%}{s['bytes_per_reading']:>11.3f}"
            f"{s['savings_vs_edgex']:>10.2%}{err:>10}  {s['note']}"
        )


def write_results(out: Path, stem: str, doc: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """``<stem>.json`` (``doc``) and ``<stem>.csv`` (``rows``) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    with (out / f"{stem}.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=shared_data())
    p.add_argument("--bounds", default="0.5,1,2,5", help="% of range, comma-separated")
    p.add_argument("--batch", type=int, default=1000, help="input rows per message")
    p.add_argument("--plant-devices", type=int, default=40)
    p.add_argument("--quick", action="store_true", help="NAB and a 10-series plant only")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    bounds = [float(x) for x in args.bounds.split(",") if x]
    if not (args.data / "timeseries").is_dir():
        raise SystemExit(f"{args.data / 'timeseries'} is absent: give --data")
    started = time.perf_counter()
    load0 = [round(x, 2) for x in os.getloadavg()]
    known = rule_types()
    absent = [f for f in FLEET if f not in known]
    groups = real_groups(args.data)
    if args.quick:
        groups = [g for g in groups if g.dataset.startswith("nab")]
    groups.append(plant(10 if args.quick else args.plant_devices))
    print(
        f"bandwidth: {len(groups)} groups, bounds {bounds} % of range, batch {args.batch}; "
        f"{os.cpu_count()} cores, load {load0}"
    )
    if absent:
        print(f"  not in this checkout (fleet issue): {', '.join(absent)}")
    rows: list[dict[str, Any]] = []
    for g in groups:
        t0 = time.perf_counter()
        rows.extend(run_group(g, bounds, args.batch, known))
        print(
            f"  {g.dataset} :: {g.columns[0] if len(g.columns) == 1 else f'{len(g.columns)} series'}: "
            f"{g.values.size} readings, {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
    real = {g.dataset for g in groups if g.dataset != "plant"}
    summaries = {}
    for pct in bounds:
        summaries[f"real@{pct:g}"] = summarize(rows, pct, real)
        summaries[f"plant@{pct:g}"] = summarize(rows, pct, {"plant"})
    if 1.0 in bounds:
        print_summary(
            "real series (every column of timeseries/), E = 1 % of each column's range", summaries["real@1"]
        )
        print_summary("synthetic plant, E = 1 % of range", summaries["plant@1"])
    args.out.mkdir(parents=True, exist_ok=True)
    load1 = [round(x, 2) for x in os.getloadavg()]
    doc = {
        "command": "python benchmarks/bandwidth.py " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "load_before": load0, "load_after": load1},
        "absent": absent,
        "seconds": round(time.perf_counter() - started, 1),
        "summaries": summaries,
        "rows": rows,
    }
    write_results(args.out, "bandwidth", doc, rows)
    print(
        f"\nwrote {args.out / 'bandwidth.json'} and {args.out / 'bandwidth.csv'}; "
        f"{doc['seconds']} s, load after {load1}"
    )


if __name__ == "__main__":
    main()
