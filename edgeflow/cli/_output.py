"""Writing a command's results to standard output."""

from __future__ import annotations

import argparse
import json
import sys

from edgeflow.parsing import duration_seconds


def print_json(obj: object) -> None:
    """``obj`` as indented JSON on stdout. The stdlib encoder: schemas hold integers beyond 64 bits
    (Uint64 bounds), which orjson refuses."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def seconds_arg(text: str) -> float:
    """An argparse ``type`` for a duration option (``--duration 10``, ``--seconds 1m30s``): the one
    duration syntax, longer than 0; a negative or zero value is a usage error (exit 2)."""
    try:
        return duration_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count_arg(text: str) -> int:
    """An argparse ``type`` for a count of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value
