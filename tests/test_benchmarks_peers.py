"""The benchmark harness's own parts: the token-bucket link proxy against real sockets (its rate, the
link going down and coming back), the peers' missed-poll counting and the replay server's values."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))

from linkproxy import LinkProxy  # noqa: E402


class Sink:
    """A TCP server that counts what arrives and when."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.times: list[float] = []
        self.closed = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                break
            if not data:
                break
            self.received += len(data)
            self.times.append(time.monotonic())
        self.closed.set()

    def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.received >= n:
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


def _proxy(sink: Sink, kbit: float, burst: int | None = None) -> LinkProxy:
    p = LinkProxy(("127.0.0.1", sink.port), rate_kbit=kbit, burst=burst)
    p.start()
    return p


def test_proxy_holds_the_rate(sink: Sink) -> None:
    proxy = _proxy(sink, 64, burst=1000)  # 8000 B/s
    c = socket.create_connection(("127.0.0.1", proxy.port))
    try:
        payload = b"x" * 24_000
        t0 = time.monotonic()
        c.sendall(payload)
        assert sink.wait_for(len(payload), 60), sink.received
        elapsed = sink.times[-1] - t0
        # never faster than the link (the bucket starts empty; one burst of slack), whatever the load
        assert elapsed >= (len(payload) - 1000) / 8000 * 0.95, elapsed
        assert sink.received == len(payload)
        # the proxy counts a chunk once its send returned, which may be after the sink has it
        deadline = time.monotonic() + 10
        while proxy.bytes_up < len(payload) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.bytes_up == len(payload)
    finally:
        c.close()
        proxy.stop()


def test_proxy_rate_is_shared_by_connections(sink: Sink) -> None:
    proxy = _proxy(sink, 64, burst=1000)
    try:
        conns = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(3)]
        t0 = time.monotonic()
        for c in conns:
            c.sendall(b"y" * 8000)
        assert sink.wait_for(24_000, 60), sink.received
        assert sink.times[-1] - t0 >= (24_000 - 2000) / 8000 * 0.95  # one link: 3 s, not 1 s
        for c in conns:
            c.close()
    finally:
        proxy.stop()


def test_proxy_link_down_blackholes_then_delivers(sink: Sink) -> None:
    proxy = _proxy(sink, 256)
    try:
        c = socket.create_connection(("127.0.0.1", proxy.port))
        c.sendall(b"a" * 100)
        assert sink.wait_for(100, 30)
        proxy.down()
        assert not proxy.is_up
        c.sendall(b"b" * 500)
        time.sleep(1.0)
        assert sink.received == 100  # nothing crosses a link that is down
        proxy.up()
        assert sink.wait_for(600, 30), sink.received  # what waited follows, nothing lost, nothing doubled
        time.sleep(0.2)
        assert sink.received == 600
        c.close()
    finally:
        proxy.stop()


def test_proxy_link_down_reset_closes_and_refuses(sink: Sink) -> None:
    proxy = _proxy(sink, 256)
    try:
        c = socket.create_connection(("127.0.0.1", proxy.port))
        c.sendall(b"a" * 10)
        assert sink.wait_for(10, 30)
        proxy.down("reset")
        c.settimeout(10)
        with pytest.raises((ConnectionError, OSError)):
            for _ in range(50):  # the reset shows on the next read or write
                if not c.recv(10):
                    raise ConnectionResetError("closed")
        c2 = socket.create_connection(("127.0.0.1", proxy.port))
        c2.settimeout(10)
        assert c2.recv(10) == b""  # accepted and closed at once while down
        proxy.up()
        c3 = socket.create_connection(("127.0.0.1", proxy.port))
        c3.sendall(b"z" * 5)
        assert sink.wait_for(15, 30)
        for s in (c, c2, c3):
            s.close()
    finally:
        proxy.stop()


def test_proxy_rejects_a_rate_of_zero() -> None:
    with pytest.raises(ValueError, match="rate_kbit"):
        LinkProxy(("127.0.0.1", 1), rate_kbit=0)


def test_missed_polls_counts_gaps_in_intervals() -> None:
    from run import missed_polls

    reads = [0.0 + 0.1 * i for i in range(100)]
    assert missed_polls(reads, 0.0, 10.0, 0.1) == 0
    gappy = [t for t in reads if not 3.0 <= t < 3.45]  # five polls missing
    assert missed_polls(gappy, 0.0, 10.0, 0.1) == 5
    # the ten requests one poll of ThingsBoard makes count as one poll
    burst = [t + 0.001 * k for t in reads for k in range(10)]
    assert missed_polls(burst, 0.0, 10.0, 0.1) == 0


