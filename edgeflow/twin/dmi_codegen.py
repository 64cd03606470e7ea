"""Generate the DMI gRPC stubs from ``edgeflow/twin/_dmi/api.proto`` with grpcio-tools.

``python -m edgeflow.twin.dmi_codegen [--force]`` (``scripts/bootstrap`` runs it); :func:`ensure_stubs` runs it
when the stubs are missing or older than the ``.proto`` (an install that skipped the step).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

__all__ = ["PROTO", "ensure_stubs", "generate"]

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding edgeflow/
PROTO = Path(__file__).resolve().parent / "_dmi" / "api.proto"
OUTPUTS = (PROTO.with_name("api_pb2.py"), PROTO.with_name("api_pb2_grpc.py"))


def generate() -> list[Path]:
    """Run protoc (grpcio-tools) on the ``.proto``; returns the files written."""
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - the kubeedge extra brings it
        raise ImportError(
            "generating the DMI stubs needs grpcio-tools: pip install 'edgeflow-iot[kubeedge]'"
        ) from exc
    import importlib.resources

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    rel = PROTO.relative_to(PACKAGE_ROOT)
    args = [
        "grpc_tools.protoc",
        f"-I{PACKAGE_ROOT}",
        f"-I{well_known}",
        f"--python_out={PACKAGE_ROOT}",
        f"--grpc_python_out={PACKAGE_ROOT}",
        str(rel),
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed ({code}) on {PROTO}")
    return list(OUTPUTS)


def ensure_stubs() -> None:
    """Generate the stubs unless they exist and are newer than the ``.proto``."""
    mtime = PROTO.stat().st_mtime
    if all(p.exists() and p.stat().st_mtime >= mtime for p in OUTPUTS):
        return
    log.info("generating the DMI stubs from %s", PROTO)
    generate()


if __name__ == "__main__":  # pragma: no cover
    if "--force" in sys.argv[1:]:
        generate()
    else:
        ensure_stubs()
