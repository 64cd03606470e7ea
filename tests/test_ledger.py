"""Every reading is accounted for: the ledger balances after runs with faults.

in (published on the bus) = dropped by the bus's policy + queued + routed + unrouted; what the pipelines
and the unrouted policy ship = committed + refused + pending; recovered + committed = shipped + dropped
by the outbox's policy + queued. Each run here forces some of those places to fill.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from conftest import free_port
from runtime_support import sensors

from edgeflow.config import parse_config
from edgeflow.rules.base import Rule
from edgeflow.runtime import Runtime


def _config(tmp_path: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "service": "ledger",
        "devices": sensors(["d1", "d2"], "2ms", "10ms"),
        "pipelines": [
            {
                "name": "deadband",
                "match": {"device": "d1", "resource": "Temp"},
                "rules": [{"type": "deadband", "absolute": 2}],
            },
            {
                "name": "swing",
                "match": {"device": "d2", "resource": "Temp"},
                "rules": [{"type": "swing", "max_error": 1}],
            },
        ],
        "unrouted": "drop",
        "uplink": {  # a broker that is never there: everything stays in the outbox, which fills
            "type": "mqtt",
            "url": f"mqtt://127.0.0.1:{free_port()}",
            "outbox": {
                "path": str(tmp_path / "outbox.sqlite"),
                "max_bytes": "64KiB",
                "overflow": "drop-oldest",
            },
            "encoding": "edgex-json",
            "reconnect": {"initial_delay": 0.2, "max_delay": 0.5},
        },
    }
    cfg.update(over)
    return cfg


class _Broken(Rule):
    """A rule with a bug: every third batch it raises."""

    kind = "broken"

    def __init__(self, inner: Rule) -> None:
        super().__init__(inner.table, inner.stats.index)
        self.inner = inner
        self.calls = 0

    def _process(self, batch: Any) -> Any:
        self.calls += 1
        if self.calls % 3 == 0:
            raise ZeroDivisionError("a bug in a rule")
        return self.inner.process(batch)

    def snapshot(self) -> dict[str, Any]:
        return self.inner.snapshot()


async def test_ledger_balances_with_outbox_drops_unrouted_readings_and_a_failing_rule(tmp_path: Path) -> None:
    rt = Runtime(parse_config(_config(tmp_path), environ={}))
    rt.routes[1].pipeline.rules[0] = _Broken(rt.routes[1].pipeline.rules[0])
    await rt.run(duration=2.0)
    led = rt.ledger()
    assert rt.ledger_problems() == []
    assert led["outbox"]["dropped"] > 0  # the full outbox made room by dropping the oldest
    assert led["router"]["unrouted_dropped"] > 0  # the labels
    assert led["pipelines"]["swing"]["errors"] > 0  # counted, not silently gone
    assert led["pipelines"]["deadband"]["reduced"] > 0
    assert led["outbox"]["shipped"] == 0  # nothing reached a broker: it was never there
    assert led["outbox"]["queued"] > 0


async def test_ledger_balances_when_a_blocked_outbox_backs_up_into_the_bus(tmp_path: Path) -> None:
    cfg = _config(tmp_path, bus={"capacity": 200, "policy": "drop-oldest"}, pipelines=[], unrouted="ship")
    cfg["uplink"]["outbox"]["overflow"] = "block"
    cfg["uplink"]["batching"] = {"max_readings": 50}
    rt = Runtime(parse_config(cfg, environ={}))
    await rt.start()
    await asyncio.sleep(2.0)
    during = rt.ledger()
    await rt.stop()  # the outbox never empties: the last commit gives up, its readings stay in flight
    led = rt.ledger()
    assert rt.ledger_problems() == []
    assert during["bus"]["dropped"] > 0  # the committer held back the router; the bus dropped, counted
    assert led["outbox"]["dropped"] == 0  # block never drops at the outbox
    assert led["commit"]["pending"] > 0  # what could not be committed is in flight, not lost from view
    assert led["router"]["unrouted_shipped"] == led["commit"]["submitted"]
