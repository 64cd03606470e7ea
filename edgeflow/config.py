"""The one configuration model of an edge node, loaded from YAML with environment overrides.

::

    service: edge-node-1
    devices:                       # EdgeX device definitions, plus the connector and the profile
      - name: boiler-1
        connector: virtual
        profile: profiles/boiler.yaml          # a path (relative to this file) or an inline profile
        protocols: {virtual: {}}
        autoEvents: [{interval: 1s, sourceName: Temperature}]
    pipelines:
      - name: reduce
        match: {device: "boiler-*", resource: [Temperature, Pressure]}
        rules: [{type: deadband, absolute: 0.5}]
    uplink: {type: file, path: out/events.jsonl}

Keys are accepted in camelCase (as EdgeX writes them) or snake_case. Every error names the file
and the key path (``devices[2].protocols.modbus-tcp.port``). Environment variables override the file:
``EDGEFLOW__UPLINK__PATH=/data/out.jsonl``; ``__`` separates levels, list items are numbered
(``EDGEFLOW__DEVICES__0__CONNECTOR``), values are read as YAML 1.2 scalars. The file, the profiles it
names and the overrides are all read by :mod:`edgeflow.parsing` (YAML 1.2: a device named ``off`` stays
a string), and every duration is one syntax: seconds, or ``"250ms"``, ``"1m30s"``, ``"1.5h"``, ``"1d"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from edgeflow.errors import ConfigError
from edgeflow.model import OverflowPolicy
from edgeflow.parsing import (
    ListenAddress,
    NonNegativeSeconds,
    PositiveSeconds,
    load_yaml,
    parse_listen,
    parse_yaml_value,
    validation_problems,
)
from edgeflow.profiles import AutoEvent, Device, DeviceProfile, load_profile
from edgeflow.rules.spec import MatchSpec, RuleSpec
from edgeflow.twin.spec import KubeEdgeSpec
from edgeflow.uplink.spec import UplinkSpec

__all__ = [
    "BusSpec",
    "DeviceSpec",
    "EdgeConfig",
    "MatchSpec",
    "MetricsSpec",
    "PipelineSpec",
    "SchedulerSpec",
    "StateSpec",
    "apply_env_overrides",
    "config_schema",
    "load_config",
    "parse_config",
    "parse_listen",
]

ENV_PREFIX = "EDGEFLOW__"


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
    )


class DeviceSpec(_Model):
    """An EdgeX device definition with the connector that serves it and its profile."""

    name: str = Field(min_length=1)
    connector: str = Field(min_length=1, description="connector type, e.g. virtual, modbus")
    profile: str | DeviceProfile = Field(description="path to an EdgeX profile file, or the profile inline")
    description: str = ""
    admin_state: Literal["LOCKED", "UNLOCKED"] = "UNLOCKED"
    labels: list[str] = Field(default_factory=list)
    protocols: dict[str, dict[str, Any]] = Field(default_factory=dict)
    auto_events: list[AutoEvent] = Field(default_factory=list)
    tags: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)

    def to_device(self, service: str, profile: DeviceProfile) -> Device:
        return Device(
            name=self.name,
            description=self.description,
            admin_state=self.admin_state,
            labels=self.labels,
            service_name=service,
            profile_name=profile.name,
            auto_events=self.auto_events,
            protocols=self.protocols,
            tags=self.tags,
            properties=self.properties,
        )


class PipelineSpec(_Model):
    """A route from the bus to the uplink: readings that ``match`` (all when left out) go through
    ``rules`` in order. Several pipelines may take the same reading; each keeps its own state."""

    name: str = Field(min_length=1)
    match: MatchSpec = Field(default_factory=MatchSpec)
    rules: list[RuleSpec] = Field(default_factory=list)


class SchedulerSpec(_Model):
    """AutoEvent polling: how many failures mark a device offline, and how it is retried."""

    failure_threshold: int = Field(default=3, ge=1)
    backoff_initial: PositiveSeconds = 1.0
    backoff_max: PositiveSeconds = 60.0
    read_timeout: PositiveSeconds = 10.0
    shift_convention: Literal["v3", "v4"] = Field(
        default="v3", description="EdgeX 'shift' sign: v3 positive = left, v4 positive = right"
    )
    transforms: Literal["float", "edgex"] = Field(
        default="float",
        description="float: base/scale/offset in float64 (integer resources that scale read as Float64); "
        "edgex: device-sdk-go's typed arithmetic, truncating fractional factors on integer types",
    )
    push_capacity: int = Field(
        default=100_000,
        ge=1,
        description="readings a pushing connector (OPC-UA subscriptions, MQTT devices) may have waiting for "
        "the bus; beyond, pushed readings are dropped and counted per device",
    )
    push_linger: NonNegativeSeconds = Field(
        default=0.0,
        description="how long pushed readings wait to gather into bigger batches (0: until the loop is free)",
    )
    align: bool = Field(
        default=True,
        description="AutoEvents fire on multiples of their interval on the wall clock (the first read at once), "
        "so the devices of one interval are read together and their readings share a router step; "
        "false: every device keeps the phase of its first read",
    )


class BusSpec(_Model):
    """The queue between the device services and the pipelines: bounded, with a declared policy."""

    batch_max: int = Field(default=1_000, ge=1, description="readings the pipelines take per step")
    linger: NonNegativeSeconds = Field(
        default=0.02,
        description="while AutoEvent reads are in flight, how long the router may wait for them before a "
        "step, so the reads of one tick go through the rules together (0: step at once)",
    )
    capacity: int = Field(default=100_000, ge=1, description="readings queued at most")
    policy: OverflowPolicy = Field(
        default="block", description="when the queue is full: wait (block), or drop and count"
    )
    block_timeout: PositiveSeconds = Field(
        default=5.0, description="block: the longest a device service waits, then the reading is dropped"
    )


class MetricsSpec(_Model):
    """Prometheus exposition and health endpoints (``/metrics``, ``/healthz``, ``/readyz``)."""

    listen: ListenAddress | None = Field(
        default=None,
        description="host:port (an IPv6 host in brackets, port 0 for any free one); none disables the endpoint",
    )

    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` of :attr:`listen`, or None."""
        return None if self.listen is None else parse_listen(self.listen)


