"""An edge process for the crash tests: ships batches ``make_batch(t, i)`` for i from where its
outbox's stream left off up to ``stop``, printing ``committed <i>`` after each commit.

    python tests/uplink_edge.py URL OUTBOX STOP RATE
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from uplink_support import make_batch, table, uplink_spec

from edgeflow.uplink.mqtt import MqttUplink


async def main(url: str, outbox: Path, stop: int, rate: float) -> None:
    up = MqttUplink(uplink_spec(url, outbox), service="edge")
    await up.start()
    start = up.next_seq  # batch i is sequence number i: resume exactly after the last committed one
    print(f"resumed {start}", flush=True)
    t = table()
    for i in range(start, stop):
        await up.send(make_batch(t, i))
        print(f"committed {i}", flush=True)
        await asyncio.sleep(1 / rate)
    await up.stop(flush_timeout=30)
    print(f"done {up.stats()['queued']}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
