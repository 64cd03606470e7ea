"""``benchmarks/compression.py``: one command, a table, JSON + CSV; a clear skip without the data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compression.py"


def test_without_the_data_it_says_so_and_exits_zero(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "nowhere"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "is absent" in done.stdout
    assert not list(tmp_path.glob("compression.*"))


@pytest.mark.data
@pytest.mark.slow
def test_on_the_shared_data_every_column_every_strategy_keeps_the_bound(
    shared_data: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(shared_data), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=110,
    )
    assert "baseline B" in done.stdout
    rows = json.loads((tmp_path / "compression.json").read_text())["rows"]
    assert (tmp_path / "compression.csv").read_text().count("\n") == len(rows) + 1
    assert {r["column"] for r in rows} >= {"value", "Thermocouple", "Voltage"}
    assert len({r["column"] for r in rows}) == 9
    assert {r["strategy"] for r in rows} == {"swing", "pmc_mr", "sim_piece", "mix_piece", "auto"}
    assert all(r["bound_held"] and r["unreconstructed"] == 0 for r in rows)
