"""edgeflow as a KubeEdge mapper: device values as DeviceTwin reports, desired values written to devices.

::

    bus ─► (twin rules, e.g. deadband) ─► twin values ─► EventbusTwin: $hw/events/device/<id>/twin/update
                                                      └► DmiReporter: ReportDeviceStatus (coalesced)
    EdgeCore ─► twin/update/delta, twin/get/result, DMI RegisterDevice/UpdateDevice ─► write through the
                connector (the profile's inverse transforms) ─► read back ─► report the new actual

:class:`KubeEdgeMapper` owns what every transport shares: the KubeEdge devices (a catalog from the
manifests, the ones running on this node), each twin's current value and type, desired values and the
writes that apply them. It takes readings from the bus on its own subscription (policy ``drop-oldest``: a slow
twin never holds up the data path; drops are counted), through the optional ``rules`` (the same rules as
the pipelines, e.g. a deadband), and marks what changed. Each transport keeps its own "to report" set,
coalesced per device (one message carries every changed twin of a device), and its own token bucket.
Heartbeats (``reportCycle``) re-report every twin of a device; so does every reconnection, because EdgeCore
drops what it could not send to the cloud while offline.

The runtime is reached through :class:`TwinHost` (write, read, health, add and remove devices), so this
room never imports the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgeflow.bus import Bus, Subscription
from edgeflow.connector import DeviceHealth
from edgeflow.errors import BusClosedError, ConfigError, EdgeflowError
from edgeflow.kubeedge import KubeDevice, KubeDeviceModel, RunDevice, kube_run_device, load_kubeedge
from edgeflow.model import ReadingBatch, SeriesTable, ValueType
from edgeflow.rules import Pipeline, build_pipeline
from edgeflow.twin.spec import KubeEdgeSpec
from edgeflow.twin.wire import TwinValueError, check_namespace, format_twin_value, valid_value

__all__ = ["KubeEdgeMapper", "TwinDevice", "TwinHost", "TwinInfo", "load_catalog"]

log = logging.getLogger(__name__)

ALL_EVENTS = "edgex/events/device/#"
HEALTH_STATE = {DeviceHealth.UP: "online", DeviceHealth.DOWN: "offline", DeviceHealth.UNKNOWN: "unknown"}


class TwinHost(Protocol):
    """What the mapper needs of the runtime."""

    async def write_value(self, device: str, resource: str, value: Any) -> None: ...

    async def read_values(self, device: str, resource: str) -> list[tuple[str, Any, ValueType]]: ...

    def device_health(self, device: str) -> DeviceHealth: ...

    async def add_kube_devices(self, devices: Sequence[RunDevice]) -> None: ...

    async def remove_kube_devices(self, names: Sequence[str]) -> None: ...


@dataclass(slots=True)
class TwinInfo:
    name: str
    type: str  # lowercase twin type
    value_type: ValueType  # what the device service reads
    writable: bool
    report_cycle_ms: int
    report_to_cloud: bool
    desired: str


@dataclass(slots=True)
class TwinDevice:
    """One KubeEdge device the mapper serves, and what it knows of its twins."""

    run: RunDevice
    twins: dict[str, TwinInfo]
    heartbeat: float  # seconds
    values: dict[str, str] = field(default_factory=dict)
    collected_ms: dict[str, int] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)  # desired value last written per twin

    @property
    def name(self) -> str:
        return self.run.device.name

    @property
    def reported(self) -> list[str]:
        """The twins reported to EdgeCore: properties with ``reportToCloud: true``, as mapper-framework
        does (the others are read, and served by the REST API, but not reported)."""
        return [t.name for t in self.twins.values() if t.report_to_cloud]

    @property
    def namespace(self) -> str:
        return self.run.namespace


class Dirty:
    """What a transport still has to report: per device (FIFO by when it first changed), the twins that
    changed. A device is ready ``linger`` seconds after its first change, so twins read in the same
    round (one AutoEvent each) go out together."""

    def __init__(self, linger: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.linger = linger
        self._clock = clock
        self.twins: dict[str, tuple[float, set[str]]] = {}
        self._popped_at = 0.0

    def mark(self, device: str, names: Iterable[str]) -> None:
        entry = self.twins.get(device)
        if entry is None:
            entry = self.twins[device] = (self._clock(), set())
        entry[1].update(names)

    def ready_in(self) -> float | None:
        """Seconds until the next device is ready (0: now), None when nothing waits."""
        if not self.twins:
            return None
        first = next(iter(self.twins.values()))[0]
        return max(0.0, first + self.linger - self._clock())

    def pop(self) -> tuple[str, set[str]] | None:
        """The oldest device that is ready, and its changed twins."""
        if not self.twins:
            return None
        device = next(iter(self.twins))
        at, names = self.twins[device]
        if at + self.linger > self._clock():
            return None
        del self.twins[device]
        self._popped_at = at
        return device, names

    def put_back(self, device: str, names: set[str]) -> None:
        """Return a popped entry to the head (a send that could not happen keeps its turn)."""
        rest = self.twins
        at, more = rest.pop(device, (self._popped_at, set()))
        self.twins = {device: (at, names | more)}
        self.twins.update(rest)

    def discard(self, device: str) -> None:
        self.twins.pop(device, None)

    def __len__(self) -> int:
        return len(self.twins)


class Reporter(Protocol):
    """A transport to EdgeCore (MQTT eventbus, DMI)."""

    dirty: Dirty

    def wake(self) -> None: ...

    def device_added(self, dev: TwinDevice) -> None: ...

    def device_removed(self, dev: TwinDevice) -> None: ...

    def state_changed(self, dev: TwinDevice, state: str) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class Server(Protocol):
    """Something the mapper serves besides its transports (the REST API)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def load_catalog(
    paths: Sequence[Path], *, connectors: Mapping[str, str] | None = None
) -> dict[str, RunDevice]:
    """Every Device in ``paths`` with its DeviceModel (same namespace), by ``<namespace>/<name>``."""
    devices: list[tuple[str, KubeDevice]] = []
    models: dict[tuple[str, str], KubeDeviceModel] = {}
    for path in paths:
        for obj in load_kubeedge(path):
            if isinstance(obj, KubeDevice):
                devices.append((str(path), obj))
            else:
                models[(obj.metadata.namespace, obj.name)] = obj
    out: dict[str, RunDevice] = {}
    for source, dev in devices:
        ref = dev.spec.device_model_ref.name
        model = models.get((dev.metadata.namespace, ref))
        if model is None:
            raise ConfigError(
                f"Device {dev.metadata.namespace}/{dev.name}: no DeviceModel {ref!r} in namespace "
                f"{dev.metadata.namespace!r} among the manifests",
                source=source,
                problems=[("spec.deviceModelRef.name", f"{ref!r} not found")],
            )
        bad_ns = check_namespace(dev.metadata.namespace)
        if bad_ns:
            raise ConfigError(bad_ns, source=source, problems=[("metadata.namespace", bad_ns)])
        rd = kube_run_device(dev, model, connectors=connectors)
        for p in dev.spec.properties:
            if p.push_method is not None and p.push_method.methods:
                log.warning(
                    "%s: Device %s property %s: pushMethod %s is not used; edgeflow ships values through its "
                    "own uplink (configure uplink: and pipelines:)",
                    source,
                    rd.device_id,
                    p.name,
                    ", ".join(p.push_method.methods),
                )
        if rd.device_id in out:
            raise ConfigError(f"Device {rd.device_id} appears twice", source=source)
        out[rd.device_id] = rd
    return out


