"""Replay: push a recorded CSV through real rules and the real encoder, decode what was shipped, and
report the bytes against the EdgeX JSON baseline and the error the cloud sees.

::

    from edgeflow.replay import ReplayOptions, replay
    report = replay(ReplayOptions(csv=Path("nab.csv"), time_column="timestamp", value_columns=["value"],
                                  rules=[{"type": "swing", "max_error": 1.06}]))

``edgeflow replay`` (:mod:`edgeflow.cli.replay`) is the same from the command line. Each value column is one series (device ``--device``, default the file's stem; resource = the column
name). Rows go through the pipeline in batches of ``--batch-size``; each batch's output is encoded as it
would be shipped, and the errors are measured on the **decoded** payloads, reconstructed at every input
timestamp, against the input.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeflow.codec import EncodedBatch, Encoder, decode, make_encoder, merge_points, reconstruct
from edgeflow.errors import ConfigError
from edgeflow.model import Event, Reading, ReadingBatch, SeriesTable, ValueType, encode_add_event_request
from edgeflow.parsing import load_yaml
from edgeflow.replay._csv import CsvSeries, read_csv
from edgeflow.rules.pipeline import PipelineOutput, build_pipeline, rule_specs
from edgeflow.rules.spec import RuleSpec

__all__ = [
    "CsvSeries",
    "ReplayOptions",
    "edgex_json_baseline",
    "load_rules",
    "parse_rules",
    "read_csv",
    "replay",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay, through which rules, and where to write the results."""

    csv: Path
    time_column: str
    value_columns: Sequence[str]
    #: A YAML file with a list of rules, or the rules themselves (specs or plain dicts as in YAML).
    rules: Path | Sequence[RuleSpec | Mapping[str, Any]]
    sep: str = ","
    encoding: str = "compact"
    report: Path | None = None
    reconstruct: Path | None = None
    batch_size: int = 1000
    device: str | None = None
    profile: str = "replay"
    quantum: float | None = None
    quantum_percent: float | None = None


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def parse_rules(raw: Any, *, source: str = "<rules>") -> list[RuleSpec]:
    """Rules from plain data (a list of mappings, as in YAML). Raises :class:`ConfigError` naming the
    source and the key path of every problem."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError("must be a non-empty list of rules", source=source)
    if all(not isinstance(r, Mapping) for r in raw):
        return list(raw)
    return rule_specs(raw, source=source)


def load_rules(path: Path) -> list[RuleSpec]:
    """The rules of ``path`` (a YAML list of rules). Raises :class:`ConfigError` naming the file and the
    key path of every problem."""
    return parse_rules(load_yaml(path), source=str(path))


# --------------------------------------------------------------------------------------------------
# Baseline
# --------------------------------------------------------------------------------------------------


def _edgex_event(device: str, profile: str, resource: str, origin: int, value: float) -> Event:
    r = Reading(device, resource, profile, ValueType.FLOAT64, value, origin)
    return Event(device, profile, resource, origin, [r])


def edgex_json_baseline(
    device: str, profile: str, resource: str, origins: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
) -> int:
    """Bytes of one EdgeX v3 ``AddEventRequest`` per reading (Float64, UUIDs, no tags), exactly.

    Only the origin (twice) and the value string vary between the messages, so the size is computed from
    one encoded message plus those lengths rather than by encoding every reading."""
    if len(origins) == 0:
        return 0
    o0, v0 = int(origins[0]), float(values[0])
    base = len(encode_add_event_request(_edgex_event(device, profile, resource, o0, v0)))
    base -= 2 * len(str(o0)) + len(format(v0, "e") if np.isfinite(v0) else _go_special(v0))
    digits = sum(len(str(o)) for o in origins.tolist())
    texts = sum(len(format(v, "e")) if np.isfinite(v) else len(_go_special(v)) for v in values.tolist())
    return base * len(origins) + 2 * digits + texts


def _go_special(v: float) -> str:
    return "NaN" if v != v else ("+Inf" if v > 0 else "-Inf")


# --------------------------------------------------------------------------------------------------
# The replay
# --------------------------------------------------------------------------------------------------


def _encoder(args: ReplayOptions, quantum: dict[int, float] | None) -> Encoder:
    opts: dict[str, Any] = {}
    if quantum:
        opts["quantum"] = quantum
    return make_encoder(args.encoding, stream_id="replay", **opts)


def _ship(enc: Encoder, out: PipelineOutput, shipped: list[EncodedBatch]) -> None:
    if len(out.alarms):
        shipped.extend(enc.encode(out.alarms, alarm=True))
    if len(out.batch):
        shipped.extend(enc.encode(out.batch, out.interpolation))


def _column_bytes(
    args: ReplayOptions, quantum: dict[int, float] | None, outputs: list[PipelineOutput], sid: int
) -> int:
    """Bytes the column's own readings cost when shipped alone, in the same messages."""
    enc = _encoder(args, quantum)
    for out in outputs:
        part = out.batch.take(out.batch.series == sid)
        if len(part):
            enc.encode(part, out.interpolation)
    return enc.stats.bytes


def _quantum(args: ReplayOptions, data: CsvSeries, sids: list[int]) -> dict[int, float] | None:
    if args.quantum is None and args.quantum_percent is None:
        return None
    percent = args.quantum_percent or 0.0
    if args.encoding != "compact":
        raise ConfigError("--quantum and --quantum-percent apply to the compact encoding only")
    out: dict[int, float] = {}
    for j, sid in enumerate(sids):
        if args.quantum is not None:
            q = float(args.quantum)
        else:
            col = data.values[data.present[:, j], j]
            col = col[np.isfinite(col)]
            span = float(col.max() - col.min()) if len(col) else 0.0
            q = percent * span / 100.0
        if not q > 0:
            raise ConfigError(f"the quantum for {data.value_columns[j]!r} must be > 0, not {q}")
        out[sid] = q
    return out


