"""The device service: what EdgeX's device SDK does around a driver.

A :class:`DeviceService` holds one connector and the devices it serves. It resolves a source (a
device resource or a device command) to resources, asks the connector for raw values, applies the
profile's transforms, assertion and mappings, and publishes one columnar batch per read on the bus
topic ``edgex/events/device/{service}/{profile}/{device}/{source}``. Writes go the other way: parse,
check against the profile (read/write, minimum, maximum), inverse-transform, write.

The AutoEvent scheduler runs one task per (device, AutoEvent). Each keeps an absolute deadline
(``deadline += interval``), so a slow read delays nothing but itself and missed intervals are counted,
not queued. A device that fails ``failure_threshold`` reads in a row goes ``DOWN`` and is retried with
capped, jittered exponential backoff until it answers; then it is ``UP`` again, with no restart.
``onChange`` follows EdgeX: an event is sent only if some reading differs from the last one sent
(string compare, as EdgeX 3.1), or, with ``onChangeThreshold``, moved more than the threshold from the
last value sent (EdgeX 4.0).

Devices that push (a connector with ``supports_push``: MQTT devices, OPC-UA subscriptions) are
subscribed before the connector opens. Each pushed message goes through the same transforms,
assertion and mappings as a read, at once (so a message that does not fit is refused whole, to the
connector), and waits in a buffer; a task hands the buffer to the bus, one batch per
``(device, source)`` topic, as soon as the loop is free (after ``push_linger`` seconds, if set). At most
``push_capacity`` readings wait; beyond that, pushed readings are dropped and counted per device
(``push_dropped``) until the bus takes the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeflow.bus import event_topic
from edgeflow.connector import CommandValue, Connector, DeviceHealth
from edgeflow.errors import ConnectorError, DeviceOfflineError, ValueFormatError, WriteRejectedError
from edgeflow.model import ReadingBatch, SeriesTable, ValueType, format_value
from edgeflow.profiles import (
    AutoEvent,
    Device,
    DeviceCommand,
    DeviceProfile,
    DeviceResource,
    ReadPlan,
    check_write,
    go_value_string,
    parse_duration,
    transform_write,
)

__all__ = ["DeviceService", "DeviceState", "Publish", "SchedulerSettings"]

log = logging.getLogger(__name__)

#: Where a service hands each read: ``publish(topic, batch)`` (``Bus.publish`` fits).
Publish = Callable[[str, ReadingBatch], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    failure_threshold: int = 3
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    read_timeout: float = 10.0
    shift_convention: str = "v3"
    transforms: str = "float"
    #: Pushed readings waiting for the bus at most; beyond, they are dropped and counted.
    push_capacity: int = 100_000
    #: Seconds pushed readings wait to gather into bigger batches (0: until the loop is free).
    push_linger: float = 0.0


@dataclass(slots=True)
class DeviceState:
    """What the service knows of one device's health."""

    name: str
    health: DeviceHealth = DeviceHealth.UNKNOWN
    consecutive_failures: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    missed_intervals: int = 0
    events_published: int = 0
    events_suppressed: int = 0
    last_error: str = ""
    retry_at: float = 0.0
    went_down: int = 0
    events_pushed: int = 0
    push_dropped: int = 0


@dataclass(slots=True)
class _Source:
    name: str
    resources: list[DeviceResource]
    command: DeviceCommand | None = None
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _PushSource:
    """A (device, source) that pushes, resolved once: its topic, and per resource its read plan and
    (once interned) its series id."""

    dev: Device
    profile: DeviceProfile
    src: _Source
    topic: str
    by_name: dict[str, tuple[DeviceResource, ReadPlan]]
    sids: dict[str, int] = field(default_factory=dict)


