"""The ``edgeflow`` command (also ``python -m edgeflow``): one module per subcommand.

Each command module has ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; this package
only builds the parser, sets up logging and maps errors to exit codes: 0 success, 1 runtime failure,
2 invalid input (configuration, file, arguments).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from edgeflow import __version__
from edgeflow.errors import ConfigError, EdgeflowError

__all__ = ["COMMANDS", "main"]

log = logging.getLogger("edgeflow")


class _Command(Protocol):
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


#: The subcommands, in help order, each a module of this package.
COMMANDS: tuple[str, ...] = ("run", "validate", "inspect", "schema", "replay", "receive", "demo")


def _unavailable(name: str, exc: ImportError) -> Callable[[argparse.Namespace], int]:
    def fail(args: argparse.Namespace) -> int:
        print(
            f"edgeflow {name}: needs {exc.name}, which is not installed: pip install 'edgeflow-iot[all]'",
            file=sys.stderr,
        )
        return 2

    return fail


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeflow", description="The edge half of an IoT device-to-cloud pipeline."
    )
    p.add_argument("--version", action="version", version=f"edgeflow {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod: _Command = importlib.import_module(f"edgeflow.cli.{name}")
        except ImportError as exc:  # an extra is not installed: say which, don't break the other commands
            cp = sub.add_parser(name, help=f"(unavailable: {exc.name} is not installed)")
            cp.set_defaults(func=_unavailable(name, exc))
            continue
        cp = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
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
