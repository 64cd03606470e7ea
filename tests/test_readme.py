"""The README's Python examples run, so they cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
RUNNABLE = [b for b in BLOCKS if "asyncio.run(" in b]


def test_readme_has_runnable_examples() -> None:
    assert len(RUNNABLE) >= 1


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_readme_example_runs(code: str, tmp_path: Path) -> None:
    code = code.replace("run(duration=10)", "run(duration=0.5)")
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"EDGEFLOW__UPLINK__PATH": str(tmp_path / "out.jsonl"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert res.returncode == 0, res.stderr
