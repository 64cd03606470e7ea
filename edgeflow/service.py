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
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeflow.bus import event_topic
from edgeflow.connector import SYSTEM_CLOCK, Clock, CommandValue, Connector, DeviceHealth, as_clock
from edgeflow.errors import ConnectorError, DeviceOfflineError, ValueFormatError, WriteRejectedError
from edgeflow.model import (
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
    check_write,
    go_value_string,
    process_read,
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


@dataclass(slots=True)
class _Source:
    name: str
    resources: list[DeviceResource]
    command: DeviceCommand | None = None
    tags: dict[str, Any] = field(default_factory=dict)


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
        self._last_sent: dict[tuple[str, str], dict[str, tuple[str, float | None]]] = {}
        self._opened = False
        self._stopping = False

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
        s = self.settings
        command = src.command.name if src.command is not None else None
        for res, cv in zip(resources, values, strict=True):
            result = process_read(
                profile,
                res,
                cv.value,
                command=command,
                shift_convention=s.shift_convention,
                mode=s.transforms,
            )
            if result.assertion_failed:
                raise ConnectorError(
                    f"assertion failed: {go_value_string(result.value_type, result.value)!r} "
                    f"!= {res.properties.assertion!r}",
                    device=dev.name,
                    resource=res.name,
                )
            vt = result.value_type
            series.append(
                self.table.intern(dev.name, res.name, profile.name, vt, res.properties.units, src.name)
            )
            origins.append(cv.origin or now)
            typed.append(result.value)
        return batch_from_values(self.table, origins, typed, series)

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
        state = self.states[device]
        if ae.on_change and not self._changed((device, ae.source_name), ae, batch):
            state.events_suppressed += 1
            return False
        _, profile = self.connector.device(device)
        await self.publish(event_topic(self.service, profile.name, device, ae.source_name), batch)
        state.events_published += 1
        return True

    # -- scheduling -----------------------------------------------------------------------------

    def _failed(self, state: DeviceState, exc: BaseException, now_ns: int) -> None:
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
            state.retry_at_ns = now_ns + round(delay * 1e9)
        else:
            log.info("device %s read failed (%d in a row): %s", state.name, state.consecutive_failures, exc)

    def _succeeded(self, state: DeviceState) -> None:
        if state.health is DeviceHealth.DOWN:
            log.warning("device %s is back online", state.name)
        state.health = DeviceHealth.UP
        state.consecutive_failures = 0
        state.reads_ok += 1
        state.retry_at_ns = 0

    async def _autoevent_loop(self, device: str, ae: AutoEvent) -> None:
        clock = self.clock
        interval = ae.interval_ns
        state = self.states[device]
        deadline = clock.monotonic_ns()
        while not self._stopping:
            if state.health is DeviceHealth.DOWN and state.retry_at_ns > deadline:
                deadline = state.retry_at_ns
            if deadline > clock.monotonic_ns():
                await clock.sleep_until(deadline)
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
            deadline += interval
            now = clock.monotonic_ns()
            if deadline < now:
                missed = (now - deadline) // interval + 1
                state.missed_intervals += missed
                deadline += missed * interval

    async def start(self) -> None:
        """Open the connector and start every AutoEvent."""
        await self.connector.open()
        self._opened = True
        self._stopping = False
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


def _value_text(vt: ValueType, value: Any) -> str:
    if vt is ValueType.STRING:
        return str(value)
    try:
        return format_value(vt, value)
    except ValueFormatError:
        return repr(value)
