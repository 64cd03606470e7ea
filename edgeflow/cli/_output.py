"""Writing a command's results to standard output."""

from __future__ import annotations

import json
import sys


def print_json(obj: object) -> None:
    """``obj`` as indented JSON on stdout. The stdlib encoder: schemas hold integers beyond 64 bits
    (Uint64 bounds), which orjson refuses."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()
