"""Wires a configuration into running parts and owns their start, stop, signals, health and ledger.

::

    devices ─► DeviceService (one per connector type) ─► bus ─► router (match → pipelines) ─► uplink
                                                                     │ rule states          (commit log:
                                                                     └──────────────────────► one transaction)

Only this module knows every room. One task, the **router**, takes readings off the bus in steps and
runs each step through every pipeline whose ``match`` takes them; what comes out is handed to the
uplink's committer. A step runs without awaiting, so when the committer cuts a group and snapshots the
pipelines' rule states, the states are exactly those that produced the group: rule state and shipped
batches are committed together, and a ``kill -9`` at any instant restarts into a state the cloud
agrees with.

Every reading is accounted for (:meth:`Runtime.ledger`): published on the bus, dropped by the bus's
policy, routed to pipelines (in, out, late, alarms, errors) or unrouted (``unrouted: ship|drop``),
committed, refused by the outbox's policy, acknowledged by the transport, or still in flight.

Start order is uplink (commit log, rule state restored), router, device services, metrics; stop order is
the reverse, so every reading a device service published is processed and committed before the uplink
stops. A start that fails part-way stops what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

from edgeflow.backoff import Backoff
from edgeflow.bus import Bus, Subscription
from edgeflow.commitlog import ROW_SEP, row_key
from edgeflow.config import DeviceSpec, EdgeConfig, PipelineSpec
from edgeflow.connector import Clock, DeviceHealth, as_clock, load_connector, time_us_ns
from edgeflow.errors import BusClosedError, ConfigError, ConnectorError, ConnectorNotFoundError, RuleError
from edgeflow.kubeedge import RunDevice
from edgeflow.metrics import MetricsServer, Registry, Sample
from edgeflow.model import (
    Event,
    Reading,
    ReadingBatch,
    SeriesInfo,
    SeriesTable,
    ValueType,
    encode_add_event_request,
)
from edgeflow.profiles import DeviceProfile
from edgeflow.rules import Pipeline, PipelineOutput, SeriesMatcher, build_pipeline
from edgeflow.rules.base import series_from_rows
from edgeflow.rules.pipeline import late_name, output_names
from edgeflow.service import DeviceService, SchedulerSettings
from edgeflow.twin.spec import KubeEdgeSpec
from edgeflow.uplink import Uplink, create_uplink

if TYPE_CHECKING:
    from edgeflow.twin.mapper import KubeEdgeMapper

__all__ = ["Runtime", "kube_device_spec", "run_config"]

log = logging.getLogger(__name__)

ALL_EVENTS = "edgex/events/device/#"
#: Uplink statistics that go up and down; every other one is a total.
_UPLINK_GAUGES = frozenset(
    {
        "batching",
        "staged",
        "queued",
        "queued_readings",
        "queued_bytes",
        "outbox_file_bytes",
        "inflight",
        "connected",
    }
)
_UPLINK_HELP = {
    "batching": "readings waiting to be committed to the outbox",
    "staged": "readings committed (durable) and waiting to be cut into a message (batching.max_delay)",
    "queued": "batches in the outbox not yet acknowledged by the broker (or written by the file uplink)",
    "queued_readings": "readings in the outbox not yet acknowledged",
    "queued_bytes": "bytes in the outbox not yet acknowledged",
    "outbox_file_bytes": "size of the outbox file on disk",
    "bytes_shipped": "bytes of encoded batches acknowledged by the broker (or written)",
    "acked_readings": "readings acknowledged by the broker (or written)",
    "dropped_readings": "readings the outbox dropped by its overflow policy",
    "readings_committed": "readings committed to the outbox",
    "commit_failures": "commits to the outbox that failed (retried)",
    "connected": "1 while connected to the broker",
    "inflight": "messages published and not yet acknowledged",
}
#: How often at most the "readings matched no pipeline" line is logged.
UNROUTED_LOG_INTERVAL = 60.0
#: ``run(freeze_gc=True)``: seconds after start with the collector off, after which what the first reads
#: built (rule states, series) is collected once and frozen too; and the young generation's threshold
#: (CPython's default is 700).
GC_SETTLE = 5.0
GC_YOUNG = 10_000


class _StateRows:
    """How a pipeline's rule state is stored as rows: each rule that keeps its series in rows gives
    them by name (:class:`~edgeflow.rules.base.SeriesChanges`: chunks of
    :data:`~edgeflow.rules.base.STATE_ROW_SERIES` series), stored as ``row_key(state key, "<rule
    index>" + ROW_SEP + <name>)``. A commit writes the rows of the chunks read since the last one.
    A fresh pipeline first clears the rows a pipeline of that name left (``row_key(key, "")`` set to
    ``None``), so no stale row outlives a changed definition; so does one whose rows, read back, are
    laid out otherwise than it would write them (rows of an earlier release)."""

    def __init__(self) -> None:
        self.fresh = True  # clear what is stored under the key at the next commit

    def changed(
        self, key: str, changes: Mapping[int, Mapping[str, bytes]], out: dict[str, bytes | None]
    ) -> None:
        """Put into ``out`` the rows of ``changes`` (rule index -> row name -> row)."""
        if self.fresh:
            out[row_key(key, "")] = None
            self.fresh = False
        for i, rows in changes.items():
            prefix = row_key(key, f"{i}{ROW_SEP}")
            for name, blob in rows.items():
                out[prefix + name] = blob

    def load(self, rows: Sequence[tuple[str, bytes]]) -> list[tuple[int, Any, Any]]:
        """The ``(rule index, series key, state)`` of stored rows, in the order the rules placed them.
        Rows of one device each (``<rule>ROW_SEP<device as JSON>``: ``[[series, state], ...]``, before
        state rows were chunks) are read too, and written again as chunks at the next commit."""
        named: dict[int, list[tuple[str, bytes]]] = {}
        out: list[tuple[int, Any, Any]] = []
        exact = True
        for name, blob in rows:
            index, sep, rest = name.partition(ROW_SEP)
            if not sep or not index.isdigit():
                raise RuleError(f"rule state row {name!r} is not <rule>{ROW_SEP!r}<name>")
            if not rest.startswith('"'):
                named.setdefault(int(index), []).append((rest, blob))
                continue
            entries = orjson.loads(blob)
            if not isinstance(entries, list):
                raise RuleError(f"rule state row {name!r} is not [[series, state], ...]")
            for entry in entries:
                if not isinstance(entry, list) or len(entry) != 2:
                    raise RuleError(f"rule state row {name!r} holds {entry!r}, not [series, state]")
                out.append((int(index), entry[0], entry[1]))
            exact = False
        for i in sorted(named):
            entries, same = series_from_rows(named[i], f"rule {i}")
            out.extend((i, series, st) for series, st in entries)
            exact = exact and same
        self.fresh = not exact
        return out


@dataclass
class _Route:
    spec: PipelineSpec
    matcher: SeriesMatcher
    pipeline: Pipeline
    readings_in: int = 0
    readings_out: int = 0
    late: int = 0
    alarms: int = 0
    errors: int = 0
    edgex_json_bytes: int = 0  # what EdgeX would have sent for the readings in: one event per reading
    dirty: bool = True
    rows: _StateRows = field(default_factory=lambda: _StateRows())

    @property
    def state_key(self) -> str:
        return f"pipeline:{self.spec.name}"


@dataclass
class _Counters:
    started_at: float = field(default_factory=time.time)
    router_taken: int = 0
    router_steps: int = 0  # batches through the pipelines: readings of one tick share one
    routed: int = 0
    unrouted_shipped: int = 0
    unrouted_dropped: int = 0
    router_restarts: int = 0
    pipeline_errors: int = 0
    state_restored: int = 0
    state_discarded: int = 0
    edgex_json_bytes: int = 0  # of every reading routed: the baseline the savings ratio compares with


_TYPICAL = {ValueType.BOOL: False, ValueType.STRING: "idle"}


def _edgex_event_size(info: SeriesInfo) -> int:
    """Bytes of an EdgeX ``AddEventRequest`` with one reading of ``info``'s series (a typical value:
    ``123.456`` for floats, ``123`` for integers; arrays and objects as a small one)."""
    vt = info.value_type
    if vt in _TYPICAL:
        value: Any = _TYPICAL[vt]
    elif vt.is_integer:
        value = 123
    elif vt.is_numeric:
        value = 123.456
    else:
        value, vt = 123.456, ValueType.FLOAT64  # arrays, binary, objects: at least a number's size
    reading = Reading(info.device, info.resource, info.profile, vt, value, _ORIGIN, units=info.units)
    event = Event(info.device, info.profile, info.source or info.resource, _ORIGIN, [reading])
    return len(encode_add_event_request(event))


def _edgex_event_sizes(infos: Sequence[SeriesInfo]) -> list[int]:
    """:func:`_edgex_event_size` of each of ``infos``. A device name JSON writes as it is (printable
    ASCII without quotes or backslashes) counts only by its length, so the series of a fleet (the same
    resources on many devices) are sized once per resource and name length, not once each."""
    sizes: dict[tuple[Any, ...], int] = {}
    out: list[int] = []
    for info in infos:
        name = info.device
        plain = name.isascii() and name.isprintable() and '"' not in name and "\\" not in name
        if not plain:
            out.append(_edgex_event_size(info))
            continue
        key = (len(name), info.resource, info.profile, info.value_type, info.units, info.source)
        size = sizes.get(key)
        if size is None:
            size = sizes[key] = _edgex_event_size(info)
        out.append(size)
    return out


_ORIGIN = 1_767_225_600_000_000_000  # a 19-digit origin, as every origin in this century is


def _freeze_settled(enable: bool) -> None:
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    if enable:
        gc.enable()
    log.debug("froze %d objects in %.3f s", gc.get_freeze_count(), time.perf_counter() - started)


def _listing(names: list[str], most: int = 10) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


@contextlib.contextmanager
def _blamed_on(source: str, where: str) -> Iterator[None]:
    """Building a part: its configuration errors (and a connector that is not installed) become
    :class:`ConfigError` naming the configuration's source and, where the error names no key path, the
    part's (``devices[2]``), so ``validate`` and ``run`` report them alike."""
    try:
        yield
    except ConfigError as exc:
        if exc.source is not None:
            raise
        message = str(exc).split("\n", 1)[0]
        problems = exc.problems or [(where, message)]
        raise ConfigError(
            message if exc.problems else "configuration is not valid", source=source, problems=problems
        ) from None
    except ConnectorNotFoundError as exc:
        raise ConfigError(
            "configuration is not valid",
            source=source,
            problems=[(f"{where}.connector" if where.startswith("devices") else where, str(exc))],
        ) from None


