"""Replay of the shared real series: the bound is checked on recon.csv against the input CSV (both read
here, independently of the report)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from edgeflow.cli.replay import main

pytestmark = pytest.mark.data

NAB = "timeseries/nab_machine_temperature_system_failure.csv"


def _column(path: Path, name: str, sep: str = ",") -> tuple[list[str], list[float]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh, delimiter=sep))
    i = rows[0].index(name)
    return [r[0] for r in rows[1:]], [float(r[i]) for r in rows[1:]]


@pytest.mark.parametrize(
    ("encoding", "quantum_share"),
    [("compact", 0.0), ("compact", 0.2), ("edgex-json", 0.0)],
)
def test_nab_swing_reconstruction_stays_within_the_bound(
    shared_data: Path, tmp_path: Path, encoding: str, quantum_share: float
) -> None:
    src = shared_data / NAB
    times, values = _column(src, "value")
    bound = 0.01 * (max(values) - min(values))
    quantum = quantum_share * bound
    rules = tmp_path / "rules.yaml"
    # Swing at the bound less half a quantum; the machine's clock steps back 55 minutes once: reset there.
    rules.write_text(f"- type: swing\n  max_error: {bound - quantum / 2!r}\n  backwards: reset\n")
    recon_path = tmp_path / "recon.csv"
    report_path = tmp_path / "report.json"
    args = ["--csv", str(src), "--time-column", "timestamp", "--value-column", "value"]
    args += ["--rules", str(rules), "--encoding", encoding, "--reconstruct", str(recon_path)]
    args += ["--report", str(report_path)]
    if quantum:
        args += ["--quantum", repr(quantum)]
    assert main(args) == 0
    recon_times, recon = _column(recon_path, "value")
    assert recon_times == times  # one row per input row, original timestamps (duplicates included)
    errors = [abs(r - v) for r, v in zip(recon, values, strict=True)]
    if encoding == "edgex-json":
        # EdgeX's %e keeps 7 significant digits: up to 5e-5 more on values below 1000.
        assert max(errors) <= bound + 5e-5
    else:
        assert max(errors) <= bound * (1 + 1e-12)
    report = json.loads(report_path.read_text())
    assert report["readings_in"] == len(values) == 22695
    assert report["max_abs_error"] == pytest.approx(max(errors), rel=1e-12)
    # One EdgeX event per shipped point still saves the three quarters the swing filter drops.
    assert report["savings"] > (0.99 if encoding == "compact" else 0.7)


def test_skab_all_channels_semicolon_crlf(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "timeseries/skab_anomaly_free.csv"
    with src.open(newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    header = rows[0]
    rules = tmp_path / "rules.yaml"
    rules.write_text("- type: pmc_mr\n  max_error: 0.01\n")
    recon_path = tmp_path / "recon.csv"
    args = ["--csv", str(src), "--sep", ";", "--time-column", "datetime", "--rules", str(rules)]
    for col in header[1:]:
        args += ["--value-column", col]  # "Volume Flow RateRMS" has spaces
    assert main([*args, "--reconstruct", str(recon_path)]) == 0
    with recon_path.open(newline="") as fh:
        recon = list(csv.reader(fh, delimiter=";"))
    assert recon[0] == header
    assert len(recon) == len(rows) == 9406
    worst = max(
        abs(float(got) - float(want))
        for r, x in zip(recon[1:], rows[1:], strict=True)
        for got, want in zip(r[1:], x[1:], strict=True)
    )
    assert worst <= 0.01 * (1 + 1e-12)
