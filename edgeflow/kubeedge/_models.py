"""KubeEdge ``devices.kubeedge.io/v1beta1`` Device and DeviceModel CRDs.

Types follow ``kubeedge/kubeedge:staging/src/github.com/kubeedge/api/apis/devices/v1beta1`` (v1.15 to
v1.23): ``collectCycle``/``reportCycle`` are **milliseconds** (mapper-framework v1.18+); a cycle above
10⁹ ms is almost certainly a nanosecond value copied from an old sample, and is logged as a warning.
``configData`` objects are free-form (whatever the mapper defines) and kept as plain dicts.
v1alpha2 (KubeEdge ≤ 1.14) is refused with :class:`~edgeflow.errors.UnsupportedVersionError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edgeflow.errors import ConfigError, UnsupportedVersionError
from edgeflow.model import ValueType
from edgeflow.parsing import config_error, load_yaml_documents

__all__ = [
    "KUBE_GROUP",
    "KUBE_TO_TWIN_TYPE",
    "KUBE_TO_VALUE_TYPE",
    "KubeDevice",
    "KubeDeviceModel",
    "KubeObject",
    "kubeedge_from_dict",
    "load_kubeedge",
]

log = logging.getLogger(__name__)

KUBE_GROUP: Final = "devices.kubeedge.io"
KUBE_VERSION: Final = "v1beta1"
#: Above this many milliseconds a cycle is almost certainly nanoseconds (10⁹ ms ≈ 11.6 days).
NS_SUSPECT_MS: Final = 1_000_000_000

PropertyType = Literal["INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"]

#: DeviceModel ``type`` → EdgeX value type.
KUBE_TO_VALUE_TYPE: Final[dict[str, ValueType]] = {
    "INT": ValueType.INT64,
    "FLOAT": ValueType.FLOAT32,
    "DOUBLE": ValueType.FLOAT64,
    "STRING": ValueType.STRING,
    "BOOLEAN": ValueType.BOOL,
    "BYTES": ValueType.BINARY,
    "STREAM": ValueType.BINARY,
}
#: DeviceModel ``type`` → twin ``metadata.type`` (EdgeCore accepts only lowercase int/float/boolean/string).
KUBE_TO_TWIN_TYPE: Final[dict[str, str]] = {
    "INT": "int",
    "FLOAT": "float",
    "DOUBLE": "float",
    "STRING": "string",
    "BOOLEAN": "boolean",
    "BYTES": "string",
    "STREAM": "string",
}


def _drop_nulls(data: object) -> object:
    # Kubernetes treats ``key: null`` as absent (``configData:`` with nothing under it is common).
    if isinstance(data, Mapping):
        return {k: v for k, v in data.items() if v is not None}
    return data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _nulls = model_validator(mode="before")(_drop_nulls)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    _nulls = model_validator(mode="before")(_drop_nulls)


def _stringify(v: object) -> object:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if isinstance(v, int | float) else v


#: A string field where YAML may have written a number (``value: 30``, ``maximum: 100``).
_Text = Annotated[str, BeforeValidator(_stringify)]


class ObjectMeta(_Open):
    """Kubernetes ``metadata`` (only the parts edgeflow uses are typed; the rest is kept)."""

    name: str = Field(min_length=1)
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class TwinProperty(_Strict):
    value: _Text = ""
    metadata: dict[str, _Text] = Field(default_factory=dict)


class ProtocolConfig(_Strict):
    """``spec.protocol`` of a Device and ``visitors`` of a property: a protocol name and free-form config."""

    protocol_name: str = Field("", alias="protocolName")
    config_data: dict[str, Any] = Field(default_factory=dict, alias="configData")


class PushMethodHTTP(_Strict):
    host_name: str = Field("", alias="hostName")
    port: int = 0
    request_path: str = Field("", alias="requestPath")
    timeout: int = 0


class PushMethodMQTT(_Strict):
    address: str = ""
    topic: str = ""
    qos: int = Field(0, ge=0, le=2)
    retained: bool = False


class PushMethodOTEL(_Strict):
    endpoint_url: str = Field("", alias="endpointURL")


class PushMethod(_Strict):
    """``pushMethod``: where the mapper pushes values besides the twin. ``dbMethod`` (influxdb2, redis,
    TDEngine, mysql) and ``anomalyDetection`` are kept as free-form dicts."""

    http: PushMethodHTTP | None = None
    mqtt: PushMethodMQTT | None = None
    otel: PushMethodOTEL | None = None
    db_method: dict[str, Any] | None = Field(None, alias="dbMethod")
    anomaly_detection: dict[str, Any] | None = Field(None, alias="anomalyDetection")

    @property
    def methods(self) -> list[str]:
        """Names of the configured push targets (``mqtt``, ``http``, ``otel``, ``dbMethod.influxdb2`` …)."""
        out = [n for n in ("http", "mqtt", "otel") if getattr(self, n) is not None]
        out.extend(f"dbMethod.{k}" for k in (self.db_method or {}))
        if self.anomaly_detection is not None:
            out.append("anomalyDetection")
        return out


class DeviceProperty(_Strict):
    """``spec.properties[]`` of a Device. Cycles are milliseconds; 0 means the mapper's default."""

    name: str = Field(min_length=1)
    desired: TwinProperty = Field(default_factory=TwinProperty)
    visitors: ProtocolConfig = Field(default_factory=ProtocolConfig)
    report_cycle: int = Field(0, alias="reportCycle", ge=0)
    collect_cycle: int = Field(0, alias="collectCycle", ge=0)
    report_to_cloud: bool = Field(False, alias="reportToCloud")
    push_method: PushMethod | None = Field(None, alias="pushMethod")


