"""EdgeCore's DMI side, as a test double: a ``DeviceManagerService`` server on a Unix socket with
EdgeCore's rate limit (token bucket, 1 call/s, burst 100, shared by every call; over it: "too many
request"), its checks (an empty twin list is an error) and ``MapperRegister`` answering with the devices
and models of the mapper's protocol; and a client of the mapper's ``DeviceMapperService``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from edgeflow.kubeedge import KubeDevice, KubeDeviceModel
from edgeflow.twin._bucket import TokenBucket
from edgeflow.twin.dmi import device_to_proto, model_to_proto, pb, pb_grpc


class DeviceManagerDouble(pb_grpc.DeviceManagerServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        socket: Path,
        devices: Sequence[tuple[KubeDevice, KubeDeviceModel]] = (),
        *,
        per_second: float = 1.0,
        burst: int = 100,
    ) -> None:
        self.socket = socket
        self.devices = list(devices)
        self.bucket = TokenBucket(per_second, burst)
        self.registers: list[Any] = []
        self.statuses: list[Any] = []
        self.states: list[Any] = []
        self.refused = 0
        self.violations: list[str] = []
        self.calls: list[float] = []
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        server = grpc.aio.server()
        pb_grpc.add_DeviceManagerServiceServicer_to_server(self, server)
        server.add_insecure_port(f"unix://{self.socket}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None

    async def _limit(self, context: Any) -> None:
        self.calls.append(time.monotonic())
        if not self.bucket.try_take():
            self.refused += 1
            await context.abort(grpc.StatusCode.UNKNOWN, "too many request")

    async def MapperRegister(self, request: Any, context: Any) -> Any:
        await self._limit(context)
        self.registers.append(request)
        resp = pb.MapperRegisterResponse()
        if request.withData:
            for dev, model in self.devices:
                if (dev.spec.protocol.protocol_name or model.spec.protocol) != request.mapper.protocol:
                    continue
                resp.modelList.append(model_to_proto(model))
                resp.deviceList.append(device_to_proto(dev))
        return resp

    async def ReportDeviceStatus(self, request: Any, context: Any) -> Any:
        await self._limit(context)
        if not request.reportedDevice.twins:
            self.violations.append(f"{request.deviceName}: empty twin list")
            await context.abort(grpc.StatusCode.UNKNOWN, "twins is empty")
        for t in request.reportedDevice.twins:
            if not t.propertyName:
                self.violations.append(f"{request.deviceName}: twin without a property name")
        self.statuses.append(request)
        return pb.ReportDeviceStatusResponse()

    async def ReportDeviceStates(self, request: Any, context: Any) -> Any:
        await self._limit(context)
        if request.state.lower() not in ("online", "offline", "ok", "unknown", "unhealthy"):
            self.violations.append(f"{request.deviceName}: state {request.state!r}")
        self.states.append(request)
        return pb.ReportDeviceStatesResponse()

    def reported(self, name: str, twin: str) -> str | None:
        for req in reversed(self.statuses):
            if req.deviceName == name:
                for t in req.reportedDevice.twins:
                    if t.propertyName == twin:
                        return str(t.reported.value)
        return None

    def state(self, name: str) -> str | None:
        for req in reversed(self.states):
            if req.deviceName == name:
                return str(req.state)
        return None


def mapper_client(socket: Path) -> tuple[grpc.aio.Channel, Any]:
    """EdgeCore's client of the mapper's ``DeviceMapperService``."""
    channel = grpc.aio.insecure_channel(f"unix://{socket}")
    return channel, pb_grpc.DeviceMapperServiceStub(channel)