class _Columns:
    """Readings gathered column by column before they become one :class:`ReadingBatch`."""

    __slots__ = ("objects", "origins", "series", "values")

    def __init__(self) -> None:
        self.origins: list[int] = []
        self.values: list[float] = []
        self.series: list[int] = []
        self.objects: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.origins)

    def extend(self, rows: Sequence[tuple[int, int, Any, bool]]) -> None:
        """:meth:`add` for each ``(sid, origin, value, numeric)``."""
        origins, values, series, objects = self.origins, self.values, self.series, self.objects
        for sid, origin, value, numeric in rows:
            if numeric:
                values.append(float(value))
                if objects is not None:
                    objects.append(None)
            else:
                if objects is None:
                    objects = self.objects = [None] * len(values)
                objects.append(value)
                values.append(np.nan)
            origins.append(origin)
            series.append(sid)

    def add(self, sid: int, origin: int, value: Any, numeric: bool) -> None:
        if numeric:
            if self.objects is not None:
                self.objects.append(None)
            self.values.append(float(value))
        else:
            if self.objects is None:
                self.objects = [None] * len(self.values)
            self.objects.append(value)
            self.values.append(np.nan)
        self.origins.append(origin)
        self.series.append(sid)

    def batch(self, table: SeriesTable) -> ReadingBatch:
        return _split(table, {"": self})[0][1]


def _split(table: SeriesTable, groups: Mapping[str, _Columns]) -> list[tuple[str, ReadingBatch]]:
    """One batch per group, as views of one set of arrays (one allocation per column, not per group)."""
    origins: list[int] = []
    values: list[float] = []
    series: list[int] = []
    objects: list[Any] | None = None
    bounds: list[tuple[str, int, int, bool]] = []
    for key, cols in groups.items():
        start = len(origins)
        origins += cols.origins
        values += cols.values
        series += cols.series
        if cols.objects is not None:
            if objects is None:
                objects = [None] * start
            objects += cols.objects
        elif objects is not None:
            objects += [None] * len(cols)
        bounds.append((key, start, len(origins), cols.objects is not None))
    o = np.asarray(origins, np.int64)
    v = np.asarray(values, np.float64)
    sr = np.asarray(series, np.int32)
    obj = None
    if objects is not None:
        obj = np.empty(len(objects), dtype=object)
        obj[:] = objects
    return [
        (key, ReadingBatch(table, o[a:b], v[a:b], sr[a:b], obj[a:b] if obj is not None and has else None))
        for key, a, b, has in bounds
    ]


