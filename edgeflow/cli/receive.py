"""``edgeflow receive``: the cloud end from the command line (see :mod:`edgeflow.cloud`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from edgeflow.cli._output import seconds_arg
from edgeflow.cloud import Receiver
from edgeflow.errors import UplinkError
from edgeflow.mqtt import MqttAuthSpec, TlsSpec

HELP = "the cloud end: subscribe, decode, de-duplicate, write JSON lines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="mqtt://127.0.0.1:1883", help="broker URL, mqtt:// or mqtts://")
    parser.add_argument(
        "--topic",
        action="append",
        help="topic filter to subscribe to (repeatable; default: edgeflow/+/batches and edgex/events/device/#)",
    )
    parser.add_argument(
        "--group", help="MQTT 5 shared subscription group: receivers in one group split the load"
    )
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="5")
    parser.add_argument(
        "--client-id", help="stable client id, so the broker keeps the session across restarts"
    )
    parser.add_argument("--ca-file", type=Path, help="CA bundle to verify the broker (mqtts://)")
    parser.add_argument("--cert-file", type=Path, help="client certificate for mutual TLS")
    parser.add_argument("--key-file", type=Path, help="client key for mutual TLS")
    parser.add_argument("--server-hostname", help="name to send as SNI and check in the broker certificate")
    parser.add_argument("--username")
    parser.add_argument(
        "--password-env",
        metavar="VAR",
        help="environment variable holding the password (never on the command line)",
    )
    parser.add_argument("--out", type=Path, help="append one JSON line per reading to this file")
    parser.add_argument(
        "--duration", type=seconds_arg, help="stop after this many seconds (default: until Ctrl-C)"
    )


def run(args: argparse.Namespace) -> int:
    """Prints a JSON summary (counts, streams, gaps) to stdout at the end."""
    tls = None
    if args.ca_file or args.cert_file or args.server_hostname:
        tls = TlsSpec(
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            server_hostname=args.server_hostname,
        )
    auth = None
    if args.username:
        password = os.environ.get(args.password_env) if args.password_env else None
        if args.password_env and password is None:
            sys.stderr.write(f"edgeflow receive: environment variable {args.password_env} is not set\n")
            return 2
        auth = MqttAuthSpec.model_validate({"username": args.username, "password": password})
    topics = args.topic or ["edgeflow/+/batches", "edgex/events/device/#"]
    try:
        receiver = Receiver(
            args.url,
            topics,
            out=args.out,
            protocol=args.protocol,
            client_id=args.client_id,
            group=args.group,
            tls=tls,
            auth=auth,
        )
        stats = asyncio.run(_receive(receiver, args.duration))
    except (UplinkError, ValueError) as exc:
        sys.stderr.write(f"edgeflow receive: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    sys.stdout.write(orjson.dumps(stats, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


async def _receive(receiver: Receiver, duration: float | None) -> dict[str, Any]:
    await receiver.start()
    try:
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
    finally:
        await receiver.stop()
    return receiver.stats()