def test_replay_values_follow_the_series() -> None:
    from replay_server import source_value

    series = np.arange(100, dtype=np.float64) / 10
    v = source_value(series, 100.0, 1, 0, 10, np.arange(3))
    assert v.tolist() == [0, 10, 20]
    # each register sits at its own place in the series
    assert int(source_value(series, 100.0, 1, 1, 10, 0)) == 370
    assert int(source_value(series, 100.0, 2, 0, 10, 0)) == round(series[370 % 100] * 100)


@pytest.mark.data
def test_bandwidth_strategies_keep_their_bounds_on_a_real_series(shared_data: Path) -> None:
    import bandwidth

    nab = next(g for g in bandwidth.real_groups(shared_data) if g.dataset.startswith("nab"))
    short = bandwidth.Group(
        nab.dataset, nab.device, nab.columns, nab.times[:3000], nab.values[:3000], nab.span, nab.peak
    )
    rows = {r["strategy"]: r for r in bandwidth.run_group(short, [1.0], 500, bandwidth.rule_types())}
    for name in ("edgex-json", "json+zlib", "compact", "on_change"):
        assert rows[name]["max_error"] == 0.0, name  # lossless through encode, decode, reconstruct
        assert rows[name]["kept"] == 3000 or name == "on_change"
    for name in ("deadband", "fledge_delta", "edgex_threshold", "sdt", "pmc_mr", "swing"):
        r = rows[name]
        assert r["unreconstructed"] == 0, name
        assert r["max_error_over_bound"] <= 1.0 + 1e-9, (name, r["max_error_over_bound"])
        assert r["kept"] < 3000, name  # a bound of 1 % drops something on this series
    assert rows["compact"]["bytes"] < rows["json+zlib"]["bytes"] < rows["edgex-json"]["bytes"]
    assert rows["swing"]["bytes"] < rows["compact"]["bytes"]
    assert rows["edgex_threshold"]["kept"] == rows["deadband"]["kept"]  # one semantics, two wires
    assert 250 <= rows["window"]["kept"] <= 301  # one mean per 10 samples' time (windows on the clock)


def test_bandwidth_plant_is_deterministic() -> None:
    import bandwidth

    a, b = bandwidth.plant(5, n=500), bandwidth.plant(5, n=500)
    assert np.array_equal(a.values, b.values)
    assert a.values.min() >= 0.0 and a.values.max() <= 100.0


def test_lost_tail_says_which_polls_a_kill_took_and_how_old() -> None:
    from run import lost_tail

    # unit 1: 50 polls of 10 registers 0.1 s apart, the last two never delivered; unit 2: all delivered
    reads = {"1": [0.1 * i for i in range(50)], "2": [0.1 * i + 0.02 for i in range(50)]}
    served = {"1": 500, "2": 500}
    out = lost_tail(reads, served, {1: 480, 2: 500}, registers=10, interval=0.1, t_kill=4.95)
    assert out == {"units_with_loss": 1, "most_polls_lost_per_unit": 2, "oldest_lost_s": 0.15}
    # a part of a poll lost counts as that poll (ThingsBoard requests register by register)
    out = lost_tail(reads, served, {1: 497, 2: 500}, registers=10, interval=0.1, t_kill=4.95)
    assert out["most_polls_lost_per_unit"] == 1 and out["oldest_lost_s"] == 0.05


def _offline_uplink(folder: Path, **batching: Any) -> Any:
    """An MQTT uplink with its outbox in ``folder`` and nobody at the broker's address: everything it
    commits stays in the outbox, as the SIGKILL runs find it."""
    from conftest import free_port

    from edgeflow.uplink.mqtt import MqttUplink
    from edgeflow.uplink.spec import MqttUplinkSpec

    doc: dict[str, Any] = {
        "type": "mqtt",
        "url": f"mqtt://127.0.0.1:{free_port()}",
        "outbox": {"path": str(folder / "outbox.sqlite")},
    }
    if batching:
        doc["batching"] = batching
    return MqttUplink(MqttUplinkSpec.model_validate(doc), service="bench")


async def _send_polls(up: Any, polls: int) -> None:
    """``polls`` polls of unit 1's three registers (``dev01/r0..r2``), 0.1 s apart, each sent alone."""
    from edgeflow.model import ReadingBatch, SeriesTable

    table = SeriesTable()
    sids = np.asarray([table.intern("dev01", f"r{i}", "bench") for i in range(3)], np.int32)
    for k in range(polls):
        origins = np.full(3, 10**18 + k * 10**8, np.int64)
        await up.send(ReadingBatch(table, origins, np.arange(3, dtype=np.float64) + k, sids))