class DeviceService:
    """One connector and its devices, polled by AutoEvents and published on the bus."""

    def __init__(
        self,
        service: str,
        connector: Connector,
        publish: Publish,
        table: SeriesTable,
        *,
        settings: SchedulerSettings | None = None,
        clock: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
    ) -> None:
        self.service = service
        self.connector = connector
        self.publish = publish
        self.table = table
        self.settings = settings or SchedulerSettings()
        self.clock = clock
        self._rng = rng or random.Random()
        self.states: dict[str, DeviceState] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_sent: dict[tuple[str, str], dict[str, tuple[str, float | None]]] = {}
        self._opened = False
        self._stopping = False
        self._plans: dict[tuple[str, str, str | None], ReadPlan] = {}
        self._push_sources: dict[tuple[str, str], _PushSource] = {}
        self._push_pending: dict[str, _Columns] = {}
        self._push_count = 0
        self._push_wanted = asyncio.Event()
        self._push_closing = asyncio.Event()
        self._push_task: asyncio.Task[None] | None = None
        self._push_full = False

    # -- set-up ---------------------------------------------------------------------------------

    def add_device(self, device: Device, profile: DeviceProfile) -> None:
        self.connector.add_device(device, profile)
        self.states[device.name] = DeviceState(device.name)

    def _source(self, device: str, source: str) -> tuple[Device, DeviceProfile, _Source]:
        dev, profile = self.connector.device(device)
        cmd = profile.command(source)
        if cmd is not None:
            resources = [profile.resource(op.device_resource) for op in cmd.resource_operations]
            return dev, profile, _Source(source, resources, cmd, dict(cmd.tags))
        try:
            return dev, profile, _Source(source, [profile.resource(source)])
        except KeyError:
            raise ConnectorError(f"no resource or command {source!r}", device=device) from None

    # -- reads ----------------------------------------------------------------------------------

    async def read(self, device: str, source: str) -> ReadingBatch:
        """Read ``source`` of ``device`` now (a GET command) and return it as a batch, transformed."""
        dev, profile, src = self._source(device, source)
        readable = [r for r in src.resources if r.properties.readable]
        if not readable:
            raise ConnectorError(f"{source!r} has nothing readable", device=device)
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races
        # with the read finishing, and the scheduler's stop() would then wait forever.
        async with asyncio.timeout(self.settings.read_timeout):
            values = await self.connector.read(device, readable)
        return self._to_batch(dev, profile, src, readable, values)

    def _to_batch(
        self,
        dev: Device,
        profile: DeviceProfile,
        src: _Source,
        resources: Sequence[DeviceResource],
        values: Sequence[CommandValue],
    ) -> ReadingBatch:
        if len(values) != len(resources):
            raise ConnectorError(
                f"connector returned {len(values)} values for {len(resources)} resources", device=dev.name
            )
        now = self.clock()
        cols = _Columns()
        for res, cv in zip(resources, values, strict=True):
            cols.add(*self._reading(dev, profile, src, res, cv, now))
        return cols.batch(self.table)

    def _plan(self, profile: DeviceProfile, res: DeviceResource, command: str | None) -> ReadPlan:
        key = (profile.name, res.name, command)
        plan = self._plans.get(key)
        if plan is None:
            s = self.settings
            plan = ReadPlan(
                profile, res, command=command, shift_convention=s.shift_convention, mode=s.transforms
            )
            self._plans[key] = plan
        return plan

    def _reading(
        self,
        dev: Device,
        profile: DeviceProfile,
        src: _Source,
        res: DeviceResource,
        cv: CommandValue,
        now: int,
    ) -> tuple[int, int, Any, bool]:
        """One raw value as a reading: ``(series id, origin, value, numeric)``, transformed, asserted and
        mapped as device-sdk-go does."""
        command = src.command.name if src.command is not None else None
        value, vt, failed = self._plan(profile, res, command).apply(cv.value)
        if failed:
            raise _assertion_error(dev.name, res, vt, value)
        sid = self.table.intern(dev.name, res.name, profile.name, vt, res.properties.units, src.name)
        return sid, cv.origin or now, value, _numeric(vt, value)

    def _changed(self, key: tuple[str, str], ae: AutoEvent, batch: ReadingBatch) -> bool:
        """EdgeX onChange: whether any reading differs from the last one sent (updating the baseline)."""
        last = self._last_sent.setdefault(key, {})
        changed = False
        threshold = ae.on_change_threshold
        for i in range(len(batch)):
            info = self.table.info(int(batch.series[i]))
            value = batch.value_at(i)
            text = _value_text(info.value_type, value)
            num = float(value) if _numeric(info.value_type, value) else None
            prev = last.get(info.resource)
            if prev is None:
                changed = True
            elif threshold is not None and num is not None and prev[1] is not None:
                if abs(num - prev[1]) > threshold:
                    changed = True
                else:
                    continue  # baseline stays at the last value sent
            elif prev[0] != text:
                changed = True
            else:
                continue
            last[info.resource] = (text, num)
        return changed

    async def poll_once(self, device: str, ae: AutoEvent) -> bool:
        """One AutoEvent read: read, filter by onChange, publish. Returns whether an event was sent.
        Raises ConnectorError on failure (the scheduler counts it)."""
        batch = await self.read(device, ae.source_name)
        state = self.states[device]
        if ae.on_change and not self._changed((device, ae.source_name), ae, batch):
            state.events_suppressed += 1
            return False
        _, profile = self.connector.device(device)
        await self.publish(event_topic(self.service, profile.name, device, ae.source_name), batch)
        state.events_published += 1
        return True

    # -- pushed readings ------------------------------------------------------------------------

    def _push(self, device: str, source: str, values: Sequence[CommandValue]) -> None:
        """The :data:`~edgeflow.connector.PushSink` the service gives a pushing connector."""
        ps = self._push_sources.get((device, source))
        if ps is None:
            dev, profile = self.connector.device(device)
            if profile.command(source) is None and not any(
                r.name == source for r in profile.device_resources
            ):
                # An event name of the connector's own (an MQTT topic mapping): any readable resource.
                readable = [r for r in profile.device_resources if r.properties.readable]
                src = _Source(source, readable)
            else:
                dev, profile, src = self._source(device, source)
            topic = event_topic(self.service, profile.name, device, source)
            command = src.command.name if src.command is not None else None
            plans = {r.name: (r, self._plan(profile, r, command)) for r in src.resources}
            ps = _PushSource(dev, profile, src, topic, plans)
            self._push_sources[(device, source)] = ps
        state = self.states[device]
        now = self.clock()
        readings = []
        for cv in values:
            entry = ps.by_name.get(cv.resource)
            if entry is None:
                raise ConnectorError(f"{cv.resource!r} is not part of {source!r}", device=device)
            res, plan = entry
            value, vt, failed = plan.apply(cv.value)
            if failed:
                raise _assertion_error(device, res, vt, value)
            sid = ps.sids.get(res.name)
            if sid is None:
                sid = self.table.intern(device, res.name, ps.profile.name, vt, res.properties.units, source)
                ps.sids[res.name] = sid
            numeric = (type(value) is float and (vt is _FLOAT64 or vt is _FLOAT32)) or _numeric(vt, value)
            readings.append((sid, cv.origin or now, value, numeric))
        if self._push_count + len(readings) > self.settings.push_capacity:
            state.push_dropped += len(readings)
            if not self._push_full:
                self._push_full = True
                log.warning(
                    "%s: %d pushed readings wait for the bus; dropping pushed readings until it catches up",
                    self.service,
                    self._push_count,
                )
            return
        cols = self._push_pending.get(ps.topic)
        if cols is None:
            cols = self._push_pending[ps.topic] = _Columns()
        cols.extend(readings)
        self._push_count += len(readings)
        state.events_pushed += 1
        if state.health is not DeviceHealth.UP:
            if state.health is DeviceHealth.DOWN:
                log.warning("device %s is back online", device)
            state.health = DeviceHealth.UP
            state.consecutive_failures = 0
            state.retry_at = 0.0
        self._push_wanted.set()

    async def _flush_push(self) -> None:
        """Hand every pushed reading waiting to the bus: one batch per topic."""
        self._push_wanted.clear()
        pending, self._push_pending = self._push_pending, {}
        self._push_count = 0
        if pending:
            for topic, batch in _split(self.table, pending):
                await self.publish(topic, batch)
        if self._push_full and not self._push_pending:
            self._push_full = False
            dropped = sum(st.push_dropped for st in self.states.values())
            log.warning(
                "%s: the bus caught up with pushed readings (%d dropped so far)", self.service, dropped
            )

    async def _push_loop(self) -> None:
        linger = self.settings.push_linger
        while True:
            await self._push_wanted.wait()
            if linger > 0 and not self._push_closing.is_set():
                with contextlib.suppress(TimeoutError):  # a stop cuts the wait short
                    await asyncio.wait_for(self._push_closing.wait(), linger)
            try:
                await self._flush_push()
            except Exception:  # a failed hand-off must not stop pushed readings for good
                log.exception("%s: handing pushed readings to the bus failed", self.service)
            if self._push_closing.is_set() and not self._push_pending:
                return

    # -- scheduling -----------------------------------------------------------------------------

    def _failed(self, state: DeviceState, exc: BaseException, now: float) -> None:
        state.reads_failed += 1
        state.consecutive_failures += 1
        state.last_error = str(exc) or type(exc).__name__
        s = self.settings
        if state.consecutive_failures >= s.failure_threshold:
            if state.health is not DeviceHealth.DOWN:
                state.health = DeviceHealth.DOWN
                state.went_down += 1
                log.warning(
                    "device %s is offline after %d failures: %s", state.name, state.consecutive_failures, exc
                )
            exp = state.consecutive_failures - s.failure_threshold
            delay = min(s.backoff_max, s.backoff_initial * (2 ** min(exp, 30)))
            delay *= 0.8 + 0.4 * self._rng.random()
            state.retry_at = now + delay
        else:
            log.info("device %s read failed (%d in a row): %s", state.name, state.consecutive_failures, exc)

    def _succeeded(self, state: DeviceState) -> None:
        if state.health is DeviceHealth.DOWN:
            log.warning("device %s is back online", state.name)
        state.health = DeviceHealth.UP
        state.consecutive_failures = 0
        state.reads_ok += 1
        state.retry_at = 0.0

    async def _autoevent_loop(self, device: str, ae: AutoEvent) -> None:
        loop = asyncio.get_running_loop()
        interval = parse_duration(ae.interval)
        state = self.states[device]
        deadline = loop.time()
        while not self._stopping:
            now = loop.time()
            if state.health is DeviceHealth.DOWN and state.retry_at > deadline:
                deadline = state.retry_at
            if deadline > now:
                await asyncio.sleep(deadline - now)
            try:
                await self.poll_once(device, ae)
            except asyncio.CancelledError:
                raise
            except (ConnectorError, TimeoutError, ValueFormatError) as exc:
                self._failed(state, exc, loop.time())
            except Exception as exc:  # a bug must not kill the polling loop forever
                log.exception("unexpected error polling %s/%s", device, ae.source_name)
                self._failed(state, exc, loop.time())
            else:
                self._succeeded(state)
            deadline += interval
            now = loop.time()
            if deadline < now:
                missed = int((now - deadline) // interval) + 1
                state.missed_intervals += missed
                deadline += missed * interval

    async def start(self) -> None:
        """Subscribe every device of a pushing connector, open the connector and start every AutoEvent."""
        self._stopping = False
        if self.connector.supports_push:
            for name, (dev, _) in self.connector.devices.items():
                if dev.admin_state == "LOCKED":
                    log.info("device %s is LOCKED; what it pushes is not taken", name)
                    continue
                await self.connector.subscribe(name, self._push)
            # Running before open: a broker may deliver a persistent session's backlog at once.
            self._push_closing.clear()
            self._push_task = asyncio.create_task(self._push_loop(), name=f"push:{self.service}")
        try:
            await self.connector.open()
        except BaseException:
            if self._push_task is not None:
                self._push_task.cancel()
                self._push_task = None
            raise
        self._opened = True
        for name, (dev, _) in self.connector.devices.items():
            if dev.admin_state == "LOCKED":
                log.info("device %s is LOCKED; its AutoEvents do not run", name)
                continue
            for ae in dev.auto_events:
                task = asyncio.create_task(
                    self._autoevent_loop(name, ae), name=f"autoevent:{name}/{ae.source_name}"
                )
                self._tasks.append(task)

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._opened:
            await self.connector.close()
            self._opened = False
        if self._push_task is not None:
            # The connector pushes no more: hand what it pushed to the bus, then end the task.
            self._push_closing.set()
            self._push_wanted.set()
            await self._push_task
            self._push_task = None

    # -- writes ---------------------------------------------------------------------------------

    async def write(self, device: str, source: str, values: Mapping[str, Any]) -> None:
        """A SET command: ``values`` maps resource names to values (typed, or EdgeX value strings).
        Resources of a command left out take the operation's ``defaultValue``."""
        state = self.states.get(device)
        if state is not None and state.health is DeviceHealth.DOWN:
            raise DeviceOfflineError("device is offline", device=device)
        _, profile, src = self._source(device, source)
        cmd = profile.command(source)
        defaults = {op.device_resource: op.default_value for op in cmd.resource_operations} if cmd else {}
        unknown = set(values) - {r.name for r in src.resources}
        if unknown:
            raise WriteRejectedError(f"{sorted(unknown)} not part of {source!r}", device=device)
        out: list[tuple[DeviceResource, Any]] = []
        for res in src.resources:
            if res.name in values:
                raw = values[res.name]
            elif defaults.get(res.name) is not None:
                raw = defaults[res.name]
            elif res.properties.default_value is not None:
                raw = res.properties.default_value
            else:
                raise WriteRejectedError("no value and no defaultValue", device=device, resource=res.name)
            try:
                typed = check_write(res, raw, mode=self.settings.transforms)
                raw_out = transform_write(
                    res, typed, shift_convention=self.settings.shift_convention, mode=self.settings.transforms
                )
            except WriteRejectedError as exc:
                raise WriteRejectedError(exc.message, device=device, resource=res.name) from exc
            out.append((res, raw_out))
        async with asyncio.timeout(self.settings.read_timeout):
            await self.connector.write(device, out)


_FLOAT64 = ValueType.FLOAT64
_FLOAT32 = ValueType.FLOAT32


def _assertion_error(device: str, res: DeviceResource, vt: ValueType, value: Any) -> ConnectorError:
    return ConnectorError(
        f"assertion failed: {go_value_string(vt, value)!r} != {res.properties.assertion!r}",
        device=device,
        resource=res.name,
    )


def _numeric(vt: ValueType, value: Any) -> bool:
    if vt is ValueType.BOOL:
        return isinstance(value, bool)
    if vt.is_integer:
        return isinstance(value, int) and abs(value) <= 2**53
    return vt.is_float and isinstance(value, int | float)


def _value_text(vt: ValueType, value: Any) -> str:
    if vt is ValueType.STRING:
        return str(value)
    try:
        return format_value(vt, value)
    except ValueFormatError:
        return repr(value)