def twin_device(rd: RunDevice, spec: KubeEdgeSpec) -> TwinDevice:
    twins: dict[str, TwinInfo] = {}
    by_res = {r.name: r for r in rd.profile.device_resources}
    cycles = []
    for p in rd.kube.spec.properties:
        res = by_res.get(p.name)
        if res is None:
            continue
        ttype = rd.model.property(p.name).twin_type
        twins[p.name] = TwinInfo(
            p.name,
            ttype,
            res.properties.value_type,
            res.properties.writable,
            p.report_cycle,
            p.report_to_cloud,
            p.desired.value,
        )
        if p.report_cycle:
            cycles.append(p.report_cycle / 1000.0)
    heartbeat = min(cycles) if cycles else spec.report_cycle
    return TwinDevice(rd, twins, heartbeat=max(heartbeat, 0.05))


class KubeEdgeMapper:
    """The KubeEdge side of one edge node (see the module docstring)."""

    def __init__(
        self,
        spec: KubeEdgeSpec,
        host: TwinHost,
        bus: Bus[ReadingBatch],
        table: SeriesTable,
        *,
        catalog: Mapping[str, RunDevice] | None = None,
    ) -> None:
        self.spec = spec
        self.host = host
        self.table = table
        self.catalog: dict[str, RunDevice] = dict(
            catalog if catalog is not None else load_catalog(spec.manifests, connectors=spec.connectors)
        )
        self.devices: dict[str, TwinDevice] = {}
        self.reporters: list[Reporter] = []
        self.servers: list[Server] = []
        self.pipeline: Pipeline | None = (
            build_pipeline(spec.rules, table, name="kubeedge") if spec.rules else None
        )
        self._sub: Subscription[ReadingBatch] = bus.subscribe(
            ALL_EVENTS, capacity=spec.queue, policy="drop-oldest", name="kubeedge"
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._writes: asyncio.Queue[tuple[str, str, str, str]] = asyncio.Queue(maxsize=1000)
        self._states: dict[str, str] = {}
        self._membership_lock = asyncio.Lock()
        self.counts: dict[str, int] = {
            "values_in": 0,
            "values_changed": 0,
            "values_invalid": 0,
            "writes_ok": 0,
            "writes_failed": 0,
            "writes_skipped": 0,
            "writes_dropped": 0,
            "devices_added": 0,
            "devices_removed": 0,
            "unknown_devices": 0,
        }

    # -- devices ----------------------------------------------------------------------------------

    def initial_devices(self) -> list[RunDevice]:
        """The catalog's devices that run on this node at start (``spec.nodeName`` is this node, or
        either is unset); EdgeCore's membership corrects the set once it answers."""
        node = self.spec.node
        return [
            rd
            for rd in self.catalog.values()
            if not node or not rd.kube.spec.node_name or rd.kube.spec.node_name == node
        ]

    def attach(self, rd: RunDevice) -> TwinDevice:
        """Start tracking a device the runtime now serves (the runtime calls this)."""
        dev = twin_device(rd, self.spec)
        self.devices[dev.name] = dev
        for r in self.reporters:
            r.device_added(dev)
        return dev

    def detach(self, name: str) -> None:
        dev = self.devices.pop(name, None)
        self._states.pop(name, None)
        if dev is not None:
            for r in self.reporters:
                r.device_removed(dev)

    def find(self, ident: str) -> TwinDevice | None:
        """A running device by ``<namespace>/<name>`` or ``<name>``."""
        ns, _, name = ident.rpartition("/")
        dev = self.devices.get(name)
        if dev is not None and (not ns or dev.namespace == ns):
            return dev
        return None

    async def add(self, rds: Sequence[RunDevice]) -> None:
        """Run these devices now (membership, DMI): the runtime starts them, then they report."""
        new = [rd for rd in rds if rd.device.name not in self.devices]
        if not new:
            return
        await self.host.add_kube_devices(new)
        self.counts["devices_added"] += len(new)

    async def remove(self, names: Sequence[str]) -> None:
        gone = [n for n in names if n in self.devices]
        if not gone:
            return
        await self.host.remove_kube_devices(gone)
        self.counts["devices_removed"] += len(gone)

    async def follow_membership(
        self, ids: Sequence[str] | None, added: Sequence[str], removed: Sequence[str]
    ) -> None:
        """Apply what EdgeCore says runs on this node: ``ids`` is the whole list (get/result), or None
        with ``added``/``removed`` (membership/updated). Ids are ``<ns>/<name>`` or ``<name>``."""
        if self.spec.membership != "follow":
            return
        async with self._membership_lock:
            to_add: list[RunDevice] = []
            to_remove: list[str] = []
            wanted = list(ids) if ids is not None else list(added)
            for ident in wanted:
                rd = self._catalog_entry(ident)
                if rd is None:
                    self.counts["unknown_devices"] += 1
                    log.warning(
                        "EdgeCore puts device %s on this node, but no Device manifest for it is known "
                        "(add it to kubeedge.manifests, or let EdgeCore register it over DMI)",
                        ident,
                    )
                    continue
                to_add.append(rd)
            if ids is not None:
                keep = {rd.device.name for rd in to_add}
                to_remove = [n for n in self.devices if n not in keep]
            else:
                for ident in removed:
                    dev = self.find(ident)
                    if dev is not None:
                        to_remove.append(dev.name)
            if to_remove:
                log.info("membership: removing %s", ", ".join(sorted(to_remove)))
                await self.remove(to_remove)
            if to_add:
                names = [rd.device.name for rd in to_add if rd.device.name not in self.devices]
                if names:
                    log.info("membership: adding %s", ", ".join(sorted(names)))
                await self.add(to_add)

    def _catalog_entry(self, ident: str) -> RunDevice | None:
        if "/" in ident:
            return self.catalog.get(ident)
        found = [rd for rd in self.catalog.values() if rd.device.name == ident]
        return found[0] if len(found) == 1 else None

    # -- values -----------------------------------------------------------------------------------

    def set_value(self, dev: TwinDevice, twin: str, value: Any, vt: ValueType, origin_ns: int = 0) -> bool:
        """A new value of a twin: formatted for EdgeCore, marked for every transport if it changed.
        A value EdgeCore would refuse is not sent: counted and logged, naming device, twin and value."""
        info = dev.twins.get(twin)
        if info is None:
            return False
        self.counts["values_in"] += 1
        try:
            text = format_twin_value(dev.name, twin, info.type, value, vt)
        except TwinValueError as exc:
            self.counts["values_invalid"] += 1
            log.error("%s (not reported)", exc)
            return False
        dev.collected_ms[twin] = (origin_ns or time.time_ns()) // 1_000_000
        if dev.values.get(twin) == text:
            return False
        dev.values[twin] = text
        self.counts["values_changed"] += 1
        if not info.report_to_cloud:
            return True
        for r in self.reporters:
            r.dirty.mark(dev.name, (twin,))
            r.wake()
        return True

    def _take(self, batch: ReadingBatch) -> None:
        if self.pipeline is not None:
            batch = self.pipeline.process(batch).batch
        table = self.table
        for i in range(len(batch)):
            info = table.info(int(batch.series[i]))
            dev = self.devices.get(info.device)
            if dev is None or info.resource not in dev.twins:
                continue
            self.set_value(dev, info.resource, batch.value_at(i), info.value_type, int(batch.origins[i]))

    async def _consume(self) -> None:
        sub = self._sub
        while True:
            try:
                await sub.wait()
            except BusClosedError:
                return
            for _, batch in sub.drain(1000):
                try:
                    self._take(batch)
                except Exception:
                    log.exception("kubeedge: taking a batch of %d readings failed", len(batch))

    async def _watch_health(self) -> None:
        while True:
            for dev in list(self.devices.values()):
                state = HEALTH_STATE.get(self.host.device_health(dev.name), "unknown")
                if self._states.get(dev.name) != state:
                    self._states[dev.name] = state
                    for r in self.reporters:
                        r.state_changed(dev, state)
            await asyncio.sleep(0.1)

    def state_of(self, name: str) -> str:
        return self._states.get(name, "unknown")

    # -- desired values ---------------------------------------------------------------------------

    def desire(self, dev: TwinDevice, twin: str, value: str, *, source: str) -> str | None:
        """Queue writing ``value`` (a desired value) to ``twin``; returns why not, or None."""
        info = dev.twins.get(twin)
        if info is None:
            return f"device {dev.name} has no twin {twin!r}"
        if not info.writable:
            return f"twin {twin!r} of device {dev.name} is read-only"
        if not valid_value(value):
            return f"value {value!r} does not match EdgeCore's value regex"
        if dev.applied.get(twin) == value:
            self.counts["writes_skipped"] += 1  # deltas repeat while actual != expected: idempotent
            return None
        try:
            self._writes.put_nowait((dev.name, twin, value, source))
        except asyncio.QueueFull:
            self.counts["writes_dropped"] += 1
            return "too many desired values waiting"
        return None

    async def apply(self, name: str, twin: str, value: str, *, source: str) -> str | None:
        """Write ``value`` to ``twin`` of device ``name`` now (through the connector, with the profile's
        inverse transforms), read it back and mark it for reporting. Returns why it failed, or None."""
        dev = self.devices.get(name)
        if dev is None:
            return f"device {name} is not served here"
        info = dev.twins.get(twin)
        if info is None:
            return f"device {name} has no twin {twin!r}"
        typed: Any = value
        if info.value_type is ValueType.BOOL:
            flags = {"1": True, "0": False, "true": True, "false": False, "on": True, "off": False}
            typed = flags.get(value.lower(), value)
        try:
            await self.host.write_value(name, twin, typed)
        except EdgeflowError as exc:
            self.counts["writes_failed"] += 1
            log.warning("%s: writing %s=%r to %s failed: %s", source, twin, value, name, exc)
            return str(exc)
        except Exception as exc:
            self.counts["writes_failed"] += 1
            log.exception("%s: writing %s=%r to %s failed", source, twin, value, name)
            return f"{type(exc).__name__}: {exc}"
        self.counts["writes_ok"] += 1
        dev.applied[twin] = value
        log.info("%s: wrote %s=%s to device %s", source, twin, value, name)
        try:
            for resource, v, vt in await self.host.read_values(name, twin):
                self.set_value(dev, resource, v, vt)
        except Exception as exc:  # the next poll reports it
            log.info("device %s: reading %s back after a write failed: %s", name, twin, exc)
        return None

    async def _writer(self) -> None:
        while True:
            name, twin, value, source = await self._writes.get()
            await self.apply(name, twin, value, source=source)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._consume(), name="kubeedge-values"),
            loop.create_task(self._writer(), name="kubeedge-writes"),
            loop.create_task(self._watch_health(), name="kubeedge-health"),
        ]
        started: list[Reporter | Server] = []
        try:
            for r in [*self.reporters, *self.servers]:
                await r.start()
                started.append(r)
        except BaseException:
            for r in reversed(started):
                await r.stop()
            await self._cancel()
            raise

    async def _cancel(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    async def stop(self) -> None:
        for r in reversed([*self.reporters, *self.servers]):
            try:
                await r.stop()
            except Exception:
                log.exception("stopping a KubeEdge transport failed")
        await self._cancel()

    def samples(self) -> list[tuple[str, float, tuple[tuple[str, str], ...]]]:
        """Counters for the metrics endpoint: ``(name, value, labels)``; transports are labelled."""
        out: list[tuple[str, float, tuple[tuple[str, str], ...]]] = [
            (f"kubeedge_{k}_total", float(v), ()) for k, v in self.counts.items()
        ]
        out.append(("kubeedge_readings_dropped_total", float(self._sub.stats().dropped_readings), ()))
        for r in self.reporters:
            lab = (("transport", type(r).__name__),)
            for k, v in r.stats().items():
                if isinstance(v, bool | int | float):
                    out.append((f"kubeedge_transport_{k}", float(v), lab))
        return out

    def stats(self) -> dict[str, Any]:
        sub = self._sub.stats()
        return {
            **self.counts,
            "devices": len(self.devices),
            "readings_dropped": sub.dropped_readings,
            "transports": {type(r).__name__: r.stats() for r in self.reporters},
        }
