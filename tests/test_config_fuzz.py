"""Fuzzing the configuration (issue 17): configurations made from the example by random mutations —
keys dropped, values replaced by values of other types, negative and nonsense durations, unknown and
misspelt keys. ``validate`` and ``run`` never crash (no traceback, no internal error: exit 0 or 2 with one
line), and whenever ``validate`` says valid, ``run`` starts and stops cleanly."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edgeflow.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "virtual"
BASE: dict[str, Any] = yaml.safe_load((EXAMPLE / "edgeflow.yaml").read_text(encoding="utf-8"))
BASE.pop("metrics", None)

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "-1s", "0", "1e9", "10x", "wlak", "virtul", "fil", "127.0.0.1:99999", "off", "∞"]),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["type", "foo", "name", "max_error"]), st.integers(), max_size=2),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(paths(v, (*prefix, i)))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        candidates = paths(cfg)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent: Any = cfg
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "drop", "unknown", "typo"]))
        if action == "replace":
            parent[last] = draw(ODD_VALUES)
        elif action == "drop":
            del parent[last]
        elif isinstance(parent, dict):
            key = (
                f"{last}x" if action == "typo" else draw(st.sampled_from(["foo", "maxError", "sed", "pathh"]))
            )
            parent[key] = parent.pop(last) if action == "typo" else draw(ODD_VALUES)
    return cfg


def command(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=mutated())
def test_validate_and_run_never_crash_and_agree(
    cfg: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    shutil.copy(EXAMPLE / "boiler.profile.yaml", work)
    if isinstance(cfg.get("uplink"), dict) and cfg["uplink"].get("path") == BASE["uplink"]["path"]:
        cfg["uplink"]["path"] = str(work / "out" / "events.jsonl")
    path = work / "edgeflow.yaml"
    try:
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    except (ValueError, OverflowError):  # a float YAML cannot hold as written
        return
    v_code, v_err = command(["validate", str(path), "--log-level", "error"], capsys)
    event(f"validate exit {v_code}")
    assert v_code in (0, 2), v_err
    assert "Traceback" not in v_err and "internal error" not in v_err, v_err
    if v_code == 2:
        assert v_err.startswith("edgeflow validate: "), v_err
    r_code, r_err = command(["run", str(path), "--duration", "0.5", "--log-level", "error"], capsys)
    assert "Traceback" not in r_err and "internal error" not in r_err, r_err
    if v_code == 0:
        assert r_code == 0, f"validate said valid, run refused: {r_err}"
    else:
        assert r_code == 2, r_err
