"""EdgeX device profile and device types, and their loaders.

Public through :mod:`edgeflow.profiles`; import from there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from edgeflow.errors import ConfigError
from edgeflow.model import ValueType
from edgeflow.parsing import (
    NS_PER_SECOND,
    DurationText,
    config_error,
    load_yaml_documents,
    parse_duration,
    validation_problems,
)

__all__ = [
    "AutoEvent",
    "Device",
    "DeviceCommand",
    "DeviceProfile",
    "DeviceResource",
    "ResourceOperation",
    "ResourceProperties",
    "check_device",
    "devices_from_dict",
    "load_devices",
    "load_profile",
    "profile_from_dict",
]

log = logging.getLogger(__name__)

ReadWrite = Literal["R", "W", "RW", "WR"]

#: Passed as validation context by the loaders, which run the cross-reference checks themselves so
#: they can name the key path of each problem.
_DEFER = "edgeflow.defer_checks"


# --------------------------------------------------------------------------------------------------
# EdgeX types
# --------------------------------------------------------------------------------------------------


class _EdgexModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: object) -> object:
        # Go decodes ``key: ~`` (or an empty ``deviceCommands:``) to the zero value: treat it as absent.
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v is not None}
        return data


def _to_text(v: object) -> object:
    # YAML turns ``defaultValue: 0`` into an int; EdgeX (Go yaml.v3) keeps the scalar as a string.
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if isinstance(v, int | float) else v


class ResourceProperties(_EdgexModel):
    """``deviceResources[].properties`` (EdgeX ``ResourceProperties``)."""

    value_type: ValueType
    read_write: ReadWrite
    units: str = ""
    minimum: float | None = None
    maximum: float | None = None
    default_value: str | None = None
    mask: int | None = Field(None, ge=0, lt=2**64)
    shift: int | None = Field(None, ge=-(2**63), lt=2**63)
    scale: float | None = None
    offset: float | None = None
    base: float | None = None
    assertion: str | None = None
    media_type: str = ""
    optional: dict[str, Any] = Field(default_factory=dict)

    @field_validator("value_type", mode="before")
    @classmethod
    def _value_type(cls, v: object) -> object:
        return ValueType.parse(v) if isinstance(v, str) else v

    @field_validator("default_value", "assertion", "units", "media_type", mode="before")
    @classmethod
    def _stringify(cls, v: object) -> object:
        return _to_text(v)

    @property
    def readable(self) -> bool:
        return "R" in self.read_write

    @property
    def writable(self) -> bool:
        return "W" in self.read_write


class DeviceResource(_EdgexModel):
    """One ``deviceResources[]`` entry: a value a device has, with protocol ``attributes``."""

    name: str = Field(min_length=1)
    description: str = ""
    is_hidden: bool = False
    tags: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    properties: ResourceProperties

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: object) -> object:
        return _to_text(v)


class ResourceOperation(_EdgexModel):
    device_resource: str = Field(min_length=1)
    default_value: str | None = None
    mappings: dict[str, str] = Field(default_factory=dict)

    @field_validator("default_value", mode="before")
    @classmethod
    def _stringify(cls, v: object) -> object:
        return _to_text(v)

    @field_validator("mappings", mode="before")
    @classmethod
    def _mapping_text(cls, v: object) -> object:
        if isinstance(v, Mapping):
            return {_to_text(k): _to_text(x) for k, x in v.items()}
        return v


class DeviceCommand(_EdgexModel):
    """One ``deviceCommands[]`` entry: several resources read or written together."""

    name: str = Field(min_length=1)
    is_hidden: bool = False
    read_write: ReadWrite
    tags: dict[str, Any] = Field(default_factory=dict)
    resource_operations: list[ResourceOperation] = Field(min_length=1)

    def mappings_for(self, resource: str) -> dict[str, str]:
        for op in self.resource_operations:
            if op.device_resource == resource:
                return op.mappings
        return {}


class DeviceProfile(_EdgexModel):
    """An EdgeX device profile."""

    api_version: str | None = None
    id: str | None = None
    name: str = Field(min_length=1)
    manufacturer: str = ""
    model: str = ""
    description: str = ""
    labels: list[str] = Field(default_factory=list)
    device_resources: list[DeviceResource] = Field(min_length=1)
    device_commands: list[DeviceCommand] = Field(default_factory=list)
    created: int | None = None
    modified: int | None = None
    #: EdgeX 4.x writes the timestamps as ``dbTimestamp: {created, modified}`` in YAML.
    db_timestamp: dict[str, Any] | None = None

    @field_validator("model", "manufacturer", mode="before")
    @classmethod
    def _stringify(cls, v: object) -> object:
        return _to_text(v)

    @model_validator(mode="after")
    def _cross_check(self, info: ValidationInfo) -> DeviceProfile:
        if not (info.context and info.context.get(_DEFER)):
            problems = self.problems()
            if problems:
                raise ValueError("; ".join(f"{p}: {m}" for p, m in problems))
        return self

    def problems(self) -> list[tuple[str, str]]:
        """Cross-reference problems as ``(key_path, message)``: duplicate names, commands that name a
        missing resource or ask for an access the resource lacks, writable Binary resources (EdgeX's
        ``ValidateDeviceProfileDTO``)."""
        out: list[tuple[str, str]] = []
        by_name: dict[str, DeviceResource] = {}
        for i, r in enumerate(self.device_resources):
            if r.name in by_name:
                out.append((f"deviceResources[{i}].name", f"duplicate device resource {r.name!r}"))
            by_name.setdefault(r.name, r)
            if r.properties.value_type is ValueType.BINARY and r.properties.writable:
                out.append(
                    (f"deviceResources[{i}].properties.readWrite", "a Binary resource cannot be written")
                )
        seen: set[str] = set()
        for i, c in enumerate(self.device_commands):
            if c.name in seen:
                out.append((f"deviceCommands[{i}].name", f"duplicate device command {c.name!r}"))
            seen.add(c.name)
            for j, op in enumerate(c.resource_operations):
                where = f"deviceCommands[{i}].resourceOperations[{j}].deviceResource"
                res = by_name.get(op.device_resource)
                if res is None:
                    out.append((where, f"no device resource named {op.device_resource!r}"))
                elif (
                    res.properties.read_write not in ("RW", "WR")
                    and res.properties.read_write != c.read_write
                ):
                    out.append(
                        (
                            where,
                            f"command readWrite {c.read_write} does not match resource's {res.properties.read_write}",
                        )
                    )
        return out

    def resource(self, name: str) -> DeviceResource:
        for r in self.device_resources:
            if r.name == name:
                return r
        raise KeyError(name)

    def command(self, name: str) -> DeviceCommand | None:
        for c in self.device_commands:
            if c.name == name:
                return c
        return None

    def source_resources(self, source: str) -> list[DeviceResource]:
        """The resources read for a source name: the command's resources in order, or the one resource."""
        cmd = self.command(source)
        if cmd is not None:
            return [self.resource(op.device_resource) for op in cmd.resource_operations]
        return [self.resource(source)]

    def mappings_for(self, resource: str, command: str | None = None) -> dict[str, str]:
        """The ``mappings`` that apply to a reading of ``resource``: those of ``command`` if it names the
        resource, else of the first command (in file order) that maps it. device-sdk-go v3.1.1 looks the
        resource operation up profile-wide (``cache.Profiles().ResourceOperation``), so a resource read
        on its own is mapped too."""
        if command is not None:
            cmd = self.command(command)
            if cmd is not None and any(op.device_resource == resource for op in cmd.resource_operations):
                return cmd.mappings_for(resource)
        for c in self.device_commands:
            m = c.mappings_for(resource)
            if m:
                return m
        return {}


