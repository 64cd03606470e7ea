"""edgeflow's one exception tree.

Every error edgeflow raises is an :class:`EdgeflowError`. Errors of the libraries underneath
(pymodbus, asyncua, paho-mqtt, sqlite3, pydantic) are mapped at the boundary of the room that
uses them, with ``raise ... from exc``, so a caller never has to know which library is below.

::

    EdgeflowError
    ├── ConfigError                 a config, profile or CRD file is not valid (names file and key path)
    │   └── UnsupportedVersionError an API version edgeflow does not read (KubeEdge v1alpha2, ...)
    ├── ValueFormatError            a value does not parse or format as its EdgeX value type
    ├── BusError                    the core-data bus refused a publish or a subscription
    │   └── BusClosedError
    ├── ConnectorError              a device could not be read or written (device, resource, address)
    │   ├── DeviceTimeoutError
    │   ├── DeviceProtocolError     the device answered with a protocol-level error (Modbus exception, bad status)
    │   ├── DeviceOfflineError      the device is marked offline; the scheduler retries with backoff
    │   ├── WriteRejectedError      a write failed the profile's checks (read-only, minimum, maximum, type)
    │   └── ConnectorNotFoundError  no connector is registered under that type name
    ├── RuleError                   a rule could not be built or restored from a snapshot
    ├── CodecError                  bytes on the wire could not be encoded or decoded
    ├── OutboxError                 the durable outbox failed, or refused a batch by policy
    └── UplinkError                 the northbound transport failed
        └── TransportSecurityError  TLS or authentication failed; never falls back to plaintext
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BusClosedError",
    "BusError",
    "CodecError",
    "ConfigError",
    "ConnectorError",
    "ConnectorNotFoundError",
    "DeviceOfflineError",
    "DeviceProtocolError",
    "DeviceTimeoutError",
    "EdgeflowError",
    "OutboxError",
    "RuleError",
    "TransportSecurityError",
    "UnsupportedVersionError",
    "UplinkError",
    "ValueFormatError",
    "WriteRejectedError",
]


class EdgeflowError(Exception):
    """Base of every error edgeflow raises."""


class ConfigError(EdgeflowError):
    """A configuration, profile or CRD file is not valid.

    ``source`` is the file (or ``"<env>"``, ``"<dict>"``); ``problems`` lists one
    ``(key_path, message)`` pair per problem, key paths in the form ``devices[2].protocols.modbus-tcp.port``.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        problems: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [message if source is None else f"{source}: {message}"]
        lines.extend(f"  {path or '<root>'}: {msg}" for path, msg in self.problems)
        super().__init__("\n".join(lines))


class UnsupportedVersionError(ConfigError):
    """A file declares an API version edgeflow does not read."""


class ValueFormatError(EdgeflowError, ValueError):
    """A value does not parse or format as its EdgeX value type."""


class BusError(EdgeflowError):
    """The core-data bus refused a publish or subscription."""


class BusClosedError(BusError):
    """The bus, or the subscription, is closed."""


class ConnectorError(EdgeflowError):
    """A device could not be read or written. Carries the device, resource and address where known."""

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        resource: str | None = None,
        address: str | None = None,
    ) -> None:
        self.message = message
        self.device = device
        self.resource = resource
        self.address = address
        where = ", ".join(
            f"{k}={v}"
            for k, v in (("device", device), ("resource", resource), ("address", address))
            if v is not None
        )
        super().__init__(f"{message} ({where})" if where else message)


class DeviceTimeoutError(ConnectorError):
    """The device did not answer in time."""


class DeviceProtocolError(ConnectorError):
    """The device answered with a protocol-level error (a Modbus exception code, a bad OPC-UA status)."""


class DeviceOfflineError(ConnectorError):
    """The device is marked offline; the scheduler retries it with backoff."""


class WriteRejectedError(ConnectorError):
    """A write failed the profile's checks: read-only resource, out of minimum/maximum, wrong type."""


class ConnectorNotFoundError(ConnectorError):
    """No connector is registered under that type name."""


class RuleError(EdgeflowError):
    """A rule could not be built, or its state could not be restored from a snapshot."""


class CodecError(EdgeflowError):
    """Bytes on the wire could not be encoded or decoded."""


class OutboxError(EdgeflowError):
    """The durable outbox failed, or refused a batch by its overflow policy."""


class UplinkError(EdgeflowError):
    """The northbound transport failed."""


class TransportSecurityError(UplinkError):
    """TLS or authentication failed. edgeflow never falls back to plaintext."""
