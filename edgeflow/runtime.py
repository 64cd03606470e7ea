"""Wires a configuration into running parts and owns their start, stop, signals and health.

::

    devices ─► DeviceService (one per connector type) ─► bus ─► pipeline tasks (match → rules) ─► uplink

Only this module knows every room. Start order is uplink, pipelines, device services; stop order is
the reverse, so every reading a device service published is processed, flushed and handed to the
uplink before the uplink stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from edgeflow.bus import Bus, Subscription
from edgeflow.config import EdgeConfig, PipelineSpec
from edgeflow.connector import load_connector
from edgeflow.errors import RuleError
from edgeflow.metrics import MetricsServer, Registry, Sample
from edgeflow.model import ReadingBatch, SeriesTable
from edgeflow.profiles import DeviceProfile
from edgeflow.rules import Pipeline, PipelineOutput, SeriesMatcher, build_pipeline
from edgeflow.service import DeviceService, SchedulerSettings
from edgeflow.uplink import Uplink, create_uplink

__all__ = ["Runtime", "run_config"]

log = logging.getLogger(__name__)

ALL_EVENTS = "edgex/events/device/#"


@dataclass
class _Route:
    spec: PipelineSpec
    sub: Subscription[ReadingBatch]
    matcher: SeriesMatcher
    pipeline: Pipeline
    readings_in: int = 0
    readings_out: int = 0
    late: int = 0
    alarms: int = 0
    task: asyncio.Task[None] | None = None


@dataclass
class _Counters:
    started_at: float = field(default_factory=time.time)
    pipeline_errors: int = 0
    checkpoints: int = 0
    checkpoint_errors: int = 0
    state_restored: int = 0
    state_discarded: int = 0


class Runtime:
    """One edge node, built from an :class:`~edgeflow.config.EdgeConfig`.

    ``clock`` gives nanoseconds since the epoch; it stamps device reads and drives event-time
    watermarks when no readings arrive. Use it as ``async with Runtime(cfg) as rt: ...`` or
    :meth:`run`.
    """

    def __init__(
        self,
        config: EdgeConfig,
        *,
        clock: Callable[[], int] = time.time_ns,
        uplink: Uplink | None = None,
        watermark_interval: float = 1.0,
    ) -> None:
        self.config = config
        self.clock = clock
        self.table = SeriesTable()
        self.bus: Bus[ReadingBatch] = Bus()
        self.uplink = uplink or create_uplink(config.uplink, service=config.service)
        self.services: dict[str, DeviceService] = {}
        self.routes: list[_Route] = []
        self.registry = Registry()
        self.metrics_server: MetricsServer | None = None
        self._watermark_interval = watermark_interval
        self._ticker: asyncio.Task[None] | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._counters = _Counters()
        self._started = False
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
        )
        for dspec in cfg.devices:
            service = self.services.get(dspec.connector)
            if service is None:
                cls = load_connector(dspec.connector)
                connector = cls(cfg.connectors.get(dspec.connector, {}))
                service = DeviceService(
                    cfg.service, connector, self.bus.publish, self.table, settings=settings, clock=self.clock
                )
                self.services[dspec.connector] = service
            profile = dspec.profile
            assert isinstance(profile, DeviceProfile), "load_config resolves profile paths"
            service.add_device(dspec.to_device(cfg.service, profile), profile)
        pipelines = cfg.pipelines or [PipelineSpec(name="default")]
        for pspec in pipelines:
            sub = self.bus.subscribe(
                ALL_EVENTS, capacity=pspec.queue.capacity, policy=pspec.queue.policy, name=pspec.name
            )
            self.routes.append(
                _Route(pspec, sub, SeriesMatcher(pspec.match), build_pipeline(pspec.rules, self.table))
            )
        self.registry.add_collector(self._collect)

    # -- running --------------------------------------------------------------------------------

    # -- rule state across restarts ---------------------------------------------------------------

    def _state_file(self, route: _Route) -> Path | None:
        base = self.config.state.path
        if base is None:
            return None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in route.spec.name)
        return base / f"pipeline-{safe}.json"

    def _restore_state(self) -> None:
        for route in self.routes:
            path = self._state_file(route)
            if path is None or not path.exists():
                continue
            try:
                route.pipeline.restore(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError, RuleError, ValueError, TypeError, KeyError) as exc:
                # Starting the rules afresh only means some readings are sent again: safe. Keep the file
                # for a look, out of the way, and say so.
                aside = path.with_suffix(".unreadable")
                path.replace(aside)
                self._counters.state_discarded += 1
                log.error(
                    "pipeline %s: state %s not restored (%s); moved to %s", route.spec.name, path, exc, aside
                )
            else:
                self._counters.state_restored += 1
                log.info("pipeline %s: rule state restored from %s", route.spec.name, path)

    def checkpoint(self) -> None:
        """Write every pipeline's rule state to ``state.path`` (atomically, file by file)."""
        for route in self.routes:
            path = self._state_file(route)
            if path is None:
                continue
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(orjson.dumps(route.pipeline.snapshot()))
                os.replace(tmp, path)
            except (OSError, TypeError) as exc:
                self._counters.checkpoint_errors += 1
                log.error("pipeline %s: cannot write state %s: %s", route.spec.name, path, exc)
            else:
                self._counters.checkpoints += 1

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.config.state.checkpoint_interval)
            self.checkpoint()

    # -- running --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._restore_state()
        await self.uplink.start()
        for route in self.routes:
            route.task = asyncio.create_task(self._route_loop(route), name=f"pipeline:{route.spec.name}")
        self._ticker = asyncio.create_task(self._watermarks(), name="watermarks")
        if self.config.state.path is not None:
            self._checkpointer = asyncio.create_task(self._checkpoints(), name="checkpoints")
        for service in self.services.values():
            await service.start()
        listen = self.config.metrics.listen
        if listen:
            host, _, port = listen.rpartition(":")
            self.metrics_server = MetricsServer(self.registry, ready=self._ready)
            await self.metrics_server.start(host or "127.0.0.1", int(port))
        self._started = True
        log.info(
            "edgeflow %s running: %d devices, %d pipelines",
            self.config.service,
            len(self.config.devices),
            len(self.routes),
        )

    async def stop(self) -> None:
        """Stop reading, process and flush what the bus holds, hand it to the uplink, stop the uplink."""
        if not self._started:
            return
        self._started = False
        for service in self.services.values():
            await service.stop()
        for task in (self._ticker, self._checkpointer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        persist = self.config.state.path is not None
        for route in self.routes:
            if route.task is not None:
                route.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await route.task
            for _, batch in route.sub.drain():
                await self._process(route, batch)
            if not persist:
                # Nothing carries the rules' state over: ship what they hold rather than forget it.
                await self._ship(route, route.pipeline.flush())
        if persist:
            self.checkpoint()
        self.bus.close()
        await self.uplink.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        log.info("edgeflow %s stopped", self.config.service)

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self, duration: float | None = None) -> None:
        """Run until SIGINT/SIGTERM or ``duration`` seconds, then stop cleanly."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, done.set)
                installed.append(sig)
        try:
            await self.start()
            if duration is None:
                await done.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), duration)
        finally:
            await self.stop()
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def _route_loop(self, route: _Route) -> None:
        batch_max = self.config.bus.batch_max
        while True:
            items = await route.sub.get_many(batch_max)
            batch = ReadingBatch.concat(self.table, [b for _, b in items])
            await self._process(route, batch)

    async def _process(self, route: _Route, batch: ReadingBatch) -> None:
        mask = route.matcher.mask(batch)
        if not mask.all():
            batch = batch.take(mask)
        if not len(batch):
            return
        route.readings_in += len(batch)
        try:
            out = route.pipeline.process(batch)
        except Exception:
            # A rule bug must not stop the route; the batch is counted as an error, never silently.
            self._counters.pipeline_errors += 1
            log.exception("pipeline %s failed on a batch of %d readings", route.spec.name, len(batch))
            return
        await self._ship(route, out)

    async def _ship(self, route: _Route, out: PipelineOutput) -> None:
        if len(out.alarms):
            route.alarms += len(out.alarms)
            await self.uplink.send(out.alarms, alarm=True)
        if len(out.batch):
            route.readings_out += len(out.batch)
            await self.uplink.send(out.batch, out.interpolation)
        if len(out.late):
            # Late readings are real readings: counted and shipped, but as their own series
            # (``<resource>@late``), so the cloud's reconstruction of the series stays in time order.
            route.late += len(out.late)
            await self.uplink.send(self._as_late(out.late))

    def _as_late(self, batch: ReadingBatch) -> ReadingBatch:
        """``batch`` with each reading moved to its series' ``@late`` twin."""
        table = self.table
        ids = {}
        for sid in set(batch.series.tolist()):
            info = table.info(sid)
            ids[sid] = table.intern(
                info.device, f"{info.resource}@late", info.profile, info.value_type, info.units, info.source
            )
        series = batch.series.copy()
        for old, new in ids.items():
            series[batch.series == old] = new
        return ReadingBatch(table, batch.origins, batch.values, series, batch.objects, batch.starts)

    async def _watermarks(self) -> None:
        while True:
            await asyncio.sleep(self._watermark_interval)
            now = self.clock()
            for route in self.routes:
                try:
                    await self._ship(route, route.pipeline.advance(now))
                except Exception:
                    self._counters.pipeline_errors += 1
                    log.exception("pipeline %s failed to advance its watermark", route.spec.name)

    # -- health and metrics ---------------------------------------------------------------------

    def device_states(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for service in self.services.values():
            for name, st in service.states.items():
                out[name] = {
                    "health": st.health.value,
                    "reads_ok": st.reads_ok,
                    "reads_failed": st.reads_failed,
                    "missed_intervals": st.missed_intervals,
                    "last_error": st.last_error,
                    "events_pushed": st.events_pushed,
                    "push_dropped": st.push_dropped,
                }
        return out

    def _ready(self) -> tuple[bool, dict[str, object]]:
        return self._started, {"devices": self.device_states()}

    def _collect(self) -> Iterable[Sample]:
        yield Sample("uptime_seconds", time.time() - self._counters.started_at)
        c = self._counters
        yield Sample("pipeline_errors_total", c.pipeline_errors, kind="counter")
        yield Sample("state_checkpoints_total", c.checkpoints, kind="counter")
        yield Sample("state_checkpoint_errors_total", c.checkpoint_errors, kind="counter")
        yield Sample("state_discarded_total", c.state_discarded, kind="counter")
        yield Sample("bus_published_readings_total", self.bus.published_readings, kind="counter")
        for st in self.bus.stats():
            lab = (("subscription", st.name),)
            yield Sample("bus_queued_readings", st.queued_readings, lab)
            yield Sample("bus_dropped_readings_total", st.dropped_readings, lab, kind="counter")
        for route in self.routes:
            lab = (("pipeline", route.spec.name),)
            yield Sample("pipeline_readings_in_total", route.readings_in, lab, kind="counter")
            yield Sample("pipeline_readings_out_total", route.readings_out, lab, kind="counter")
            yield Sample("pipeline_late_readings_total", route.late, lab, kind="counter")
            yield Sample("pipeline_alarms_total", route.alarms, lab, kind="counter")
        for name, dev in self.device_states().items():
            lab = (("device", name),)
            yield Sample("device_up", 1.0 if dev["health"] == "UP" else 0.0, lab)
            yield Sample("device_reads_ok_total", dev["reads_ok"], lab, kind="counter")
            yield Sample("device_reads_failed_total", dev["reads_failed"], lab, kind="counter")
            yield Sample("device_missed_intervals_total", dev["missed_intervals"], lab, kind="counter")
            yield Sample("device_events_pushed_total", dev["events_pushed"], lab, kind="counter")
            yield Sample("device_push_dropped_total", dev["push_dropped"], lab, kind="counter")
        for key, value in self.uplink.stats().items():
            yield Sample(f"uplink_{key}", float(value))
        for service in self.services.values():
            conn = service.connector
            for m in conn.metrics():
                labels = (("connector", conn.type_name), *m.labels)
                yield Sample(f"connector_{m.name}", m.value, labels, kind=m.kind)

    def stats(self) -> Mapping[str, Any]:
        """A JSON-able summary: devices, pipelines, uplink."""
        return {
            "devices": self.device_states(),
            "pipelines": {
                r.spec.name: {
                    "readings_in": r.readings_in,
                    "readings_out": r.readings_out,
                    "late": r.late,
                    "alarms": r.alarms,
                }
                for r in self.routes
            },
            "bus": {"published_readings": self.bus.published_readings},
            "uplink": self.uplink.stats(),
            "connectors": {t: svc.connector.stats() for t, svc in self.services.items()},
        }


async def run_config(config: EdgeConfig, duration: float | None = None) -> Mapping[str, Any]:
    """Run ``config`` until a signal or ``duration`` and return the final :meth:`Runtime.stats`."""
    rt = Runtime(config)
    await rt.run(duration)
    return rt.stats()
