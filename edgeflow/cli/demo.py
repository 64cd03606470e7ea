"""``edgeflow demo``: simulated devices, a broker, the edge and the receiver on loopback."""

from __future__ import annotations

import argparse
import asyncio
import logging

from edgeflow.cli._output import seconds_arg
from edgeflow.demo import format_report, run_demo

HELP = "simulated devices, a broker, the edge and the receiver; prints what was saved"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=seconds_arg, default=8.0, help="how long the edge runs (default 8)")
    parser.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "embedded"),
        default="auto",
        help="Mosquitto if installed (auto), or the embedded broker",
    )


def run(args: argparse.Namespace) -> int:
    # A read cancelled at shutdown may see its answer arrive late; pymodbus warns of it. Not news here.
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    # asyncua's server explains its unsecured demo endpoint at start-up; the demo means it to be so.
    logging.getLogger("asyncua").setLevel(logging.ERROR)

    def say(msg: str) -> None:
        print(msg, flush=True)

    report = asyncio.run(run_demo(args.seconds, broker=args.broker, progress=say))
    print(format_report(report))
    return 0 if report.within_bounds else 1
