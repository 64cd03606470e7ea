"""Bytes on the wire and the error the cloud sees, on the shared real series.

    python benchmarks/savings.py [--data ../shared/data] [--batch 1000] [--quantum-share 0.2]

For NAB machine temperature (E = 1 % of its range) and each SKAB channel (E = 1 % of the channel's
range), every row of the table is a real ``edgeflow replay`` run (CSV → rules → encoder → decode →
reconstruct at every input timestamp → compare with the input):

* ``swing E, compact``: swing filter at E (``knots: shortest``, the default: each segment's end value is
  the decimal with the fewest digits inside the window the bound allows), the lossless compact encoding;
* ``swing E middle, compact``: the same with ``knots: middle`` (the paper's middle slope, full floats);
* ``swing E-q/2, compact q``: swing at E - q/2 with the compact encoding's quantum q = share x E, so the
  total bound is still E;
* ``pmc_mr E, compact`` and ``pmc_mr E middle, compact``: PMC-MR at E, for reference.

Columns: readings kept, bytes shipped, savings against one EdgeX v3 AddEventRequest per input reading,
bytes per input reading, measured max |error| / E, and how many times fewer bytes than the peer
baseline "deadband at E + batched JSON + zlib" (Node-RED deadband, compare with the last sent; each
batch of kept readings as newline-joined ``{"ts": <epoch ms>, "value": <v>}``, zlib level 9, one batch per
``--batch`` input rows, the same batching as ours). Also printed: the lossless batch + zlib baseline of
every reading, and what sending the series names in every compact message costs. Nothing is asserted.
``benchmarks/swing_decimals.py`` is an independent reimplementation of the two swing choices.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's edgeflow, not an installed one

from edgeflow.codec import make_encoder
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.replay import ReplayOptions, read_csv, replay
from edgeflow.rules import build_pipeline
from edgeflow.rules.spec import DeadbandSpec

NAB = "timeseries/nab_machine_temperature_system_failure.csv"
SKAB = "timeseries/skab_anomaly_free.csv"


def _replay(csv: Path, sep: str, tcol: str, col: str, rules: str, batch: int, quantum: float | None) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        rules_path = Path(tmp) / "rules.yaml"
        rules_path.write_text(rules)
        options = ReplayOptions(
            csv=csv,
            sep=sep,
            time_column=tcol,
            value_columns=[col],
            rules=rules_path,
            batch_size=batch,
            device="machine",
            quantum=quantum or None,
        )
        return replay(options)


def _json_zlib(t: np.ndarray, v: np.ndarray, batch: int, rule: dict[str, Any] | None) -> tuple[int, int]:
    """(readings kept, bytes) for the peer baseline: optional deadband, batched JSON lines, zlib-9."""
    table = SeriesTable()
    sid = table.intern("machine", "value")
    pipeline = build_pipeline([DeadbandSpec(**rule)], table) if rule else None
    kept = 0
    total = 0
    for lo in range(0, len(t), batch):
        b = ReadingBatch.from_columns(
            table, t[lo : lo + batch], v[lo : lo + batch], np.full(len(t[lo : lo + batch]), sid)
        )
        out = pipeline.process(b).batch if pipeline else b
        if len(out):
            lines = b"\n".join(
                orjson.dumps({"ts": o // 1_000_000, "value": x})
                for o, x in zip(out.origins.tolist(), out.values.tolist(), strict=True)
            )
            total += len(zlib.compress(lines, 9))
            kept += len(out)
    return kept, total


def _names_cost(t: np.ndarray, v: np.ndarray, batch: int, device: str, resource: str) -> tuple[int, int]:
    """Bytes of the raw series in compact messages with its names, and with empty names."""
    sizes = []
    for dev, res in ((device, resource), ("", "")):
        table = SeriesTable()
        sid = table.intern(dev, res, "replay")
        enc = make_encoder("compact", stream_id="bench")
        for lo in range(0, len(t), batch):
            n = len(t[lo : lo + batch])
            enc.encode(
                ReadingBatch.from_columns(table, t[lo : lo + batch], v[lo : lo + batch], np.full(n, sid))
            )
        sizes.append(enc.stats.bytes)
    return sizes[0], sizes[1]


def _series(csv: Path, sep: str, tcol: str, col: str, batch: int, share: float) -> None:
    data = read_csv(csv, sep=sep, time_column=tcol, value_columns=[col])
    t, v = data.times, data.values[:, 0]
    span = float(v.max() - v.min())
    e = 0.01 * span
    q = share * e
    peer_kept, peer_bytes = _json_zlib(
        t, v, batch, {"type": "deadband", "absolute": e, "backwards": "accept"}
    )
    _, lossless_bytes = _json_zlib(t, v, batch, None)
    print(f"\n{csv.name} :: {col!r}  ({len(v)} readings, range {span:.6g}, E = {e:.6g}, q = {q:.6g})")
    print(f"  peer baseline deadband E + batched JSON + zlib: {peer_kept} kept, {peer_bytes} B")
    print(
        f"  lossless batched JSON + zlib of every reading: {lossless_bytes} B ({lossless_bytes / len(v):.2f} B/reading)"
    )
    with_names, without = _names_cost(t, v, batch, "machine", col)
    print(f"  names in every compact message (raw series): {with_names - without} B of {with_names} B")
    head = f"  {'run':<28}{'kept':>7}{'bytes':>9}{'savings':>10}{'B/reading':>11}{'max err/E':>11}{'x fewer than peer':>19}"
    print(head)
    runs = [
        ("swing E, compact", f"- type: swing\n  max_error: {e!r}\n  backwards: reset\n", None),
        (
            "swing E middle, compact",
            f"- type: swing\n  max_error: {e!r}\n  backwards: reset\n  knots: middle\n",
            None,
        ),
        (
            f"swing E-q/2, compact q={share:g}E",
            f"- type: swing\n  max_error: {e - q / 2!r}\n  backwards: reset\n",
            q,
        ),
        ("pmc_mr E, compact", f"- type: pmc_mr\n  max_error: {e!r}\n  backwards: reset\n", None),
        (
            "pmc_mr E middle, compact",
            f"- type: pmc_mr\n  max_error: {e!r}\n  backwards: reset\n  knots: middle\n",
            None,
        ),
    ]
    for label, rules, quantum in runs:
        r = _replay(csv, sep, tcol, col, rules, batch, quantum)
        print(
            f"  {label:<28}{r['readings_out']:>7}{r['bytes_shipped']:>9}{r['savings']:>10.4%}"
            f"{r['bytes_per_reading_in']:>11.3f}{r['max_abs_error'] / e:>11.4f}"
            f"{peer_bytes / r['bytes_shipped']:>18.2f}x"
        )
    print(f"  EdgeX JSON baseline (one AddEventRequest per reading): {r['bytes_edgex_json']} B")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    parser.add_argument("--batch", type=int, default=1000, help="input rows per pipeline batch and message")
    parser.add_argument("--quantum-share", type=float, default=0.2, help="q as a share of E (0.2)")
    args = parser.parse_args()
    data = args.data
    if not (data / NAB).is_file():
        data = Path(__file__).resolve().parents[1].parent.parent / "shared" / "data"
    _series(data / NAB, ",", "timestamp", "value", args.batch, args.quantum_share)
    skab = data / SKAB
    header = skab.read_text().splitlines()[0].split(";")
    for col in header[1:]:
        _series(skab, ";", "datetime", col, args.batch, args.quantum_share)


if __name__ == "__main__":
    main()
