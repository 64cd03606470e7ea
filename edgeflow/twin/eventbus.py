"""The DeviceTwin over EdgeCore's MQTT eventbus (``$hw/events/...``), through :mod:`edgeflow.mqtt`.

Sends ``twin/update`` (``actual``, and ``expected`` where the config asks), one message per device with
every twin that changed, at most ``rate`` messages per second node-wide (a token bucket; what waits is
coalesced: a twin that changes again before its turn is sent once, with its newest value); a heartbeat
re-reports every twin of a device each ``reportCycle``; ``state/update`` follows the connector's health
(``online``/``offline``/``unknown``). Takes ``twin/update/result`` (400/404/500 counted and logged with
the reason; 404 asks for the membership again), ``twin/update/delta`` (desired values written through the
connector, then reported), ``twin/get/result`` (at each connection), ``membership/get/result`` and
``membership/updated`` (devices start and stop live). A malformed message is counted and logged; the
twin goes on. After every (re)connection everything is reported again: EdgeCore drops what it could not
send to the cloud while it or the broker was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any

import orjson

from edgeflow.errors import TransportSecurityError, UplinkError
from edgeflow.mqtt.connection import connect_params
from edgeflow.mqtt.session import MqttSession, SubscriptionSpec
from edgeflow.twin._bucket import TokenBucket, wait_for_work
from edgeflow.twin.mapper import Dirty, KubeEdgeMapper, TwinDevice
from edgeflow.twin.spec import EventbusSpec
from edgeflow.twin.wire import (
    NODE_PREFIX,
    PREFIX,
    DeviceId,
    device_topic,
    event_id,
    parse_topic,
    twin_update,
)

__all__ = ["EventbusTwin"]

log = logging.getLogger(__name__)

#: counter names of malformed messages, by topic suffix (``<kind>_malformed``)
_KINDS = {
    "twin/update/delta": "delta",
    "twin/update/result": "result",
    "twin/get/result": "twin_get_result",
    "membership/get/result": "membership",
    "membership/updated": "membership",
}

#: 404 "device not existed": ask for the membership again at most this often.
REQUERY_INTERVAL = 10.0


class EventbusTwin:
    """One MQTT connection to EdgeCore's broker for every KubeEdge device of the node."""

    def __init__(self, mapper: KubeEdgeMapper, spec: EventbusSpec) -> None:
        self.mapper = mapper
        self.spec = spec
        ks = mapper.spec
        self.form = ks.device_id
        self.node = ks.node
        self.dirty = Dirty(ks.linger)
        self.bucket = TokenBucket(ks.rate.per_second, ks.rate.burst)
        self._states: dict[str, str] = {}  # state still to send, per device
        self._last_report: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: MqttSession | None = None
        self._requeried_at = 0.0
        self.counts: Counter[str] = Counter()
        self.results: Counter[int] = Counter()
        self._pending: set[asyncio.Task[None]] = set()

    # -- topics -----------------------------------------------------------------------------------

    def _subscriptions(self) -> list[SubscriptionSpec]:
        q = self.spec.qos
        ids = "+/+" if self.form == "namespaced" else "+"
        subs: list[SubscriptionSpec] = [
            (f"{PREFIX}{ids}/twin/update/result", q),
            (f"{PREFIX}{ids}/twin/update/delta", q),
            (f"{PREFIX}{ids}/twin/get/result", q),
            (f"{PREFIX}{ids}/state/update/result", q),
        ]
        if self.form == "namespaced":
            subs.append((f"{PREFIX}/twin/update/result", q))  # EdgeCore's reply to unparsable JSON
        if self.node:
            subs.append((f"{NODE_PREFIX}{self.node}/membership/get/result", q))
            subs.append((f"{NODE_PREFIX}{self.node}/membership/updated", q))
        return subs

    def _topic(self, dev: TwinDevice, suffix: str) -> str:
        return device_topic(DeviceId(dev.namespace, dev.name), self.form, suffix)

    # -- reporter protocol --------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def device_added(self, dev: TwinDevice) -> None:
        self.dirty.mark(dev.name, dev.reported)
        self._last_report[dev.name] = 0.0
        self._get_twins(dev)
        self.wake()

    def device_removed(self, dev: TwinDevice) -> None:
        self.dirty.discard(dev.name)
        self._states.pop(dev.name, None)
        self._last_report.pop(dev.name, None)

    def state_changed(self, dev: TwinDevice, state: str) -> None:
        self._states[dev.name] = state
        self.wake()

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        client_id = self.spec.client_id or f"edgeflow-mapper-{self.node or 'node'}"
        params = connect_params(
            self.spec.url, client_id=client_id, tls=self.spec.tls, auth=self.spec.auth, protocol="3.1.1"
        )
        self._session = MqttSession(
            params,
            self._subscriptions(),
            self._on_message,
            reconnect=self.spec.reconnect,
            on_link=self._on_link,
            name="kubeedge-eventbus",
        )
        try:
            await self._session.start()
        except TransportSecurityError:
            self._session = None
            raise
        self._task = asyncio.get_running_loop().create_task(self._flush_loop(), name="kubeedge-eventbus")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.stop()
            self._session = None

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.connected

    def _on_link(self, up: bool) -> None:
        if not up:
            self.counts["connection_losses"] += 1
            return
        self.counts["connects"] += 1
        # EdgeCore (or the broker) may have lost everything: report it all again, ask again
        for dev in self.mapper.devices.values():
            self.dirty.mark(dev.name, dev.reported)
            self._states[dev.name] = self.mapper.state_of(dev.name)
            self._get_twins(dev)
        self._get_membership()
        self.wake()

    # -- sending ----------------------------------------------------------------------------------

    def _publish(self, topic: str, body: dict[str, Any]) -> bool:
        if self._session is None:
            return False
        try:
            self._session.publish(topic, orjson.dumps(body), qos=self.spec.qos)
        except UplinkError:
            return False
        return True

    def _get_twins(self, dev: TwinDevice) -> None:
        if self.connected and self._publish(
            self._topic(dev, "twin/get"), {"event_id": event_id(), "timestamp": _ms()}
        ):
            self.counts["twin_gets"] += 1

    def _get_membership(self) -> None:
        if self.node and self.mapper.spec.membership == "follow" and self.connected:
            topic = f"{NODE_PREFIX}{self.node}/membership/get"
            if self._publish(topic, {"event_id": event_id(), "timestamp": _ms()}):
                self.counts["membership_gets"] += 1

    def _heartbeats(self, now: float) -> None:
        for dev in self.mapper.devices.values():
            if now - self._last_report.get(dev.name, 0.0) >= dev.heartbeat:
                self.dirty.mark(dev.name, dev.reported)

    def _send_state(self) -> bool:
        """Send one pending state; False when nothing could be sent now."""
        if not self._states:
            return False
        name = next(iter(self._states))
        dev = self.mapper.devices.get(name)
        if dev is None:
            self._states.pop(name)
            return True
        if not self.bucket.try_take():
            return False
        state = self._states[name]
        if not self._publish(
            self._topic(dev, "state/update"), {"event_id": "", "timestamp": _ms(), "state": state}
        ):
            return False
        self._states.pop(name)
        self.counts["states_sent"] += 1
        return True

    def _send_report(self, now: float) -> bool:
        item = self.dirty.pop()
        if item is None:
            return False
        name, twins = item
        dev = self.mapper.devices.get(name)
        if dev is None:
            return True
        values = {t: (dev.values[t], dev.twins[t].type) for t in sorted(twins) if t in dev.values}
        if not values:
            return True  # nothing read yet: the first reading marks it again
        if not self.bucket.try_take():
            self.dirty.put_back(name, twins)
            return False
        expected = None
        if self.mapper.spec.report_expected:
            expected = {t: dev.twins[t].desired for t in values if dev.twins[t].desired}
        body = twin_update(values, timestamp_ms=_ms(), expected=expected, eid=event_id())
        if not self._publish(self._topic(dev, "twin/update"), body):
            self.dirty.put_back(name, twins)
            return False
        self._last_report[name] = now
        self.counts["reports_sent"] += 1
        self.counts["twins_sent"] += len(values)
        return True

    async def _flush_loop(self) -> None:
        while True:
            now = time.monotonic()
            self._heartbeats(now)
            if self.connected:
                while self._send_state():
                    pass
                while not self._states and self._send_report(now):
                    pass
            # while disconnected nothing is sent: only heartbeats and changes wake the loop
            up = self.connected
            await wait_for_work(
                self._wake,
                self.bucket,
                states_waiting=up and bool(self._states),
                ready_in=self.dirty.ready_in() if up else None,
            )

    # -- receiving --------------------------------------------------------------------------------

    def _malformed(self, kind: str, topic: str, why: str) -> None:
        self.counts[f"{kind}_malformed"] += 1
        log.warning("kubeedge: malformed %s on %s: %s (ignored)", kind, topic, why)

    def _on_message(self, topic: str, payload: bytes) -> None:
        info = parse_topic(topic, self.form)
        if info is None:
            self.counts["ignored"] += 1
            return
        kind = _KINDS.get(info.suffix, info.suffix.replace("/", "_"))
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            self._malformed(kind, topic, f"not JSON ({exc})")
            return
        if not isinstance(doc, dict):
            self._malformed(kind, topic, "not a JSON object")
            return
        if info.kind == "node":
            self._on_membership(info.suffix, topic, doc)
            return
        if info.suffix == "twin/update/result":
            self._on_result(info.ident, doc)
        elif info.suffix == "twin/update/delta":
            self._on_delta(info.ident, topic, doc)
        elif info.suffix == "twin/get/result":
            self._on_get_result(info.ident, topic, doc)
        elif info.suffix == "state/update/result":
            self.counts["state_results"] += 1

    def _on_result(self, ident: str, doc: dict[str, Any]) -> None:
        code = doc.get("code")
        if code is None:
            self.results[200] += 1
            return
        if not isinstance(code, int):
            self.counts["result_malformed"] += 1
            return
        self.results[code] += 1
        log.warning(
            "kubeedge: EdgeCore refused a twin update of %s: %d %s", ident or "?", code, doc.get("reason", "")
        )
        if code == 404:
            now = time.monotonic()
            if now - self._requeried_at >= REQUERY_INTERVAL:
                self._requeried_at = now
                self._get_membership()

    def _on_delta(self, ident: str, topic: str, doc: dict[str, Any]) -> None:
        delta = doc.get("delta")
        if not isinstance(delta, dict) or not delta:
            self._malformed("delta", topic, "no 'delta' object")
            return
        dev = self.mapper.find(ident)
        if dev is None:
            self._malformed("delta", topic, f"device {ident!r} is not served here")
            return
        self.counts["deltas"] += 1
        for twin, value in delta.items():
            if not isinstance(value, str):
                self._malformed("delta", topic, f"twin {twin!r}: value {value!r} is not a string")
                continue
            why = self.mapper.desire(dev, twin, value, source="twin delta")
            if why:
                self._malformed("delta", topic, why)

    def _on_get_result(self, ident: str, topic: str, doc: dict[str, Any]) -> None:
        dev = self.mapper.find(ident)
        if dev is None:
            return
        self.counts["twin_get_results"] += 1
        if "code" in doc:
            log.info("kubeedge: twin/get for %s: %s %s", ident, doc.get("code"), doc.get("reason", ""))
            return
        twins = doc.get("twin")
        if not isinstance(twins, dict):
            self._malformed("twin_get_result", topic, "no 'twin' object")
            return
        for name, msg in twins.items():
            if not isinstance(msg, dict) or name not in dev.twins:
                continue
            exp = msg.get("expected")
            if isinstance(exp, dict) and isinstance(exp.get("value"), str) and exp["value"]:
                act = msg.get("actual")
                actual = act.get("value") if isinstance(act, dict) else None
                if exp["value"] != actual and dev.twins[name].writable:
                    self.mapper.desire(dev, name, exp["value"], source="twin document")

    def _on_membership(self, suffix: str, topic: str, doc: dict[str, Any]) -> None:
        def ids(key: str) -> list[str] | None:
            items = doc.get(key)
            if items is None:
                return []
            if not isinstance(items, list):
                return None
            out = []
            for d in items:
                if isinstance(d, dict) and isinstance(d.get("id") or d.get("name"), str):
                    out.append(str(d.get("id") or d.get("name")))
            return out

        if suffix == "membership/get/result":
            devices = ids("devices")
            if devices is None:
                self._malformed("membership", topic, "'devices' is not a list")
                return
            self.counts["membership_results"] += 1
            self._spawn(self.mapper.follow_membership(devices, (), ()))
        elif suffix == "membership/updated":
            added, removed = ids("added_devices"), ids("removed_devices")
            if added is None or removed is None:
                self._malformed("membership", topic, "added_devices/removed_devices are not lists")
                return
            self.counts["membership_updates"] += 1
            self._spawn(self.mapper.follow_membership(None, added, removed))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("kubeedge: applying a membership change failed: %s", task.exception())

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "results": {str(k): v for k, v in sorted(self.results.items())},
            "waiting_devices": len(self.dirty),
            "rate_refused": self.bucket.refused,
            "connected": self.connected,
        }


def _ms() -> int:
    return time.time_ns() // 1_000_000
