"""A thin backhaul: the highest reading rate a 16/64/256 kbit/s link carries, latency, and outages.

    python benchmarks/backhaul.py [--links 16,64,256] [--strategies edgex,compact,swing]
                                  [--trial 12] [--outage 60] [--outage-link 64] [--long] [--link proxy|tc]

Between edgeflow's MQTT uplink (``edgeflow.uplink.mqtt.MqttUplink``, its commit log/outbox, in this
process) and a Mosquitto of its own sits ``benchmarks/linkproxy.py``: a token-bucket TCP proxy at the
link's rate in each direction (TCP payload; IP/TCP headers are not counted, so a ``tc tbf`` link of the
same rate carries ~5-10 % less). A receiver (paho, subscribed at the broker: the cloud side of the
link) decodes every message with ``edgeflow.codec.decode``, drops duplicates by (stream, seq), counts
readings and each reading's latency (arrival − origin).

Source: the NAB machine-temperature series (real data), 10 series at their own offsets in it, each
reading stamped with the wall clock when it is made; every 100 ms a tick of ``rate / 10`` readings.

Strategies:
  edgex    EdgeX v3 JSON, one AddEventRequest per reading (``encoding: edgex-json``), no rule;
  compact  the compact encoding (one message per tick), no rule (lossless);
  swing    compact + swing filter at 1 % of the series' range (what the cloud rebuilds stays within it).

Highest sustained rate, per link and strategy: a trial at rate R runs ``--trial`` seconds; it is
sustained when nothing is dropped, every committed reading reaches the receiver within 15 s after
ingest stops, and the backlog (outbox bytes not yet acknowledged) is bounded: its mean over the last
third of the trial is at most 1.25x its mean over the middle third plus one second of the link. The
search doubles R from an estimate until a trial fails, then bisects three times; capped at
``--max-rate`` (then reported as ">= cap", CPU-bound, not link-bound). Latency (median, p99) is that of
the highest sustained trial (for swing it includes the segment a knot closes: a knot is shipped when
the line through it can no longer be extended).

Outage (``--outage`` s, and 600 s with ``--long``), at ``--outage-link`` kbit/s, ingest at half the
strategy's sustained rate: the link goes down (blackhole: connections stall, as a radio link that drops),
then up; reported: backlog (readings, bytes) and outbox file bytes on disk at the end of the outage,
time from link up to an empty outbox (sampled at each tick: when messages follow each other closer than
their round trip over the link, the outbox is seldom empty at a sample and this overstates the drain),
readings lost (committed but never received). Through the proxy
each strategy's outage runs on a link, broker and receiver of its own, all strategies at once (a 600 s
outage and its drain take ~20 min). ``--links ''`` runs the outages alone, ingesting at half the rates an
earlier search found (``--rates-from``, default ``benchmarks/results/backhaul.json``), and writes
``backhaul-outages.json`` + ``.csv``:

    python benchmarks/backhaul.py --links '' --outage 60 --long

``--link tc`` (root): the same runs through the kernel's shaper instead — Mosquitto in a network namespace
behind a veth pair with a ``tc tbf`` qdisc on the edge's side (whole IP packets counted), link down = the
far end of the pair down; the namespace is removed at the end.

Results: a table on stdout, ``benchmarks/results/backhaul.json`` and ``backhaul.csv`` (``backhaul-tc.*``
with ``--link tc``), machine and load.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the Mosquitto launcher the tests use
sys.path.insert(0, str(ROOT / "benchmarks"))

from conftest import MosquittoBroker, free_port  # noqa: E402
from linkproxy import LinkProxy  # noqa: E402

from edgeflow.codec import decode  # noqa: E402
from edgeflow.model import ReadingBatch, SeriesTable  # noqa: E402
from edgeflow.rules import build_pipeline  # noqa: E402
from edgeflow.uplink.mqtt import MqttUplink  # noqa: E402
from edgeflow.uplink.spec import MqttUplinkSpec  # noqa: E402

STRATEGIES = ("edgex", "compact", "swing")
MAX_DELAY: float | None = None  # the uplink's batching.max_delay (--max-delay); None: as shipped
_TRIALS = 0
#: Bytes per reading to start the search from (measured once; only the start of the search).
ESTIMATE = {"edgex": 420.0, "compact": 3.0, "swing": 0.5}
N_SERIES = 10
TICK = 0.1


def shared_data() -> Path:
    for c in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"):
        if c.is_dir():
            return c
    return ROOT.parent / "shared" / "data"


def load_series(csv_path: Path) -> np.ndarray:
    values = []
    with csv_path.open() as f:
        next(f)
        for line in f:
            values.append(float(line.rsplit(",", 1)[1]))
    return np.asarray(values)


class Receiver:
    """The cloud side: subscribed at the broker, decodes, de-duplicates, counts, keeps latencies."""

    def __init__(self, host: str, port: int, qos: int = 1) -> None:
        import paho.mqtt.client as mqtt

        self.lock = threading.Lock()
        self.reset()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bh-rx-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe([("edgeflow/#", qos), ("edgex/#", qos)])
        self.client.connect(host, port)
        self.client.loop_start()

    def reset(self, service: str = "") -> None:
        with self.lock:
            self.service = f"/{service}/"
            self.seen: set[tuple[str, int]] = set()
            self.readings = 0
            self.messages = 0
            self.latencies: list[np.ndarray] = []
            self.errors = 0

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.time_ns()
        if self.service not in msg.topic:
            return
        try:
            b = decode(msg.payload)
        except Exception:  # counted: a receiver survives what it cannot read
            self.errors += 1
            return
        with self.lock:
            self.messages += 1
            key = (b.stream_id, b.seq)
            if b.encoding == "compact" and key in self.seen:
                return
            self.seen.add(key)
            for s in b.series:
                self.readings += len(s)
                self.latencies.append((now - np.asarray(s.origins, dtype=np.int64)) / 1e9)

    def latency(self) -> tuple[float | None, float | None]:
        with self.lock:
            if not self.latencies:
                return None, None
            lat = np.concatenate(self.latencies)
        return float(np.median(lat)), float(np.quantile(lat, 0.99))

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Source:
    """10 NAB series at their own offsets; readings stamped with the wall clock when made."""

    def __init__(self, series: np.ndarray) -> None:
        self.series = series
        self.table = SeriesTable()
        self.sids = np.asarray(
            [self.table.intern("machine", f"t{i}", "bench") for i in range(N_SERIES)], np.int32
        )
        self.pos = np.arange(N_SERIES) * (len(series) // N_SERIES)
        self.last = 0
        self.rr = 0  # below one reading per series per tick: the series take turns

    def tick(self, n: int) -> ReadingBatch:
        if n < N_SERIES:
            now = max(time.time_ns(), self.last + 1)
            self.last = now
            j = (self.rr + np.arange(n)) % N_SERIES
            self.rr = int(j[-1] + 1) % N_SERIES
            vals = self.series[self.pos[j] % len(self.series)]
            self.pos[j] += 1
            return ReadingBatch(self.table, np.full(n, now, np.int64), vals, self.sids[j])
        per = max(1, n // N_SERIES)
        now = time.time_ns()
        start = max(now - int(TICK * 1e9), self.last + 1)
        origins = start + (np.arange(per, dtype=np.int64) * int(TICK * 1e9)) // per
        self.last = int(origins[-1])
        idx = (self.pos[None, :] + np.arange(per)[:, None]) % len(self.series)
        self.pos = (self.pos + per) % len(self.series)
        vals = self.series[idx]
        return ReadingBatch(self.table, np.repeat(origins, N_SERIES), vals.ravel(), np.tile(self.sids, per))


class TcLink:
    """The kernel's shaper instead of the proxy (``--link tc``): the broker in a network namespace of its
    own behind a veth pair, a ``tc tbf`` qdisc on the host side's egress (edge -> broker; whole IP packets
    are counted, headers included), link down = the namespace's end of the pair down (packets vanish,
    TCP retransmits: a blackhole). Needs root (CAP_NET_ADMIN); everything is removed on close."""

    def __init__(self, rate_kbit: float, workdir: Path) -> None:
        import subprocess

        self._sp = subprocess
        tag = os.getpid() % 100000
        self.ns, self.host_if, self.ns_if = f"efbh{tag}", f"efh{tag}", f"efn{tag}"
        sub = tag % 250 + 1
        self.host = f"10.231.{sub}.2"
        self.rate_kbit = rate_kbit
        for cmd in (
            ["ip", "netns", "add", self.ns],
            ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
            ["ip", "link", "set", self.ns_if, "netns", self.ns],
            ["ip", "addr", "add", f"10.231.{sub}.1/30", "dev", self.host_if],
            ["ip", "link", "set", self.host_if, "up"],
            ["ip", "-n", self.ns, "addr", "add", f"{self.host}/30", "dev", self.ns_if],
            ["ip", "-n", self.ns, "link", "set", self.ns_if, "up"],
            ["ip", "-n", self.ns, "link", "set", "lo", "up"],
        ):
            self._run(cmd)
        self._tbf("add")
        self.port = free_port()
        conf = workdir / "mosquitto-ns.conf"
        conf.write_text(
            ("user root\n" if os.geteuid() == 0 else "")
            + f"listener {self.port} {self.host}\nallow_anonymous true\nmax_queued_messages 0\npersistence false\n"
        )
        self.broker = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "/usr/sbin/mosquitto", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import socket

        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.host, self.port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise SystemExit("mosquitto in the namespace did not start") from None
                time.sleep(0.1)

    def _run(self, cmd: list[str]) -> None:
        res = self._sp.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"--link tc: {' '.join(cmd)}: {res.stderr.strip()}")

    def _tbf(self, verb: str) -> None:
        burst = max(1600, int(self.rate_kbit * 125 / 20))
        self._run(
            [
                "tc",
                "qdisc",
                verb,
                "dev",
                self.host_if,
                "root",
                "tbf",
                "rate",
                f"{self.rate_kbit:g}kbit",
                "burst",
                str(burst),
                "latency",
                "5s",
            ]
        )

    @property
    def bytes_up(self) -> int:
        return int(Path(f"/sys/class/net/{self.host_if}/statistics/tx_bytes").read_text())

    def set_rate(self, rate_kbit: float) -> None:
        self.rate_kbit = rate_kbit
        self._tbf("change")

    def down(self) -> None:
        self._run(["ip", "-n", self.ns, "link", "set", self.ns_if, "down"])

    def up(self) -> None:
        self._run(["ip", "-n", self.ns, "link", "set", self.ns_if, "up"])

    def close(self) -> None:
        if self.broker.poll() is None:
            self.broker.terminate()
            self.broker.wait(10)
        self._sp.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)
        self._sp.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)


class ProxyLink:
    """The userspace link: Mosquitto on loopback behind ``LinkProxy``."""

    def __init__(self, rate_kbit: float, workdir: Path) -> None:
        self.broker = MosquittoBroker(workdir=workdir, port=free_port())
        self.broker.start()
        self.proxy = LinkProxy(("127.0.0.1", self.broker.port), rate_kbit=rate_kbit)
        self.proxy.start()
        self.host, self.port = "127.0.0.1", self.proxy.port
        self.broker_port = self.broker.port

    @property
    def rate_kbit(self) -> float:
        return self.proxy.rate_kbit

    @property
    def bytes_up(self) -> int:
        return self.proxy.bytes_up

    def set_rate(self, rate_kbit: float) -> None:
        self.proxy.set_rate(rate_kbit)

    def down(self) -> None:
        self.proxy.down()

    def up(self) -> None:
        self.proxy.up()

    def close(self) -> None:
        self.proxy.stop()
        self.broker.stop()


def make_uplink(
    strategy: str, host: str, port: int, outbox: Path, service: str, max_delay: float | None
) -> MqttUplink:
    spec = MqttUplinkSpec.model_validate(
        {
            "type": "mqtt",
            "url": f"mqtt://{host}:{port}",
            "encoding": "edgex-json" if strategy == "edgex" else "compact",
            "outbox": {"path": str(outbox)},
            "reconnect": {"initial_delay": 0.5, "max_delay": 5.0},
            "batching": {} if max_delay is None else {"max_delay": max_delay},
            "keepalive": 30,
        }
    )
    return MqttUplink(spec, service=service)


async def trial(
    strategy: str,
    rate: float,
    seconds: float,
    proxy: Any,
    rx: Receiver,
    series: np.ndarray,
    bound: float,
    workdir: Path,
    outage: float = 0.0,
) -> dict[str, Any]:
    """Ingest at ``rate`` for ``seconds`` (with ``outage``: warm-up, link down ``outage`` s, up, drain)."""
    outbox = workdir / f"outbox-{strategy}-{rate:.0f}-{time.monotonic_ns()}.sqlite"
    global _TRIALS
    _TRIALS += 1
    service = f"bh{_TRIALS}"
    rx.reset(service)  # a trial counts its own messages only, never a late one of the trial before
    up = make_uplink(strategy, proxy.host, proxy.port, outbox, service, MAX_DELAY)
    await up.start()
    src = Source(series)
    pipeline = (
        build_pipeline([{"type": "swing", "max_error": bound}], src.table) if strategy == "swing" else None
    )
    # below 100 readings/s one reading per tick (the series take turns, ticks further apart), else ticks
    # of 100 ms with the same number of readings for every series
    per_tick = 1 if rate < N_SERIES / TICK else N_SERIES * round(rate * TICK / N_SERIES)
    period = per_tick / rate
    backlog: list[tuple[float, int]] = []
    out: dict[str, Any] = {"strategy": strategy, "target_rate": rate}
    link0 = proxy.bytes_up

    async def ship(batch: ReadingBatch) -> None:
        if pipeline is None:
            await up.send(batch)
            return
        o = pipeline.process(batch)
        if len(o.batch):
            await up.send(o.batch, o.interpolation)

    async def produce(until: float, stop_when: Any = None) -> None:
        nxt = time.monotonic()
        while time.monotonic() < until and not (stop_when is not None and stop_when()):
            await ship(src.tick(per_tick))
            backlog.append((time.monotonic(), int(up.stats().get("queued_bytes", 0))))
            nxt += period
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    t0 = time.monotonic()
    if outage <= 0:
        await produce(t0 + seconds)
    else:
        await produce(t0 + seconds)
        proxy.down()
        t_down = time.monotonic()
        await produce(t_down + outage)
        st = up.stats()
        out["backlog_readings"] = int(st.get("queued_readings", 0))
        out["backlog_bytes"] = int(st.get("queued_bytes", 0))
        out["outbox_file_bytes"] = int(st.get("outbox_file_bytes", 0))
        proxy.up()
        t_up = time.monotonic()
        await produce(t_up + 3600, stop_when=lambda: up.stats().get("queued", 1) == 0)
        out["drain_s"] = round(time.monotonic() - t_up, 2)
    t_end = time.monotonic()
    if pipeline is not None:
        o = pipeline.flush()
        if len(o.batch):
            await up.send(o.batch, o.interpolation)
    st = up.stats()
    committed = int(st["readings_committed"])
    deadline = time.monotonic() + 15 + (out.get("backlog_bytes", 0) / (proxy.rate_kbit * 125))
    while time.monotonic() < deadline and rx.readings < committed:  # noqa: ASYNC110 - a thread counts
        await asyncio.sleep(0.1)
    delivered_s = time.monotonic() - t_end
    await up.stop(flush_timeout=5)
    st = up.stats()
    committed = int(st.get("readings_committed", committed))
    readings_in = int(st.get("readings_in", 0))
    out.update(
        {
            "rate": readings_in / (t_end - t0 - (outage if outage > 0 else 0)) if outage <= 0 else rate,
            "readings_in": readings_in,
            "link_bytes_up": proxy.bytes_up - link0,
            "committed": committed,
            "received": rx.readings,
            "lost": committed - rx.readings,
            "dropped_by_policy": int(st.get("dropped_by_policy", 0)),
            "bytes_shipped": int(st.get("bytes_shipped", 0)),
            "seconds_to_deliver_after_stop": round(delivered_s, 2),
        }
    )
    med, p99 = rx.latency()
    out["latency_median_s"], out["latency_p99_s"] = med, p99
    if outage <= 0:
        span = t_end - t0
        mid = [b for t, b in backlog if t0 + span / 3 <= t < t0 + 2 * span / 3]
        last = [b for t, b in backlog if t >= t0 + 2 * span / 3]
        m_mid = float(np.mean(mid)) if mid else 0.0
        m_last = float(np.mean(last)) if last else 0.0
        out["backlog_mid_bytes"], out["backlog_last_bytes"] = round(m_mid), round(m_last)
        link_s = proxy.rate_kbit * 125  # bytes the link carries in one second
        # bounded: not growing over the trial, and at most 2 s of the link waiting at the end
        bounded = m_last <= 1.25 * m_mid + 0.25 * link_s and m_last <= 2 * link_s
        out["sustained"] = bool(bounded and out["lost"] == 0 and out["dropped_by_policy"] == 0)
    with __import__("contextlib").suppress(OSError):
        for p in outbox.parent.glob(outbox.name + "*"):
            p.unlink()
    return out


async def highest_rate(
    strategy: str,
    link: float,
    args: argparse.Namespace,
    proxy: LinkProxy,
    rx: Receiver,
    series: np.ndarray,
    bound: float,
    workdir: Path,
) -> dict[str, Any]:
    proxy.set_rate(link)
    trials: list[dict[str, Any]] = []

    async def run(rate: float) -> dict[str, Any]:
        r = await trial(strategy, rate, args.trial, proxy, rx, series, bound, workdir)
        r["link_kbit"] = link
        trials.append(r)
        print(
            f"    {strategy:<8}{link:>5g} kbit/s  {r['rate']:>9.0f}/s  sustained={r['sustained']}  "
            f"lost={r['lost']}  backlog {r['backlog_mid_bytes']}->{r['backlog_last_bytes']} B  load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        return r

    lowest = 1.0
    rate = min(args.max_rate, max(lowest, link * 125 / ESTIMATE[strategy] * 0.7))
    good: dict[str, Any] | None = None
    bad: dict[str, Any] | None = None
    r = await run(rate)
    if r["sustained"]:
        good = r
        while good["target_rate"] < args.max_rate:
            r = await run(min(args.max_rate, good["target_rate"] * 2))
            if not r["sustained"]:
                bad = r
                break
            good = r
    else:
        bad = r
        while bad["target_rate"] > lowest:
            r = await run(max(lowest, bad["target_rate"] / 2))
            if r["sustained"]:
                good = r
                break
            bad = r
    if good is not None and bad is not None:
        for _ in range(3):
            r = await run((good["target_rate"] + bad["target_rate"]) / 2)
            if r["sustained"]:
                good = r
            else:
                bad = r
    best = good or {}
    return {
        "strategy": strategy,
        "link_kbit": link,
        "sustained_rate": best.get("rate"),
        "capped": bool(good is not None and bad is None),
        "latency_median_s": best.get("latency_median_s"),
        "latency_p99_s": best.get("latency_p99_s"),
        "bytes_per_reading": (best["bytes_shipped"] / best["readings_in"])
        if best.get("readings_in")
        else None,
        "link_bytes_per_reading": (best["link_bytes_up"] / best["readings_in"])
        if best.get("readings_in")
        else None,
        "trials": trials,
    }


def saved_rates(path: Path, link_kbit: float) -> dict[str, float]:
    """The highest sustained rate per strategy at ``link_kbit`` from an earlier run's JSON (for outage
    runs without the search: ``--links ''``)."""
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    return {
        r["strategy"]: float(r["sustained_rate"])
        for r in doc.get("results", [])
        if r.get("link_kbit") == link_kbit and r.get("sustained_rate")
    }


def _outage_row(o: dict[str, Any], link_kbit: float, seconds: float) -> dict[str, Any]:
    o.update({"link_kbit": link_kbit, "outage_s": seconds})
    print(
        f"    outage {seconds:g} s {o['strategy']:<8} at {o['rate']:.0f}/s: backlog {o['backlog_readings']} "
        f"readings / {o['backlog_bytes']} B, outbox file {o['outbox_file_bytes']} B, "
        f"drain {o['drain_s']} s, lost {o['lost']}, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    return o


async def outage_on_own_link(
    strategy: str,
    rate: float,
    link_kbit: float,
    seconds: float,
    series: np.ndarray,
    bound: float,
    workdir: Path,
) -> dict[str, Any]:
    """One outage trial on a proxy link, broker and receiver of its own."""
    own = workdir / f"outage-{strategy}-{seconds:g}"
    own.mkdir(parents=True, exist_ok=True)
    link = await asyncio.to_thread(ProxyLink, link_kbit, own)
    try:
        rx = await asyncio.to_thread(Receiver, "127.0.0.1", link.broker_port)
        try:
            o = await trial(strategy, rate, 10.0, link, rx, series, bound, own, outage=seconds)
        finally:
            rx.stop()
    finally:
        link.close()
    return _outage_row(o, link_kbit, seconds)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    series = load_series(args.data / "timeseries" / "nab_machine_temperature_system_failure.csv")
    bound = 0.01 * float(series.max() - series.min())
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        proxy: Any = TcLink(64, workdir) if args.link == "tc" else ProxyLink(64, workdir)
        try:
            rx = Receiver(
                proxy.host if args.link == "tc" else "127.0.0.1",
                proxy.port if args.link == "tc" else proxy.broker_port,
                qos=0 if args.link == "tc" else 1,
            )
        except BaseException:
            proxy.close()
            raise
        results: list[dict[str, Any]] = []
        outages: list[dict[str, Any]] = []
        try:
            for link in args.links:
                for strategy in args.strategies:
                    res = await highest_rate(strategy, link, args, proxy, rx, series, bound, workdir)
                    results.append(res)
            saved = saved_rates(args.rates_from, args.outage_link)
            for seconds in [args.outage] + ([600.0] if args.long else []):
                if seconds <= 0:
                    continue
                rates: dict[str, float] = {}
                for strategy in args.strategies:
                    best = next(
                        (
                            r
                            for r in results
                            if r["strategy"] == strategy and r["link_kbit"] == args.outage_link
                        ),
                        None,
                    )
                    base = (best or {}).get("sustained_rate") or saved.get(strategy) or 2.0
                    rates[strategy] = max(1.0, base / 2)
                if args.link == "tc":  # one namespace: the strategies take turns
                    proxy.set_rate(args.outage_link)
                    for strategy in args.strategies:
                        o = await trial(
                            strategy, rates[strategy], 10.0, proxy, rx, series, bound, workdir, outage=seconds
                        )
                        outages.append(_outage_row(o, args.outage_link, seconds))
                else:  # each strategy on a link of its own, all at once (the outage is mostly waiting)
                    outages += await asyncio.gather(
                        *(
                            outage_on_own_link(
                                strategy, rates[strategy], args.outage_link, seconds, series, bound, workdir
                            )
                            for strategy in args.strategies
                        )
                    )
        finally:
            rx.stop()
            proxy.close()
    return {"results": results, "outages": outages, "bound": bound}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--links", default="16,64,256", help="kbit/s, comma-separated")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--trial", type=float, default=12.0, help="seconds per trial rate")
    p.add_argument("--max-rate", type=float, default=20_000.0, help="readings/s at most (CPU, not the link)")
    p.add_argument("--outage", type=float, default=60.0, help="seconds the link is down (0: none)")
    p.add_argument("--outage-link", type=float, default=64.0)
    p.add_argument(
        "--max-delay",
        type=float,
        default=None,
        help="the uplink's batching.max_delay, seconds (default: as shipped, 1 s for compact, 0 for EdgeX JSON)",
    )
    p.add_argument("--long", action="store_true", help="also a 600 s outage")
    p.add_argument(
        "--rates-from",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "backhaul.json",
        help="without a search at --outage-link (e.g. --links ''), the outages ingest at half the rate "
        "this earlier run found",
    )
    p.add_argument(
        "--link",
        choices=["proxy", "tc"],
        default="proxy",
        help="proxy: the userspace token bucket; tc: a network namespace with tc tbf (root)",
    )
    p.add_argument("--data", type=Path, default=shared_data())
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # here, not at import: tests import this module
    signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # interruptible even when started in the background
    global MAX_DELAY
    MAX_DELAY = args.max_delay
    args.links = [float(x) for x in args.links.split(",") if x]
    args.strategies = [x for x in args.strategies.split(",") if x]
    for s in args.strategies:
        if s not in STRATEGIES:
            p.error(f"--strategies: unknown {s!r}; known: {', '.join(STRATEGIES)}")
    load0 = [round(x, 2) for x in os.getloadavg()]
    print(
        f"backhaul ({args.link}): links {args.links} kbit/s, strategies {args.strategies}; {os.cpu_count()} cores, load {load0}"
    )
    res = asyncio.run(main_async(args))
    load1 = [round(x, 2) for x in os.getloadavg()]
    print()
    print(
        f"{'strategy':<10}{'link kbit/s':>12}{'readings/s':>12}{'x EdgeX':>9}{'B/reading':>11}{'link B/rd':>10}"
        f"{'lat med s':>10}{'lat p99 s':>10}"
    )
    for r in res["results"]:
        edgex = next(
            (x for x in res["results"] if x["strategy"] == "edgex" and x["link_kbit"] == r["link_kbit"]), None
        )
        ratio = (
            (r["sustained_rate"] / edgex["sustained_rate"])
            if edgex and edgex.get("sustained_rate") and r.get("sustained_rate")
            else None
        )
        r["x_edgex"] = ratio

        def f(v: Any, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        rate = f(r["sustained_rate"], ".0f") + ("+" if r["capped"] else "")
        print(
            f"{r['strategy']:<10}{r['link_kbit']:>12g}{rate:>12}{f(ratio, '.1f'):>9}{f(r['bytes_per_reading'], '.3f'):>11}"
            f"{f(r['link_bytes_per_reading'], '.3f'):>10}"
            f"{f(r['latency_median_s'], '.2f'):>10}{f(r['latency_p99_s'], '.2f'):>10}"
        )
    print("+: the search's cap (--max-rate), CPU-bound here, not link-bound")
    if res["outages"]:
        print(
            f"\n{'outage':<8}{'strategy':<10}{'rate/s':>8}{'backlog rd':>11}{'backlog B':>10}{'outbox B':>10}{'drain s':>9}{'lost':>6}"
        )
        for o in res["outages"]:
            print(
                f"{o['outage_s']:<8g}{o['strategy']:<10}{o['rate']:>8.0f}{o['backlog_readings']:>11}{o['backlog_bytes']:>10}"
                f"{o['outbox_file_bytes']:>10}{o['drain_s']:>9}{o['lost']:>6}"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": "python benchmarks/backhaul.py " + shlex.join(sys.argv[1:]),
        "link": args.link,
        "max_delay": MAX_DELAY,
        "machine": {"cores": os.cpu_count(), "load_before": load0, "load_after": load1},
        "bound": res["bound"],
        "results": res["results"],
        "outages": res["outages"],
    }
    stem = (
        ("backhaul" if args.link == "proxy" else "backhaul-tc")
        + ("" if MAX_DELAY is None else f"-delay{MAX_DELAY:g}s")
        + ("" if args.links else "-outages")  # outages alone never overwrite the search's results
    )
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    with (args.out / f"{stem}.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "strategy",
                "link_kbit",
                "sustained_rate",
                "capped",
                "x_edgex",
                "bytes_per_reading",
                "latency_median_s",
                "latency_p99_s",
            ]
        )
        for r in res["results"]:
            w.writerow(
                [
                    r["strategy"],
                    r["link_kbit"],
                    r["sustained_rate"],
                    r["capped"],
                    r["x_edgex"],
                    r["bytes_per_reading"],
                    r["latency_median_s"],
                    r["latency_p99_s"],
                ]
            )
    print(f"\nwrote {args.out / (stem + '.json')} and {args.out / (stem + '.csv')}; load after {load1}")


if __name__ == "__main__":
    main()
