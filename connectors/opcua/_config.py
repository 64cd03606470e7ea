"""EdgeX device-opc-ua ``protocols``, parsed and checked once at start-up (resource ``attributes``:
:mod:`connectors.opcua._nodes`).

Protocol key ``opcua`` (as EdgeX), properties:

- ``Endpoint`` (required): ``opc.tcp://host:port/path``.
- Security: ``Policy`` (``None``, ``Basic256Sha256``, ``Aes128_Sha256_RsaOaep``, ``Aes256_Sha256_RsaPss``),
  ``Mode`` (``None``, ``Sign``, ``SignAndEncrypt``), ``CertFile`` / ``KeyFile`` / ``KeyPassword`` (edgeflow's
  application instance certificate), ``TrustedCerts`` (files: the server's own certificate, or the CA
  that issued it; required with any policy but None: nothing is trusted implicitly), ``ApplicationUri``.
- Identity: anonymous by default; ``Username`` + ``Password``; or ``UserCertFile`` + ``UserKeyFile``.
- Tuning: ``Timeout`` (requests, seconds), ``Subscriptions`` (true: onChange AutoEvents are monitored
  items; false: every AutoEvent is polled), ``PublishingInterval``, ``SamplingInterval``, ``QueueSize``,
  ``DeadbandType`` (``None``, ``Absolute``, ``Percent``), ``DeadbandValue``, ``UncertainValues`` and
  ``BadValues`` (``flag`` or ``drop``).

Durations are seconds, or EdgeX duration strings (``"250ms"``). Numbers may be strings (EdgeX 2.x files).
Nothing here imports asyncua.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from edgeflow.connector import QualityAction
from edgeflow.errors import ConfigError, ValueFormatError
from edgeflow.parsing import PropertyReader, duration_seconds
from edgeflow.profiles import Device

__all__ = [
    "DEADBANDS",
    "PROTOCOL_KEY",
    "Deadband",
    "DeadbandType",
    "DeviceTuning",
    "EndpointSpec",
    "SecurityMode",
    "SecurityPolicy",
    "checked_deadband",
    "choice",
    "integer",
    "number",
    "parse_endpoint",
    "seconds",
]

log = logging.getLogger(__name__)

PROTOCOL_KEY = "opcua"
DEFAULT_TIMEOUT = 5.0


class SecurityPolicy(StrEnum):
    NONE = "None"
    BASIC256SHA256 = "Basic256Sha256"
    AES128_SHA256_RSAOAEP = "Aes128_Sha256_RsaOaep"
    AES256_SHA256_RSAPSS = "Aes256_Sha256_RsaPss"


class SecurityMode(StrEnum):
    NONE = "None"
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


class DeadbandType(StrEnum):
    NONE = "None"
    ABSOLUTE = "Absolute"
    PERCENT = "Percent"


_POLICIES = {p.value.replace("_", "").lower(): p for p in SecurityPolicy}
_DEPRECATED = {"basic128rsa15", "basic256"}
_MODES = {m.value.lower(): m for m in SecurityMode}
DEADBANDS = {d.value.lower(): d for d in DeadbandType}


@dataclass(frozen=True, slots=True)
class Deadband:
    """The OPC-UA DataChangeFilter deadband of a monitored item (Part 4 §7.22.2): ``Absolute`` in the
    value's units, ``Percent`` of the node's EURange. ``NONE``: every change is reported."""

    type: DeadbandType = DeadbandType.NONE
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """How to reach a server and who to be there: devices with equal specs share one client."""

    url: str
    policy: SecurityPolicy = SecurityPolicy.NONE
    mode: SecurityMode = SecurityMode.NONE
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: str | None = field(default=None, repr=False)
    trusted_certs: tuple[Path, ...] = ()
    application_uri: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    user_cert_file: Path | None = None
    user_key_file: Path | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def key(self) -> tuple[Any, ...]:
        """Devices whose endpoint specs have the same key share one client (one session)."""
        return (
            self.url,
            self.policy,
            self.mode,
            self.cert_file,
            self.key_file,
            self.trusted_certs,
            self.application_uri,
            self.username,
            self.password,
            self.user_cert_file,
            self.user_key_file,
        )

    @property
    def identity(self) -> str:
        if self.user_cert_file is not None:
            return f"certificate {self.user_cert_file}"
        if self.username is not None:
            return f"user {self.username!r}"
        return "anonymous"

    def describe(self) -> str:
        sec = "" if self.policy is SecurityPolicy.NONE else f" ({self.policy.value}, {self.mode.value})"
        return f"{self.url}{sec}"


@dataclass(frozen=True, slots=True)
class DeviceTuning:
    """A device's subscription and quality settings (``protocols.opcua`` tuning keys)."""

    subscriptions: bool = True
    publishing_interval: float | None = None  # seconds; None: each AutoEvent's interval
    sampling_interval: float | None = None  # seconds; None: each AutoEvent's interval
    queue_size: int | None = None  # None: enough for a publishing interval's samples
    deadband: Deadband = Deadband()
    uncertain: QualityAction = QualityAction.FLAG
    bad: QualityAction = QualityAction.FLAG


