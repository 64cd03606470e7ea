"""The connector contract every southbound protocol implements, and the registry that finds them.

A connector speaks one protocol to many devices (an EdgeX device service in miniature). It knows
sockets and registers; it does not know profiles' transforms, events or the bus. It returns raw
:class:`CommandValue` s; the device service layer (:mod:`edgeflow.service`) applies the profile's
transforms and mappings, builds events and publishes them.

Two ways values reach the service:

* **polled**: the service's AutoEvents call :meth:`Connector.read`;
* **pushed**: a connector whose devices report on their own (MQTT devices, OPC-UA subscriptions) sets
  :attr:`Connector.supports_push`. The service calls :meth:`Connector.subscribe` once per device with
  a :data:`PushSink`, *before* :meth:`Connector.open`; from ``open`` to ``close`` the connector calls
  the sink with each device message (one EdgeX event: a source and its values), re-establishing its
  subscriptions after a reconnect on its own. The service applies the same transforms and mappings
  as to a read and puts the readings on the bus in batches.

Connectors are found through the entry-point group ``edgeflow.connectors``; code can also
:func:`register` one directly (tests, applications that embed edgeflow).

Time comes from a :class:`Clock`: the AutoEvent scheduler sleeps on it, read timeouts run on it, reads
are stamped with it, and a connector that waits on purpose (the virtual one's ``latency``) waits on it.
:data:`SYSTEM_CLOCK` is the real one; :class:`edgeflow.testing.ManualClock` is one a test moves by hand,
so scheduling runs exactly and at once, with no real sleeps.

Polled and pushed values
------------------------
The device service polls a connector for each AutoEvent (``read``). A connector that can push
(``supports_push``: OPC-UA subscriptions, MQTT devices) is also handed a :data:`PushSink` through
:meth:`Connector.subscribe`; it calls the sink with the values of one device and one source at a
time, from the event loop, without awaiting. The service turns each call into a columnar batch,
queues it (bounded, drops counted) and publishes what has queued in one bus hand-off per source.
For each AutoEvent the scheduler asks :meth:`Connector.pushes` whether the connector delivers it
itself right now; while it does, the AutoEvent is not polled, and when it stops (a server refused a
subscription, the link is down) polling takes over with EdgeX's meaning. A connector calls
:meth:`Connector.state_changed` whenever what ``pushes`` or ``health`` answer for a device changes,
so the service reacts at once instead of at its next tick.

Quality
-------
A value carries a :class:`Quality`. Anything but ``GOOD`` is never published as a good reading: per
:meth:`Connector.quality_action` the service drops it or flags it (it then goes to the series
``<resource>@uncertain`` with its value, or ``<resource>@bad`` as a String holding the device's
status text), and counts it either way.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import EntryPoint, entry_points
from types import TracebackType
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, Self, runtime_checkable

from edgeflow.errors import ConfigError, ConnectorError, ConnectorNotFoundError
from edgeflow.parsing import did_you_mean
from edgeflow.profiles import AutoEvent, Device, DeviceProfile, DeviceResource

__all__ = [
    "ENTRY_POINT_GROUP",
    "SIMULATOR_GROUP",
    "SYSTEM_CLOCK",
    "Clock",
    "CommandValue",
    "Connector",
    "ConnectorMetric",
    "DeviceHealth",
    "PushSink",
    "Quality",
    "QualityAction",
    "StateListener",
    "SystemClock",
    "as_clock",
    "available_connectors",
    "load_connector",
    "load_simulator",
    "register",
    "time_us_ns",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "edgeflow.connectors"
#: Simulated devices offered by connector packages (``edgeflow demo`` starts them).
SIMULATOR_GROUP = "edgeflow.simulators"


@runtime_checkable
class Clock(Protocol):
    """Where the device service (and a connector that waits on purpose) takes time from.

    Two time lines, both integer nanoseconds so deadlines add up exactly: :meth:`monotonic_ns` for
    scheduling (never goes back), :meth:`time_ns` since the epoch for reading origins.
    """

    def monotonic_ns(self) -> int:
        """Now on the scheduling time line (nanoseconds; only differences mean anything)."""
        ...

    def time_ns(self) -> int:
        """Now as nanoseconds since the epoch: the origin stamped on a reading."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (0 or less: only let other tasks run)."""
        ...

    async def sleep_until(self, deadline_ns: int) -> None:
        """Wait until :meth:`monotonic_ns` reaches ``deadline_ns``."""
        ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """``async with clock.timeout(s):`` cancels the block after ``s`` seconds and raises
        :class:`TimeoutError`, as :func:`asyncio.timeout` does."""
        ...


def time_us_ns() -> int:
    """Now since the epoch in whole microseconds, as nanoseconds: the origin the device service stamps on
    a read. A poll's time is not known better than its request's round trip (tens of microseconds at
    best), and the digits below a microsecond are noise that costs about 0.7 bytes per shipped reading in
    the compact encoding of a fleet (1,000 devices x 10 resources, swing: 3.3 -> 2.6 bytes per reading)."""
    return time.time_ns() // 1000 * 1000


