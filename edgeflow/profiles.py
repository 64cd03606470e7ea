"""EdgeX device profiles and devices, and KubeEdge Device/DeviceModel CRDs.

The classes mirror EdgeX's v3 DTOs field for field (JSON/YAML names in camelCase, Python names in
snake_case), so a profile published for EdgeX loads unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from edgeflow.model import ValueType

__all__ = [
    "AutoEvent",
    "Device",
    "DeviceCommand",
    "DeviceProfile",
    "DeviceResource",
    "ResourceOperation",
    "ResourceProperties",
]

ReadWrite = Literal["R", "W", "RW", "WR"]


class _EdgexModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class ResourceProperties(_EdgexModel):
    """``deviceResources[].properties`` (EdgeX ``ResourceProperties``)."""

    value_type: ValueType
    read_write: ReadWrite
    units: str = ""
    minimum: float | None = None
    maximum: float | None = None
    default_value: str | None = None
    mask: int | None = None
    shift: int | None = None
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

    @field_validator("default_value", "assertion", mode="before")
    @classmethod
    def _stringify(cls, v: object) -> object:
        # YAML turns ``defaultValue: 0`` into an int; EdgeX holds it as a string.
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v) if isinstance(v, int | float) else v

    @property
    def readable(self) -> bool:
        return "R" in self.read_write

    @property
    def writable(self) -> bool:
        return "W" in self.read_write


class DeviceResource(_EdgexModel):
    """One ``deviceResources[]`` entry: a value a device has, with protocol ``attributes``."""

    name: str
    description: str = ""
    is_hidden: bool = False
    tags: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    properties: ResourceProperties


class ResourceOperation(_EdgexModel):
    device_resource: str
    default_value: str | None = None
    mappings: dict[str, str] = Field(default_factory=dict)


class DeviceCommand(_EdgexModel):
    """One ``deviceCommands[]`` entry: several resources read or written together."""

    name: str
    is_hidden: bool = False
    read_write: ReadWrite
    tags: dict[str, Any] = Field(default_factory=dict)
    resource_operations: list[ResourceOperation] = Field(min_length=1)


class DeviceProfile(_EdgexModel):
    """An EdgeX device profile."""

    api_version: str | None = None
    id: str | None = None
    name: str
    manufacturer: str = ""
    model: str = ""
    description: str = ""
    labels: list[str] = Field(default_factory=list)
    device_resources: list[DeviceResource] = Field(min_length=1)
    device_commands: list[DeviceCommand] = Field(default_factory=list)

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


class AutoEvent(_EdgexModel):
    """Periodic read of one source. ``interval`` is an EdgeX duration string (``"1s"``, ``"500ms"``)."""

    interval: str
    source_name: str
    on_change: bool = False
    on_change_threshold: float | None = None


class Device(_EdgexModel):
    """An EdgeX device definition (one ``deviceList[]`` entry)."""

    name: str
    description: str = ""
    admin_state: Literal["LOCKED", "UNLOCKED"] = "UNLOCKED"
    operating_state: Literal["UP", "DOWN", "UNKNOWN"] = "UP"
    labels: list[str] = Field(default_factory=list)
    location: Any = None
    service_name: str = ""
    profile_name: str
    auto_events: list[AutoEvent] = Field(default_factory=list)
    protocols: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