# --------------------------------------------------------------------------------------------------
# small casts
# --------------------------------------------------------------------------------------------------


def seconds(v: Any, *, positive: bool = True) -> float:
    """A duration as seconds, through the one duration parser (zero allowed unless ``positive``)."""
    try:
        return duration_seconds(v, zero=not positive)
    except ValueFormatError as exc:
        raise ValueError(str(exc)) from None


def integer(v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool):
        raise ValueError(f"expected an integer, got {v!r}")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v.strip())
    if not isinstance(v, int):
        raise ValueError(f"expected an integer, got {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"{v} is out of range {lo}..{hi}")
    return v


def number(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {v!r}") from None
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError(f"expected a finite number, got {v!r}")
    return f


def _boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise ValueError(f"expected true or false, got {v!r}")


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"expected a non-empty string, got {v!r}")
    return v.strip()


def _paths(v: Any) -> tuple[Path, ...]:
    items: Sequence[Any]
    if isinstance(v, str):
        items = [p for p in (x.strip() for x in v.split(",")) if p]
    elif isinstance(v, list | tuple):
        items = v
    else:
        raise ValueError(f"expected a list of certificate files, got {v!r}")
    if not items:
        raise ValueError("expected at least one certificate file")
    return tuple(Path(_text(p)) for p in items)


def choice(table: Mapping[str, Any], what: str) -> Any:
    def conv(v: Any) -> Any:
        key = str(v).strip().replace("_", "").replace("-", "").lower() if isinstance(v, str) else None
        if key is not None:
            for k, val in table.items():
                if k.replace("_", "") == key:
                    return val
        raise ValueError(
            f"{v!r} is not a {what}; expected one of {', '.join(str(x) for x in table.values())}"
        )

    return conv


def _action(v: Any) -> QualityAction:
    if isinstance(v, str) and v.strip().lower() in ("flag", "drop"):
        return QualityAction(v.strip().lower())
    raise ValueError(f"expected flag or drop, got {v!r}")


# --------------------------------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------------------------------

_ENDPOINT_KEYS = {
    "Endpoint",
    "Policy",
    "Mode",
    "CertFile",
    "KeyFile",
    "KeyPassword",
    "TrustedCerts",
    "ApplicationUri",
    "Username",
    "Password",
    "UserCertFile",
    "UserKeyFile",
    "Timeout",
}
_TUNING_KEYS = {
    "Subscriptions",
    "PublishingInterval",
    "SamplingInterval",
    "QueueSize",
    "DeadbandType",
    "DeadbandValue",
    "UncertainValues",
    "BadValues",
}


def parse_endpoint(device: Device) -> tuple[EndpointSpec, DeviceTuning]:
    """The device's endpoint and tuning from ``protocols.opcua``; ConfigError names every problem's key."""
    base = f"devices.{device.name}.protocols"
    props = device.protocols.get(PROTOCOL_KEY)
    if props is None:
        found = ", ".join(device.protocols) or "none"
        raise ConfigError(
            f"device {device.name!r}: the opcua protocol is needed",
            problems=[(base, f"expected the key {PROTOCOL_KEY!r}; found {found}")],
        )
    path = f"{base}.{PROTOCOL_KEY}"
    # Keys are matched case-insensitively: an environment override (``…__OPCUA__PASSWORD``) cannot
    # spell ``Password`` in the variable's name.
    canonical = {k.lower(): k for k in _ENDPOINT_KEYS | _TUNING_KEYS}
    props = {canonical.get(str(k).lower(), k): v for k, v in props.items()}
    for key in props:
        if key not in _ENDPOINT_KEYS | _TUNING_KEYS:
            # EdgeX ignores properties it does not know; so do we, loudly (a typo is the likely cause)
            log.warning(
                "%s.%s: unknown property, ignored; known: %s",
                path,
                key,
                ", ".join(sorted(_ENDPOINT_KEYS | _TUNING_KEYS)),
            )
    reader = PropertyReader(props, path)
    problems, values, take = reader.problems, reader.values, reader.take
    take("Endpoint", _url, None)
    take("Policy", _policy, SecurityPolicy.NONE)
    take("Mode", choice(_MODES, "security mode"), None)
    take("CertFile", lambda v: Path(_text(v)), None)
    take("KeyFile", lambda v: Path(_text(v)), None)
    take("KeyPassword", _text, None)
    take("TrustedCerts", _paths, ())
    take("ApplicationUri", _text, None)
    take("Username", _text, None)
    take("Password", lambda v: str(v), None)
    take("UserCertFile", lambda v: Path(_text(v)), None)
    take("UserKeyFile", lambda v: Path(_text(v)), None)
    take("Timeout", seconds, DEFAULT_TIMEOUT)
    take("Subscriptions", _boolean, True)
    take("PublishingInterval", seconds, None)
    take("SamplingInterval", lambda v: seconds(v, positive=False), None)
    take("QueueSize", lambda v: integer(v, 1, 100_000), None)
    take("DeadbandType", choice(DEADBANDS, "deadband type"), DeadbandType.NONE)
    take("DeadbandValue", number, None)
    take("UncertainValues", _action, QualityAction.FLAG)
    take("BadValues", _action, QualityAction.FLAG)
    if values.get("Endpoint") is None and not any(p[0].endswith(".Endpoint") for p in problems):
        problems.append((f"{path}.Endpoint", "is required (opc.tcp://host:port/path)"))
    if problems:
        raise ConfigError(f"device {device.name!r}: invalid opcua protocol properties", problems=problems)

    policy: SecurityPolicy = values["Policy"]
    mode: SecurityMode | None = values["Mode"]
    if policy is SecurityPolicy.NONE:
        if mode not in (None, SecurityMode.NONE):
            problems.append((f"{path}.Mode", f"{mode} needs a security Policy; Policy is None"))
        mode = SecurityMode.NONE
    else:
        if mode is None:
            mode = SecurityMode.SIGN_AND_ENCRYPT
        elif mode is SecurityMode.NONE:
            problems.append((f"{path}.Mode", f"must be Sign or SignAndEncrypt with Policy {policy}"))
        for key in ("CertFile", "KeyFile"):
            if values[key] is None:
                problems.append((f"{path}.{key}", f"is required with Policy {policy}"))
        if not values["TrustedCerts"]:
            problems.append(
                (
                    f"{path}.TrustedCerts",
                    f"is required with Policy {policy}: list the server's certificate or the CA that "
                    "issued it; edgeflow trusts no server certificate implicitly",
                )
            )
    if values["Username"] is not None and values["Password"] is None:
        problems.append((f"{path}.Password", "is required with Username"))
    if values["Password"] is not None and values["Username"] is None:
        problems.append((f"{path}.Username", "is required with Password"))
    if values["Username"] is not None and policy is SecurityPolicy.NONE:
        problems.append(
            (
                f"{path}.Password",
                "would cross the network unprotected with Policy None; use a security Policy "
                "(Basic256Sha256 or better)",
            )
        )
    if (values["UserCertFile"] is None) != (values["UserKeyFile"] is None):
        problems.append((f"{path}.UserKeyFile", "UserCertFile and UserKeyFile go together"))
    if values["UserCertFile"] is not None and values["Username"] is not None:
        problems.append((f"{path}.UserCertFile", "choose one identity: Username or UserCertFile"))
    for key in ("CertFile", "KeyFile", "UserCertFile", "UserKeyFile"):
        p = values[key]
        if p is not None and not p.is_file():
            problems.append((f"{path}.{key}", f"no such file: {p}"))
    for i, p in enumerate(values["TrustedCerts"]):
        if not p.is_file():
            problems.append((f"{path}.TrustedCerts[{i}]", f"no such file: {p}"))
    deadband = Deadband()
    if values["DeadbandType"] is not DeadbandType.NONE:
        if values["DeadbandValue"] is None:
            problems.append(
                (f"{path}.DeadbandValue", f"is required with DeadbandType {values['DeadbandType']}")
            )
        else:
            deadband = checked_deadband(
                values["DeadbandType"], values["DeadbandValue"], f"{path}.DeadbandValue", problems
            )
    elif values["DeadbandValue"] is not None:
        problems.append((f"{path}.DeadbandType", "is required with DeadbandValue (Absolute or Percent)"))
    if problems:
        raise ConfigError(f"device {device.name!r}: invalid opcua protocol properties", problems=problems)
    spec = EndpointSpec(
        url=values["Endpoint"],
        policy=policy,
        mode=mode,
        cert_file=values["CertFile"],
        key_file=values["KeyFile"],
        key_password=values["KeyPassword"],
        trusted_certs=values["TrustedCerts"],
        application_uri=values["ApplicationUri"],
        username=values["Username"],
        password=values["Password"],
        user_cert_file=values["UserCertFile"],
        user_key_file=values["UserKeyFile"],
        timeout=values["Timeout"],
    )
    tuning = DeviceTuning(
        subscriptions=values["Subscriptions"],
        publishing_interval=values["PublishingInterval"],
        sampling_interval=values["SamplingInterval"],
        queue_size=values["QueueSize"],
        deadband=deadband,
        uncertain=values["UncertainValues"],
        bad=values["BadValues"],
    )
    return spec, tuning


def _url(v: Any) -> str:
    text = _text(v)
    u = urlparse(text)
    if u.scheme != "opc.tcp" or not u.hostname:
        raise ValueError(f"{text!r} is not an opc.tcp://host:port/path URL")
    try:
        u.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{text!r}: the port is not a number 1..65535") from None
    return text


def _policy(v: Any) -> SecurityPolicy:
    key = str(v).strip().replace("_", "").replace("-", "").lower() if isinstance(v, str) else ""
    if key in _DEPRECATED:
        raise ValueError(f"{v} is deprecated and insecure (OPC UA 1.04); use Basic256Sha256 or an Aes policy")
    found = _POLICIES.get(key)
    if found is None:
        raise ValueError(f"{v!r} is not a security policy; expected one of {', '.join(SecurityPolicy)}")
    return found


def checked_deadband(
    kind: DeadbandType, value: float, where: str, problems: list[tuple[str, str]]
) -> Deadband:
    if value < 0:
        problems.append((where, f"must not be negative, got {value}"))
    elif kind is DeadbandType.PERCENT and value > 100:
        problems.append((where, f"a percent deadband is 0..100, got {value}"))
    return Deadband(kind, value)