class AutoEvent(_EdgexModel):
    """Periodic read of one source. ``interval`` is an EdgeX duration string (``"1s"``, ``"500ms"``,
    ``"1m30s"``; a bare number is seconds), kept as written and checked to be longer than 0."""

    interval: DurationText
    source_name: str = Field(min_length=1)
    on_change: bool = False
    on_change_threshold: float | None = Field(None, ge=0)
    retention: dict[str, Any] | None = None

    @property
    def interval_ns(self) -> int:
        return parse_duration(self.interval)

    @property
    def interval_seconds(self) -> float:
        return self.interval_ns / NS_PER_SECOND


class Device(_EdgexModel):
    """An EdgeX device definition (one ``deviceList[]`` entry)."""

    id: str | None = None
    name: str = Field(min_length=1)
    description: str = ""
    admin_state: Literal["LOCKED", "UNLOCKED"] = "UNLOCKED"
    operating_state: Literal["UP", "DOWN", "UNKNOWN"] = "UP"
    labels: list[str] = Field(default_factory=list)
    location: Any = None
    service_name: str = ""
    profile_name: str = Field(min_length=1)
    auto_events: list[AutoEvent] = Field(default_factory=list)
    protocols: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    parent: str | None = None
    last_connected: int | None = None
    last_reported: int | None = None
    created: int | None = None
    modified: int | None = None

    @field_validator("name", "profile_name", "service_name", mode="before")
    @classmethod
    def _stringify(cls, v: object) -> object:
        return _to_text(v)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def profile_from_dict(data: Any, *, source: str = "<dict>") -> DeviceProfile:
    """Validate a parsed EdgeX device profile; :class:`ConfigError` lists each problem's key path."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a device profile must be a mapping, not {type(data).__name__}", source=source)
    if "deviceResources" not in data and "kind" in data and "spec" in data:
        raise ConfigError(
            f"this is a Kubernetes {data['kind']} object, not an EdgeX device profile; "
            "load KubeEdge CRDs with load_kubeedge()",
            source=source,
        )
    try:
        profile = DeviceProfile.model_validate(data, context={_DEFER: True})
    except ValidationError as exc:
        raise config_error("invalid device profile", source, exc, model=DeviceProfile) from None
    problems = profile.problems()
    if problems:
        raise ConfigError(f"invalid device profile {profile.name!r}", source=source, problems=problems)
    return profile


def devices_from_dict(data: Any, *, source: str = "<dict>") -> list[Device]:
    """Validate a parsed EdgeX device definition file (``{deviceList: [...]}``)."""
    if not isinstance(data, Mapping) or "deviceList" not in data:
        raise ConfigError("a device definition file needs the top-level key 'deviceList'", source=source)
    items = data["deviceList"]
    if not isinstance(items, list):
        raise ConfigError("invalid device list", source=source, problems=[("deviceList", "must be a list")])
    extra = sorted(str(k) for k in data if k != "deviceList")
    problems: list[tuple[str, str]] = [(k, "unknown key (not allowed here)") for k in extra]
    devices: list[Device] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        try:
            dev = Device.model_validate(item)
        except ValidationError as exc:
            problems.extend(validation_problems(exc, prefix=f"deviceList[{i}]"))
            continue
        if dev.name in seen:
            problems.append((f"deviceList[{i}].name", f"duplicate device {dev.name!r}"))
        seen.add(dev.name)
        devices.append(dev)
    if problems:
        raise ConfigError("invalid device list", source=source, problems=problems)
    return devices


def _single_document(path: str | Path, what: str) -> tuple[Any, str]:
    docs, source = load_yaml_documents(path)
    if len(docs) != 1:
        raise ConfigError(f"expected one YAML document holding {what}, found {len(docs)}", source=source)
    return docs[0], source


def load_profile(path: str | Path) -> DeviceProfile:
    """Load an EdgeX device profile from a YAML (or JSON) file, exactly as EdgeX publishes them."""
    data, source = _single_document(path, "a device profile")
    return profile_from_dict(data, source=source)


def load_devices(path: str | Path) -> list[Device]:
    """Load an EdgeX device definition file (top key ``deviceList:``)."""
    data, source = _single_document(path, "a deviceList")
    return devices_from_dict(data, source=source)


def check_device(device: Device, profile: DeviceProfile, *, where: str = "") -> list[tuple[str, str]]:
    """Problems of ``device`` against its ``profile``: the profile name, and AutoEvent sources that are
    neither a resource nor a command of the profile. ``where`` prefixes the key paths."""
    out: list[tuple[str, str]] = []
    pre = f"{where}." if where else ""
    if device.profile_name != profile.name:
        out.append((f"{pre}profileName", f"is {device.profile_name!r}, the profile is {profile.name!r}"))
    names = {r.name for r in profile.device_resources} | {c.name for c in profile.device_commands}
    for i, ae in enumerate(device.auto_events):
        if ae.source_name not in names:
            out.append(
                (f"{pre}autoEvents[{i}].sourceName", f"{ae.source_name!r} is not in profile {profile.name!r}")
            )
    return out
