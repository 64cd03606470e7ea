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


def generate(out_root: Path | None = None) -> list[Path]:
    """Run protoc (grpcio-tools) on the ``.proto``; the stubs go beside it, or under ``out_root`` (a
    build directory holding ``edgeflow/``). Returns the files written."""
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
        f"--python_out={out_root or PACKAGE_ROOT}",
        f"--grpc_python_out={out_root or PACKAGE_ROOT}",
        str(rel),
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed ({code}) on {PROTO}")
    if out_root is None:
        return list(OUTPUTS)
    return [out_root / rel.with_name(p.name) for p in OUTPUTS]


def ensure_stubs() -> None:
    """Generate the stubs unless they exist and are newer than the ``.proto`` (an installed wheel carries
    the stubs its build generated)."""
    if not PROTO.exists() and all(p.exists() for p in OUTPUTS):
        return
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
