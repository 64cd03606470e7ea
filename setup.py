"""Build hook: the KubeEdge DMI gRPC stubs are generated from ``edgeflow/twin/_dmi/api.proto`` with
grpcio-tools when a wheel is built (an editable install gets them from ``scripts/bootstrap``).
Everything else about the package is in pyproject.toml."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithDmiStubs(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        spec = importlib.util.spec_from_file_location("_dmi_codegen", ROOT / "edgeflow" / "twin" / "dmi_codegen.py")
        assert spec is not None and spec.loader is not None
        codegen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(codegen)
        codegen.generate(Path(self.build_lib))


setup(cmdclass={"build_py": BuildWithDmiStubs})