class Runtime:
    """One edge node, built from an :class:`~edgeflow.config.EdgeConfig`.

    ``clock`` gives nanoseconds since the epoch (by default in whole microseconds,
    :func:`~edgeflow.connector.time_us_ns`); it stamps device reads and drives event-time watermarks when
    no readings arrive. Use it as ``async with Runtime(cfg) as rt: ...`` or :meth:`run`.
    """

    def __init__(
        self,
        config: EdgeConfig,
        *,
        clock: Clock | Callable[[], int] = time_us_ns,
        uplink: Uplink | None = None,
        watermark_interval: float = 1.0,
    ) -> None:
        self.config = config
        self._clock = as_clock(clock)  # device services' AutoEvents, read timeouts and origins run on it
        self.clock = self._clock.time_ns
        self.table = SeriesTable()
        self.bus: Bus[ReadingBatch] = Bus()
        with _blamed_on(config.source, "uplink"):
            self.uplink = uplink or create_uplink(config.uplink, service=config.service)
        self.uplink.pending_min = 2 * config.bus.capacity  # (see Uplink.pending_min)
        self.services: dict[str, DeviceService] = {}
        self.routes: list[_Route] = []
        self.registry = Registry()
        self.metrics_server: MetricsServer | None = None
        self._watermark_interval = watermark_interval
        self._sub: Subscription[ReadingBatch] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._counters = _Counters()
        self._edgex_size: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._started = False
        self._uplink_started = False
        self._router_error: str = ""
        self._unrouted_since_log = 0
        self._unrouted_example = ""
        self._unrouted_logged_at = 0.0
        self._device_specs: dict[str, DeviceSpec] = {}
        self._retired: list[_Route] = []  # pipelines a reload replaced: their counts stay in the ledger
        self.kubeedge: KubeEdgeMapper | None = None
        self._build()

    # -- building -------------------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.config
        s = cfg.scheduler
        settings = SchedulerSettings(
            failure_threshold=s.failure_threshold,
            backoff_initial=s.backoff_initial,
            backoff_max=s.backoff_max,
            read_timeout=s.read_timeout,
            shift_convention=s.shift_convention,
            transforms=s.transforms,
            push_capacity=s.push_capacity,
            push_linger=s.push_linger,
            align=s.align,
        )
        self._settings = settings
        for type_name, options in cfg.connectors.items():  # options of connectors no device uses yet, too
            with _blamed_on(cfg.source, f"connectors.{type_name}"):
                load_connector(type_name)(options)
        for i, dspec in enumerate(cfg.devices):
            with _blamed_on(cfg.source, f"devices[{i}]"):
                self._add_spec(dspec)
        for pspec in cfg.pipelines:
            self.routes.append(
                _Route(
                    pspec,
                    SeriesMatcher(pspec.match),
                    build_pipeline(pspec.rules, self.table, name=pspec.name),
                )
            )
        self._check_outputs(cfg.devices)
        if cfg.kubeedge is not None:
            self._build_kubeedge(cfg.kubeedge)
        b = cfg.bus
        self._sub = self.bus.subscribe(
            ALL_EVENTS, capacity=b.capacity, policy=b.policy, name="pipelines", block_timeout=b.block_timeout
        )
        self.registry.add_collector(self._collect)

    def _service_for(self, connector_type: str) -> tuple[DeviceService, bool]:
        """The service of a connector type, made on first use (and whether it was just made)."""
        service = self.services.get(connector_type)
        if service is not None:
            return service, False
        cls = load_connector(connector_type)
        connector = cls(self.config.connectors.get(connector_type, {}))
        service = DeviceService(
            self.config.service,
            connector,
            self.bus.publish,
            self.table,
            settings=self._settings,
            clock=self._clock,
        )
        self.services[connector_type] = service
        return service, True

    def _add_spec(self, dspec: DeviceSpec) -> None:
        """Give ``dspec`` to its connector type's service (before start)."""
        service, _ = self._service_for(dspec.connector)
        profile = dspec.profile
        assert isinstance(profile, DeviceProfile), "load_config resolves profile paths"
        service.add_device(dspec.to_device(self.config.service, profile), profile)
        self._device_specs[dspec.name] = dspec

    def _build_kubeedge(self, spec: KubeEdgeSpec) -> None:
        from edgeflow.twin.mapper import KubeEdgeMapper

        mapper = KubeEdgeMapper(spec, _TwinHost(self), self.bus, self.table)
        self.kubeedge = mapper
        if spec.eventbus is not None:
            from edgeflow.twin.eventbus import EventbusTwin

            mapper.reporters.append(EventbusTwin(mapper, spec.eventbus))
        if spec.dmi is not None:
            from edgeflow.twin.dmi import DmiReporter  # grpcio: only when DMI is configured

            mapper.reporters.append(DmiReporter(mapper, spec.dmi))
        if spec.rest is not None:
            from edgeflow.twin.rest import MapperRestApi

            mapper.servers.append(MapperRestApi(mapper, spec.rest))
        initial = mapper.initial_devices()
        specs = [kube_device_spec(rd) for rd in initial]
        self._check_outputs(specs)
        for rd, dspec in zip(initial, specs, strict=True):
            self._add_spec(dspec)
            mapper.attach(rd)

    # -- devices while running ------------------------------------------------------------------

    async def add_devices(self, specs: Sequence[DeviceSpec]) -> None:
        """Serve more devices, now: each joins its connector type's service (a new type gets a new
        service, started if the runtime runs) and its AutoEvents start at once. Devices already running
        keep their connections, schedules and rule state. Raises :class:`ConfigError` (nothing added) for
        a name already running, two pipelines writing one series, or a definition its connector
        refuses. Together with :meth:`remove_devices` this is how a device's definition changes live
        (remove, then add) — membership, DMI and a reload all use it."""
        specs = list(specs)
        names = [d.name for d in specs]
        dup = sorted({n for n in names if n in self._device_specs or names.count(n) > 1})
        if dup:
            raise ConfigError("devices already running", problems=[("devices", ", ".join(dup))])
        self._check_outputs(specs)
        added: list[str] = []
        try:
            for dspec in specs:
                service, new = self._service_for(dspec.connector)
                profile = dspec.profile
                assert isinstance(profile, DeviceProfile), "load_config resolves profile paths"
                device = dspec.to_device(self.config.service, profile)
                if self._started and not new:
                    await service.add_running_device(device, profile)
                else:
                    service.add_device(device, profile)
                self._device_specs[dspec.name] = dspec
                added.append(dspec.name)
                if self._started and new:
                    await service.start()
        except BaseException:
            await self.remove_devices(added)
            raise
        log.info("devices added: %s", ", ".join(names))

    async def remove_devices(self, names: Iterable[str]) -> None:
        """Stop serving these devices (unknown names are ignored): their AutoEvents stop and their
        connector forgets them; every other device is untouched. Readings they already published
        still go through the pipelines."""
        removed = []
        for name in names:
            dspec = self._device_specs.pop(name, None)
            if dspec is None:
                continue
            service = self.services.get(dspec.connector)
            if service is not None:
                await service.remove_device(name)
            removed.append(name)
        if removed:
            log.info("devices removed: %s", ", ".join(removed))

    @property
    def device_specs(self) -> Mapping[str, DeviceSpec]:
        """Every device being served, by name (the config's and those added since)."""
        return self._device_specs

    def _check_outputs(self, devices: Sequence[DeviceSpec]) -> None:
        """Refuse two pipelines that would write one series (the same device and resource name): the
        cloud would see one series made of two rules' outputs. Worked out for every series the
        devices can produce, before they run."""
        writers: dict[tuple[str, str], tuple[int, str]] = {}
        problems: dict[str, str] = {}
        for dspec in devices:
            profile = dspec.profile
            assert isinstance(profile, DeviceProfile)
            for res in profile.device_resources:
                sources = {res.name} | {
                    c.name
                    for c in profile.device_commands
                    if any(op.device_resource == res.name for op in c.resource_operations)
                }
                for source in sorted(sources):
                    info = SeriesInfo(
                        dspec.name,
                        res.name,
                        profile.name,
                        res.properties.value_type,
                        res.properties.units,
                        source,
                    )
                    for i, route in enumerate(self.routes):
                        if not route.matcher.matches(info):
                            continue
                        for name, rule in output_names(route.spec.rules, route.spec.name, res.name).items():
                            j, other = writers.setdefault((dspec.name, name), (i, rule))
                            if j == i:
                                continue
                            a, b = self.routes[j].spec.name, route.spec.name
                            key = f"pipelines[{i}]" + ("" if rule == "input" else ".rules")
                            problems.setdefault(
                                key,
                                f"pipeline {a!r} ({other}) and pipeline {b!r} ({rule}) would both write series "
                                f"{dspec.name}/{name}: make their match disjoint, or give the rule a name",
                            )
        if problems:
            raise ConfigError("two pipelines would write the same series", problems=sorted(problems.items()))

    # -- rule state -----------------------------------------------------------------------------

    def _snapshots(self) -> Mapping[str, bytes | None]:
        """Each changed pipeline's rule state; the committer calls this as it cuts a group. A pipeline's
        state is a head under its key and rows (see :class:`_StateRows`): only the rows of the series
        changed since the last call are written again."""
        out: dict[str, bytes | None] = {}
        for route in self.routes:
            if route.dirty:
                changes = route.pipeline.snapshot_changes()
                out[route.state_key] = orjson.dumps(changes.head)
                route.rows.changed(route.state_key, changes.rows, out)
                route.dirty = False
        return out

    async def _restore_state(self) -> None:
        for route in self.routes:
            blob = await self.uplink.load_state(route.state_key)
            if blob is None:
                continue
            try:
                rows = route.rows.load(await self.uplink.load_state_rows(route.state_key))
                route.pipeline.restore_changes(orjson.loads(blob), rows)
            except (orjson.JSONDecodeError, RuleError, ValueError, TypeError, KeyError) as exc:
                # Starting the rules afresh only means some readings are sent again: safe. Keep the
                # state for a look, out of the way, and say so.
                route.rows = _StateRows()
                await self.uplink.set_state_aside(route.state_key)
                self._counters.state_discarded += 1
                log.error(
                    "pipeline %s: rule state not restored (%s); set aside as %s.unreadable",
                    route.spec.name,
                    exc,
                    route.state_key,
                )
            else:
                self._counters.state_restored += 1
                if rows and not route.rows.fresh:
                    # The rows stored are the state just restored: nothing to write again. (A head
                    # without rows, from before rows were kept, and rows laid out otherwise, are
                    # written as rows at the next commit.)
                    route.pipeline.snapshot_changes()
                    route.dirty = False
                log.info("pipeline %s: rule state restored", route.spec.name)

    # -- running --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every part; if one fails, stop those already started and raise."""
        if self._started:
            return
        try:
            await self._start()
        except BaseException:
            await self._teardown()
            raise
        self._started = True

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self.uplink.set_series_table(self.table)
        await self.uplink.start()
        self._uplink_started = True
        await self._restore_state()
        # Only now may a commit take the rules' states: one before the restore (the readings staged
        # before a restart are cut at once) would write the fresh rules' states over the restored.
        self.uplink.set_state_source(self._snapshots)
        self._tasks.append(loop.create_task(self._supervise_router(), name="router"))
        self._tasks.append(loop.create_task(self._watermarks(), name="watermarks"))
        for service in self.services.values():
            await service.start()
        if self.kubeedge is not None:
            await self.kubeedge.start()
        address = self.config.metrics.address()
        if address is not None:
            self.metrics_server = MetricsServer(self.registry, ready=self._ready)
            try:
                await self.metrics_server.start(*address)
            except (OSError, OverflowError) as exc:
                self.metrics_server = None
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ConfigError(
                    "cannot serve metrics",
                    source=self.config.source,
                    problems=[("metrics.listen", f"{self.config.metrics.listen}: {reason}")],
                ) from None
        self._log_parts()

    def _log_parts(self) -> None:
        """One start-up line per part, so an operator sees what runs and where it ships."""
        cfg = self.config
        for type_name, service in self.services.items():
            names = list(service.states)
            log.info("devices (%s): %d: %s", type_name, len(names), _listing(names))
        for route in self.routes:
            rules = ", ".join(r.type for r in route.spec.rules) or "no rules"
            log.info("pipeline %s: %s", route.spec.name, rules)
        up = cfg.uplink
        if up.type == "mqtt":
            log.info(
                "uplink: %s topic %s (%s), outbox %s", up.url, up.topic_template, up.encoding, up.outbox.path
            )
        else:
            log.info("uplink: file %s, outbox %s", up.path, up.outbox_spec.path)
        if self.metrics_server is not None:
            host, port = self.metrics_server.address
            log.info("metrics: http://%s:%d/metrics (health /healthz, readiness /readyz)", host, port)
        log.info(
            "edgeflow %s running: %d devices, %d pipelines, uplink %s",
            cfg.service,
            len(cfg.devices),
            len(self.routes),
            cfg.uplink.type,
        )

    async def _stop_reading(self) -> None:
        """Stop the KubeEdge mapper, the device services, the router and the watermarks (never raises)."""
        if self.kubeedge is not None:
            try:
                await self.kubeedge.stop()
            except Exception:
                log.exception("stopping the KubeEdge mapper failed")
        for service in self.services.values():
            try:
                await service.stop()
            except Exception:
                log.exception("stopping a device service failed")
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _stop_shipping(self, flush_timeout: float) -> None:
        """Close the bus, stop the uplink (committing what is pending) and the metrics (never raises)."""
        self.bus.close()
        if self._uplink_started:
            self._uplink_started = False
            try:
                await self.uplink.stop(flush_timeout=flush_timeout)
            except Exception:
                log.exception("stopping the uplink failed")
        if self.metrics_server is not None:
            await self.metrics_server.stop()
            self.metrics_server = None

    async def _teardown(self) -> None:
        """After a failed start: stop whatever runs, in reverse order."""
        await self._stop_reading()
        await self._stop_shipping(flush_timeout=0)

    async def stop(self) -> None:
        """Stop reading, process what the bus holds, flush (``state.on_stop``), commit, stop the uplink."""
        if not self._started:
            return
        self._started = False
        await self._stop_reading()
        try:
            assert self._sub is not None
            for _, batch in self._sub.drain():
                self._counters.router_taken += len(batch)
                self._step(batch)
            if self.config.state.on_stop == "flush":
                for route in self.routes:
                    self._ship(route, route.pipeline.flush())
        except Exception:
            log.exception("processing what the bus held at stop failed")
        await self._stop_shipping(flush_timeout=5.0)
        log.info("edgeflow %s stopped", self.config.service)

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- reload -------------------------------------------------------------------------------------

    #: Sections a reload cannot change while running: they need a restart.
    RESTART_SECTIONS = ("service", "connectors", "scheduler", "bus", "uplink", "metrics", "state", "kubeedge")

    async def reload(self, new: EdgeConfig) -> dict[str, list[str]]:
        """Apply ``new`` to the running node, or refuse it whole (raising :class:`ConfigError`; the
        running configuration keeps going). It is checked first exactly as ``validate`` checks it;
        a change to a section in :attr:`RESTART_SECTIONS` is refused with the sections named. Devices
        whose definition is unchanged keep their connections and schedules; pipelines whose name and
        definition are unchanged keep their rule state; a changed or removed pipeline first ships what
        it holds (as a clean stop does). Returns what changed, by kind."""
        changed = [k for k in self.RESTART_SECTIONS if getattr(new, k) != getattr(self.config, k)]
        if changed:
            raise ConfigError(
                "cannot reload: changing " + ", ".join(changed) + " needs a restart", source=new.source
            )
        Runtime(new, uplink=self.uplink, clock=self._clock)  # every check validate runs, nothing started
        old_devices = {d.name: d for d in self.config.devices}
        new_devices = {d.name: d for d in new.devices}
        gone = [n for n in old_devices if n not in new_devices or new_devices[n] != old_devices[n]]
        coming = [d for n, d in new_devices.items() if n not in old_devices or old_devices[n] != d]
        old_routes = {r.spec.name: r for r in self.routes}
        routes: list[_Route] = []
        for pspec in new.pipelines:
            kept = old_routes.get(pspec.name)
            if kept is not None and kept.spec == pspec:
                routes.append(kept)
            else:
                pipeline = build_pipeline(pspec.rules, self.table, name=pspec.name)
                routes.append(_Route(pspec, SeriesMatcher(pspec.match), pipeline))
        retired = [r for r in self.routes if all(r is not k for k in routes)]
        # From here on nothing can fail for a configuration reason: apply.
        await self.remove_devices(gone)
        for route in retired:  # what a replaced or removed pipeline holds is shipped, not lost
            if self._started:
                self._ship(route, route.pipeline.flush())
            self._retired.append(route)
        self.routes = routes  # between two router steps: a batch sees the old routes or the new
        self.config = new
        await self.add_devices(coming)
        summary = {
            "devices_removed": [n for n in gone if n not in new_devices],
            "devices_changed": [n for n in gone if n in new_devices],
            "devices_added": [d.name for d in coming if d.name not in old_devices],
            "pipelines_replaced": [r.spec.name for r in retired],
        }
        log.info(
            "configuration reloaded from %s: %s",
            new.source,
            "; ".join(f"{k.replace('_', ' ')}: {', '.join(v)}" for k, v in summary.items() if v)
            or "no change",
        )
        return summary

    async def _reload_from_source(self) -> None:
        """SIGHUP: read the configuration file again (off the event loop) and :meth:`reload` it; a
        configuration that is not valid is logged with its error and the running one keeps going."""
        source = self.config.source
        if source.startswith("<"):
            log.warning("SIGHUP: the configuration was not read from a file; nothing to reload")
            return
        from edgeflow.config import load_config

        try:
            new = await asyncio.to_thread(load_config, source)
            await self.reload(new)
        except ConfigError as exc:
            log.error("reload refused, the running configuration keeps going: %s", exc)
        except Exception:
            log.exception("reload failed; the running configuration keeps going")

    async def run(self, duration: float | None = None, *, freeze_gc: bool = False) -> None:
        """Run until SIGINT/SIGTERM or ``duration`` seconds, then stop cleanly. SIGHUP reloads the
        configuration file (:meth:`reload`).

        ``freeze_gc`` (for a process that is this node alone, as ``edgeflow run``): once started, what
        the process built (modules, profiles, connections) is moved out of the garbage collector's sight
        (:func:`gc.freeze`), so a full collection scans what the node allocates while it runs, not every
        object of every import — a 25–40 ms pause of the event loop otherwise, enough to push a 100 ms
        poll into a missed one. The collector is off until :data:`GC_SETTLE` seconds later (the first
        reads build every series' state then: collections over it would pause the busiest seconds); then
        one collection, and what the first reads built (100,000 series for 10,000 devices × 10) is
        frozen too. Young
        collections run every :data:`GC_YOUNG` allocations, not 700: at 10,000 devices full collections
        took 14 % of the CPU and paused the loop up to 250 ms, after this 3 %. The run leaves the
        collector as it found it."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, done.set)
                installed.append(sig)
        reloads: set[asyncio.Task[None]] = set()
        thresholds = gc.get_threshold()
        enabled = gc.isenabled()
        settle: asyncio.TimerHandle | None = None

        def hup() -> None:
            task = loop.create_task(self._reload_from_source(), name="reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, hup)
            installed.append(signal.SIGHUP)
        try:
            await self.start()
            if freeze_gc:
                gc.collect()
                gc.freeze()
                gc.set_threshold(GC_YOUNG, *thresholds[1:])
                gc.disable()  # while the first reads build the node's state: one collection at the settle
                settle = loop.call_later(GC_SETTLE, _freeze_settled, enabled)
            if duration is None:
                await done.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(duration):
                        await done.wait()
        finally:
            await self.stop()
            for sig in installed:
                loop.remove_signal_handler(sig)
            if settle is not None:
                settle.cancel()
                gc.set_threshold(*thresholds)
                gc.unfreeze()
                if enabled:
                    gc.enable()

    # -- the router -----------------------------------------------------------------------------

    async def _supervise_router(self) -> None:
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                await self._route_loop()
                return
            except BusClosedError:
                return
            except Exception as exc:  # a bug must not stop the node: say so, count, go on
                self._counters.router_restarts += 1
                self._router_error = f"{type(exc).__name__}: {exc}"
                log.exception("the router failed; restarting it")
                await asyncio.sleep(backoff.next_delay())

    async def _route_loop(self) -> None:
        sub = self._sub
        assert sub is not None
        batch_max = self.config.bus.batch_max
        linger = self.config.bus.linger
        while True:
            await sub.wait()
            await self.uplink.room()  # backpressure: the bus fills, and its policy applies
            if linger > 0 and sub.queued_messages < batch_max:
                await self._settle(linger)
            items = sub.drain(batch_max)
            if not items:
                continue
            batch = items[0][1] if len(items) == 1 else ReadingBatch.concat(self.table, [b for _, b in items])
            self._counters.router_taken += len(batch)
            self._step(batch)
            self._router_error = ""

    async def _settle(self, linger: float) -> None:
        """Wait, at most ``linger`` seconds, until no AutoEvent read is in flight: the reads of one
        tick (aligned, or queued on one connection) then take one step through the rules, not one each."""
        busy = [s for s in self.services.values() if s.polling]
        if not busy:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(linger):
                for service in busy:
                    await service.settled()

    def _step(self, batch: ReadingBatch) -> None:
        """One step: ``batch`` through every pipeline that takes it, outputs to the committer. It does
        not await, so the rule states the committer snapshots match what it commits."""
        n = len(batch)
        if n == 0:
            return
        self._counters.router_steps += 1
        sizes = self._edgex_sizes()
        self._counters.edgex_json_bytes += int(sizes[batch.series].sum())
        matched = np.zeros(n, dtype=bool)
        for route in self.routes:
            mask = route.matcher.mask(batch)
            matched |= mask
            part = batch if mask.all() else batch.take(mask)
            if not len(part):
                continue
            route.readings_in += len(part)
            route.edgex_json_bytes += int(sizes[part.series].sum())
            route.dirty = True
            try:
                out = route.pipeline.process(part)
            except Exception:
                # A rule bug must not stop the node; the readings are counted as errors, never silently.
                route.errors += len(part)
                self._counters.pipeline_errors += 1
                log.exception("pipeline %s failed on a batch of %d readings", route.spec.name, len(part))
                continue
            self._ship(route, out)
        routed = int(matched.sum())
        self._counters.routed += routed
        if routed < n:
            self._unrouted(batch if routed == 0 else batch.take(~matched))

    def _edgex_sizes(self) -> npt.NDArray[np.int64]:
        """Bytes of one EdgeX v3 ``AddEventRequest`` carrying one reading, per series id (as EdgeX's
        device services publish: an event per AutoEvent read); computed once per series."""
        have = len(self._edgex_size)
        if have < len(self.table):
            new = _edgex_event_sizes([self.table.info(sid) for sid in range(have, len(self.table))])
            self._edgex_size = np.concatenate([self._edgex_size, np.asarray(new, dtype=np.int64)])
        return self._edgex_size

    def _unrouted(self, batch: ReadingBatch) -> None:
        n = len(batch)
        if self.config.unrouted == "ship":
            self._counters.unrouted_shipped += n
            self.uplink.submit(batch)
        else:
            self._counters.unrouted_dropped += n
        self._unrouted_since_log += n
        if not self._unrouted_example:
            info = self.table.info(int(batch.series[0]))
            self._unrouted_example = f"{info.device}/{info.resource}"
        now = time.monotonic()
        if now - self._unrouted_logged_at >= UNROUTED_LOG_INTERVAL:
            log.warning(
                "%d readings matched no pipeline (e.g. %s); unrouted: %s",
                self._unrouted_since_log,
                self._unrouted_example,
                self.config.unrouted,
            )
            self._unrouted_logged_at = now
            self._unrouted_since_log = 0
            self._unrouted_example = ""

    def _ship(self, route: _Route, out: PipelineOutput) -> None:
        up = self.uplink
        if len(out.alarms):
            route.alarms += len(out.alarms)
            up.submit(out.alarms, alarm=True)
        if len(out.batch):
            route.readings_out += len(out.batch)
            up.submit(out.batch, out.interpolation)
        if len(out.late):
            # Late readings are real readings: counted and shipped, but as their own series
            # (``<resource>@late.<pipeline>``), so the cloud's reconstruction of the series stays in
            # time order.
            route.late += len(out.late)
            up.submit(self._as_late(out.late, route.spec.name))

    def _as_late(self, batch: ReadingBatch, pipeline: str) -> ReadingBatch:
        """``batch`` with each reading moved to its series' late twin (:func:`late_name`)."""
        table = self.table
        ids = {}
        for sid in set(batch.series.tolist()):
            info = table.info(sid)
            ids[sid] = table.intern(
                info.device,
                late_name(info.resource, pipeline),
                info.profile,
                info.value_type,
                info.units,
                info.source,
            )
        series = batch.series.copy()
        for old, new in ids.items():
            series[batch.series == old] = new
        return ReadingBatch(table, batch.origins, batch.values, series, batch.objects, batch.starts)

    async def _watermarks(self) -> None:
        while True:
            await self._clock.sleep(self._watermark_interval)
            now = self.clock()
            for route in self.routes:
                try:
                    out = route.pipeline.advance(now)
                except Exception:
                    self._counters.pipeline_errors += 1
                    log.exception("pipeline %s failed to advance its watermark", route.spec.name)
                    continue
                route.dirty = True
                self._ship(route, out)

    # -- health, ledger and metrics -------------------------------------------------------------

    def device_states(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for service in self.services.values():
            for name, st in service.states.items():
                out[name] = {"health": st.health.value, "last_error": st.last_error, **st.counters()}
        return out

    def problems(self) -> list[str]:
        """Why the node is not ready, one line per failing part (empty when it is)."""
        if not self._started:
            return ["not started"]
        out = [f"{part}: {reason}" for part, ok, reason in self.uplink.health() if not ok]
        if self._router_error:
            out.append(f"router: {self._router_error}")
        return out

    def _ready(self) -> tuple[bool, dict[str, object]]:
        problems = self.problems()
        return not problems, {"problems": problems, "devices": self.device_states()}

    def ledger(self) -> dict[str, Any]:
        """Where every reading went, by place (see the module docstring). Balanced when
        :meth:`ledger_problems` is empty."""
        c = self._counters
        assert self._sub is not None
        sub = self._sub.stats()
        up = self.uplink.stats()
        return {
            "bus": {
                "published": self.bus.published_readings,
                "taken": sub.delivered_readings,
                "dropped": sub.dropped_readings,
                "timed_out": sub.timed_out_readings,
                "queued": sub.queued_readings,
            },
            "router": {
                "taken": c.router_taken,
                "steps": c.router_steps,
                "routed": c.routed,
                "unrouted_shipped": c.unrouted_shipped,
                "unrouted_dropped": c.unrouted_dropped,
            },
            "pipelines": {
                key: {
                    "in": r.readings_in,
                    "out": r.readings_out,
                    "late": r.late,
                    "alarms": r.alarms,
                    "errors": r.errors,
                    "reduced": r.readings_in - r.readings_out - r.late - r.errors,
                    "rules": [
                        {k: v for k, v in vars(s).items() if v or k in ("index", "type")}
                        for s in r.pipeline.stats()
                    ],
                }
                for key, r in self._ledger_routes()
            },
            "commit": {
                "submitted": up.get("readings_in", 0),
                "committed": up.get("readings_committed", 0),
                "refused": up.get("refused_readings", 0),
                "encode_failed": up.get("encode_failed_readings", 0),
                "pending": up.get("batching", 0),
            },
            "outbox": {
                "recovered": up.get("recovered_readings", 0),
                "shipped": up.get("acked_readings", 0),
                "dropped": up.get("dropped_readings", 0),
                "queued": up.get("queued_readings", 0),
            },
        }

    def _ledger_routes(self) -> list[tuple[str, _Route]]:
        """The running pipelines by name, then those a reload replaced (``name (replaced 1)``)."""
        out = [(r.spec.name, r) for r in self.routes]
        out += [(f"{r.spec.name} (replaced {i})", r) for i, r in enumerate(self._retired, 1)]
        return out

    def ledger_problems(self) -> list[str]:
        """The ledger's equations that do not hold (empty: every reading is accounted for)."""
        led = self.ledger()
        bus, router, commit, outbox = led["bus"], led["router"], led["commit"], led["outbox"]
        out: list[str] = []

        def check(name: str, left: int, right: int) -> None:
            if left != right:
                out.append(f"{name}: {left} != {right}")

        check(
            "bus: published = taken + dropped + queued",
            bus["published"],
            bus["taken"] + bus["dropped"] + bus["queued"],
        )
        check("router: taken from the bus", bus["taken"], router["taken"])
        check(
            "router: taken = routed + unrouted",
            router["taken"],
            router["routed"] + router["unrouted_shipped"] + router["unrouted_dropped"],
        )
        shipped = router["unrouted_shipped"] + sum(
            p["out"] + p["late"] + p["alarms"] for p in led["pipelines"].values()
        )
        check(
            "commit: submitted = pipelines' out + late + alarms + unrouted shipped",
            commit["submitted"],
            shipped,
        )
        check(
            "commit: submitted = committed + refused + encode_failed + pending",
            commit["submitted"],
            commit["committed"] + commit["refused"] + commit["encode_failed"] + commit["pending"],
        )
        refused = commit["refused"]
        check(
            "outbox: recovered + committed = shipped + dropped + queued",
            outbox["recovered"] + commit["committed"] + refused,
            outbox["shipped"] + outbox["dropped"] + outbox["queued"],
        )
        return out

    def _collect(self) -> Iterable[Sample]:
        yield Sample("uptime_seconds", time.time() - self._counters.started_at)
        c = self._counters
        yield Sample("pipeline_errors_total", c.pipeline_errors, kind="counter")
        yield Sample("router_restarts_total", c.router_restarts, kind="counter")
        yield Sample("router_steps_total", c.router_steps, kind="counter")
        yield Sample("state_restored_total", c.state_restored, kind="counter")
        yield Sample("state_discarded_total", c.state_discarded, kind="counter")
        yield Sample("bus_published_readings_total", self.bus.published_readings, kind="counter")
        for st in self.bus.stats():
            lab = (("subscription", st.name),)
            yield Sample("bus_queued_readings", st.queued_readings, lab)
            yield Sample("bus_dropped_readings_total", st.dropped_readings, lab, kind="counter")
            yield Sample("bus_timed_out_readings_total", st.timed_out_readings, lab, kind="counter")
        yield Sample("unrouted_readings_total", c.unrouted_shipped, (("action", "ship"),), kind="counter")
        yield Sample("unrouted_readings_total", c.unrouted_dropped, (("action", "drop"),), kind="counter")
        uplink = self.uplink.stats()
        shipped = float(uplink.get("bytes_shipped", 0))
        base = c.edgex_json_bytes
        yield Sample(
            "edgex_json_bytes_total",
            base,
            help="bytes EdgeX would have sent for the readings routed (an AddEventRequest per reading)",
            kind="counter",
        )
        yield Sample(
            "savings_ratio",
            1.0 - shipped / base if base else 0.0,
            help="1 - bytes shipped / EdgeX JSON bytes of the same readings (0.99: a hundredth of the bytes)",
        )
        out_total = sum(r.readings_out for r in [*self.routes, *self._retired]) + c.unrouted_shipped
        for route in self.routes:
            lab = (("pipeline", route.spec.name),)
            yield Sample(
                "pipeline_edgex_json_bytes_total",
                route.edgex_json_bytes,
                lab,
                help="bytes EdgeX would have sent for the readings this pipeline took",
                kind="counter",
            )
            share = shipped * route.readings_out / out_total if out_total else 0.0
            yield Sample(
                "pipeline_savings_ratio",
                1.0 - share / route.edgex_json_bytes if route.edgex_json_bytes else 0.0,
                lab,
                help="1 - this pipeline's share of the bytes shipped (by readings out) / its EdgeX JSON bytes",
            )
            yield Sample("pipeline_readings_in_total", route.readings_in, lab, kind="counter")
            yield Sample("pipeline_readings_out_total", route.readings_out, lab, kind="counter")
            yield Sample("pipeline_late_readings_total", route.late, lab, kind="counter")
            yield Sample("pipeline_alarms_total", route.alarms, lab, kind="counter")
            yield Sample("pipeline_error_readings_total", route.errors, lab, kind="counter")
        for name, dev in self.device_states().items():
            lab = (("device", name),)
            yield Sample("device_up", 1.0 if dev["health"] == "UP" else 0.0, lab)
            for key, value in dev.items():
                if key not in ("health", "last_error"):
                    yield Sample(f"device_{key}_total", value, lab, kind="counter")
        for key, value in uplink.items():
            kind: Literal["counter", "gauge"] = "gauge" if key in _UPLINK_GAUGES else "counter"
            yield Sample(f"uplink_{key}", float(value), help=_UPLINK_HELP.get(key, ""), kind=kind)
        for service in self.services.values():
            conn = service.connector
            for m in conn.metrics():
                labels = (("connector", conn.type_name), *m.labels)
                yield Sample(f"connector_{m.name}", m.value, labels, kind=m.kind)
        for part, ok, _ in self.uplink.health():
            yield Sample("part_healthy", 1.0 if ok else 0.0, (("part", part),))
        if self.kubeedge is not None:
            for name, value, labels in self.kubeedge.samples():
                yield Sample(name, value, labels, kind="counter" if name.endswith("_total") else "gauge")

    def stats(self) -> Mapping[str, Any]:
        """A JSON-able summary: devices, pipelines, uplink, ledger."""
        return {
            "devices": self.device_states(),
            "pipelines": {
                r.spec.name: {
                    "readings_in": r.readings_in,
                    "readings_out": r.readings_out,
                    "late": r.late,
                    "alarms": r.alarms,
                    "errors": r.errors,
                }
                for r in self.routes
            },
            "bus": {"published_readings": self.bus.published_readings},
            "uplink": self.uplink.stats(),
            "ledger": self.ledger(),
            "ledger_problems": self.ledger_problems(),
            "connectors": {t: svc.connector.stats() for t, svc in self.services.items()},
            **({"kubeedge": self.kubeedge.stats()} if self.kubeedge is not None else {}),
        }


def kube_device_spec(rd: RunDevice) -> DeviceSpec:
    """A KubeEdge device (translated by :func:`edgeflow.kubeedge.kube_run_device`) as a device spec."""
    d = rd.device
    return DeviceSpec(
        name=d.name,
        connector=rd.connector,
        profile=rd.profile,
        description=d.description,
        labels=d.labels,
        protocols=d.protocols,
        auto_events=d.auto_events,
        properties=d.properties,
    )


class _TwinHost:
    """The runtime as the KubeEdge mapper sees it (:class:`edgeflow.twin.mapper.TwinHost`)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _service(self, device: str) -> DeviceService:
        dspec = self.rt.device_specs.get(device)
        if dspec is None:
            raise ConnectorError("unknown device", device=device)
        return self.rt.services[dspec.connector]

    async def write_value(self, device: str, resource: str, value: Any) -> None:
        await self._service(device).write(device, resource, {resource: value})

    async def read_values(self, device: str, resource: str) -> list[tuple[str, Any, ValueType]]:
        batch = await self._service(device).read(device, resource)
        out = []
        for i in range(len(batch)):
            info = self.rt.table.info(int(batch.series[i]))
            out.append((info.resource, batch.value_at(i), info.value_type))
        return out

    def device_health(self, device: str) -> DeviceHealth:
        try:
            st = self._service(device).states.get(device)
        except ConnectorError:
            return DeviceHealth.UNKNOWN
        return st.health if st is not None else DeviceHealth.UNKNOWN

    async def add_kube_devices(self, devices: Sequence[RunDevice]) -> None:
        mapper = self.rt.kubeedge
        assert mapper is not None
        await self.rt.add_devices([kube_device_spec(rd) for rd in devices])
        for rd in devices:
            mapper.attach(rd)

    async def remove_kube_devices(self, names: Sequence[str]) -> None:
        mapper = self.rt.kubeedge
        assert mapper is not None
        for name in names:
            mapper.detach(name)
        await self.rt.remove_devices(names)


async def run_config(config: EdgeConfig, duration: float | None = None) -> Mapping[str, Any]:
    """Run ``config`` until a signal or ``duration`` and return the final :meth:`Runtime.stats`.

    A process of its own (``edgeflow run``): ``freeze_gc`` (see :meth:`Runtime.run`)."""
    rt = Runtime(config)
    await rt.run(duration, freeze_gc=True)
    return rt.stats()
