"""The ``virtual`` connector: devices that need no hardware, like EdgeX's device-virtual.

Each resource produces values from a generator chosen by its ``attributes``:

=============  ==================================================================================
``generator``  what a read returns
=============  ==================================================================================
``random``     (default) uniform in [``min``, ``max``]; bounds default to the resource's
               ``minimum``/``maximum`` properties, else 0..100 (integers: the type's range ∩ 0..100)
``walk``       a random walk from ``start`` with steps of at most ``step``, kept in [min, max]
``sine``       ``offset + amplitude · sin(2π t / period)``, t the read time (``period`` in seconds)
``constant``   ``value``
``replay``     the next value of column ``column`` of CSV file ``file`` (separator ``sep``),
               looping at the end; lets recorded plant data drive a whole pipeline
=============  ==================================================================================

Booleans, strings, arrays, binary and objects get random values of their type. A write pins the
resource to the written value (reads return it) until a ``EnableRandomization_<Resource>`` resource
(device-virtual's convention) is written ``true``. The device's ``protocols.virtual`` may set ``seed``
for repeatable values, ``failEvery: N`` to fail every N-th read, ``offline: true`` to fail every read
(:meth:`VirtualConnector.set_offline` switches it at run time), and ``latency`` (seconds or a duration
string) to answer slowly — for exercising offline handling and slow links without hardware. The latency
and the ``sine`` generator's time run on the service's clock (:attr:`Connector.clock`), so a test with a
manual clock sees a slow device exactly as slow as declared.
"""

from __future__ import annotations

import csv
import math
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeflow.connector import CommandValue, Connector, DeviceHealth
from edgeflow.errors import ConfigError, ConnectorError, DeviceTimeoutError
from edgeflow.model import ValueType
from edgeflow.parsing import did_you_mean, duration_seconds
from edgeflow.profiles import Device, DeviceProfile, DeviceResource

__all__ = ["VirtualConnector"]

_GENERATORS = ("random", "walk", "sine", "constant", "replay")
_PROTOCOL_KEYS = ("seed", "failEvery", "offline", "latency")


def _num(attrs: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    raw = attrs.get(key, default)
    if raw is None:
        raise ConfigError(f"{where}.{key} is required")
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key} must be a number, not {raw!r}") from None


def _load_column(path: Path, column: str, sep: str, where: str) -> list[float]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter=sep)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise ConfigError(
                    f"{where}.column: {column!r} is not a column of {path} (columns: {reader.fieldnames})"
                )
            values = []
            for row_no, row in enumerate(reader, start=2):
                try:
                    values.append(float(row[column]))
                except (TypeError, ValueError):
                    raise ConfigError(
                        f"{path}:{row_no}: {column!r} is not a number: {row[column]!r}"
                    ) from None
    except OSError as exc:
        raise ConfigError(f"{where}.file: cannot read {path}: {exc.strerror}") from exc
    if not values:
        raise ConfigError(f"{where}.file: {path} has no rows")
    return values


@dataclass
class _Resource:
    resource: DeviceResource
    generator: str
    lo: float
    hi: float
    step: float = 1.0
    period: float = 60.0
    constant: Any = None
    series: list[float] = field(default_factory=list)
    position: int = 0
    current: float | None = None
    pinned: bool = False
    pinned_value: Any = None
    integer: bool = False  # the value type is an integer (walks and replays are rounded)

    def __post_init__(self) -> None:
        self.integer = self.resource.properties.value_type.is_integer


@dataclass
class _Device:
    rng: random.Random
    resources: dict[str, _Resource]
    fail_every: int = 0
    latency: float = 0.0
    offline: bool = False
    reads: int = 0
    #: the last list of resources read and what they resolved to (a service reads the same list each time)
    last_read: tuple[Sequence[DeviceResource], list[_Resource]] | None = None