class StateSpec(_Model):
    """Rule state (open segments, last values sent, open windows) is committed with every batch it
    produces, in the uplink's commit log, and restored at start, so a restart, even after ``kill -9``,
    neither re-sends nor forgets. ``on_stop`` says what a clean stop does with what the rules hold:
    ``flush`` ships it (open segments close early, still within their bound), ``keep`` leaves it in the
    state for the next start (fewer points shipped across restarts)."""

    on_stop: Literal["flush", "keep"] = "flush"


class EdgeConfig(_Model):
    """A whole edge node."""

    service: str = Field(default="edgeflow", min_length=1)
    devices: list[DeviceSpec] = Field(default_factory=list)
    connectors: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="options per connector type"
    )
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    bus: BusSpec = Field(default_factory=BusSpec)
    pipelines: list[PipelineSpec] = Field(default_factory=list)
    unrouted: Literal["ship", "drop"] = Field(
        default="ship",
        description="readings that match no pipeline: shipped as they are (ship) or dropped; counted either way",
    )
    uplink: UplinkSpec
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    state: StateSpec = Field(default_factory=StateSpec)
    _source: str = PrivateAttr(default="<dict>")

    @property
    def source(self) -> str:
        """Where this configuration came from (the file, or ``<dict>``), for error messages."""
        return self._source

    kubeedge: KubeEdgeSpec | None = Field(
        default=None, description="run as a KubeEdge mapper: Device/DeviceModel manifests, DeviceTwin, DMI"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> EdgeConfig:
        for what, names in (
            ("devices", [d.name for d in self.devices]),
            ("pipelines", [p.name for p in self.pipelines]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"{what}: name {name!r} appears twice")
                seen.add(name)
        return self


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the configuration file."""
    return EdgeConfig.model_json_schema(by_alias=True)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _find_key(container: Mapping[str, Any], wanted: str) -> str:
    """The existing key of ``container`` that ``wanted`` names (case-insensitive, ``_`` ignored)."""
    norm = wanted.lower().replace("_", "").replace("-", "")
    for key in container:
        if str(key).lower().replace("_", "").replace("-", "") == norm:
            return str(key)
    return to_camel(wanted.lower())


def apply_env_overrides(
    data: dict[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    applied: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Apply ``EDGEFLOW__A__B=value`` variables onto the raw config mapping (in place; returned).
    ``applied``, when given, receives ``key path → variable name`` for each override."""
    env = os.environ if environ is None else environ
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        value = parse_yaml_value(env[name], f"<env> {name}") if env[name] else ""
        node: Any = data
        path = ""
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"{name}: {path or '<root>'} has no item {part}", source="<env>")
                idx = int(part)
                path += f"[{idx}]"
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {path or '<root>'} is not a mapping", source="<env>")
            key = _find_key(node, part)
            path += f".{key}" if path else key
            if last:
                node[key] = value
                if applied is not None:
                    applied[path] = name
            else:
                node = node.setdefault(key, {})
    return data


def _resolve_profiles(cfg: EdgeConfig, base: Path, source: str) -> EdgeConfig:
    devices = []
    loaded: dict[Path, DeviceProfile] = {}  # a fleet names one profile file for thousands of devices
    for i, d in enumerate(cfg.devices):
        if isinstance(d.profile, str):
            path = Path(d.profile)
            if not path.is_absolute():
                path = base / path
            try:
                profile = loaded.get(path) or loaded.setdefault(path, load_profile(path))
            except ConfigError as exc:
                raise ConfigError(
                    f"devices[{i}].profile: cannot load {path}",
                    source=source,
                    problems=[(f"devices[{i}].profile", str(exc))],
                ) from exc
            d = d.model_copy(update={"profile": profile})
        devices.append(d)
    update: dict[str, Any] = {"devices": devices}
    if cfg.kubeedge is not None:
        manifests = [p if p.is_absolute() else base / p for p in cfg.kubeedge.manifests]
        update["kubeedge"] = cfg.kubeedge.model_copy(update={"manifests": manifests})
    return cfg.model_copy(update=update)


def _check_sources(cfg: EdgeConfig, source: str) -> None:
    problems: list[tuple[str, str]] = []
    for i, d in enumerate(cfg.devices):
        profile = d.profile
        assert isinstance(profile, DeviceProfile)
        names = {r.name for r in profile.device_resources} | {c.name for c in profile.device_commands}
        for j, ae in enumerate(d.auto_events):
            if ae.source_name not in names:
                problems.append(
                    (
                        f"devices[{i}].autoEvents[{j}].sourceName",
                        f"{ae.source_name!r} is neither a resource nor a command of profile {profile.name!r}",
                    )
                )
    if problems:
        raise ConfigError("configuration is not valid", source=source, problems=problems)


def parse_config(
    data: Any,
    *,
    source: str = "<dict>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> EdgeConfig:
    """Validate a raw mapping (as read from YAML), with environment overrides and profiles loaded."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a mapping at the top level", source=source)
    applied: dict[str, str] = {}
    data = apply_env_overrides(data, environ, applied=applied)
    try:
        cfg = EdgeConfig.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc, data=data, model=EdgeConfig)
        raise _attributed(problems, source, applied) from None
    cfg = _resolve_profiles(cfg, base_dir or Path.cwd(), source)
    _check_sources(cfg, source)
    if cfg.kubeedge is not None:
        _check_kubeedge(cfg.kubeedge, {d.name for d in cfg.devices}, source)
    cfg._source = source
    return cfg


def _attributed(problems: list[tuple[str, str]], source: str, applied: Mapping[str, str]) -> ConfigError:
    """The error for ``problems``, each blamed on where its value came from: the environment variable
    that set it (or a key above it), else the file."""

    def origin(path: str) -> str | None:
        for set_path, var in applied.items():
            if path == set_path or path.startswith((set_path + ".", set_path + "[")):
                return var
        return None

    from_env = [(p, m, origin(p)) for p, m in problems]
    if all(var is not None for _, _, var in from_env):
        names = sorted({var for _, _, var in from_env if var is not None})
        return ConfigError(
            "configuration is not valid", source=f"environment {', '.join(names)}", problems=problems
        )
    return ConfigError(
        "configuration is not valid",
        source=source,
        problems=[(p, m if var is None else f"{m} (set by environment {var})") for p, m, var in from_env],
    )


def _check_kubeedge(spec: KubeEdgeSpec, names: set[str], source: str) -> None:
    """Load the KubeEdge manifests now, so a bad Device or DeviceModel fails ``validate`` as ``run``."""
    from edgeflow.twin.mapper import load_catalog  # the manifests' translation; only when configured

    catalog = load_catalog(spec.manifests, connectors=spec.connectors)  # errors name the manifest and key
    clash = sorted(names & {rd.device.name for rd in catalog.values()})
    if clash:
        raise ConfigError(
            "a KubeEdge Device has the name of a configured device",
            source=source,
            problems=[("kubeedge.manifests", ", ".join(clash))],
        )


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> EdgeConfig:
    """Load and validate a configuration file."""
    p = Path(path)
    return parse_config(load_yaml(p), source=str(p), base_dir=p.parent, environ=environ)
