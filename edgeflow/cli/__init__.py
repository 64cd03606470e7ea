"""The ``edgeflow`` command (also ``python -m edgeflow``): one module per subcommand.

Each command module has ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; this package
only builds the parser, sets up logging and maps errors to exit codes: 0 success, 1 runtime failure,
2 invalid input (configuration, file, arguments).

Every error is one line in one format, ``edgeflow COMMAND: SOURCE: message`` (SOURCE the file or the
environment variable), followed by one indented line per key path where there are several; never a
traceback (``--log-level debug`` logs it for a bug report). The logging options (``-v``,
``--log-level``, ``--log-format``, ``--log-libs``) are accepted before or after the command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from edgeflow import __version__
from edgeflow.cli._logging import LEVELS, setup_logging
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


def _logging_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The logging options, on the top parser (with defaults) and on every subcommand (without, so
    that a value given before the command is not reset by the subcommand's parser)."""

    def d(value: object) -> object:
        return value if top else argparse.SUPPRESS

    g = parser.add_argument_group("logging")
    g.add_argument(
        "-v", "--verbose", action="count", default=d(0), help="more logging: -v info (default), -vv debug"
    )
    g.add_argument("--log-level", choices=LEVELS, default=d(None), help="edgeflow's level (default info)")
    g.add_argument("--log-format", choices=("text", "json"), default=d("text"), help="text or JSON lines")
    g.add_argument(
        "--log-libs",
        choices=LEVELS,
        default=d("warning"),
        help="level of the libraries underneath (pymodbus, asyncua, paho); default warning",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeflow", description="The edge half of an IoT device-to-cloud pipeline."
    )
    p.add_argument("--version", action="version", version=f"edgeflow {__version__}")
    _logging_options(p, top=True)
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
        _logging_options(cp, top=False)
        cp.set_defaults(func=mod.run)
    return p


#: Commands whose output is their result (a table, JSON, a verdict): their start-up log lines are
#: left out unless asked for (``-v`` or ``--log-level info``). ``run`` and ``receive`` log at info.
QUIET_COMMANDS = frozenset({"validate", "inspect", "schema", "replay", "demo"})


def _level(args: argparse.Namespace) -> str:
    if args.log_level:
        return str(args.log_level)
    if args.verbose >= 2:
        return "debug"
    if args.verbose == 1 or args.command not in QUIET_COMMANDS:
        return "info"
    return "warning"


def error_line(command: str, exc: BaseException) -> str:
    """The one error format: ``edgeflow COMMAND: message`` (the message names its source)."""
    return f"edgeflow {command}: {exc}"


def _os_error(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(_level(args), args.log_format, args.log_libs)
    command = str(args.command)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(error_line(command, exc), file=sys.stderr)
        return 2
    except EdgeflowError as exc:
        print(error_line(command, exc), file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    except UnicodeDecodeError as exc:  # an input file that is not text
        print(f"edgeflow {command}: not UTF-8 text (byte {exc.start})", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be read or written, an address that cannot be bound
        print(f"edgeflow {command}: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line for the user, the traceback for the report
        log.debug("unexpected error", exc_info=True)
        print(
            f"edgeflow {command}: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --log-level debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
