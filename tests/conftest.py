"""Shared fixtures. Fixtures that start real servers (Mosquitto, pymodbus, asyncua) live here and are
reused by every test module that needs one."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The steering repository's shared data, beside the project checkout (or beside the folder of
#: worktrees, for a checkout in ``wt/<name>``).
_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = next(
    (c for c in (_ROOT.parent / "shared" / "data", _ROOT.parent.parent / "shared" / "data") if c.is_dir()),
    _ROOT.parent / "shared" / "data",
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that use it are skipped, with the reason, where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA
