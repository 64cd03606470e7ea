"""``edgeflow replay``: a recorded CSV through real rules and the real encoder; bytes and error.

::

    edgeflow replay --csv FILE [--sep ';'] --time-column NAME --value-column NAME [--value-column ...]
                    --rules RULES.yaml [--encoding compact|edgex-json]
                    [--report report.json] [--reconstruct recon.csv]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeflow.cli._output import count_arg
from edgeflow.codec import ENCODINGS
from edgeflow.replay import ReplayOptions, replay

HELP = "replay a recorded CSV through rules and an encoder; report bytes and error"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv", required=True, type=Path, help="the recorded CSV file")
    parser.add_argument("--sep", default=",", help="field separator (default ',')")
    parser.add_argument("--time-column", required=True, help="name of the timestamp column")
    parser.add_argument(
        "--value-column", required=True, action="append", help="a value column (repeat for several)"
    )
    parser.add_argument("--rules", required=True, type=Path, help="YAML list of rules, as in a pipeline")
    parser.add_argument("--encoding", choices=ENCODINGS, default="compact", help="wire encoding (compact)")
    parser.add_argument("--report", type=Path, help="write the report as JSON here")
    parser.add_argument("--reconstruct", type=Path, help="write what the cloud reconstructs here (CSV)")
    parser.add_argument("--batch-size", type=count_arg, default=1000, help="rows per pipeline batch (1000)")
    parser.add_argument("--device", help="device name of the series (default: the CSV file's stem)")
    parser.add_argument("--profile", default="replay", help="profile name of the series (replay)")
    q = parser.add_mutually_exclusive_group()
    q.add_argument(
        "--quantum", type=float, help="compact only, lossy: round shipped values to multiples of this"
    )
    q.add_argument("--quantum-percent", type=float, help="as --quantum, in percent of each column's range")


def options(args: argparse.Namespace) -> ReplayOptions:
    """The library's options from the command line's."""
    return ReplayOptions(
        csv=args.csv,
        time_column=args.time_column,
        value_columns=args.value_column,
        rules=args.rules,
        sep=args.sep,
        encoding=args.encoding,
        report=args.report,
        reconstruct=args.reconstruct,
        batch_size=args.batch_size,
        device=args.device,
        profile=args.profile,
        quantum=args.quantum,
        quantum_percent=args.quantum_percent,
    )


def run(args: argparse.Namespace) -> int:
    """0 on success; errors (invalid input: 2, naming the file and the key or line) are raised to the
    command line's one error format."""
    report = replay(options(args))
    summary = {k: report[k] for k in ("readings_in", "readings_out", "bytes_shipped", "bytes_edgex_json")}
    summary |= {"savings": report["savings"], "max_abs_error": report["max_abs_error"]}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``edgeflow replay ARGS`` as a function (for notebooks and scripts), with the command's exit code
    and error messages."""
    from edgeflow.cli import main as cli_main

    return cli_main(["replay", *(argv or [])])
