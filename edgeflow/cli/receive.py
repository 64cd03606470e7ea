"""``edgeflow receive``: the cloud end from the command line (see :mod:`edgeflow.cloud`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from edgeflow.cli._output import seconds_arg
from edgeflow.cloud import Receiver, Sink, SinkError, SinkOpenError
from edgeflow.errors import ConfigError, UplinkError
from edgeflow.mqtt import MqttAuthSpec, TlsSpec
from edgeflow.mqtt.topics import validate_filter

HELP = "the cloud end: subscribe, decode, de-duplicate, store (JSON lines or PostgreSQL)"


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
        "--sink",
        metavar="URL",
        help="store into PostgreSQL: postgresql://user@host:port/db[?sslmode=...] (libpq options; "
        "no password here: PGPASSWORD, --sink-password-file or ~/.pgpass)",
    )
    parser.add_argument(
        "--sink-password-file", type=Path, metavar="PATH", help="file holding the database password"
    )
    parser.add_argument(
        "--receive-maximum",
        type=int,
        default=1000,
        metavar="N",
        help="MQTT 5: messages the broker may have unacknowledged at this receiver (default 1000)",
    )
    parser.add_argument(
        "--max-group", type=int, default=256, metavar="N", help="messages stored per transaction at most"
    )
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
    for topic in topics:
        try:
            validate_filter(topic)
        except ValueError as exc:
            raise ConfigError(f"--topic: {exc}") from None
    sink: Sink | None = None
    if args.sink:
        if args.out:
            sys.stderr.write("edgeflow receive: give --out or --sink, not both\n")
            return 2
        try:
            sink = _postgres_sink(args)
        except SinkError as exc:
            sys.stderr.write(f"edgeflow receive: --sink: {exc}\n")
            return 2
        if not args.client_id:
            sys.stderr.write(
                "edgeflow receive: warning: no --client-id; what is not stored when this process ends "
                "goes to the group (if any), not back to a restarted receiver\n"
            )
    try:
        receiver = Receiver(
            args.url,
            topics,
            sink=sink,
            out=args.out,
            receive_maximum=args.receive_maximum,
            max_group=args.max_group,
            protocol=args.protocol,
            client_id=args.client_id,
            group=args.group,
            tls=tls,
            auth=auth,
        )
        stats = asyncio.run(_receive(receiver, args.duration))
    except SinkError as exc:
        sys.stderr.write(f"edgeflow receive: {exc}\n")
        return 2 if isinstance(exc, SinkOpenError) else 1
    except (UplinkError, ValueError) as exc:
        sys.stderr.write(f"edgeflow receive: {exc}\n")
        return 1
    sys.stdout.write(orjson.dumps(stats, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
    return 0


def _postgres_sink(args: argparse.Namespace) -> Sink:
    url: str = args.sink
    if not url.startswith(("postgresql://", "postgres://")):
        raise SinkError(f"expected a postgresql:// URL, got {url.split('://')[0]}://...")
    try:
        from edgeflow.cloud.postgres import PostgresStore
    except ImportError as exc:
        raise SinkError(
            f"PostgreSQL needs the cloud extra (pip install 'edgeflow-iot[cloud]'): {exc}"
        ) from None
    if args.sink_password_file is not None and not args.sink_password_file.is_file():
        raise SinkError(f"password file {args.sink_password_file} does not exist")
    return PostgresStore(url, password_file=args.sink_password_file, receiver=args.client_id or "")


async def _receive(receiver: Receiver, duration: float | None) -> dict[str, Any]:
    """Until ``duration`` ends or SIGINT/SIGTERM: then stop taking messages, finish the group being
    stored, and return the summary."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    await receiver.start()
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                await stop.wait()
    finally:
        await receiver.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
    return receiver.stats()
