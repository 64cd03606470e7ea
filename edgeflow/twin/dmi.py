"""The KubeEdge DMI v1beta1 transport: gRPC over Unix sockets (``grpcio``; the ``kubeedge`` extra).

* **Client** of EdgeCore's ``DeviceManagerService`` (``unix:///etc/kubeedge/dmi.sock``): ``MapperRegister``
  (with data) at start and again whenever the socket comes back (before v1.23, EdgeCore forgot mappers
  after a restart), then ``ReportDeviceStatus`` (every changed twin of a device in one call, ``reported``
  and ``observedDesired``) and ``ReportDeviceStates`` (from the connector's health). EdgeCore's DMI server
  allows one call a second sustained, burst 100, for every mapper of the node together: calls go through a
  token bucket (default 0.8/s, burst 50) and what waits is coalesced per device.
* **Server** of ``DeviceMapperService`` on the mapper's own socket: ``RegisterDevice``/``UpdateDevice``
  turn a KubeEdge ``Device`` (with the model from ``CreateDeviceModel``, ``MapperRegister`` or the
  manifests) into a running edgeflow device and write its desired values through the connector;
  ``RemoveDevice`` stops it; ``GetDevice`` returns it with its reported twins.

``configData`` arrives as ``google.protobuf.Any`` (strings as ``StringValue``, every JSON number as a
float32 ``FloatValue``): values are unwrapped and float32 noise rounded away (``0.100000001`` → ``0.1``);
the Modbus translation coerces them by the type it expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import any_pb2, wrappers_pb2

from edgeflow.errors import ConfigError
from edgeflow.kubeedge import KubeDevice, KubeDeviceModel, kube_run_device, kubeedge_from_dict
from edgeflow.twin._bucket import TokenBucket, wait_for_work
from edgeflow.twin.dmi_codegen import ensure_stubs
from edgeflow.twin.mapper import Dirty, KubeEdgeMapper, TwinDevice
from edgeflow.twin.spec import DmiSpec
from edgeflow.twin.wire import check_namespace

ensure_stubs()

from edgeflow.twin._dmi import api_pb2 as pb  # noqa: E402
from edgeflow.twin._dmi import api_pb2_grpc as pb_grpc  # noqa: E402

__all__ = [
    "DmiReporter",
    "device_from_proto",
    "device_to_proto",
    "model_from_proto",
    "model_to_proto",
    "pb",
    "pb_grpc",
]

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
MAPPER_VERSION = "edgeflow"

_WRAPPERS: tuple[type[Any], ...] = (
    wrappers_pb2.StringValue,
    wrappers_pb2.BoolValue,
    wrappers_pb2.Int32Value,
    wrappers_pb2.Int64Value,
    wrappers_pb2.UInt32Value,
    wrappers_pb2.UInt64Value,
    wrappers_pb2.FloatValue,
    wrappers_pb2.DoubleValue,
    wrappers_pb2.BytesValue,
)


# -- conversions ----------------------------------------------------------------------------------------


def unpack_any(value: Any) -> Any:
    """A ``google.protobuf.Any`` of a wrapper type as a plain value (float32 rounded to 7 digits)."""
    for cls in _WRAPPERS:
        if value.Is(cls.DESCRIPTOR):
            w = cls()
            value.Unpack(w)
            v = w.value
            if cls is wrappers_pb2.FloatValue:
                v = float(f"{v:.7g}")
                return int(v) if v.is_integer() and abs(v) < 2**53 else v
            return v
    raise ValueError(f"configData value of type {value.type_url!r} is not a scalar wrapper")


def pack_any(value: Any) -> Any:
    """A plain value as EdgeCore wraps it (``dataToAny``): numbers as float32, strings, bools."""
    out = any_pb2.Any()
    if isinstance(value, bool):
        out.Pack(wrappers_pb2.BoolValue(value=value))
    elif isinstance(value, int | float):
        out.Pack(wrappers_pb2.FloatValue(value=float(value)))
    elif isinstance(value, str):
        out.Pack(wrappers_pb2.StringValue(value=value))
    else:
        raise ValueError(f"{value!r}: nested configData cannot cross DMI")
    return out


def _config(cv: Any, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cv.data.items():
        try:
            out[key] = unpack_any(value)
        except ValueError as exc:
            raise ConfigError(str(exc), source="DMI", problems=[(f"{where}.{key}", str(exc))]) from None
    return out


def device_from_proto(d: Any) -> KubeDevice:
    """A DMI ``Device`` as a KubeEdge v1beta1 Device."""
    props = []
    for i, p in enumerate(d.spec.properties):
        prop: dict[str, Any] = {
            "name": p.name,
            "visitors": {
                "protocolName": p.visitors.protocolName,
                "configData": _config(p.visitors.configData, f"spec.properties[{i}].visitors.configData"),
            },
            "reportCycle": p.reportCycle,
            "collectCycle": p.collectCycle,
            "reportToCloud": p.reportToCloud,
        }
        if p.HasField("desired"):
            prop["desired"] = {"value": p.desired.value, "metadata": dict(p.desired.metadata)}
        props.append(prop)
    doc = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": d.name, "namespace": d.namespace or "default"},
        "spec": {
            "deviceModelRef": {"name": d.spec.deviceModelReference},
            "protocol": {
                "protocolName": d.spec.protocol.protocolName,
                "configData": _config(d.spec.protocol.configData, "spec.protocol.configData"),
            },
            "properties": props,
            "methods": [
                {"name": m.name, "description": m.description, "propertyNames": list(m.propertyNames)}
                for m in d.spec.methods
            ],
        },
    }
    (obj,) = kubeedge_from_dict(doc, source=f"DMI Device {d.namespace}/{d.name}")
    assert isinstance(obj, KubeDevice)
    return obj


def model_from_proto(m: Any, protocol: str = "") -> KubeDeviceModel:
    """A DMI ``DeviceModel`` as a KubeEdge v1beta1 DeviceModel (the proto carries no protocol)."""
    doc = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": m.name, "namespace": m.namespace or "default"},
        "spec": {
            "protocol": protocol,
            "properties": [
                {
                    "name": p.name,
                    "description": p.description,
                    "type": p.type,
                    "accessMode": p.accessMode or "ReadWrite",
                    "minimum": p.minimum,
                    "maximum": p.maximum,
                    "unit": p.unit,
                }
                for p in m.spec.properties
            ],
        },
    }
    (obj,) = kubeedge_from_dict(doc, source=f"DMI DeviceModel {m.namespace}/{m.name}")
    assert isinstance(obj, KubeDeviceModel)
    return obj


def _customized(data: Mapping[str, Any]) -> Any:
    cv = pb.CustomizedValue()
    for k, v in data.items():
        cv.data[k].CopyFrom(pack_any(v))
    return cv


def device_to_proto(dev: KubeDevice, twins: Mapping[str, tuple[str, str]] | None = None) -> Any:
    """A KubeEdge Device as DMI sends it; ``twins`` (name -> (value, type)) fills ``status``."""
    spec = dev.spec
    out = pb.Device(
        name=dev.name,
        namespace=dev.metadata.namespace,
        spec=pb.DeviceSpec(
            deviceModelReference=spec.device_model_ref.name,
            protocol=pb.ProtocolConfig(
                protocolName=spec.protocol.protocol_name, configData=_customized(spec.protocol.config_data)
            ),
            properties=[
                pb.DeviceProperty(
                    name=p.name,
                    desired=pb.TwinProperty(value=p.desired.value, metadata=dict(p.desired.metadata)),
                    visitors=pb.VisitorConfig(
                        protocolName=p.visitors.protocol_name, configData=_customized(p.visitors.config_data)
                    ),
                    reportCycle=p.report_cycle,
                    collectCycle=p.collect_cycle,
                    reportToCloud=p.report_to_cloud,
                )
                for p in spec.properties
            ],
            methods=[
                pb.DeviceMethod(name=m.name, description=m.description, propertyNames=m.property_names)
                for m in spec.methods
            ],
        ),
    )
    if twins:
        out.status.CopyFrom(
            pb.DeviceStatus(
                twins=[
                    pb.Twin(
                        propertyName=name,
                        reported=pb.TwinProperty(value=value, metadata={"type": ttype}),
                        observedDesired=pb.TwinProperty(value=_desired(dev, name)),
                    )
                    for name, (value, ttype) in twins.items()
                ]
            )
        )
    return out


def _desired(dev: KubeDevice, name: str) -> str:
    try:
        return dev.property(name).desired.value
    except KeyError:
        return ""


def model_to_proto(model: KubeDeviceModel) -> Any:
    return pb.DeviceModel(
        name=model.name,
        namespace=model.metadata.namespace,
        spec=pb.DeviceModelSpec(
            properties=[
                pb.ModelProperty(
                    name=p.name,
                    description=p.description,
                    type=p.type,
                    accessMode=p.access_mode,
                    minimum=p.minimum,
                    maximum=p.maximum,
                    unit=p.unit,
                )
                for p in model.spec.properties
            ]
        ),
    )


# -- the transport ----------------------------------------------------------------------------------


class DmiReporter(pb_grpc.DeviceMapperServiceServicer):  # type: ignore[misc]
    """Both DMI sides for one :class:`KubeEdgeMapper` (see the module docstring)."""

    def __init__(self, mapper: KubeEdgeMapper, spec: DmiSpec) -> None:
        self.mapper = mapper
        self.spec = spec
        self.dirty = Dirty(spec.linger)
        self.bucket = TokenBucket(spec.rate.per_second, spec.rate.burst)
        self.models: dict[tuple[str, str], KubeDeviceModel] = {
            (rd.model.metadata.namespace, rd.model.name): rd.model for rd in mapper.catalog.values()
        }
        self._states: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.registered = False
        self.counts: Counter[str] = Counter()

    # -- reporter protocol ------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def device_added(self, dev: TwinDevice) -> None:
        self.dirty.mark(dev.name, dev.reported)
        self.wake()

    def device_removed(self, dev: TwinDevice) -> None:
        self.dirty.discard(dev.name)
        self._states.pop(dev.name, None)

    def state_changed(self, dev: TwinDevice, state: str) -> None:
        self._states[dev.name] = state
        self.wake()

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        sock = Path(self.spec.socket)
        await asyncio.to_thread(sock.unlink, missing_ok=True)  # a stale socket of an earlier run
        server = grpc.aio.server()
        pb_grpc.add_DeviceMapperServiceServicer_to_server(self, server)
        if server.add_insecure_port(f"unix://{sock}") == 0:
            raise ConfigError("cannot serve DMI", problems=[("kubeedge.dmi.socket", f"cannot bind {sock}")])
        await server.start()
        self._server = server
        self._channel = grpc.aio.insecure_channel(
            f"unix://{self.spec.edgecore_socket}",
            # a local socket: try again soon after EdgeCore restarts (gRPC's default waits up to 120 s)
            options=[("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 5000)],
        )
        self._stub = pb_grpc.DeviceManagerServiceStub(self._channel)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="kubeedge-dmi")
        self._watch = loop.create_task(self._watch_channel(), name="kubeedge-dmi-channel")

    async def stop(self) -> None:
        for task in (self._task, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._watch = None
        if self._server is not None:
            await self._server.stop(grace=1.0)
            self._server = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    # -- client side ------------------------------------------------------------------------------

    async def _register(self) -> None:
        req = pb.MapperRegisterRequest(
            withData=True,
            mapper=pb.MapperInfo(
                name=self.spec.mapper_name,
                version=MAPPER_VERSION,
                api_version=API_VERSION,
                protocol=self.spec.protocol,
                address=str(self.spec.socket).encode(),
                state="running",
            ),
        )
        resp = await self._stub.MapperRegister(req, timeout=10)
        self.counts["registers"] += 1
        self.registered = True
        for m in resp.modelList:
            try:
                model = model_from_proto(m, self.spec.protocol)
            except ConfigError as exc:
                self.counts["bad_models"] += 1
                log.error("DMI: a DeviceModel from MapperRegister is not usable: %s", exc)
                continue
            self.models[(model.metadata.namespace, model.name)] = model
        for d in resp.deviceList:
            try:
                await self._apply_device(d)
            except ConfigError as exc:
                self.counts["bad_devices"] += 1
                log.error("DMI: Device %s/%s from MapperRegister is not usable: %s", d.namespace, d.name, exc)
        for dev in self.mapper.devices.values():  # EdgeCore may have restarted: tell it everything
            self.dirty.mark(dev.name, dev.reported)
            self._states[dev.name] = self.mapper.state_of(dev.name)

    async def _watch_channel(self) -> None:
        """Register again each time the connection to EdgeCore's socket is made anew: an EdgeCore that
        restarted has forgotten this mapper (before v1.23 it never rebuilt its DMI clients)."""
        assert self._channel is not None
        ready = grpc.ChannelConnectivity.READY
        state = self._channel.get_state(try_to_connect=True)
        seen_ready = state is ready
        while True:
            await self._channel.wait_for_state_change(state)
            new = self._channel.get_state(try_to_connect=True)
            if new is ready and state is not ready:
                if seen_ready and self.registered:
                    self.counts["reconnects"] += 1
                    log.info("DMI: connection to EdgeCore made anew; registering again")
                    self.registered = False
                    self.wake()
                seen_ready = True
            state = new

    async def _run(self) -> None:
        assert self._channel is not None
        while True:
            if not self.registered:
                try:
                    await self._register()
                    log.info("DMI: registered with EdgeCore at %s", self.spec.edgecore_socket)
                except grpc.aio.AioRpcError as exc:
                    self.counts["register_failures"] += 1
                    log.info("DMI: MapperRegister failed (%s); retrying", exc.code().name)
                    await asyncio.sleep(self.spec.register_retry)
                    continue
            try:
                await self._flush()
            except grpc.aio.AioRpcError as exc:
                self.counts["call_failures"] += 1
                if exc.code() is grpc.StatusCode.UNAVAILABLE:
                    self.registered = False  # register again once EdgeCore's socket is back
                    log.warning("DMI: EdgeCore unreachable (%s); will register again", exc.details())
                else:
                    log.warning("DMI: report refused: %s %s", exc.code().name, exc.details())
                await asyncio.sleep(1.0)
                continue
            await wait_for_work(
                self._wake, self.bucket, states_waiting=bool(self._states), ready_in=self.dirty.ready_in()
            )

    async def _flush(self) -> None:
        while self._states:
            name = next(iter(self._states))
            dev = self.mapper.devices.get(name)
            if dev is None:
                self._states.pop(name)
                continue
            if not self.bucket.try_take():
                return
            state = self._states.pop(name)
            req = pb.ReportDeviceStatesRequest(
                deviceName=dev.name, deviceNamespace=dev.namespace, state=state
            )
            try:
                await self._stub.ReportDeviceStates(req, timeout=10)
            except BaseException:
                self._states.setdefault(name, state)
                raise
            self.counts["states_sent"] += 1
        while True:
            item = self.dirty.pop()
            if item is None:
                return
            name, twins = item
            dev = self.mapper.devices.get(name)
            if dev is None:
                continue
            values = [t for t in sorted(twins) if t in dev.values]
            if not values:  # EdgeCore refuses an empty twin list
                continue
            if not self.bucket.try_take():
                self.dirty.put_back(name, twins)
                return
            req = pb.ReportDeviceStatusRequest(
                deviceName=dev.name,
                deviceNamespace=dev.namespace,
                reportedDevice=pb.DeviceStatus(
                    twins=[
                        pb.Twin(
                            propertyName=t,
                            reported=pb.TwinProperty(
                                value=dev.values[t],
                                metadata={
                                    "type": dev.twins[t].type,
                                    "timestamp": str(dev.collected_ms.get(t, 0)),
                                },
                            ),
                            observedDesired=pb.TwinProperty(
                                value=dev.applied.get(t, dev.twins[t].desired),
                                metadata={"type": dev.twins[t].type},
                            ),
                        )
                        for t in values
                    ],
                    reportToCloud=any(dev.twins[t].report_to_cloud for t in values),
                    reportCycle=int(dev.heartbeat * 1000),
                ),
            )
            try:
                await self._stub.ReportDeviceStatus(req, timeout=10)
            except BaseException:
                self.dirty.put_back(name, twins)
                raise
            self.counts["status_calls"] += 1
            self.counts["twins_sent"] += len(values)

    # -- server side ------------------------------------------------------------------------------

    async def _apply_device(self, d: Any) -> str:
        kube = device_from_proto(d)
        ns = kube.metadata.namespace
        bad_ns = check_namespace(ns)
        if bad_ns:
            raise ConfigError(bad_ns, source=f"DMI Device {ns}/{kube.name}", problems=[("namespace", bad_ns)])
        model = self.models.get((ns, kube.spec.device_model_ref.name))
        if model is None:
            known = self.mapper.catalog.get(f"{ns}/{kube.name}")
            model = known.model if known is not None else None
        if model is None:
            raise ConfigError(
                f"no DeviceModel {ns}/{kube.spec.device_model_ref.name} (CreateDeviceModel first)",
                source=f"DMI Device {ns}/{kube.name}",
                problems=[("spec.deviceModelReference", kube.spec.device_model_ref.name)],
            )
        rd = kube_run_device(kube, model, connectors=self.mapper.spec.connectors)
        running = self.mapper.devices.get(rd.device.name)
        if running is not None and (running.run.device != rd.device or running.run.profile != rd.profile):
            await self.mapper.remove([rd.device.name])  # the definition changed: restart just this device
            running = None
        self.mapper.catalog[rd.device_id] = rd
        if running is None:
            await self.mapper.add([rd])
        dev = self.mapper.devices.get(rd.device.name)
        if dev is not None:
            for p in kube.spec.properties:
                if p.desired.value and dev.twins.get(p.name) is not None and dev.twins[p.name].writable:
                    why = self.mapper.desire(dev, p.name, p.desired.value, source="DMI desired")
                    if why:
                        log.warning("DMI: desired %s of %s not applied: %s", p.name, rd.device_id, why)
        return rd.device_id

    async def _guard(self, context: Any, what: str, coro: Any) -> Any:
        self.counts[what] += 1
        try:
            return await coro
        except ConfigError as exc:
            self.counts["refused"] += 1
            log.warning("DMI %s refused: %s", what, exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def RegisterDevice(self, request: Any, context: Any) -> Any:
        await self._guard(context, "register_device", self._apply_device(request.device))
        return pb.RegisterDeviceResponse(
            deviceName=request.device.name, deviceNamespace=request.device.namespace
        )

    async def UpdateDevice(self, request: Any, context: Any) -> Any:
        await self._guard(context, "update_device", self._apply_device(request.device))
        return pb.UpdateDeviceResponse()

    async def RemoveDevice(self, request: Any, context: Any) -> Any:
        self.counts["remove_device"] += 1
        ident = f"{request.deviceNamespace or 'default'}/{request.deviceName}"
        dev = self.mapper.find(ident)
        if dev is not None:
            await self.mapper.remove([dev.name])
        self.mapper.catalog.pop(ident, None)
        return pb.RemoveDeviceResponse()

    async def _model(self, context: Any, m: Any) -> None:
        try:
            model = model_from_proto(m, self.spec.protocol)
        except ConfigError as exc:
            self.counts["refused"] += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        self.models[(model.metadata.namespace, model.name)] = model

    async def CreateDeviceModel(self, request: Any, context: Any) -> Any:
        self.counts["create_model"] += 1
        await self._model(context, request.model)
        return pb.CreateDeviceModelResponse(
            deviceModelName=request.model.name, deviceModelNamespace=request.model.namespace
        )

    async def UpdateDeviceModel(self, request: Any, context: Any) -> Any:
        self.counts["update_model"] += 1
        await self._model(context, request.model)
        return pb.UpdateDeviceModelResponse()

    async def RemoveDeviceModel(self, request: Any, context: Any) -> Any:
        self.counts["remove_model"] += 1
        self.models.pop((request.modelNamespace or "default", request.modelName), None)
        return pb.RemoveDeviceModelResponse()

    async def GetDevice(self, request: Any, context: Any) -> Any:
        self.counts["get_device"] += 1
        dev = self.mapper.find(f"{request.deviceNamespace or 'default'}/{request.deviceName}")
        if dev is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"device {request.deviceNamespace}/{request.deviceName}"
            )
            return pb.GetDeviceResponse()
        twins = {t: (v, dev.twins[t].type) for t, v in dev.values.items()}
        return pb.GetDeviceResponse(device=device_to_proto(dev.run.kube, twins))

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "registered": self.registered,
            "waiting_devices": len(self.dirty),
            "rate_refused": self.bucket.refused,
        }
