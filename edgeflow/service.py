"""The device service: what EdgeX's device SDK does around a driver.

A :class:`DeviceService` holds one connector and the devices it serves. It resolves a source (a
device resource or a device command) to resources, asks the connector for raw values, applies the
profile's transforms, assertion and mappings, and publishes one columnar batch per read on the bus
topic ``edgex/events/device/{service}/{profile}/{device}/{source}``. Writes go the other way: parse,
check against the profile (read/write, minimum, maximum), inverse-transform, write.

The AutoEvent scheduler runs one task per (device, AutoEvent). Each keeps an absolute deadline
(``deadline += interval``, in integer nanoseconds), so a slow read delays nothing but itself and missed
intervals are counted, not queued. All of its time, sleeps and read timeouts come from an injected
:class:`~edgeflow.connector.Clock` (the real one by default); with :class:`edgeflow.testing.ManualClock`
a test moves time by hand and every poll happens exactly when it is due. A device that fails
``failure_threshold`` reads in a row goes ``DOWN`` and is retried with capped, jittered exponential
backoff until it answers; then it is ``UP`` again, with no restart.
``onChange`` follows EdgeX: an event is sent only if some reading differs from the last one sent
(string compare, as EdgeX 3.1), or, with ``onChangeThreshold``, moved more than the threshold from the
last value sent (EdgeX 4.0).

Connectors that push (:attr:`~edgeflow.connector.Connector.supports_push`: MQTT devices, OPC-UA
subscriptions) are subscribed for every unlocked device before the connector opens (a broker may deliver
a persistent session's backlog at once). Each pushed message goes through the same transforms, assertion
and mappings as a read, at once (a message that does not fit is refused whole: the sink raises, and the
connector counts it), and waits in a buffer; a task hands the buffer to the bus, one batch per
``(device, source)`` topic, as soon as the loop is free (after ``push_linger`` seconds, if set). At most
``push_capacity`` readings wait; beyond that, pushed readings are dropped and counted per device
(``push_dropped``) until the bus takes the backlog. An AutoEvent the connector pushes is not polled; when
the connector stops pushing it (it says so through
:meth:`~edgeflow.connector.Connector.state_changed`) the AutoEvent is polled again at once, with its
EdgeX meaning. Values whose quality is not good are flagged or dropped, never published as good, and
counted per device.
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

from edgeflow.bus import event_topic
from edgeflow.connector import (
    SYSTEM_CLOCK,
    Clock,
    CommandValue,
    Connector,
    DeviceHealth,
    Quality,
    QualityAction,
    SystemClock,
    as_clock,
)
from edgeflow.errors import ConnectorError, DeviceOfflineError, ValueFormatError, WriteRejectedError
from edgeflow.model import (
    EXACT_INT,
    ReadingBatch,
    SeriesTable,
    ValueType,
    batch_from_values,
    format_value,
    is_numeric_value,
)
from edgeflow.profiles import (
    AutoEvent,
    Device,
    DeviceCommand,
    DeviceProfile,
    DeviceResource,
    ReadPlan,
    check_write,
    go_value_string,
    process_read,
    transform_write,
)

__all__ = ["DeviceService", "DeviceState", "Publish", "SchedulerSettings"]

log = logging.getLogger(__name__)

#: Seconds a poll in flight at :meth:`DeviceService.stop` may take to finish and publish (at most the
#: read timeout): what a device answered just before a SIGINT is shipped, not dropped.
STOP_GRACE = 2.0

#: Seconds without a missed AutoEvent interval after which polling that fell behind is said to have
#: caught up (logged once, with how many intervals were missed in between).
CAUGHT_UP = 10.0

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
    #: AutoEvents fire on multiples of their interval on the wall clock (after the first read, at
    #: once): the devices of one interval are read together, and their readings share a router step.
    align: bool = True


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
    #: While DOWN: the clock's :meth:`~edgeflow.connector.Clock.monotonic_ns` before which no read is tried.
    retry_at_ns: int = 0
    went_down: int = 0
    events_pushed: int = 0  # pushed messages taken
    readings_pushed: int = 0
    push_dropped: int = 0  # pushed readings dropped because the push buffer was full
    readings_uncertain: int = 0
    readings_bad: int = 0
    readings_dropped_quality: int = 0  # uncertain or bad readings dropped by the connector's policy
    offline_seconds: float = 0.0  # time spent DOWN, closed periods
    down_since: float | None = None  # time.monotonic() when it went DOWN

    def offline_total(self, now: float | None = None) -> float:
        """Seconds spent DOWN so far, the current outage included."""
        if self.down_since is None:
            return self.offline_seconds
        return self.offline_seconds + max(0.0, (time.monotonic() if now is None else now) - self.down_since)

    def counters(self) -> dict[str, float]:
        """Every count, for metrics (``device_<name>_total``)."""
        return {
            "reads_ok": self.reads_ok,
            "reads_failed": self.reads_failed,
            "missed_intervals": self.missed_intervals,
            "events_published": self.events_published,
            "events_suppressed": self.events_suppressed,
            "went_down": self.went_down,
            "events_pushed": self.events_pushed,
            "readings_pushed": self.readings_pushed,
            "push_dropped": self.push_dropped,
            "readings_uncertain": self.readings_uncertain,
            "readings_bad": self.readings_bad,
            "readings_dropped_quality": self.readings_dropped_quality,
            "offline_seconds": self.offline_total(),
        }


@dataclass(slots=True)
class _Source:
    name: str
    resources: list[DeviceResource]
    command: DeviceCommand | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    #: resource name -> the mappings that apply to it when read through this source (looked up once)
    mappings: dict[str, Mapping[str, str]] = field(default_factory=dict)
    #: every resource of the profile by name (pushed values name theirs)
    by_name: dict[str, DeviceResource] = field(default_factory=dict)
    #: the readable resources, worked out on the first read (the profile does not change)
    readable: list[DeviceResource] | None = None
    #: per readable resource, its read plan and series id (-1 until its first good value is interned)
    plans: list[ReadPlan] | None = None
    sids: list[int] | None = None
    #: the AutoEvent topic of this source (worked out on the first publish)
    topic: str = ""
    #: the Python type every value of a read has when the read is one numeric column as is: ``float``
    #: (every readable resource's series is a float type), ``int`` (an integer type exact in a float64),
    #: ``object`` (neither); None until each series has been interned
    column: type | None = None


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


@dataclass(slots=True)
class _Pending:
    """Pushed readings of one topic waiting for the bus, column by column."""

    device: str
    origins: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    series: list[int] = field(default_factory=list)


class DeviceService:
    """One connector and its devices, polled by AutoEvents and published on the bus.

    ``clock`` schedules the AutoEvents, times reads out and stamps origins (it is handed to the connector
    too); a bare function returning epoch nanoseconds only replaces the origin stamp.
    """

    def __init__(
        self,
        service: str,
        connector: Connector,
        publish: Publish,
        table: SeriesTable,
        *,
        settings: SchedulerSettings | None = None,
        clock: Clock | Callable[[], int] = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.service = service
        self.connector = connector
        self.publish = publish
        self.table = table
        self.settings = settings or SchedulerSettings()
        self.clock = as_clock(clock)
        connector.clock = self.clock
        self._rng = rng or random.Random()
        self.states: dict[str, DeviceState] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._device_tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._polling: set[asyncio.Task[Any]] = set()  # AutoEvent tasks inside a poll right now
        self._settled = asyncio.Event()  # set while no poll is in flight
        self._settled.set()
        # Real clock: the loops asleep until one instant (an aligned tick), in the order they went to
        # sleep, woken by one timer in that order — so every tick reads its devices in the same order,
        # and each device's reads stay as evenly spaced as its interval (cheap to encode).
        self._ticks: dict[int, list[asyncio.Future[bool]]] = {}
        self._wall_offset: int | None = None  # clock.time_ns() - clock.monotonic_ns(), taken once
        self._last_sent: dict[tuple[str, str], dict[str, tuple[str, float | None]]] = {}
        self._sources: dict[tuple[str, str], _Source] = {}
        self._opened = False
        self._stopping = False
        self._plans: dict[tuple[str, str, str | None], ReadPlan] = {}
        self._push_sources: dict[tuple[str, str], _PushSource] = {}
        self._push_pending: dict[str, _Pending] = {}
        self._push_count = 0
        self._push_wanted = asyncio.Event()
        self._push_closing = asyncio.Event()
        self._push_task: asyncio.Task[None] | None = None
        self._push_full = False
        # per device: set (and replaced) when the connector says its push or health state changed
        self._wakers: dict[str, _Waker] = {}
        self._behind = _Behind()
        connector.add_state_listener(self._connector_state_changed)

    # -- set-up ---------------------------------------------------------------------------------

    def add_device(self, device: Device, profile: DeviceProfile) -> None:
        self.connector.add_device(device, profile)
        self.states[device.name] = DeviceState(device.name)

    async def add_running_device(self, device: Device, profile: DeviceProfile) -> None:
        """Take a device into service while the service runs: its AutoEvents start (and a pushing
        connector subscribes it) at once; every other device is untouched. Before :meth:`start` this is
        :meth:`add_device`."""
        self.add_device(device, profile)
        if not self._opened or device.admin_state == "LOCKED":
            return
        if self.connector.supports_push:
            try:
                await self.connector.subscribe(device.name, self._push)
            except ConnectorError as exc:
                log.error("device %s: cannot subscribe (%s); its AutoEvents are polled", device.name, exc)
        self._start_autoevents(device)

    async def remove_device(self, name: str) -> None:
        """Take a device out of service: its AutoEvents stop, the connector forgets it, its state goes.
        Every other device keeps its connection and state."""
        tasks = self._device_tasks.pop(name, [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = [t for t in self._tasks if t not in tasks]
        self.connector.remove_device(name)
        self.states.pop(name, None)
        self._wakers.pop(name, None)
        for cache in (self._sources, self._last_sent, self._push_sources):
            for key in [k for k in cache if k[0] == name]:
                del cache[key]

    def _start_autoevents(self, dev: Device) -> None:
        for ae in dev.auto_events:
            task = asyncio.create_task(
                self._autoevent_loop(dev.name, ae), name=f"autoevent:{dev.name}/{ae.source_name}"
            )
            self._tasks.append(task)
            self._device_tasks.setdefault(dev.name, []).append(task)

    def _source(self, device: str, source: str) -> tuple[Device, DeviceProfile, _Source]:
        """The resources of a source, resolved once per (device, source): reading a command of a
        thousand resources must not look each of them up in the profile each time."""
        dev, profile = self.connector.device(device)
        cached = self._sources.get((device, source))
        if cached is not None:
            return dev, profile, cached
        by_name: dict[str, DeviceResource] = {}
        for r in profile.device_resources:
            by_name.setdefault(r.name, r)
        cmd = profile.command(source)
        if cmd is not None:
            resources = [by_name[op.device_resource] for op in cmd.resource_operations]
            src = _Source(source, resources, cmd, dict(cmd.tags))
        elif source in by_name:
            src = _Source(source, [by_name[source]])
        else:
            raise ConnectorError(f"no resource or command {source!r}", device=device)
        src.by_name = by_name
        self._sources[(device, source)] = src
        return dev, profile, src

    def _mappings(self, profile: DeviceProfile, src: _Source, resource: str) -> Mapping[str, str]:
        found = src.mappings.get(resource)
        if found is None:
            command = src.command.name if src.command is not None else None
            found = src.mappings[resource] = profile.mappings_for(resource, command)
        return found

    # -- reads ----------------------------------------------------------------------------------

    async def read(self, device: str, source: str) -> ReadingBatch:
        """Read ``source`` of ``device`` now (a GET command) and return it as a batch, transformed."""
        dev, profile, src = self._source(device, source)
        readable = src.readable
        if readable is None:
            readable = src.readable = [r for r in src.resources if r.properties.readable]
        if not readable:
            raise ConnectorError(f"{source!r} has nothing readable", device=device)
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races
        # with the read finishing, and the scheduler's stop() would then wait forever.
        async with self.clock.timeout(self.settings.read_timeout):
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
        now = self.clock.time_ns()
        origins: list[int] = []
        typed: list[Any] = []
        series: list[int] = []
        command = src.command.name if src.command is not None else None
        plans, sids = src.plans, src.sids
        if plans is None or sids is None or resources is not src.readable:
            plans = [self._plan(profile, r, command) for r in resources]
            sids = [-1] * len(resources)
            if resources is src.readable:  # the hot path: every AutoEvent read of this source
                src.plans, src.sids = plans, sids
        table = self.table
        flagged_any = False
        for k, cv in enumerate(values):
            res = resources[k]
            if cv.quality is Quality.GOOD:
                value, vt, failed = plans[k].apply(cv.value)
                if failed:
                    raise _assertion_error(dev.name, res, vt, value)
                sid = sids[k]
                if sid < 0:
                    sid = sids[k] = table.intern(
                        dev.name, res.name, profile.name, vt, res.properties.units, src.name
                    )
            else:
                flagged_any = True
                flagged = self._not_good(dev.name, profile, res, cv, self._mappings(profile, src, res.name))
                if flagged is None:
                    continue
                name, value, vt = flagged
                sid = table.intern(dev.name, name, profile.name, vt, res.properties.units, src.name)
            series.append(sid)
            origins.append(cv.origin or now)
            typed.append(value)
        if src.column is None and resources is src.readable and min(sids, default=0) >= 0:
            types = [table.info(sid).value_type for sid in sids]
            if all(vt.is_float for vt in types):
                src.column = float
            elif all(vt.is_integer and max(map(abs, vt.int_range)) <= EXACT_INT for vt in types):
                src.column = int
            else:
                src.column = object
        column = src.column
        if column is not None and not flagged_any and all(type(v) is column for v in typed):
            # What batch_from_values gives here (a float of a float series, an int of an Int16 one, rides
            # in the numeric column), for the whole read at once: the common case of a fleet of sensors.
            return ReadingBatch.from_columns(table, origins, typed, series)
        return batch_from_values(table, origins, typed, series)

    def _plan(self, profile: DeviceProfile, res: DeviceResource, command: str | None) -> ReadPlan:
        """:func:`~edgeflow.profiles.process_read` for one resource, worked out once."""
        key = (profile.name, res.name, command)
        plan = self._plans.get(key)
        if plan is None:
            s = self.settings
            plan = ReadPlan(
                profile, res, command=command, shift_convention=s.shift_convention, mode=s.transforms
            )
            self._plans[key] = plan
        return plan

    def _not_good(
        self,
        device: str,
        profile: DeviceProfile,
        res: DeviceResource,
        cv: CommandValue,
        mappings: Mapping[str, str],
    ) -> tuple[str, Any, ValueType] | None:
        """An uncertain or bad value: counted, then dropped (None) or flagged as (series, value, type).
        Uncertain values keep their value under ``<resource>@uncertain``; bad ones (and uncertain ones
        without a value) become the device's status text under ``<resource>@bad``."""
        state = self.states.get(device)
        uncertain = cv.quality is Quality.UNCERTAIN
        if state is not None:
            if uncertain:
                state.readings_uncertain += 1
            else:
                state.readings_bad += 1
        if self.connector.quality_action(device, cv.quality) is QualityAction.DROP:
            if state is not None:
                state.readings_dropped_quality += 1
            return None
        if uncertain and cv.value is not None:
            s = self.settings
            result = process_read(
                profile,
                res,
                cv.value,
                shift_convention=s.shift_convention,
                mode=s.transforms,
                mappings=mappings,
            )
            return f"{res.name}@uncertain", result.value, result.value_type
        return f"{res.name}@bad", cv.status or cv.quality.value, ValueType.STRING

    def _changed(self, key: tuple[str, str], ae: AutoEvent, batch: ReadingBatch) -> bool:
        """EdgeX onChange: whether any reading differs from the last one sent (updating the baseline)."""
        last = self._last_sent.setdefault(key, {})
        changed = False
        threshold = ae.on_change_threshold
        for i in range(len(batch)):
            info = self.table.info(int(batch.series[i]))
            value = batch.value_at(i)
            text = _value_text(info.value_type, value)
            # a threshold applies to numbers; a Bool (a state) changes when its text does
            vt = info.value_type
            num = float(value) if vt.is_numeric and is_numeric_value(vt, value) else None
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
        if self.connector.pushes(device, ae):
            # the connector took this AutoEvent over while we read: its pushed values win, so the
            # series stays in the order the device produced it
            return False
        state = self.states[device]
        if ae.on_change and not self._changed((device, ae.source_name), ae, batch):
            state.events_suppressed += 1
            return False
        _, profile, src = self._source(device, ae.source_name)
        if not src.topic:
            src.topic = event_topic(self.service, profile.name, device, ae.source_name)
        await self.publish(src.topic, batch)
        state.events_published += 1
        return True

    # -- pushed readings ------------------------------------------------------------------------

    def _push(self, device: str, source: str, values: Sequence[CommandValue]) -> None:
        """The :data:`~edgeflow.connector.PushSink` the service gives a pushing connector. Raises
        :class:`ConnectorError` for values that do not fit the profile (nothing of the message is taken)."""
        ps = self._push_sources.get((device, source))
        if ps is None:
            dev, profile = self.connector.device(device)
            if profile.command(source) is None and not any(
                r.name == source for r in profile.device_resources
            ):
                # An event name of the connector's own (an MQTT topic mapping): any readable resource.
                src = _Source(source, [r for r in profile.device_resources if r.properties.readable])
            else:
                dev, profile, src = self._source(device, source)
            topic = event_topic(self.service, profile.name, device, source)
            command = src.command.name if src.command is not None else None
            plans = {r.name: (r, self._plan(profile, r, command)) for r in src.resources}
            ps = _PushSource(dev, profile, src, topic, plans)
            self._push_sources[(device, source)] = ps
        state = self.states[device]
        now = self.clock.time_ns()
        rows: list[tuple[int, int, Any]] = []
        for cv in values:
            entry = ps.by_name.get(cv.resource)
            if entry is None:
                raise ConnectorError(f"{cv.resource!r} is not part of {source!r}", device=device)
            res, plan = entry
            if cv.quality is Quality.GOOD:
                value, vt, failed = plan.apply(cv.value)
                if failed:
                    raise _assertion_error(device, res, vt, value)
                sid = ps.sids.get(res.name)
                if sid is None:
                    sid = self.table.intern(
                        device, res.name, ps.profile.name, vt, res.properties.units, source
                    )
                    ps.sids[res.name] = sid
            else:
                flagged = self._not_good(
                    device, ps.profile, res, cv, self._mappings(ps.profile, ps.src, res.name)
                )
                if flagged is None:
                    continue
                name, value, vt = flagged
                sid = self.table.intern(device, name, ps.profile.name, vt, res.properties.units, source)
            rows.append((sid, cv.origin or now, value))
        if self._push_count + len(rows) > self.settings.push_capacity:
            state.push_dropped += len(rows)
            if not self._push_full:
                self._push_full = True
                log.warning(
                    "%s: %d pushed readings wait for the bus; dropping pushed readings until it catches up",
                    self.service,
                    self._push_count,
                )
            return
        pending = self._push_pending.get(ps.topic)
        if pending is None:
            pending = self._push_pending[ps.topic] = _Pending(device)
        for sid, origin, value in rows:
            pending.series.append(sid)
            pending.origins.append(origin)
            pending.values.append(value)
        self._push_count += len(rows)
        state.events_pushed += 1
        state.readings_pushed += len(rows)
        if state.health is not DeviceHealth.UP:
            self._mark_up(state)
        self._push_wanted.set()

    async def _flush_push(self) -> None:
        """Hand every pushed reading waiting to the bus: one batch per topic."""
        self._push_wanted.clear()
        pending, self._push_pending = self._push_pending, {}
        self._push_count = 0
        for topic, p in pending.items():
            await self.publish(topic, batch_from_values(self.table, p.origins, p.values, p.series))
            self.states[p.device].events_published += 1
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
                    async with asyncio.timeout(linger):
                        await self._push_closing.wait()
            try:
                await self._flush_push()
            except Exception:  # a failed hand-off must not stop pushed readings for good
                log.exception("%s: handing pushed readings to the bus failed", self.service)
            if self._push_closing.is_set() and not self._push_pending:
                return

    # -- scheduling -----------------------------------------------------------------------------

    def _mark_down(self, state: DeviceState, reason: str) -> None:
        if state.health is DeviceHealth.DOWN:
            return
        state.health = DeviceHealth.DOWN
        state.went_down += 1
        state.down_since = time.monotonic()
        log.warning("device %s is offline: %s", state.name, reason)

    def _mark_up(self, state: DeviceState) -> None:
        if state.health is DeviceHealth.DOWN:
            log.warning("device %s is back online", state.name)
            if state.down_since is not None:
                state.offline_seconds += max(0.0, time.monotonic() - state.down_since)
        state.down_since = None
        state.health = DeviceHealth.UP
        state.consecutive_failures = 0
        state.retry_at_ns = 0

    def _failed(self, state: DeviceState, exc: BaseException, now_ns: int) -> None:
        state.reads_failed += 1
        state.consecutive_failures += 1
        state.last_error = str(exc) or type(exc).__name__
        s = self.settings
        if state.consecutive_failures >= s.failure_threshold:
            self._mark_down(state, f"{state.consecutive_failures} failures: {exc}")
            exp = state.consecutive_failures - s.failure_threshold
            delay = min(s.backoff_max, s.backoff_initial * (2 ** min(exp, 30)))
            delay *= 0.8 + 0.4 * self._rng.random()
            state.retry_at_ns = now_ns + round(delay * 1e9)
        else:
            log.info("device %s read failed (%d in a row): %s", state.name, state.consecutive_failures, exc)

    def _succeeded(self, state: DeviceState) -> None:
        self._mark_up(state)
        state.reads_ok += 1

    def _connector_state_changed(self, device: str) -> None:
        """The connector says ``device``'s link or push state changed: follow its health, wake its loops."""
        state = self.states.get(device)
        if state is None:
            return
        health = self.connector.health(device)
        if health is DeviceHealth.UP:
            self._mark_up(state)
        elif health is DeviceHealth.DOWN:
            self._mark_down(state, "the connector reports its link down")
        waker = self._wakers.pop(device, None)
        if waker is not None:
            waker.set()

    def _waker(self, device: str) -> _Waker:
        waker = self._wakers.get(device)
        if waker is None:
            waker = self._wakers[device] = _Waker()
        return waker

    async def _sleep_until(self, device: str, deadline_ns: int) -> bool:
        """Sleep until ``deadline_ns`` on the clock, or less if the connector's state for ``device``
        changes (returns True then)."""
        waker = self._waker(device)
        if type(self.clock) is SystemClock:
            # the real clock: one future, woken by a timer or by the waker (no tasks, no asyncio.wait)
            if waker.is_set():
                return True
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[bool] = loop.create_future()
            sleepers = self._ticks.get(deadline_ns)
            if sleepers is None:
                sleepers = self._ticks[deadline_ns] = []
                delay = max(0, deadline_ns - self.clock.monotonic_ns()) / 1e9
                loop.call_later(delay, self._tick, deadline_ns)
            sleepers.append(fut)
            waker.add(fut)
            try:
                return await fut
            finally:
                waker.discard(fut)
        sleeper = asyncio.ensure_future(self.clock.sleep_until(deadline_ns))
        woken = asyncio.ensure_future(waker.wait())
        try:
            await asyncio.wait((sleeper, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (sleeper, woken):
                f.cancel()
            await asyncio.gather(sleeper, woken, return_exceptions=True)
        return woken.done() and not woken.cancelled() and waker.is_set()

    def _tick(self, deadline_ns: int) -> None:
        for fut in self._ticks.pop(deadline_ns, ()):
            _resolve(fut, False)

    async def _autoevent_loop(self, device: str, ae: AutoEvent) -> None:
        clock = self.clock
        interval = ae.interval_ns
        state = self.states[device]
        deadline = clock.monotonic_ns()
        align = self.settings.align
        if self._wall_offset is None:
            self._wall_offset = clock.time_ns() - deadline
        wall_offset = self._wall_offset  # one for every loop: their ticks are the same instants
        task = asyncio.current_task()
        assert task is not None
        while not self._stopping:
            if self.connector.pushes(device, ae):
                await self._waker(device).wait()  # the connector delivers it; wait until that changes
                deadline = clock.monotonic_ns()
                continue
            if state.health is DeviceHealth.DOWN and state.retry_at_ns > deadline:
                deadline = state.retry_at_ns
            if deadline > clock.monotonic_ns() and await self._sleep_until(device, deadline):
                deadline = clock.monotonic_ns()  # woken early: the connector's state changed, look again
                continue
            self._polling.add(task)
            self._settled.clear()
            try:
                await self.poll_once(device, ae)
            except asyncio.CancelledError:
                raise
            except (ConnectorError, TimeoutError, ValueFormatError) as exc:
                self._failed(state, exc, clock.monotonic_ns())
            except Exception as exc:  # a bug must not kill the polling loop forever
                log.exception("unexpected error polling %s/%s", device, ae.source_name)
                self._failed(state, exc, clock.monotonic_ns())
            else:
                self._succeeded(state)
            finally:
                self._polling.discard(task)
                if not self._polling:
                    self._settled.set()
            # the next multiple of the interval on the wall clock, or one interval on
            deadline += interval - (deadline + wall_offset) % interval if align else interval
            now = clock.monotonic_ns()
            if deadline < now:
                # Ticks went by during the read. The interval ``now`` is in is read at once, late (as a
                # ticker that keeps one tick does: a short stall costs no reading); the intervals before
                # it had no read at all: missed, counted, not queued.
                missed = (now - deadline) // interval
                if missed:
                    state.missed_intervals += missed
                    deadline += missed * interval
                    self._behind.missed(device, missed, now)
            elif self._behind.since is not None:
                self._behind.caught_up(now)

    async def start(self) -> None:
        """Subscribe every device of a pushing connector, open the connector and start every AutoEvent."""
        self._stopping = False
        self._behind = _Behind()
        self._behind.began = self.clock.monotonic_ns()
        if self.connector.supports_push:
            for name, (dev, _) in self.connector.devices.items():
                if dev.admin_state == "LOCKED":
                    log.info("device %s is LOCKED; what it pushes is not taken", name)
                    continue
                try:
                    await self.connector.subscribe(name, self._push)
                except ConnectorError as exc:
                    log.error("device %s: cannot subscribe (%s); its AutoEvents are polled", name, exc)
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
            self._start_autoevents(dev)

    @property
    def polling(self) -> bool:
        """Whether an AutoEvent read is in flight (its readings are on the way to the bus)."""
        return bool(self._polling)

    async def settled(self) -> None:
        """Return once no AutoEvent read is in flight."""
        await self._settled.wait()

    async def stop(self) -> None:
        """Stop polling, close the connector, then publish what it pushed before it closed."""
        self._stopping = True
        self._behind.caught_up(self.clock.monotonic_ns(), stopping=True)
        busy = [t for t in self._tasks if t in self._polling]
        for t in self._tasks:
            if t not in self._polling:
                t.cancel()
        if busy:
            # A poll in flight may have its answer already: it finishes and publishes (the loop ends
            # after it), so what a device answered before the stop is not lost. Bounded by STOP_GRACE.
            _, late = await asyncio.wait(busy, timeout=min(STOP_GRACE, self.settings.read_timeout))
            for t in late:
                t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._device_tasks.clear()
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
        async with self.clock.timeout(self.settings.read_timeout):
            await self.connector.write(device, out)


class _Behind:
    """Whether AutoEvents fall behind (whole intervals go by without a read of a device), said once
    when it begins and once when it ends: an operator sees that polling could not keep up, and how much it
    missed, without a line per device and interval (``missed_intervals`` counts them per device)."""

    def __init__(self) -> None:
        self.began = 0  # monotonic ns when polling began
        self.since: int | None = None  # monotonic ns of the first miss of this episode
        self.last = 0
        self.intervals = 0
        self.devices: set[str] = set()

    def missed(self, device: str, intervals: int, now: int) -> None:
        if self.since is None:
            self.since = now
            log.warning(
                "AutoEvents are falling behind: %d interval(s) of %s went by without a read, %.1f s after "
                "polling began (the whole count when polling catches up)",
                intervals,
                device,
                (now - self.began) / 1e9,
            )
        self.last = now
        self.intervals += intervals
        self.devices.add(device)

    def caught_up(self, now: int, *, stopping: bool = False) -> None:
        """Say how much was missed once no interval was missed for :data:`CAUGHT_UP` s (or at a stop)."""
        if self.since is None or (not stopping and now - self.last < CAUGHT_UP * 1e9):
            return
        log.warning(
            "AutoEvents %s: %d interval(s) of %d device(s) missed from %.1f s to %.1f s after polling began",
            "were still behind at the stop" if stopping else "caught up",
            self.intervals,
            len(self.devices),
            (self.since - self.began) / 1e9,
            (self.last - self.began) / 1e9,
        )
        self.since = None
        self.intervals = 0
        self.devices = set()


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class _Waker:
    """What :class:`asyncio.Event` does for a device's loops, plus futures of their own to wake (the
    real-clock sleep waits on one future, not on two tasks)."""

    __slots__ = ("_futs", "_set")

    def __init__(self) -> None:
        self._set = False
        self._futs: list[asyncio.Future[bool]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        futs, self._futs = self._futs, []
        for f in futs:
            _resolve(f, True)

    def add(self, fut: asyncio.Future[bool]) -> None:
        self._futs.append(fut)

    def discard(self, fut: asyncio.Future[bool]) -> None:
        with contextlib.suppress(ValueError):
            self._futs.remove(fut)

    async def wait(self) -> bool:
        if self._set:
            return True
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._futs.append(fut)
        try:
            return await fut
        finally:
            self.discard(fut)


def _assertion_error(device: str, res: DeviceResource, vt: ValueType, value: Any) -> ConnectorError:
    return ConnectorError(
        f"assertion failed: {go_value_string(vt, value)!r} != {res.properties.assertion!r}",
        device=device,
        resource=res.name,
    )


def _value_text(vt: ValueType, value: Any) -> str:
    if vt is ValueType.STRING:
        return str(value)
    try:
        return format_value(vt, value)
    except ValueFormatError:
        return repr(value)
