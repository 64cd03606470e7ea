"""The mapper-framework REST API, for tools that expect a KubeEdge mapper (port 7777 by default).

Routes and response shapes follow ``kubeedge/mapper-framework`` ``pkg/httpserver`` (v1.19+):

* ``GET /api/v1/ping`` → ``{"apiVersion":"v1","statusCode":200,"timeStamp":…,"Message":"This is v1 API, the
  server is running normally."}``
* ``GET /api/v1/device/{namespace}/{name}/{property}`` → ``{…,"Data":{"DeviceName","PropertyName",
  "Namespace","Value","Type","CollectTimeStamp"}}`` (the twin's last value, as reported)
* ``GET /api/v1/devicemethod/{namespace}/{name}`` → ``{…,"Data":{"Methods":[{"Name","Path","Parameters":
  [{"PropertyName","ValueType"}]}]}}`` (the Device's ``spec.methods``)
* ``GET /api/v1/devicemethod/{namespace}/{name}/{method}/{property}/{data}`` writes ``data`` through the
  connector (a GET, as mapper-framework routes it) → ``{…,"Message":"Write data … successfully."}``
* ``GET /api/v1/meta/model/{namespace}/{name}`` → the device's DeviceModel

Errors are plain-text 4xx/5xx bodies, as Go's ``http.Error``. Served on the event loop; no disk I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import unquote

import orjson

from edgeflow.parsing import parse_listen
from edgeflow.twin.mapper import KubeEdgeMapper, TwinDevice
from edgeflow.twin.spec import RestSpec

__all__ = ["MapperRestApi"]

log = logging.getLogger(__name__)

API = "/api/v1"


def _base(status: int = 200) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "statusCode": status,
        "timeStamp": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime()).replace("+0000", "Z"),
    }


class MapperRestApi:
    def __init__(self, mapper: KubeEdgeMapper, spec: RestSpec) -> None:
        self.mapper = mapper
        self.spec = spec
        self._server: asyncio.Server | None = None
        self.requests = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        host, port = parse_listen(self.spec.listen)
        self._server = await asyncio.start_server(self._handle, host, port)
        log.info("mapper REST API on http://%s:%d%s/ping", host, self.port, API)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            self.requests += 1
            status, ctype, body = await self._respond(method, path)
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}
            head = (
                f"HTTP/1.1 {status} {reason.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    def _json(body: dict[str, Any]) -> tuple[int, str, bytes]:
        return 200, "application/json", orjson.dumps(body)

    @staticmethod
    def _error(status: int, text: str) -> tuple[int, str, bytes]:
        return status, "text/plain; charset=utf-8", (text + "\n").encode()

    def _device(self, ns: str, name: str) -> TwinDevice | None:
        return self.mapper.find(f"{ns}/{name}")

    async def _respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method != "GET":
            return self._error(405, "GET only")
        if not path.startswith(API + "/"):
            return self._error(404, "404 page not found")
        seg = [unquote(s) for s in path[len(API) + 1 :].split("/")]
        if seg == ["ping"]:
            return self._json({**_base(), "Message": "This is v1 API, the server is running normally."})
        if seg[0] == "device" and len(seg) == 4:
            return self._read(*seg[1:])
        if seg[0] == "devicemethod" and len(seg) == 3:
            return self._methods(seg[1], seg[2])
        if seg[0] == "devicemethod" and len(seg) == 6:
            return await self._call(*seg[1:])
        if seg[:2] == ["meta", "model"] and len(seg) == 4:
            return self._model(seg[2], seg[3])
        return self._error(404, "404 page not found")

    def _read(self, ns: str, name: str, prop: str) -> tuple[int, str, bytes]:
        dev = self._device(ns, name)
        if dev is None:
            return self._error(500, f"Get device data error: device {ns}/{name} not found")
        info = dev.twins.get(prop)
        if info is None or prop not in dev.values:
            return self._error(500, f"Get device data error: no value of property {prop!r} yet")
        data = {
            "DeviceName": name,
            "PropertyName": prop,
            "Namespace": ns,
            "Value": dev.values[prop],
            "Type": info.type,
            "CollectTimeStamp": dev.collected_ms.get(prop, 0),
        }
        return self._json({**_base(), "Data": data})

    def _methods(self, ns: str, name: str) -> tuple[int, str, bytes]:
        dev = self._device(ns, name)
        if dev is None:
            return self._error(500, f"Get device method error: device {ns}/{name} not found")
        methods = []
        for m in dev.run.kube.spec.methods:
            params = []
            for p in m.property_names:
                info = dev.twins.get(p)
                if info is None:
                    return self._error(
                        500,
                        f"Get device method error: unable to find device property {p} defined in device method",
                    )
                params.append({"PropertyName": p, "ValueType": info.type})
            path = f"{API}/devicemethod/{ns}/{name}/{m.name}/{{propertyName}}/{{data}}"
            methods.append({"Name": m.name, "Path": path, "Parameters": params})
        return self._json({**_base(), "Data": {"Methods": methods}})

    async def _call(self, ns: str, name: str, method: str, prop: str, data: str) -> tuple[int, str, bytes]:
        dev = self._device(ns, name)
        if dev is None:
            return self._error(500, f"Write device data error: device {ns}/{name} not found")
        m = next((m for m in dev.run.kube.spec.methods if m.name == method), None)
        if m is None or prop not in m.property_names:
            return self._error(500, f"Write device data error: method {method!r} does not control {prop!r}")
        info = dev.twins.get(prop)
        if info is None or not info.writable:
            return self._error(500, f"Write device data error: property {prop!r} is not writable")
        why = await self.mapper.apply(dev.name, prop, data, source="REST method call")
        if why:
            return self._error(500, f"Write device data error: {why}")
        return self._json({**_base(), "Message": f"Write data {data} to device {ns}/{name} successfully."})

    def _model(self, ns: str, name: str) -> tuple[int, str, bytes]:
        dev = self._device(ns, name)
        if dev is None:
            return self._error(500, f"Get device error: device {ns}/{name} not found")
        model = dev.run.model
        body = {
            **_base(),
            "Name": model.name,
            "Namespace": model.metadata.namespace,
            "Properties": [
                {
                    "Name": p.name,
                    "DataType": p.type,
                    "Description": p.description,
                    "AccessMode": p.access_mode,
                    "Minimum": p.minimum,
                    "Maximum": p.maximum,
                    "Unit": p.unit,
                }
                for p in model.spec.properties
            ],
        }
        return self._json(body)