def _errors(y: npt.NDArray[np.float64], x: npt.NDArray[np.float64]) -> dict[str, Any]:
    finite = np.isfinite(x)
    missing = finite & ~np.isfinite(y)
    err = np.abs(y[finite & ~missing] - x[finite & ~missing])
    return {
        "max_abs_error": float(err.max()) if len(err) else None,
        "mean_abs_error": float(err.mean()) if len(err) else None,
        "unreconstructed": int(missing.sum()),
        "_err": err,
    }


def replay(args: ReplayOptions) -> dict[str, Any]:
    """Run the replay ``args`` describe; returns the report (and writes the files asked for)."""
    started = time.perf_counter()
    specs = load_rules(args.rules) if isinstance(args.rules, Path) else parse_rules(list(args.rules))
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    data = read_csv(
        args.csv, sep=args.sep, time_column=args.time_column, value_columns=list(args.value_columns)
    )
    device = args.device or args.csv.stem
    table = SeriesTable()
    sids = [table.intern(device, c, args.profile, ValueType.FLOAT64) for c in data.value_columns]
    quantum = _quantum(args, data, sids)
    pipeline = build_pipeline(specs, table)
    enc = _encoder(args, quantum)

    n, m = data.values.shape
    sid_arr = np.asarray(sids, dtype=np.int32)
    outputs: list[PipelineOutput] = []
    shipped: list[EncodedBatch] = []
    for lo in range(0, n, args.batch_size):
        hi = min(lo + args.batch_size, n)
        keep = data.present[lo:hi].ravel()
        batch = ReadingBatch(
            table,
            np.repeat(data.times[lo:hi], m)[keep],
            data.values[lo:hi].ravel()[keep],
            np.tile(sid_arr, hi - lo)[keep],
        )
        out = pipeline.process(batch)
        outputs.append(out)
        _ship(enc, out, shipped)
    out = pipeline.flush()
    outputs.append(out)
    _ship(enc, out, shipped)
    encoded_s = time.perf_counter() - started

    # The cloud's side: decode every payload, in shipping order, and rebuild each column.
    merged = merge_points(decode(eb.payload) for eb in shipped)
    recon = np.full((n, m), np.nan)
    columns: dict[str, Any] = {}
    errs: list[npt.NDArray[np.float64]] = []
    total_missing = 0
    for j, (name, sid) in enumerate(zip(data.value_columns, sids, strict=True)):
        rows = np.flatnonzero(data.present[:, j])
        s = merged.get((device, name))
        if s is not None:
            recon[rows, j] = reconstruct(s.origins, s.values, data.times[rows], s.interpolation)
        x = data.values[rows, j]
        e = _errors(recon[rows, j], x)
        errs.append(e.pop("_err"))
        total_missing += e["unreconstructed"]
        baseline = edgex_json_baseline(device, args.profile, name, data.times[rows], x)
        col_bytes = _column_bytes(args, quantum, outputs, sid)
        finite = x[np.isfinite(x)]
        columns[name] = {
            "readings_in": len(rows),
            "readings_out": 0 if s is None else len(s),
            "bytes_shipped": col_bytes,
            "bytes_edgex_json": baseline,
            "savings": (1 - col_bytes / baseline) if baseline else None,
            **e,
            "range": float(finite.max() - finite.min()) if len(finite) else None,
            "quantum": None if quantum is None else quantum[sid],
        }
    all_err = np.concatenate(errs) if errs else np.empty(0)
    bytes_shipped = sum(len(eb.payload) for eb in shipped)
    baseline_total = sum(c["bytes_edgex_json"] for c in columns.values())
    readings_in = int(data.present.sum())
    stats = pipeline.stats()
    report: dict[str, Any] = {
        "csv": str(args.csv),
        "rules": str(args.rules) if isinstance(args.rules, Path) else "<inline>",
        "encoding": args.encoding,
        "batch_size": args.batch_size,
        "readings_in": readings_in,
        "readings_out": sum(eb.readings for eb in shipped),
        "messages": len(shipped),
        "bytes_shipped": bytes_shipped,
        "bytes_edgex_json": baseline_total,
        "savings": (1 - bytes_shipped / baseline_total) if baseline_total else None,
        "bytes_per_reading_in": bytes_shipped / readings_in if readings_in else None,
        "max_abs_error": float(all_err.max()) if len(all_err) else None,
        "mean_abs_error": float(all_err.mean()) if len(all_err) else None,
        "unreconstructed": total_missing,
        "late_readings": sum(len(o.late) for o in outputs),
        "alarm_readings": sum(len(o.alarms) for o in outputs),
        "columns": columns,
        "rule_stats": [
            {k: v for k, v in vars(s).items() if not k.startswith("_")} | {"type": spec.type}
            for s, spec in zip(stats, specs, strict=True)
        ],
        "seconds": round(time.perf_counter() - started, 3),
        "readings_per_second_encoded": round(readings_in / encoded_s) if encoded_s > 0 else None,
    }
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.reconstruct:
        _write_recon(args.reconstruct, data, recon, args.sep)
    return report


def _write_recon(path: Path, data: CsvSeries, recon: npt.NDArray[np.float64], sep: str) -> None:
    cols = [[repr(v) if v == v else "" for v in recon[:, j].tolist()] for j in range(recon.shape[1])]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=sep, lineterminator="\n")
        w.writerow([data.time_column, *data.value_columns])
        w.writerows(zip(data.time_text, *cols, strict=True))
