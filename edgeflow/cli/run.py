"""``edgeflow run CONFIG``: an edge node until SIGINT/SIGTERM or ``--duration``."""

from __future__ import annotations

import argparse
import asyncio

from edgeflow.cli._output import print_json, seconds_arg
from edgeflow.config import load_config
from edgeflow.runtime import run_config

HELP = "run an edge node from a configuration file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="configuration YAML")
    parser.add_argument(
        "--duration", type=seconds_arg, default=None, help="stop after SECONDS (default: until a signal)"
    )
    parser.add_argument("--stats", action="store_true", help="print a JSON summary on exit")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    stats = asyncio.run(run_config(cfg, args.duration))
    if args.stats:
        print_json(stats)
    return 0
