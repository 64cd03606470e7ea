"""Fleet scale: many virtual devices on one node, one swing pipeline, compact encoding, MQTT uplink.

    python benchmarks/fleet.py [--devices 1000] [--resources 10] [--interval 1s] [--duration 60]
                               [--topic batches|device] [--max-delay SECONDS] [--commit-delay SECONDS]
                               [--profile out.svg]

Starts its own Mosquitto on a free loopback port and a subscriber that decodes every message it gets
(the cloud side, in this process). Writes a device profile with ``--resources`` Float64 ``walk``
resources and a config of ``--devices`` virtual devices, each polled once per ``--interval`` (one
AutoEvent reading every resource), runs ``edgeflow run`` in a child process for ``--duration`` seconds,
and samples the child's CPU time and RSS every 5 s. Prints a table: CPU as a fraction of one core
(after a 10 s warm-up), RSS over time, readings/s polled, readings and bytes shipped, bytes per shipped
reading, messages, missed intervals. ``--topic device`` publishes to ``.../{device}`` topics (one
message per device per batch). ``--profile`` runs the child under py-spy and writes a flame graph.

End to end, one command: ``python benchmarks/fleet.py --e2e`` (100 devices x 100 resources every
100 ms, ``--rule pass``, 60 s: 100,000 readings/s offered). Every reading polled goes through a rule that
keeps it, the compact encoder, the outbox, Mosquitto and the receiver; the table adds readings received
per second, readings left in the outbox when the edge stopped (durable: sent at its next start; the stop
gives the transport 5 s) and readings lost (polled, neither received nor kept: must be 0). Any option given overrides the preset.
On a shared machine the edge may get less than a core: "CPU us per reading" is what each reading cost.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import start_mosquitto, stop_mosquitto  # noqa: E402

RULES = {
    "swing": "{ type: swing, max_error: 0.5 }",
    "pass": "{ type: range, min: -1.0e12, max: 1.0e12 }",
}


class Subscriber:
    """The cloud side: subscribes to everything, decodes each message with the receiver's decoder."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        from edgeflow.cloud.receiver import Receiver

        # the real receiver's decoding, de-duplication and holding of messages whose table is late
        self.rx = Receiver("mqtt://127.0.0.1:1", ["#"])
        self.messages = 0
        self.bytes = 0
        self.readings = 0
        self.errors = 0
        self.keep: list[bytes] | None = None
        self.lock = threading.Lock()
        self._subscribed = threading.Event()
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id="fleet-bench-sub", protocol=paho.MQTTv5)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *_a: self._subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe("#", 1)
        if not self._subscribed.wait(10):
            sys.exit("no SUBACK")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        payload = bytes(msg.payload)
        if self.keep is not None:
            self.keep.append(payload)
        with self.lock:
            self.rx.handle(msg.topic, payload)
            self.messages += 1
            self.bytes += len(payload)
            self.readings = self.rx.counts["readings"]
            c = self.rx.counts
            self.errors = c["malformed"] + c["foreign"] + c["table_never_came"]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def write_config(
    workdir: Path,
    *,
    devices: int,
    resources: int,
    interval: str,
    port: int,
    topic: str,
    max_delay: float | None,
    rule: str,
    series_table: bool = True,
    commit_delay: float | None = None,
    align: bool = True,
) -> Path:
    res = "\n".join(
        f'  - name: "R{i}"\n'
        f"    attributes: {{ generator: walk, min: 0, max: 100, start: 50, step: 0.5 }}\n"
        f'    properties: {{ valueType: "Float64", readWrite: "R", units: "u" }}'
        for i in range(resources)
    )
    ops = "\n".join(f'      - {{ deviceResource: "R{i}" }}' for i in range(resources))
    (workdir / "walk.profile.yaml").write_text(
        f'name: "Walk"\ndeviceResources:\n{res}\ndeviceCommands:\n  - name: "All"\n    readWrite: "R"\n'
        f"    resourceOperations:\n{ops}\n",
        encoding="utf-8",
    )
    devs = "\n".join(
        f"  - {{ name: dev-{d:05d}, connector: virtual, profile: walk.profile.yaml, "
        f"protocols: {{ virtual: {{ seed: {d} }} }}, autoEvents: [ {{ interval: {interval}, sourceName: All }} ] }}"
        for d in range(devices)
    )
    topic_line = "  topic: edgeflow/{service}/{device}\n" if topic == "device" else ""
    knobs = {"max_delay": max_delay, "commit_delay": commit_delay}
    given = ", ".join(f"{k}: {v}" for k, v in knobs.items() if v is not None)
    batching = f"  batching: {{ {given} }}\n" if given else ""
    scheduler = "" if align else "scheduler: { align: false }\n"
    cfg = (
        "service: fleet\n"
        f"{scheduler}"
        f"devices:\n{devs}\n"
        "pipelines:\n"
        "  - name: walks\n"
        '    match: { device: "dev-*" }\n'
        "    rules:\n"
        f"      - {rule}\n"
        "uplink:\n"
        "  type: mqtt\n"
        f"  url: mqtt://127.0.0.1:{port}\n"
        "  encoding: compact\n"
        f"  series_table: {'true' if series_table else 'false'}\n"
        f"{topic_line}{batching}"
        f"  outbox: {{ path: {workdir / 'outbox.db'} }}\n"
    )
    path = workdir / "edgeflow.yaml"
    path.write_text(cfg, encoding="utf-8")
    return path