class SystemClock:
    """The real clock: :func:`time.monotonic_ns` (the event loop's own time line), :func:`time_us_ns`
    (the wall clock in whole microseconds) and asyncio's sleeps and timeouts. ``wall`` replaces it for
    origins (:func:`time.time_ns` for every nanosecond, a fixed stamp in a test, a corrected clock on a
    device without RTC)."""

    def __init__(self, wall: Callable[[], int] = time_us_ns) -> None:
        self._wall = wall

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def time_ns(self) -> int:
        return self._wall()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def sleep_until(self, deadline_ns: int) -> None:
        await asyncio.sleep(max(0, deadline_ns - time.monotonic_ns()) / 1e9)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)


#: The real clock, the default everywhere.
SYSTEM_CLOCK: Clock = SystemClock()


def as_clock(clock: Clock | Callable[[], int]) -> Clock:
    """``clock`` itself if it is a :class:`Clock`; a bare function returning epoch nanoseconds (such as
    :func:`time.time_ns` or ``lambda: 1_000``) stamps origins over the real clock's scheduling."""
    if isinstance(clock, Clock):
        return clock
    return SystemClock(clock)


class Quality(StrEnum):
    """How far a value can be trusted, as the device says (OPC-UA's status code severity)."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class QualityAction(StrEnum):
    """What the service does with a value that is not ``GOOD``."""

    FLAG = "flag"  # published to <resource>@uncertain or <resource>@bad, and counted
    DROP = "drop"  # not published, counted


class CommandValue(NamedTuple):
    """One value as the device gave it, before the profile's transforms. (Immutable; a named tuple,
    not a frozen dataclass, because connectors make one per value read: 100,000 a second end to end.)

    ``value`` has the Python type of the resource's ``valueType`` (a Modbus register with ``rawType: Int16``
    under ``valueType: Float32`` arrives here already cast to ``float``, as EdgeX's driver does).
    ``origin`` is nanoseconds since the epoch, or 0 to let the service stamp the time of the read.
    ``quality`` and ``status`` carry what the device said of the value (``status`` is the protocol's own
    name for it, e.g. OPC-UA's ``UncertainLastUsableValue``); ``value`` may be ``None`` when not ``GOOD``.
    """

    resource: str
    value: Any
    origin: int = 0
    quality: Quality = Quality.GOOD
    status: str = ""


class DeviceHealth(StrEnum):
    """EdgeX operating state of a device, as the connector sees its link to it."""

    UP = "UP"
    DOWN = "DOWN"
    UNKNOWN = "UNKNOWN"


PushSink = Callable[[str, str, Sequence[CommandValue]], None]
"""Where a connector that pushes (MQTT, OPC-UA subscriptions) hands values: ``sink(device, source,
values)``, on the event loop, once per device message; ``source`` is a resource or command of the
device's profile (or an event name of the connector's own, for values of several readable resources)
and ``values`` the raw values (before transforms). It returns at once (readings are
batched behind it) and raises :class:`~edgeflow.errors.ConnectorError` or
:class:`~edgeflow.errors.ValueFormatError` when the values do not fit the profile; the connector counts
that as a rejected message."""


@dataclass(frozen=True, slots=True)
class ConnectorMetric:
    """One counter or gauge a connector keeps (exposed as ``edgeflow_connector_<name>`` with a
    ``connector`` label added)."""

    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()
    kind: Literal["counter", "gauge"] = "counter"


#: Told the name of a device whose ``pushes``/``health`` answers may have changed.
StateListener = Callable[[str], None]


class Connector(abc.ABC):
    """A southbound protocol adapter.

    Lifecycle: construct with the connector's options, ``add_device`` each device it serves, then use
    it as an async context manager (``open``/``close``). ``read`` and ``write`` raise
    :class:`~edgeflow.errors.ConnectorError` subclasses only; a protocol library's own exception never
    escapes.
    """

    #: The registry key, the ``connector:`` value in a config.
    type_name: ClassVar[str]
    #: Whether :meth:`subscribe` is implemented.
    supports_push: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})
        self.devices: dict[str, tuple[Device, DeviceProfile]] = {}
        #: The clock of the service that drives this connector (it sets it); waits that are part of a
        #: device's behaviour, not of its I/O, use it.
        self.clock: Clock = SYSTEM_CLOCK
        self._state_listeners: list[StateListener] = []

    def add_device(self, device: Device, profile: DeviceProfile) -> None:
        """Take a device into service. Validates its ``protocols`` and every resource's ``attributes``
        now, so a bad device definition fails at start-up with :class:`~edgeflow.errors.ConfigError`."""
        if device.name in self.devices:
            raise ConfigError(f"device {device.name!r} is already served by this connector")
        self.validate_device(device, profile)
        self.devices[device.name] = (device, profile)

    def remove_device(self, name: str) -> None:
        """Take a device out of service (the runtime's live device removal). A connector with per-device
        state drops it here; the base forgets the device, so reads and pushes for it fail as unknown."""
        self.devices.pop(name, None)

    def validate_device(self, device: Device, profile: DeviceProfile) -> None:  # noqa: B027
        """Check a device's protocol properties and resource attributes; raise ConfigError. Default: accept."""

    def device(self, name: str) -> tuple[Device, DeviceProfile]:
        try:
            return self.devices[name]
        except KeyError:
            raise ConnectorError("unknown device", device=name) from None

    async def open(self) -> None:  # noqa: B027
        """Open connections. Connecting lazily on first read is allowed."""

    async def close(self) -> None:  # noqa: B027
        """Close every connection; must not raise."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def read(self, device: str, resources: Sequence[DeviceResource]) -> list[CommandValue]:
        """Read ``resources`` of ``device``; one value per resource, in order."""

    @abc.abstractmethod
    async def write(self, device: str, values: Sequence[tuple[DeviceResource, Any]]) -> None:
        """Write already-checked, already-inverse-transformed values."""

    async def subscribe(self, device: str, sink: PushSink) -> None:
        """Push values of ``device`` to ``sink`` from :meth:`open` on (only where :attr:`supports_push`).
        The service calls it once per device before ``open`` (a broker may deliver a persistent
        session's backlog at once); called after it, pushing starts at once. The connector keeps
        pushing across reconnections until :meth:`close`. The sink raises
        :class:`~edgeflow.errors.ConnectorError` or :class:`~edgeflow.errors.ValueFormatError` for values
        that do not fit the profile: the connector counts and logs such a message and goes on."""
        raise ConnectorError(f"{self.type_name} does not push values", device=device)

    def pushes(self, device: str, auto_event: AutoEvent) -> bool:
        """Whether the connector delivers ``auto_event`` of ``device`` through its sink right now, so the
        scheduler does not poll it. Default: never (every AutoEvent is polled)."""
        return False

    def quality_action(self, device: str, quality: Quality) -> QualityAction:
        """What to do with a value of ``device`` whose quality is not ``GOOD``. Default: flag it."""
        return QualityAction.FLAG

    def health(self, device: str) -> DeviceHealth:
        """The connector's own view of the link to ``device``."""
        return DeviceHealth.UNKNOWN

    def add_state_listener(self, listener: StateListener) -> None:
        """Be told (with the device name) when :meth:`pushes` or :meth:`health` may answer differently."""
        self._state_listeners.append(listener)

    def state_changed(self, device: str) -> None:
        """Tell the listeners that ``device``'s push or health state changed (connectors call this)."""
        for listener in list(self._state_listeners):
            try:
                listener(device)
            except Exception:  # a listener's bug must not break the connector's reconnect loop
                log.exception("state listener failed for device %s", device)

    def stats(self) -> dict[str, Any]:
        """The connector's own counters, JSON-able (``edgeflow run --stats`` shows them)."""
        return {}

    def metrics(self) -> list[ConnectorMetric]:
        """The connector's own counters and gauges for the metrics endpoint."""
        return []


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

_registered: dict[str, type[Connector]] = {}


def register(type_name: str, cls: type[Connector]) -> None:
    """Register a connector class in code, ahead of entry points of the same name."""
    _registered[type_name] = cls


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_connectors() -> list[str]:
    """Names of every connector registered in code or installed through entry points."""
    return sorted(set(_registered) | set(_entry_points()))


def load_connector(type_name: str) -> type[Connector]:
    """The connector class for ``type_name``."""
    cls = _registered.get(type_name)
    if cls is not None:
        return cls
    ep = _entry_points().get(type_name)
    if ep is None:
        installed = available_connectors()
        raise ConnectorNotFoundError(
            f"no connector {type_name!r}{did_you_mean(type_name, installed)}; "
            f"installed: {', '.join(installed) or 'none'}"
        )
    try:
        loaded = ep.load()
    except ImportError as exc:
        raise ConnectorNotFoundError(
            f"connector {type_name!r} is installed but cannot be imported ({exc}); "
            f"install its extra: pip install 'edgeflow-iot[{type_name}]'"
        ) from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Connector)):
        raise ConnectorNotFoundError(f"entry point {ep.value!r} is not a Connector subclass")
    return loaded


def load_simulator(type_name: str) -> Any:
    """The simulated-device class a connector package offers for ``type_name`` (entry-point group
    ``edgeflow.simulators``), so edgeflow can start one without importing the connector package."""
    eps = {ep.name: ep for ep in entry_points(group=SIMULATOR_GROUP)}
    ep = eps.get(type_name)
    if ep is None:
        raise ConnectorNotFoundError(
            f"no simulator for {type_name!r}; installed: {', '.join(sorted(eps)) or 'none'}"
        )
    try:
        return ep.load()
    except ImportError as exc:
        raise ConnectorNotFoundError(
            f"the {type_name!r} simulator cannot be imported ({exc}); "
            f"install its extra: pip install 'edgeflow-iot[{type_name}]'"
        ) from exc
