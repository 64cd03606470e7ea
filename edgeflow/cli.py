"""The ``edgeflow`` command (also ``python -m edgeflow``).

Exit codes: 0 success, 1 runtime failure, 2 invalid input (configuration, file, arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Protocol

from edgeflow import __version__
from edgeflow.errors import ConfigError, EdgeflowError

__all__ = ["main"]

log = logging.getLogger("edgeflow")


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


#: Commands that live in their own module: (name, module, help). Each module has
#: ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS: list[tuple[str, str, str]] = [
    (
        "replay",
        "edgeflow.replay",
        "replay a recorded CSV through rules and an encoder; report bytes and error",
    ),
    (
        "receive",
        "edgeflow.cloud",
        "the cloud end: subscribe, decode, de-duplicate, report gaps, write JSON lines",
    ),
]


def _print_json(obj: object) -> None:
    # The stdlib encoder: schemas hold integers beyond 64 bits (Uint64 bounds), which orjson refuses.
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _cmd_validate(args: argparse.Namespace) -> int:
    from edgeflow.config import load_config

    cfg = load_config(args.config)
    print(
        f"{args.config}: valid ({len(cfg.devices)} devices, {len(cfg.pipelines)} pipelines, "
        f"uplink {cfg.uplink.type})"
    )
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from edgeflow.config import config_schema

    _print_json(config_schema())
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from edgeflow.profiles import inspect_file

    _print_json(inspect_file(args.file))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from edgeflow.config import load_config
    from edgeflow.runtime import run_config

    cfg = load_config(args.config)
    stats = asyncio.run(run_config(cfg, args.duration))
    if args.stats:
        _print_json(stats)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeflow", description="The edge half of an IoT device-to-cloud pipeline."
    )
    p.add_argument("--version", action="version", version=f"edgeflow {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run an edge node from a configuration file")
    run.add_argument("config", help="configuration YAML")
    run.add_argument(
        "--duration", type=float, default=None, help="stop after SECONDS (default: until a signal)"
    )
    run.add_argument("--stats", action="store_true", help="print a JSON summary on exit")
    run.set_defaults(func=_cmd_run)

    val = sub.add_parser("validate", help="check a configuration file; exit 2 naming the key path if invalid")
    val.add_argument("config")
    val.set_defaults(func=_cmd_validate)

    ins = sub.add_parser(
        "inspect", help="print an EdgeX profile/device file or a KubeEdge Device/DeviceModel CRD as JSON"
    )
    ins.add_argument("file")
    ins.set_defaults(func=_cmd_inspect)

    sch = sub.add_parser("schema", help="print the configuration JSON Schema")
    sch.set_defaults(func=_cmd_schema)

    for name, module, help_text in COMMANDS:
        mod: _Command = importlib.import_module(module)
        cp = sub.add_parser(name, help=help_text)
        mod.add_arguments(cp)
        cp.set_defaults(func=mod.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"edgeflow: {exc}", file=sys.stderr)
        return 2
    except EdgeflowError as exc:
        print(f"edgeflow: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
