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
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import EntryPoint, entry_points
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

from edgeflow.errors import ConfigError, ConnectorError, ConnectorNotFoundError
from edgeflow.profiles import Device, DeviceProfile, DeviceResource

__all__ = [
    "ENTRY_POINT_GROUP",
    "SIMULATOR_GROUP",
    "CommandValue",
    "Connector",
    "ConnectorMetric",
    "DeviceHealth",
    "PushSink",
    "available_connectors",
    "load_connector",
    "load_simulator",
    "register",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "edgeflow.connectors"
#: Simulated devices offered by connector packages (``edgeflow demo`` starts them).
SIMULATOR_GROUP = "edgeflow.simulators"


@dataclass(frozen=True, slots=True)
class CommandValue:
    """One value as the device gave it, before the profile's transforms.

    ``value`` has the Python type of the resource's ``valueType`` (a Modbus register with ``rawType: Int16``
    under ``valueType: Float32`` arrives here already cast to ``float``, as EdgeX's driver does).
    ``origin`` is nanoseconds since the epoch, or 0 to let the service stamp the time of the read.
    """

    resource: str
    value: Any
    origin: int = 0


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

    def add_device(self, device: Device, profile: DeviceProfile) -> None:
        """Take a device into service. Validates its ``protocols`` and every resource's ``attributes``
        now, so a bad device definition fails at start-up with :class:`~edgeflow.errors.ConfigError`."""
        if device.name in self.devices:
            raise ConfigError(f"device {device.name!r} is already served by this connector")
        self.validate_device(device, profile)
        self.devices[device.name] = (device, profile)

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
        Called before ``open`` by the service; called after it, pushing starts at once."""
        raise ConnectorError(f"{self.type_name} does not push values", device=device)

    def health(self, device: str) -> DeviceHealth:
        """The connector's own view of the link to ``device``."""
        return DeviceHealth.UNKNOWN

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
        raise ConnectorNotFoundError(
            f"no connector {type_name!r}; installed: {', '.join(available_connectors()) or 'none'}"
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
