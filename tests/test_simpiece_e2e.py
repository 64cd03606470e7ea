"""Sim-Piece, Mix-Piece and auto end to end: pipeline → compact → outbox → a real Mosquitto → receiver,
whose reconstruction holds the bound at every reading; and ``edgeflow replay`` reports them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import MosquittoBroker
from uplink_support import uplink_spec, wait_for

from edgeflow.cloud import Receiver
from edgeflow.codec import reconstruct
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.replay import ReplayOptions, replay
from edgeflow.rules import build_pipeline
from edgeflow.uplink.mqtt import MqttUplink

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000


def _series(n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    t = T0 + np.arange(n, dtype=np.int64) * SEC
    v = np.round(np.cumsum(rng.normal(0, 0.2, n)) + rng.normal(0, 0.4, n), 3)
    return t, v


@pytest.mark.server
@pytest.mark.parametrize("kind", ["sim_piece", "mix_piece", "auto"])
async def test_through_mosquitto_the_receiver_rebuilds_within_the_bound(
    mosquitto: MosquittoBroker, tmp_path: Path, kind: str
) -> None:
    t, v = _series()
    e = 0.01 * float(v.max() - v.min())
    table = SeriesTable()
    sid = table.intern("pump-1", "pressure", "pumps")
    pipe = build_pipeline([{"type": kind, "max_error": e, "horizon": 40}], table)
    rx = Receiver(mosquitto.url, ["edgeflow/+/batches"], keep=True)
    await rx.start()
    up = MqttUplink(uplink_spec(mosquitto.url, tmp_path / "ob.sqlite"), service="s")
    await up.start()
    shipped = 0
    for lo in range(0, len(t), 100):
        out = pipe.process(
            ReadingBatch.from_columns(table, t[lo : lo + 100], v[lo : lo + 100], np.full(100, sid))
        )
        if len(out.batch):
            shipped += len(out.batch)
            await up.send(out.batch, out.interpolation)
    out = pipe.flush()
    shipped += len(out.batch)
    await up.send(out.batch, out.interpolation)
    await wait_for(lambda: rx.counts["readings"] == shipped, 20, "every point")
    await up.stop()
    await rx.stop()
    s = rx.series()[("pump-1", "pressure")]
    assert s.interpolation == "linear"
    assert len(s.origins) == shipped < len(t)
    err = np.abs(reconstruct(s.origins, s.values, t, "linear") - v)
    assert not np.isnan(err).any()
    assert err.max() <= e * (1 + 1e-9), (err.max(), e)


@pytest.mark.parametrize("kind", ["sim_piece", "mix_piece", "auto"])
def test_replay_reports_the_segment_rules(tmp_path: Path, kind: str) -> None:
    t, v = _series(3000)
    csv = tmp_path / "plant.csv"
    rows = [f"{int(o) // SEC},{x}" for o, x in zip(t.tolist(), v.tolist(), strict=True)]
    csv.write_text("time,flow\n" + "\n".join(rows) + "\n")
    e = 0.01 * float(v.max() - v.min())
    swing = replay(
        ReplayOptions(
            csv=csv, time_column="time", value_columns=["flow"], rules=[{"type": "swing", "max_error": e}]
        )
    )
    got = replay(
        ReplayOptions(
            csv=csv, time_column="time", value_columns=["flow"], rules=[{"type": kind, "max_error": e}]
        )
    )
    assert got["readings_in"] == 3000
    assert 0 < got["readings_out"] < 3000
    assert got["max_abs_error"] <= e * (1 + 1e-9)
    assert 0 < got["bytes_shipped"] < swing["bytes_shipped"], (got["bytes_shipped"], swing["bytes_shipped"])
