"""``edgeflow validate CONFIG``: exit 0 when valid, 2 naming the file and key path when not."""

from __future__ import annotations

import argparse

from edgeflow.config import load_config

HELP = "check a configuration file; exit 2 naming the key path if invalid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    print(
        f"{args.config}: valid ({len(cfg.devices)} devices, {len(cfg.pipelines)} pipelines, "
        f"uplink {cfg.uplink.type})"
    )
    return 0