async def test_kill_measurement_reads_what_the_outbox_committed(tmp_path: Path) -> None:
    """The SIGKILL run's split of the loss: the stream's next_seq in a real outbox says what was
    committed; a committed batch that never arrived is counted as such, and the readings of those
    that did arrive are what the uncommitted remainder is computed from."""
    import sqlite3

    from run import Edgeflow, Setup

    up = _offline_uplink(tmp_path, max_delay=0)  # a message each send (staged readings: the next test)
    await up.start()
    await _send_polls(up, 5)
    await up.stop(flush_timeout=0.2)

    peer = Edgeflow(Setup(1, 3, 0.1, 0, 0, 1.0), tmp_path, "none")
    committed = peer.committed_after_kill()
    assert list(committed.values()) == [5]  # type: ignore[union-attr]
    db = sqlite3.connect(tmp_path / "outbox.sqlite")
    rows = db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq").fetchall()
    db.close()
    arrived = [(0.0, topic, bytes(payload)) for seq, topic, payload in rows if seq != 2]
    got = peer.committed_delivered(arrived + arrived[:1], committed)  # a duplicate counts once
    assert got == {
        "committed_batches": 5,
        "committed_batches_delivered": 4,
        "lost_committed_batches": 1,
        "staged_at_kill": 0,
        "lost_staged_readings": 0,
        "committed_readings_delivered": 12,
    }


async def test_kill_measurement_counts_staged_readings_as_committed(tmp_path: Path) -> None:
    """At defaults readings wait staged for their message: the copy a kill leaves has them in the
    staged table, not under a sequence number. The split reads them, and finds them in the batches the
    restart ships (or counts them lost)."""
    import shutil
    import sqlite3

    from run import Edgeflow, Setup

    up = _offline_uplink(tmp_path)  # the defaults: staged, a message a second
    await up.start()
    await _send_polls(up, 4)
    assert up.stats()["staged"] == 12
    killed = tmp_path / "killed"  # what a kill -9 would leave now: the committed files
    killed.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(tmp_path / f"outbox.sqlite{suffix}", killed / f"outbox.sqlite{suffix}")
    await up.stop(flush_timeout=0.2)

    peer = Edgeflow(Setup(1, 3, 0.1, 0, 0, 1.0), killed, "none")
    committed = peer.committed_after_kill()
    assert committed == {} and len(peer.staged_at_kill) == 12
    restarted = _offline_uplink(killed)  # cuts what was staged into a batch
    await restarted.start()
    await restarted.stop(flush_timeout=0.2)
    db = sqlite3.connect(killed / "outbox.sqlite")
    rows = db.execute("SELECT topic, payload FROM outbox ORDER BY seq").fetchall()
    db.close()
    assert len(rows) == 1
    got = peer.committed_delivered([(0.0, t, bytes(p)) for t, p in rows], committed)
    assert got["staged_at_kill"] == 12 and got["lost_staged_readings"] == 0
    assert got["committed_readings_delivered"] == 12
    assert peer.committed_delivered([], committed)["lost_staged_readings"] == 12


@pytest.mark.server
@pytest.mark.slow
async def test_outage_on_a_link_of_its_own_loses_nothing(tmp_path: Path) -> None:
    """backhaul's outage trial on its own proxy, Mosquitto and receiver (how --long runs the strategies
    at once): the link goes down, the backlog builds in the outbox, and after the link is back every
    committed reading reaches the receiver."""
    import backhaul

    series = np.sin(np.arange(5000) / 50.0) * 10 + 50
    # 200 readings/s: ticks of 100 ms, so the outbox empties between two ticks once the backlog is gone
    o = await backhaul.outage_on_own_link("compact", 200.0, 64.0, 2.0, series, 0.2, tmp_path)
    assert o["outage_s"] == 2.0 and o["link_kbit"] == 64.0
    assert o["backlog_readings"] > 0  # the link was down: readings waited in the outbox
    assert o["committed"] > o["backlog_readings"]
    assert o["lost"] == 0 and o["received"] == o["committed"]


def test_outages_alone_take_the_rates_an_earlier_search_found(tmp_path: Path) -> None:
    import json

    import backhaul

    doc = {
        "results": [
            {"strategy": "swing", "link_kbit": 64.0, "sustained_rate": 1657.0},
            {"strategy": "swing", "link_kbit": 16.0, "sustained_rate": 82.0},
            {"strategy": "edgex", "link_kbit": 64.0, "sustained_rate": None},
        ]
    }
    path = tmp_path / "backhaul.json"
    path.write_text(json.dumps(doc))
    assert backhaul.saved_rates(path, 64.0) == {"swing": 1657.0}
    assert backhaul.saved_rates(tmp_path / "absent.json", 64.0) == {}