def proc_cpu_rss(pid: int) -> tuple[float, float]:
    """(user+system CPU seconds, RSS MB) of ``pid``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, rss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--e2e",
        action="store_true",
        help="end-to-end preset: --devices 100 --resources 100 --interval 100ms --rule pass --duration 60",
    )
    p.add_argument("--devices", type=int, default=None, help="default 1000 (--e2e: 100)")
    p.add_argument("--resources", type=int, default=None, help="default 10 (--e2e: 100)")
    p.add_argument("--interval", default=None, help="default 1s (--e2e: 100ms)")
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--topic", choices=["batches", "device"], default="batches")
    p.add_argument(
        "--rule",
        choices=sorted(RULES),
        default=None,
        help="the pipeline's rule (default swing; --e2e: pass, which keeps every reading)",
    )
    p.add_argument(
        "--max-delay", type=float, default=None, help="uplink batching.max_delay (default: edgeflow's)"
    )
    p.add_argument(
        "--commit-delay",
        type=float,
        default=None,
        help="uplink batching.commit_delay (default: edgeflow's, 20 ms)",
    )
    p.add_argument(
        "--no-align",
        dest="align",
        action="store_false",
        help="scheduler align: false (every device keeps the phase of its first read)",
    )
    p.add_argument(
        "--no-series-table",
        dest="series_table",
        action="store_false",
        help="uplink series_table: false (every message names its series; the default is true)",
    )
    p.add_argument(
        "--profile",
        default=None,
        help="run the edge under py-spy, write collapsed stacks here, print the top",
    )
    p.add_argument(
        "--keep-payloads", default=None, help="write every payload received here (length-prefixed)"
    )
    args = p.parse_args()
    preset = {"devices": 100, "resources": 100, "interval": "100ms", "rule": "pass"} if args.e2e else {}
    defaults = {"devices": 1000, "resources": 10, "interval": "1s", "rule": "swing"}
    for name, value in {**defaults, **preset}.items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    work = Path(tempfile.mkdtemp(prefix="edgeflow-fleet-"))
    broker, port = start_mosquitto(
        work, "max_queued_messages 0", "max_queued_bytes 0", "max_inflight_messages 1000"
    )
    sub = Subscriber(port)
    if args.keep_payloads:
        sub.keep = []
    cfg = write_config(
        work,
        devices=args.devices,
        resources=args.resources,
        interval=args.interval,
        port=port,
        topic=args.topic,
        max_delay=args.max_delay,
        commit_delay=args.commit_delay,
        series_table=args.series_table,
        align=args.align,
        rule=RULES[args.rule],
    )
    cmd = [sys.executable, "-m", "edgeflow", "run", str(cfg), "--duration", str(args.duration), "--stats"]
    if args.profile:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        cmd = [spy, "record", "--format", "raw", "-o", args.profile, "--rate", "50", "--", *cmd]
    load0 = os.getloadavg()
    out_f = open(work / "stdout", "w+b")  # noqa: SIM115
    err_f = open(work / "stderr", "w+b")  # noqa: SIM115
    child = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, cwd=work)
    pid = child.pid
    if args.profile:  # the edge is py-spy's child
        time.sleep(1.0)
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pid = int(kids[0]) if kids else pid
    t0 = time.monotonic()
    samples: list[tuple[float, float, float, int]] = []
    while child.poll() is None:
        try:
            cpu, rss = proc_cpu_rss(pid)
        except (OSError, IndexError):
            break
        with sub.lock:
            samples.append((time.monotonic() - t0, cpu, rss, sub.readings))
        time.sleep(5.0)
    child.wait()
    out_f.seek(0)
    err_f.seek(0)
    out, err = out_f.read(), err_f.read()
    # let the last messages arrive
    deadline = time.monotonic() + 10
    last = -1
    while time.monotonic() < deadline and last != sub.messages:
        last = sub.messages
        time.sleep(1.0)
    sub.close()
    stop_mosquitto(broker)
    if child.returncode != 0:
        sys.exit(f"edgeflow run failed ({child.returncode}):\n{err.decode()[-3000:]}")
    stats, _ = json.JSONDecoder().raw_decode(out[out.index(b"{") :].decode())
    warm = [s for s in samples if s[0] >= args.warmup]
    cpu_frac = (warm[-1][1] - warm[0][1]) / (warm[-1][0] - warm[0][0]) if len(warm) >= 2 else float("nan")
    devs = stats["devices"]
    reads_ok = sum(d.get("reads_ok", 0) for d in devs.values())
    missed = sum(d.get("missed_intervals", 0) for d in devs.values())
    polled = stats["bus"]["published_readings"]
    pipe = stats["pipelines"]["walks"]
    # what the edge could not deliver within its stop's flush time stays in the outbox for the next start
    queued = int(stats["uplink"].get("queued_readings", 0))

    print(f"fleet: {args.devices} devices x {args.resources} Float64 walk resources every {args.interval}, ")
    print(
        f"       rule {RULES[args.rule]} (walk step 0.5), compact, MQTT, topic {args.topic}, {args.duration:.0f} s"
    )
    print(
        f"load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; after: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}"
    )
    print()
    print(f"{'t (s)':>6} {'CPU s':>8} {'RSS MB':>8} {'received':>10}")
    for t, cpu, rss, rec in samples:
        print(f"{t:6.0f} {cpu:8.2f} {rss:8.1f} {rec:10d}")
    print()
    rows = [
        ("CPU, fraction of one core (after warm-up)", f"{cpu_frac:.3f}"),
        (
            "CPU us per reading polled (after warm-up)",
            f"{1e6 * cpu_frac / (polled / args.duration):.2f}" if polled else "-",
        ),
        ("RSS MB peak", f"{max(s[2] for s in samples):.1f}" if samples else "-"),
        ("reads ok / missed intervals", f"{reads_ok} / {missed}"),
        ("missed intervals, when (s after polling began)", behind_text(err.decode(errors="replace"))),
        ("readings polled /s", f"{polled / args.duration:,.0f}"),
        ("readings out of the rule", f"{pipe['readings_out']:,}"),
        ("readings shipped but not received", f"{pipe['readings_out'] - sub.readings:,}"),
        ("readings out of the rule /s", f"{pipe['readings_out'] / args.duration:,.0f}"),
        ("readings received (decoded)", f"{sub.readings:,}"),
        ("readings received /s", f"{sub.readings / args.duration:,.0f}"),
        ("readings left in the outbox at stop (kept)", f"{queued:,}"),
        (
            "readings lost (polled, not received, not kept)",
            f"{polled - sub.readings - queued:,}" if args.rule == "pass" else "-",
        ),
        ("messages received", f"{sub.messages:,}"),
        ("payload bytes received", f"{sub.bytes:,}"),
        ("bytes / shipped reading", f"{sub.bytes / max(sub.readings, 1):.2f}"),
        ("readings / message", f"{sub.readings / max(sub.messages, 1):.1f}"),
        ("decode errors at the subscriber", f"{sub.errors}"),
        ("RSS MB first / last sample", f"{samples[0][2]:.1f} / {samples[-1][2]:.1f}" if samples else "-"),
    ]
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    if args.keep_payloads:
        with open(args.keep_payloads, "wb") as f:
            for payload in sub.keep or []:
                f.write(len(payload).to_bytes(4, "little") + payload)
    if args.profile:
        print_profile(Path(args.profile))
    shutil.rmtree(work, ignore_errors=True)


_BEHIND = re.compile(
    r"AutoEvents (?:caught up|were still behind at the stop): (\d+) interval\(s\) of (\d+) device\(s\) "
    r"missed from ([\d.]+) s to ([\d.]+) s after polling began"
)


def behind_text(log: str) -> str:
    """The edge's own account of when polling fell behind (it logs each episode once, with its count)."""
    episodes = [m.groups() for m in _BEHIND.finditer(log)]
    if not episodes:
        return "none"
    return "; ".join(f"{int(n):,} ({d} devices) in {a}-{b}" for n, d, a, b in episodes)


def print_profile(path: Path, top: int = 25) -> None:
    """The functions with the most samples on the stack (inclusive), from py-spy's collapsed stacks."""
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        for frame in set(stack.split(";")):
            name = frame.split(" (")[0] + " " + frame.rsplit("/", 1)[-1].split(":")[0]
            incl[name] = incl.get(name, 0) + n
    print()
    print(f"py-spy: {total} samples; top {top} frames by inclusive share")
    for name, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100 * n / total:6.1f} %  {name}")


if __name__ == "__main__":
    main()
