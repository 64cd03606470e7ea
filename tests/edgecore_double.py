"""A test double of KubeEdge EdgeCore's DeviceTwin on the MQTT eventbus (``reference/kubeedge.md``).

It subscribes where EdgeCore does (``$hw/events/device/+/+/twin/+``, ``.../state/update`` — or the
single-segment forms for <= v1.15 — and ``$hw/events/node/<node>/membership/get``), validates every
message with EdgeCore's rules (key/value regexes with Go's ``$``, JSON-string values, lowercase types, a
type that never changes, ``value`` always present, integer timestamps, accepted states) and answers as
EdgeCore does: ``twin/update/result`` (the changed twins, or ``{code: 400|404, reason}``), ``/document``,
``/delta`` while an ``expected`` differs from ``actual``, ``twin/get/result``, ``state/update/result`` and
``membership/get/result``. A test sets desired values (``set_desired``), changes membership
(``add_member``/``remove_member``) and injects raw messages (``publish``). Every rule a mapper broke is
in ``violations``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from edgeflow.errors import UplinkError
from edgeflow.mqtt.connection import MqttConnection, connect_params
from edgeflow.twin.wire import (
    NODE_PREFIX,
    PREFIX,
    STATES,
    parse_topic,
    validate_twin_update,
)


@dataclass
class Twin:
    type: str = ""
    expected: str | None = None
    actual: str | None = None
    actual_version: int = 0


@dataclass
class DeviceRecord:
    ident: str
    name: str
    twins: dict[str, Twin] = field(default_factory=dict)
    state: str = ""


def _ms() -> int:
    return time.time_ns() // 1_000_000


class EdgeCoreDouble:
    def __init__(
        self,
        url: str,
        node: str,
        *,
        form: Literal["namespaced", "name"] = "namespaced",
        client_id: str | None = None,
    ) -> None:
        """``client_id`` given: a persistent session (what the mapper sends while this double is away from
        the broker is queued for it), so a test can restart the broker without racing the mapper."""
        self.url = url
        self.client_id = client_id
        self.node = node
        self.form = form
        self.devices: dict[str, DeviceRecord] = {}
        self.members: list[str] = []
        self.updates: list[tuple[str, dict[str, Any]]] = []  # accepted twin/update bodies
        self.states: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self.received: list[tuple[str, bytes]] = []
        self.refuse_next: dict[str, tuple[int, str]] = {}  # ident -> (code, reason) for the next update
        self._conn: MqttConnection | None = None
        self._changed = asyncio.Event()

    # -- set-up -----------------------------------------------------------------------------------

    def add_device(self, ident: str, *, member: bool = True) -> DeviceRecord:
        rec = self.devices.setdefault(ident, DeviceRecord(ident, ident.rpartition("/")[2]))
        if member and ident not in self.members:
            self.members.append(ident)
        return rec

    async def start(self) -> None:
        params = connect_params(
            self.url,
            client_id=self.client_id or f"edgecore-double-{uuid.uuid4().hex[:6]}",
            clean_start=self.client_id is None,
            session_expiry=600 if self.client_id else 0,
        )
        deadline = time.monotonic() + 15
        while True:
            conn = MqttConnection(params, on_message=self._on_message)
            try:
                await conn.connect()
                break
            except UplinkError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        ids = "+/+" if self.form == "namespaced" else "+"
        for suffix in ("twin/update", "twin/get", "twin/cloud_updated", "state/update"):
            await conn.subscribe(f"{PREFIX}{ids}/{suffix}", 1)
        # what EdgeCore does not subscribe, watched only to flag a mapper that uses the wrong id form
        other = "+" if self.form == "namespaced" else "+/+"
        await conn.subscribe(f"{PREFIX}{other}/twin/update", 1)
        await conn.subscribe(f"{PREFIX}{other}/state/update", 1)
        await conn.subscribe(f"{NODE_PREFIX}{self.node}/membership/get", 1)
        self._conn = conn

    async def stop(self) -> None:
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None

    # -- what a test does -------------------------------------------------------------------------

    def publish(self, topic: str, body: dict[str, Any] | bytes) -> None:
        assert self._conn is not None
        self._conn.publish(topic, body if isinstance(body, bytes) else orjson.dumps(body), 1)

    def topic(self, ident: str, suffix: str) -> str:
        return f"{PREFIX}{ident}/{suffix}"

    def set_desired(self, ident: str, twin: str, value: str) -> None:
        """A desired value arrives: ``expected`` is stored and a delta published (as after any update)."""
        rec = self.devices[ident]
        rec.twins.setdefault(twin, Twin(type="string")).expected = value
        self._publish_delta(rec)

    def add_member(self, ident: str) -> None:
        rec = self.add_device(ident)
        body = {
            "event_id": str(uuid.uuid4()),
            "timestamp": _ms(),
            "added_devices": [{"id": ident, "name": rec.name}],
            "removed_devices": None,
        }
        self.publish(f"{NODE_PREFIX}{self.node}/membership/updated", body)

    def remove_member(self, ident: str) -> None:
        rec = self.devices[ident]
        self.members.remove(ident)
        body = {
            "event_id": str(uuid.uuid4()),
            "timestamp": _ms(),
            "added_devices": None,
            "removed_devices": [{"id": ident, "name": rec.name}],
        }
        self.publish(f"{NODE_PREFIX}{self.node}/membership/updated", body)

    async def wait_for(
        self, cond: Callable[[], bool], within: float = 30.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + within
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; violations: {self.violations}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.1)

    def actual(self, ident: str, twin: str) -> str | None:
        rec = self.devices.get(ident)
        t = rec.twins.get(twin) if rec else None
        return t.actual if t else None

    # -- EdgeCore's side --------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.received.append((topic, payload))
        try:
            self._handle(topic, payload)
        finally:
            self._changed.set()

    def _handle(self, topic: str, payload: bytes) -> None:
        info = parse_topic(topic, self.form)
        if info is None:
            self.violations.append(f"{topic}: EdgeCore ({self.form} ids) ignores this topic")
            return
        if info.kind == "node":
            if info.suffix == "membership/get":
                doc = self._json(topic, payload)
                eid = doc.get("event_id", "") if isinstance(doc, dict) else ""
                devices = [{"id": i, "name": self.devices[i].name} for i in self.members]
                self.publish(
                    f"{NODE_PREFIX}{self.node}/membership/get/result",
                    {"event_id": eid, "timestamp": _ms(), "devices": devices},
                )
            return
        ident = info.ident
        if info.suffix == "twin/update":
            self._twin_update(topic, ident, payload)
        elif info.suffix == "twin/get":
            self._twin_get(topic, ident, payload)
        elif info.suffix == "state/update":
            self._state_update(topic, ident, payload)
        elif info.suffix == "twin/cloud_updated":
            self.violations.append(f"{topic}: a mapper must not send cloud_updated")

    def _json(self, topic: str, payload: bytes) -> Any:
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.violations.append(f"{topic}: not JSON: {payload[:80]!r}")
            return None

    def _twin_update(self, topic: str, ident: str, payload: bytes) -> None:
        doc = self._json(topic, payload)
        if doc is None:
            self.publish(
                f"{PREFIX}/twin/update/result",
                {"event_id": "", "timestamp": _ms(), "code": 400, "reason": "bad json"},
            )
            return
        eid = doc.get("event_id", "") if isinstance(doc, dict) else ""
        rec = self.devices.get(ident)
        if rec is None or ident not in self.members:
            self.publish(
                self.topic(ident, "twin/update/result"),
                {
                    "event_id": eid,
                    "timestamp": _ms(),
                    "code": 404,
                    "reason": "update rejected due to the device is not existed",
                },
            )
            return
        known = {k: t.type for k, t in rec.twins.items()}
        problems = validate_twin_update(doc, known)
        for key, msg in doc.get("twin", {}).items() if isinstance(doc.get("twin"), dict) else ():
            if isinstance(msg, dict):
                meta = msg.get("metadata") or {}
                ttype = meta.get("type", "") if isinstance(meta, dict) else ""
                if key in known and known[key] and ttype and ttype != known[key]:
                    problems.append(f"twin {key}: type {ttype!r} differs from the twin's {known[key]!r}")
        if problems:
            self.violations.extend(f"{topic}: {p}" for p in problems)
            self.publish(
                self.topic(ident, "twin/update/result"),
                {"event_id": eid, "timestamp": _ms(), "code": 400, "reason": "; ".join(problems)},
            )
            return
        if ident in self.refuse_next:
            code, reason = self.refuse_next.pop(ident)
            self.publish(
                self.topic(ident, "twin/update/result"),
                {"event_id": eid, "timestamp": _ms(), "code": code, "reason": reason},
            )
            return
        now = _ms()
        result: dict[str, Any] = {}
        document: dict[str, Any] = {}
        for key, msg in doc["twin"].items():
            twin = rec.twins.get(key)
            last = (
                None
                if twin is None
                else {"actual": {"value": twin.actual}}
                if twin.actual is not None
                else {}
            )
            if twin is None:
                ttype = (msg.get("metadata") or {}).get("type", "") or "string"
                twin = rec.twins[key] = Twin(type=ttype)
            if "actual" in msg:
                twin.actual = msg["actual"]["value"]
                twin.actual_version += 1
            if "expected" in msg:
                twin.expected = msg["expected"]["value"]
            entry: dict[str, Any] = {"optional": True, "metadata": {"type": twin.type}}
            if twin.actual is not None:
                entry["actual"] = {"value": twin.actual, "metadata": {"timestamp": now}}
            result[key] = entry
            document[key] = {"last": last, "current": entry}
        self.updates.append((ident, doc))
        self.publish(
            self.topic(ident, "twin/update/result"), {"event_id": eid, "timestamp": now, "twin": result}
        )
        self.publish(
            self.topic(ident, "twin/update/document"), {"event_id": eid, "timestamp": now, "twin": document}
        )
        self._publish_delta(rec)

    def _publish_delta(self, rec: DeviceRecord) -> None:
        now = _ms()
        twins: dict[str, Any] = {}
        delta: dict[str, str] = {}
        for key, t in rec.twins.items():
            entry: dict[str, Any] = {"optional": True, "metadata": {"type": t.type}}
            if t.expected:
                entry["expected"] = {"value": t.expected, "metadata": {"timestamp": now}}
            if t.actual is not None:
                entry["actual"] = {"value": t.actual, "metadata": {"timestamp": now}}
            twins[key] = entry
            if t.expected and t.expected != t.actual:
                delta[key] = t.expected
        if delta:
            body = {"event_id": str(uuid.uuid4()), "timestamp": now, "twin": twins, "delta": delta}
            self.publish(self.topic(rec.ident, "twin/update/delta"), body)

    def _twin_get(self, topic: str, ident: str, payload: bytes) -> None:
        doc = self._json(topic, payload)
        eid = doc.get("event_id", "") if isinstance(doc, dict) else ""
        rec = self.devices.get(ident)
        if rec is None:
            self.publish(
                self.topic(ident, "twin/get/result"),
                {"event_id": eid, "timestamp": _ms(), "code": 404, "reason": "device not found"},
            )
            return
        twins: dict[str, Any] = {}
        for key, t in rec.twins.items():
            entry: dict[str, Any] = {"optional": True, "metadata": {"type": t.type}}
            if t.expected:
                entry["expected"] = {"value": t.expected}
            if t.actual is not None:
                entry["actual"] = {"value": t.actual}
            twins[key] = entry
        self.publish(
            self.topic(ident, "twin/get/result"), {"event_id": eid, "timestamp": _ms(), "twin": twins}
        )

    def _state_update(self, topic: str, ident: str, payload: bytes) -> None:
        doc = self._json(topic, payload)
        if not isinstance(doc, dict):
            return
        state = doc.get("state")
        if not isinstance(state, str) or state.lower() not in STATES:
            self.violations.append(f"{topic}: state {state!r} is not accepted (dropped silently by EdgeCore)")
            return
        if not isinstance(doc.get("timestamp", 0), int):
            self.violations.append(f"{topic}: timestamp is not an integer")
        rec = self.devices.get(ident)
        if rec is None:
            return
        rec.state = state.lower()
        self.states.append((ident, rec.state))
        online = rec.state in ("online", "ok")
        self.publish(
            self.topic(ident, "state/update/result"),
            {
                "event_id": str(uuid.uuid4()),
                "timestamp": _ms(),
                "device": {
                    "name": rec.name,
                    "state": rec.state,
                    "lastOnlineTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) if online else "",
                },
            },
        )