class VirtualConnector(Connector):
    """Simulated devices; see the module docstring for the ``attributes`` each resource may carry."""

    type_name = "virtual"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        if self.options:
            raise ConfigError(
                "invalid virtual connector options",
                problems=[
                    (f"connectors.virtual.{k}", "unknown option; the virtual connector takes none")
                    for k in self.options
                ],
            )
        self._state: dict[str, _Device] = {}

    def validate_device(self, device: Device, profile: DeviceProfile) -> None:
        opts = device.protocols.get("virtual", {})
        unknown = [k for k in opts if k not in _PROTOCOL_KEYS]
        if unknown:
            raise ConfigError(
                f"device {device.name!r}: invalid protocols.virtual",
                problems=[
                    (
                        f"devices.{device.name}.protocols.virtual.{k}",
                        f"unknown key{did_you_mean(k, _PROTOCOL_KEYS)}; expected {', '.join(_PROTOCOL_KEYS)}",
                    )
                    for k in unknown
                ],
            )
        where = f"devices.{device.name}.protocols.virtual"
        seed = opts.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | str)):
            raise ConfigError(f"{where}.seed: must be a whole number or a string, not {seed!r}")
        fail_every = opts.get("failEvery", 0) or 0
        if isinstance(fail_every, bool) or not isinstance(fail_every, int) or fail_every < 0:
            raise ConfigError(f"{where}.failEvery: must be a whole number >= 0, not {fail_every!r}")
        offline = opts.get("offline", False)
        if not isinstance(offline, bool):
            raise ConfigError(f"{where}.offline: must be true or false, not {offline!r}")
        try:
            latency = duration_seconds(opts.get("latency", 0), zero=True)
        except ValueError as exc:
            raise ConfigError(f"device {device.name!r}: protocols.virtual.latency: {exc}") from None
        rng = random.Random(seed)
        resources = {}
        for i, res in enumerate(profile.device_resources):
            where = f"profile {profile.name!r} deviceResources[{i}].attributes"
            resources[res.name] = self._build(res, where)
        self._state[device.name] = _Device(rng, resources, fail_every, latency, offline)

    def _build(self, res: DeviceResource, where: str) -> _Resource:
        attrs = res.attributes
        gen = str(attrs.get("generator", "random"))
        if gen not in _GENERATORS:
            raise ConfigError(
                f"{where}.generator: {gen!r} is not one of {', '.join(_GENERATORS)}{did_you_mean(gen, _GENERATORS)}"
            )
        props = res.properties
        vt = props.value_type
        lo_default = props.minimum if props.minimum is not None else 0.0
        hi_default = props.maximum if props.maximum is not None else 100.0
        if vt.is_integer:
            tlo, thi = vt.int_range
            lo_default = max(lo_default, tlo)
            hi_default = min(hi_default, thi)
        lo = _num(attrs, "min", where, lo_default)
        hi = _num(attrs, "max", where, hi_default)
        if lo > hi:
            raise ConfigError(f"{where}: min {lo} is above max {hi}")
        r = _Resource(res, gen, lo, hi)
        if gen == "walk":
            r.step = _num(attrs, "step", where, (hi - lo) / 100 or 1.0)
            r.current = _num(attrs, "start", where, (lo + hi) / 2)
        elif gen == "sine":
            r.period = _num(attrs, "period", where, 60.0)
            if r.period <= 0:
                raise ConfigError(f"{where}.period must be positive")
        elif gen == "constant":
            if "value" not in attrs:
                raise ConfigError(f"{where}.value is required for the constant generator")
            r.constant = attrs["value"]
        elif gen == "replay":
            file = attrs.get("file")
            column = attrs.get("column")
            if not file or not column:
                raise ConfigError(f"{where}: the replay generator needs file and column")
            r.series = _load_column(Path(str(file)), str(column), str(attrs.get("sep", ",")), where)
        if gen != "random" and gen != "constant" and not vt.is_numeric:
            raise ConfigError(f"{where}.generator: {gen!r} needs a numeric valueType, not {vt.value}")
        return r

    async def read(self, device: str, resources: Sequence[DeviceResource]) -> list[CommandValue]:
        state = self._state.get(device)
        if state is None:
            raise ConnectorError("unknown device", device=device)
        state.reads += 1
        if state.latency:
            await self.clock.sleep(state.latency)
        if state.offline:
            raise DeviceTimeoutError("simulated device is offline", device=device)
        if state.fail_every and state.reads % state.fail_every == 0:
            raise DeviceTimeoutError("simulated failure (failEvery)", device=device)
        now = self.clock.time_ns()
        last = state.last_read
        if last is not None and last[0] is resources:
            rs = last[1]
        else:
            rs = []
            for res in resources:
                r = state.resources.get(res.name)
                if r is None:
                    raise ConnectorError("unknown resource", device=device, resource=res.name)
                rs.append(r)
            state.last_read = (resources, rs)
        rng = state.rng
        nxt = self._next
        # origin 0: the device service stamps the read with its (injectable) clock
        return [CommandValue(r.resource.name, nxt(rng, r, now)) for r in rs]

    def _next(self, rng: random.Random, r: _Resource, now_ns: int) -> Any:
        if r.pinned:
            return r.pinned_value
        if r.generator == "walk":  # the common case first, without the lookups below
            assert r.current is not None
            cur = min(r.hi, max(r.lo, r.current + rng.uniform(-r.step, r.step)))
            r.current = cur
            return round(cur) if r.integer else float(cur)
        vt = r.resource.properties.value_type
        if r.generator == "constant":
            return r.constant
        if r.generator == "replay":
            v = r.series[r.position % len(r.series)]
            r.position += 1
            return self._cast(vt, v)
        if r.generator == "walk":
            assert r.current is not None
            r.current = min(r.hi, max(r.lo, r.current + rng.uniform(-r.step, r.step)))
            return self._cast(vt, r.current)
        if r.generator == "sine":
            amp = (r.hi - r.lo) / 2
            return self._cast(vt, r.lo + amp + amp * math.sin(2 * math.pi * (now_ns / 1e9) / r.period))
        return self._random(rng, vt, r)

    @staticmethod
    def _cast(vt: ValueType, v: float) -> Any:
        return round(v) if vt.is_integer else float(v)

    def _random(self, rng: random.Random, vt: ValueType, r: _Resource) -> Any:
        if vt.is_array:
            el = vt.element
            return [self._random(rng, el, r) for _ in range(4)]
        if vt is ValueType.BOOL:
            return rng.random() < 0.5
        if vt.is_integer:
            return rng.randint(math.ceil(r.lo), math.floor(r.hi))
        if vt.is_float:
            return rng.uniform(r.lo, r.hi)
        if vt is ValueType.STRING:
            return "".join(rng.choices(string.ascii_letters, k=8))
        if vt is ValueType.BINARY:
            return rng.randbytes(16)
        return {"value": rng.uniform(r.lo, r.hi)}

    async def write(self, device: str, values: Sequence[tuple[DeviceResource, Any]]) -> None:
        state = self._state.get(device)
        if state is None:
            raise ConnectorError("unknown device", device=device)
        for res, value in values:
            prefix = "EnableRandomization_"
            if res.name.startswith(prefix):
                target = state.resources.get(res.name[len(prefix) :])
                if target is not None and value is True:
                    target.pinned = False
                continue
            r = state.resources.get(res.name)
            if r is None:
                raise ConnectorError("unknown resource", device=device, resource=res.name)
            r.pinned = True
            r.pinned_value = value

    def set_offline(self, device: str, offline: bool) -> None:
        """Simulate a device that stops (``True``) or starts (``False``) answering."""
        self._state[device].offline = offline

    def health(self, device: str) -> DeviceHealth:
        state = self._state.get(device)
        if state is None:
            return DeviceHealth.UNKNOWN
        return DeviceHealth.DOWN if state.offline else DeviceHealth.UP