class DeviceMethod(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    property_names: list[str] = Field(default_factory=list, alias="propertyNames")


class StateReport(_Strict):
    report_to_cloud: bool = Field(False, alias="reportToCloud")
    report_cycle: int = Field(0, alias="reportCycle", ge=0)


class ModelRef(_Strict):
    name: str = Field(min_length=1)


class DeviceSpec(_Strict):
    device_model_ref: ModelRef = Field(alias="deviceModelRef")
    node_name: str = Field("", alias="nodeName")
    properties: list[DeviceProperty] = Field(default_factory=list)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    methods: list[DeviceMethod] = Field(default_factory=list)
    state_report: StateReport | None = Field(None, alias="stateReport")


class KubeDevice(_Strict):
    """A ``devices.kubeedge.io/v1beta1`` Device. ``status`` (≤ v1.22 twins) is kept as a plain dict."""

    api_version: str = Field(alias="apiVersion")
    kind: Literal["Device"]
    metadata: ObjectMeta
    spec: DeviceSpec
    status: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.metadata.name

    def property(self, name: str) -> DeviceProperty:
        for p in self.spec.properties:
            if p.name == name:
                return p
        raise KeyError(name)


class ModelProperty(_Strict):
    """``spec.properties[]`` of a DeviceModel; ``minimum``/``maximum`` are strings in the CRD."""

    name: str = Field(min_length=1)
    description: str = ""
    type: PropertyType
    access_mode: Literal["ReadWrite", "ReadOnly"] = Field("ReadWrite", alias="accessMode")
    minimum: _Text = ""
    maximum: _Text = ""
    unit: _Text = ""
    visitors: Any = None

    @field_validator("type", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v

    @property
    def value_type(self) -> ValueType:
        return KUBE_TO_VALUE_TYPE[self.type]

    @property
    def twin_type(self) -> str:
        return KUBE_TO_TWIN_TYPE[self.type]

    @property
    def writable(self) -> bool:
        return self.access_mode == "ReadWrite"


class DeviceModelSpec(_Strict):
    protocol: str = ""
    properties: list[ModelProperty] = Field(default_factory=list)
    protocol_config_data: dict[str, Any] | None = Field(None, alias="protocolConfigData")


class KubeDeviceModel(_Strict):
    """A ``devices.kubeedge.io/v1beta1`` DeviceModel."""

    api_version: str = Field(alias="apiVersion")
    kind: Literal["DeviceModel"]
    metadata: ObjectMeta
    spec: DeviceModelSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def property(self, name: str) -> ModelProperty:
        for p in self.spec.properties:
            if p.name == name:
                return p
        raise KeyError(name)


KubeObject = KubeDevice | KubeDeviceModel

_KINDS: Final[dict[str, type[KubeDevice] | type[KubeDeviceModel]]] = {
    "Device": KubeDevice,
    "DeviceModel": KubeDeviceModel,
}


def _duplicates(names: list[str]) -> list[int]:
    seen: set[str] = set()
    dup: list[int] = []
    for i, n in enumerate(names):
        if n in seen:
            dup.append(i)
        seen.add(n)
    return dup


def kubeedge_from_dict(
    doc: Mapping[str, Any], *, source: str = "<dict>", where: str = ""
) -> list[KubeObject]:
    """The Device/DeviceModel objects of one parsed YAML document (a ``List`` gives several).

    Raises :class:`UnsupportedVersionError` for another version of ``devices.kubeedge.io`` and
    :class:`ConfigError` for anything else that is not a valid v1beta1 Device or DeviceModel.
    """
    api = doc.get("apiVersion")
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        out: list[KubeObject] = []
        for i, item in enumerate(doc["items"]):
            if not isinstance(item, Mapping):
                raise ConfigError(
                    "a list item must be a mapping", source=source, problems=[(f"{where}items[{i}]", "")]
                )
            out.extend(kubeedge_from_dict(item, source=source, where=f"{where}items[{i}]."))
        return out
    if not isinstance(api, str) or "/" not in api:
        raise ConfigError(
            "not a Kubernetes object",
            source=source,
            problems=[(f"{where}apiVersion", "missing or not group/version")],
        )
    group, _, version = api.partition("/")
    if group != KUBE_GROUP:
        raise ConfigError(
            f"not a KubeEdge device object (apiVersion {api!r})",
            source=source,
            problems=[(f"{where}apiVersion", f"expected {KUBE_GROUP}/{KUBE_VERSION}")],
        )
    if version != KUBE_VERSION:
        raise UnsupportedVersionError(
            f"{api} is not supported; edgeflow reads {KUBE_GROUP}/{KUBE_VERSION} (KubeEdge 1.15+). "
            "Convert the object to v1beta1 (v1alpha2 propertyVisitors become spec.properties[].visitors)",
            source=source,
            problems=[(f"{where}apiVersion", f"{version} is not supported")],
        )
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise ConfigError(
            f"kind {kind!r} is not a Device or DeviceModel",
            source=source,
            problems=[(f"{where}kind", "unsupported kind")],
        )
    try:
        obj: KubeObject = cls.model_validate(doc)
    except ValidationError as exc:
        raise config_error(
            f"invalid KubeEdge {kind}", source, exc, prefix=where.rstrip("."), model=cls
        ) from None
    names = [p.name for p in obj.spec.properties]
    dups = _duplicates(names)
    if dups:
        raise ConfigError(
            f"invalid KubeEdge {kind}",
            source=source,
            problems=[
                (f"{where}spec.properties[{i}].name", f"duplicate property {names[i]!r}") for i in dups
            ],
        )
    if isinstance(obj, KubeDevice):
        _warn_cycles(obj, source)
    return [obj]


def _warn_cycles(dev: KubeDevice, source: str) -> None:
    for i, p in enumerate(dev.spec.properties):
        for key, ms in (("collectCycle", p.collect_cycle), ("reportCycle", p.report_cycle)):
            if ms > NS_SUSPECT_MS:
                log.warning(
                    "%s: Device %s spec.properties[%d].%s = %d ms (%.1f days); KubeEdge v1beta1 cycles are "
                    "milliseconds, this looks like nanoseconds (%g s)",
                    source,
                    dev.name,
                    i,
                    key,
                    ms,
                    ms / 86_400_000,
                    ms / 1e9,
                )


def load_kubeedge(path: str | Path) -> list[KubeObject]:
    """Every KubeEdge Device and DeviceModel in a YAML file (several documents and ``List`` objects
    allowed). Documents of other kinds are an error, so a mixed-up file is noticed."""
    docs, source = load_yaml_documents(path)
    out: list[KubeObject] = []
    for n, doc in enumerate(docs):
        if not isinstance(doc, Mapping):
            raise ConfigError(f"YAML document {n + 1} is not a mapping", source=source)
        out.extend(kubeedge_from_dict(doc, source=source))
    if not out:
        raise ConfigError("no KubeEdge Device or DeviceModel in file", source=source)
    return out
