"""``edgeflow schema``: the configuration's JSON Schema."""

from __future__ import annotations

import argparse

from edgeflow.cli._output import print_json
from edgeflow.config import config_schema

HELP = "print the configuration JSON Schema"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    print_json(config_schema())
    return 0
