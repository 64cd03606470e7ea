"""The walls of the house plan (design.md), checked on the source so they cannot erode unnoticed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import edgeflow
from edgeflow.connector import load_simulator
from edgeflow.errors import ConnectorNotFoundError

ROOT = Path(__file__).resolve().parents[1]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_edgeflow_never_imports_connectors() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(
            m for m in imports(p) if m == "connectors" or m.startswith("connectors.")
        )
        for p in modules("edgeflow")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("pymodbus", {"connectors/modbus/_pymodbus.py", "connectors/modbus/simulator.py"}),
        ("paho", {"edgeflow/mqtt/connection.py"}),
        ("asyncua", {"connectors/opcua/_asyncua.py", "connectors/opcua/simulator.py"}),
    ],
)
def test_protocol_libraries_stay_behind_one_adapter(library: str, allowed: set[str]) -> None:
    users = {
        str(p.relative_to(ROOT))
        for pkg in ("edgeflow", "connectors")
        for p in modules(pkg)
        if any(m == library or m.startswith(library + ".") for m in imports(p))
    }
    assert users <= allowed


def test_model_and_metrics_import_nothing_of_edgeflow_but_the_errors() -> None:
    for name in ("model.py", "metrics.py"):
        ours = {m for m in imports(ROOT / "edgeflow" / name) if m.startswith("edgeflow")}
        assert ours <= {"edgeflow.errors"}, (name, ours)


def test_public_names_are_one_sorted_list() -> None:
    assert edgeflow.__all__ == sorted(edgeflow.__all__)
    for name in edgeflow.__all__:
        assert hasattr(edgeflow, name)


def test_simulators_come_through_the_registry() -> None:
    assert load_simulator("modbus").__name__ == "ModbusSimulator"
    assert load_simulator("opcua").__name__ == "OpcUaSimulator"
    with pytest.raises(ConnectorNotFoundError, match="no simulator for 'bacnet'"):
        load_simulator("bacnet")


def _private_part(module: str) -> int | None:
    """Index of the first private component of a dotted module name (``a._b.c`` → 1), or None."""
    for i, part in enumerate(module.split(".")):
        if part.startswith("_") and not part.startswith("__"):
            return i
    return None


def test_no_module_imports_another_packages_private_module() -> None:
    offenders: dict[str, list[str]] = {}
    for pkg in ("edgeflow", "connectors"):
        for path in modules(pkg):
            rel = path.relative_to(ROOT).with_suffix("")
            own = ".".join(rel.parts[:-1])  # the package the importing module is in
            for m in imports(path):
                i = _private_part(m)
                if i is None or not (m.startswith("edgeflow.") or m.startswith("connectors.")):
                    continue
                package = ".".join(m.split(".")[:i])  # the package the private module belongs to
                if own != package and not own.startswith(package + "."):
                    offenders.setdefault(str(path.relative_to(ROOT)), []).append(m)
    assert offenders == {}


def test_library_rooms_hold_no_argparse_and_no_print() -> None:
    found = []
    for path in modules("edgeflow"):
        rel = path.relative_to(ROOT)
        if rel.parts[1] == "cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{rel}:{node.lineno} print")
        if "argparse" in imports(path):
            found.append(f"{rel} imports argparse")
    assert found == []


def _defined(path: Path) -> set[str]:
    """Names a module defines at its top level (classes, functions, assignments)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("PipelineSpec", "edgeflow/config.py"),
        ("OverflowPolicy", "edgeflow/model.py"),
        ("Interpolation", "edgeflow/model.py"),
        ("parse_duration", "edgeflow/parsing.py"),
        ("load_yaml", "edgeflow/parsing.py"),
    ],
)
def test_one_definition_each(name: str, home: str) -> None:
    homes = [
        str(p.relative_to(ROOT)) for pkg in ("edgeflow", "connectors") for p in modules(pkg) if name in _defined(p)
    ]
    assert homes == [home]


def test_one_yaml_loader() -> None:
    users = {
        str(p.relative_to(ROOT))
        for pkg in ("edgeflow", "connectors")
        for p in modules(pkg)
        if any(m == "yaml" or m.startswith("yaml.") for m in imports(p))
    }
    assert users == {"edgeflow/parsing.py"}
