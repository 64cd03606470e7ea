"""``edgeflow validate CONFIG``: exit 0 when ``run`` would start, 2 naming the file and key path when not.

It runs every check ``run`` runs short of opening connections: the configuration model, the profiles,
the connectors' own options and devices, the pipelines (and that no two write one series), the uplink
(TLS files included).
"""

from __future__ import annotations

import argparse

from edgeflow.config import load_config
from edgeflow.runtime import Runtime

HELP = "check a configuration file as run would; exit 2 naming the key path if invalid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    Runtime(cfg)  # builds every part without starting one; errors name the file and the key path
    n, p = len(cfg.devices), len(cfg.pipelines)
    print(
        f"{args.config}: valid ({n} device{'s' * (n != 1)}, {p} pipeline{'s' * (p != 1)}, "
        f"uplink {cfg.uplink.type})"
    )
    return 0
