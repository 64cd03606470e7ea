"""A simulated OPC-UA server: a real asyncua server on loopback whose nodes code can set.

The demo runs one as a plant device; the tests run them to read, write, call, secure, stop and restart.
``stop()`` and ``start()`` again serve the same nodes, with their last values, on the same port. It
serves, in namespace ``urn:edgeflow:simulator:nodes`` (index 2):

* ``Simulation`` (numeric ids, as simulation servers number them): ``Counter`` (``i=1001``, Int32),
  ``Random`` (``i=1002``), ``Sawtooth`` (``i=1003``), ``Sinusoid`` (``i=1004``), ``Square`` (``i=1005``),
  ``Triangle`` (``i=1006``), ``Constant`` (``i=1007``; Doubles), moved by :meth:`step` / :meth:`run`;
* ``Types`` (``s=Types.<Name>``): one writable node of every scalar built-in type and of their arrays
  (``s=Types.<Name>Array``), plus a Guid id (``g=``) and an opaque id (``b=``) node;
* ``Plant/Boiler`` (browse path ``<ns>:Plant/<ns>:Boiler/<ns>:Temperature``): ``Temperature``,
  ``Setpoint`` (Float, writable), ``Level`` (Double);
* ``Methods``: ``Add(a Double, b Double) -> Double``, ``Scale(values Double[], k Double) -> Double[]``,
  ``Reset() -> Int32`` (sets Counter to 0, returns its old value), ``Fill(amount Double) -> Double``
  (adds to the boiler's Level, returns it);
* :meth:`add_bench_nodes` adds ``s=Bench.<i>`` Doubles for benchmarks.

Security: ``policies`` lists the endpoints (``"None"``, ``"Basic256Sha256_SignAndEncrypt"``, ...);
``certificate``/``private_key`` are the server's; ``trusted_clients`` (certificate files) are the only
client certificates it accepts when given; ``users`` (name → password) and ``user_certificates`` are
the identities it accepts, and ``anonymous`` whether it accepts none.

This module, like :mod:`connectors.opcua._asyncua` for the client, is the one place the server side of
asyncua is called.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.methods import uamethod
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["NAMESPACE", "OpcUaSimulator", "free_tcp_port"]

log = logging.getLogger(__name__)

NAMESPACE = "urn:edgeflow:simulator:nodes"

#: name, VariantType, initial value, numeric id under Simulation
_SIMULATION = [
    ("Counter", "Int32", 0, 1001),
    ("Random", "Double", 0.5, 1002),
    ("Sawtooth", "Double", 0.0, 1003),
    ("Sinusoid", "Double", 0.0, 1004),
    ("Square", "Double", 1.0, 1005),
    ("Triangle", "Double", 0.0, 1006),
    ("Constant", "Double", 199.99, 1007),
]

#: Types.<Name>: one writable node per built-in type (scalar and array)
_TYPES: list[tuple[str, Any, Any]] = [
    ("Boolean", "Boolean", True),
    ("SByte", "SByte", -8),
    ("Byte", "Byte", 200),
    ("Int16", "Int16", -1600),
    ("UInt16", "UInt16", 60000),
    ("Int32", "Int32", -2_000_000),
    ("UInt32", "UInt32", 4_000_000_000),
    ("Int64", "Int64", -(2**40)),
    ("UInt64", "UInt64", 2**60),
    ("Float", "Float", 1.5),
    ("Double", "Double", 2.25),
    ("String", "String", "hello"),
    ("DateTime", "DateTime", datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
    ("Guid", "Guid", uuid.UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63")),
    ("ByteString", "ByteString", b"\x00\x01edge"),
    ("XmlElement", "XmlElement", "<a>1</a>"),
    ("NodeId", "NodeId", "ns=1;s=Anywhere"),
    ("ExpandedNodeId", "ExpandedNodeId", "ns=1;i=42"),
    ("StatusCode", "StatusCode", "UncertainLastUsableValue"),
    ("QualifiedName", "QualifiedName", "1:Name"),
    ("LocalizedText", "LocalizedText", "Grüße"),
]
_ARRAYS: list[tuple[str, Any]] = [
    ("Boolean", [True, False, True]),
    ("SByte", [-1, 0, 1]),
    ("Byte", [1, 2, 255]),
    ("Int16", [-3, 4]),
    ("UInt16", [3, 65535]),
    ("Int32", [-5, 6]),
    ("UInt32", [5, 4_000_000_000]),
    ("Int64", [-7, 2**40]),
    ("UInt64", [7, 2**60]),
    ("Float", [0.5, -1.25]),
    ("Double", [1.5, 2.5, 3.5]),
    ("String", ["a", "b,c"]),
]


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _value(vtype: str, v: Any) -> Any:
    if vtype in ("NodeId", "ExpandedNodeId"):
        return ua.NodeId.from_string(v)
    if vtype == "QualifiedName":
        return ua.QualifiedName.from_string(v)
    if vtype == "LocalizedText":
        return ua.LocalizedText(v)
    if vtype == "XmlElement":
        return ua.XmlElement(v)
    if vtype == "StatusCode":
        return ua.StatusCode(getattr(ua.StatusCodes, v))
    return v


def _der(path: Path) -> bytes:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return data


class _Users:
    """asyncua user manager: anonymous, name/password, or a user certificate, as the simulator allows.

    asyncua hands it the channel's client certificate for an anonymous token and the token's own for a
    certificate identity, so a certificate that is a known application (channel) certificate, or any
    certificate when the simulator knows no user certificates, means anonymous."""

    def __init__(
        self,
        anonymous: bool,
        users: Mapping[str, str],
        certificates: Sequence[bytes],
        channels: Sequence[bytes] | None,
    ) -> None:
        self.anonymous = anonymous
        self.users = dict(users)
        self.certificates = list(certificates)
        self.channels = None if channels is None else list(channels)
        self.refused = 0

    def get_user(
        self, iserver: Any, username: Any = None, password: Any = None, certificate: Any = None
    ) -> Any:
        if username:
            pw = password.decode() if isinstance(password, bytes) else password
            if pw is not None and self.users.get(username) == pw:
                return User(role=UserRole.User, name=username)
        else:
            der = b""
            if certificate is not None:
                der = (
                    certificate.public_bytes(serialization.Encoding.DER)
                    if hasattr(certificate, "public_bytes")
                    else certificate
                )
            if der and der in self.certificates:
                return User(role=UserRole.User, name="certificate")
            channel = not der or (
                der in self.channels if self.channels is not None else not self.certificates
            )
            if channel and self.anonymous:
                return User(role=UserRole.User)
        self.refused += 1
        return None


class OpcUaSimulator:
    """An asyncua server with the simulator's nodes. ``endpoint`` is its URL."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        policies: Sequence[str] = ("None",),
        certificate: Path | None = None,
        private_key: Path | None = None,
        trusted_clients: Sequence[Path] | None = None,
        anonymous: bool = True,
        users: Mapping[str, str] | None = None,
        user_certificates: Sequence[Path] = (),
        max_subscriptions: int | None = None,
        application_uri: str = "urn:edgeflow:simulator",
        seed: int = 1,
    ) -> None:
        self.host = host
        self.port = port or free_tcp_port(host)
        self.policies = list(policies)
        self.certificate = certificate
        self.private_key = private_key
        self.trusted_clients = None if trusted_clients is None else [_der(p) for p in trusted_clients]
        self.users = _Users(
            anonymous, users or {}, [_der(p) for p in user_certificates], self.trusted_clients
        )
        self.max_subscriptions = max_subscriptions
        self.application_uri = application_uri
        self.ns = 0
        self.writes = 0  # values set through set() (the changes the server saw)
        self.method_calls = 0
        self.rejected_clients = 0
        self._rng = random.Random(seed)
        self._server: Any = None
        self._running = False
        self._nodes: dict[str, Any] = {}  # name -> NodeId
        self._types: dict[str, str] = {}  # name -> VariantType name
        self._t = 0.0

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/edgeflow/sim"

    @property
    def running(self) -> bool:
        return self._running

    def node_id(self, name: str) -> str:
        """The string NodeId of a simulator node (``Counter``, ``Types.Int16``, ``Boiler.Setpoint``...)."""
        return str(self._nodes[name].to_string())

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Serve (the first start builds the address space, which takes a few seconds)."""
        if self._running:
            return
        if self._server is None:
            self._server = await self._make()
        await self._server.start()
        self._running = True
        log.info("OPC-UA simulator on %s", self.endpoint)

    async def _make(self) -> Any:
        server = Server(user_manager=self.users)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("edgeflow simulator")
        await server.set_application_uri(self.application_uri)
        if self.certificate is not None and self.private_key is not None:
            await server.load_certificate(
                str(self.certificate), format="der" if _is_der(self.certificate) else "pem"
            )
            await server.load_private_key(str(self.private_key))
        server.set_security_policy(
            [getattr(ua.SecurityPolicyType, p if p != "None" else "NoSecurity") for p in self.policies]
        )
        tokens: list[type] = [ua.UserNameIdentityToken, ua.X509IdentityToken]
        if self.users.anonymous:
            tokens.insert(0, ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        if self.trusted_clients is not None:
            server.set_certificate_validator(self._validate_client)
        if self.max_subscriptions is not None:
            server.iserver.max_subscriptions = self.max_subscriptions
        self.ns = await server.register_namespace(NAMESPACE)
        await self._build(server)
        return server

    async def stop(self) -> None:
        """Stop serving (clients lose their connections); nodes and values stay for the next :meth:`start`."""
        if not self._running:
            return
        self._running = False
        await self._server.stop()

    async def __aenter__(self) -> OpcUaSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _validate_client(self, cert: Any, app: Any) -> None:
        der = cert.public_bytes(serialization.Encoding.DER)
        if self.trusted_clients is None or der not in self.trusted_clients:
            self.rejected_clients += 1
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    async def _build(self, server: Any) -> None:
        ns = self.ns
        objects = server.nodes.objects
        self._nodes.clear()
        sim = await objects.add_folder(ua.NodeId(1000, ns), ua.QualifiedName("Simulation", ns))
        for name, vt, init, num in _SIMULATION:
            node = await sim.add_variable(
                ua.NodeId(num, ns), ua.QualifiedName(name, ns), init, getattr(ua.VariantType, vt)
            )
            await node.set_writable()
            self._add(name, node.nodeid, vt)
        types = await objects.add_folder(ua.NodeId("Types", ns), ua.QualifiedName("Types", ns))
        for name, vt, init in _TYPES:
            node = await types.add_variable(
                ua.NodeId(f"Types.{name}", ns),
                ua.QualifiedName(name, ns),
                _value(vt, init),
                getattr(ua.VariantType, vt),
            )
            await node.set_writable()
            self._add(f"Types.{name}", node.nodeid, vt)
        for name, init in _ARRAYS:
            node = await types.add_variable(
                ua.NodeId(f"Types.{name}Array", ns),
                ua.QualifiedName(f"{name}Array", ns),
                ua.Variant(init, getattr(ua.VariantType, name), is_array=True),
            )
            await node.write_value_rank(1)
            await node.set_writable()
            self._add(f"Types.{name}Array", node.nodeid, name)
        node = await types.add_variable(
            ua.NodeId(uuid.UUID("0c4b3d25-0c61-4a8c-9d2e-6f3c1f2e7a10"), ns),
            ua.QualifiedName("ByGuid", ns),
            7.5,
        )
        self._add("Types.ByGuid", node.nodeid, "Double")
        node = await types.add_variable(
            ua.NodeId(b"\x01\x02opaque", ns), ua.QualifiedName("ByOpaque", ns), 8.5
        )
        self._add("Types.ByOpaque", node.nodeid, "Double")
        plant = await objects.add_object(ua.NodeId("Plant", ns), ua.QualifiedName("Plant", ns))
        boiler = await plant.add_object(ua.NodeId("Boiler", ns), ua.QualifiedName("Boiler", ns))
        for name, vt, init in (
            ("Temperature", "Double", 20.0),
            ("Setpoint", "Float", 60.0),
            ("Level", "Double", 1.0),
        ):
            node = await boiler.add_variable(
                ua.NodeId(f"Boiler.{name}", ns), ua.QualifiedName(name, ns), init, getattr(ua.VariantType, vt)
            )
            await node.set_writable()
            self._add(f"Boiler.{name}", node.nodeid, vt)
        methods = await objects.add_object(ua.NodeId("Methods", ns), ua.QualifiedName("Methods", ns))
        self._nodes["Methods"] = methods.nodeid
        add = await methods.add_method(
            ua.NodeId("Methods.Add", ns),
            ua.QualifiedName("Add", ns),
            self._add_method,
            [ua.VariantType.Double, ua.VariantType.Double],
            [ua.VariantType.Double],
        )
        self._nodes["Methods.Add"] = add.nodeid
        scale_args = [
            ua.Argument(
                Name="values", DataType=ua.NodeId(ua.ObjectIds.Double), ValueRank=1, ArrayDimensions=[0]
            ),
            ua.Argument(Name="k", DataType=ua.NodeId(ua.ObjectIds.Double), ValueRank=-1),
        ]
        scale = await methods.add_method(
            ua.NodeId("Methods.Scale", ns),
            ua.QualifiedName("Scale", ns),
            self._scale_method,
            scale_args,
            [
                ua.Argument(
                    Name="out", DataType=ua.NodeId(ua.ObjectIds.Double), ValueRank=1, ArrayDimensions=[0]
                )
            ],
        )
        self._nodes["Methods.Scale"] = scale.nodeid
        reset = await methods.add_method(
            ua.NodeId("Methods.Reset", ns),
            ua.QualifiedName("Reset", ns),
            self._reset_method,
            [],
            [ua.VariantType.Int32],
        )
        self._nodes["Methods.Reset"] = reset.nodeid
        fill = await methods.add_method(
            ua.NodeId("Methods.Fill", ns),
            ua.QualifiedName("Fill", ns),
            self._fill_method,
            [ua.VariantType.Double],
            [ua.VariantType.Double],
        )
        self._nodes["Methods.Fill"] = fill.nodeid

    def _add(self, name: str, node_id: Any, vtype: str) -> None:
        self._nodes[name] = node_id
        self._types[name] = vtype

    # ------------------------------------------------------------------ methods

    @uamethod  # type: ignore[untyped-decorator]
    async def _add_method(self, parent: Any, a: float, b: float) -> float:
        self.method_calls += 1
        return float(a) + float(b)

    @uamethod  # type: ignore[untyped-decorator]
    async def _scale_method(self, parent: Any, values: list[float], k: float) -> list[float]:
        self.method_calls += 1
        return [float(v) * float(k) for v in values]

    async def _fill_method(self, parent: Any, amount: Any) -> list[Any]:
        self.method_calls += 1
        level = float(self.get("Boiler.Level")) + float(amount.Value)
        await self.set("Boiler.Level", level)
        return [ua.Variant(level, ua.VariantType.Double)]

    async def _reset_method(self, parent: Any) -> list[Any]:
        self.method_calls += 1
        old = self.get("Counter")
        await self.set("Counter", 0)
        return [ua.Variant(int(old), ua.VariantType.Int32)]

    # ------------------------------------------------------------------ values

    def _server_or_fail(self) -> Any:
        if self._server is None:
            raise RuntimeError("the simulator was never started")
        return self._server

    async def set(
        self, name: str, value: Any, *, status: str | None = None, source_time: datetime | None = None
    ) -> None:
        """Set a node's value as the device would: with a status (``"UncertainLastUsableValue"``,
        ``"BadSensorFailure"``; default Good) and a source timestamp (default now)."""
        server = self._server_or_fail()
        vtype = self._types[name]
        array = isinstance(value, list)
        variant = ua.Variant(
            [_value(vtype, v) for v in value] if array else _value(vtype, value),
            getattr(ua.VariantType, vtype),
            is_array=array,
        )
        dv = ua.DataValue(
            Value=variant,
            StatusCode=ua.StatusCode(getattr(ua.StatusCodes, status)) if status else ua.StatusCode(),
            SourceTimestamp=source_time or datetime.now(UTC),
            ServerTimestamp=datetime.now(UTC),
        )
        await server.write_attribute_value(self._nodes[name], dv)
        self.writes += 1

    def get(self, name: str) -> Any:
        """A node's current value (asyncua's Python value)."""
        server = self._server_or_fail()
        dv = server.read_attribute_value(self._nodes[name])
        return None if dv.Value is None else dv.Value.Value

    def variant_type(self, name: str) -> str:
        """The built-in type of the value a node holds now (``Float``, ``Int16``...)."""
        dv = self._server_or_fail().read_attribute_value(self._nodes[name])
        return "Null" if dv.Value is None else str(dv.Value.VariantType.name)

    def status(self, name: str) -> str:
        dv = self._server_or_fail().read_attribute_value(self._nodes[name])
        return str(dv.StatusCode.name) if dv.StatusCode is not None else "Good"

    async def add_bench_nodes(self, n: int) -> list[str]:
        """``n`` Double nodes ``Bench.0`` … ``Bench.<n-1>`` (once); their NodeIds."""
        server, ns = self._server_or_fail(), self.ns
        folder = await server.nodes.objects.add_folder(ua.NodeId("Bench", ns), ua.QualifiedName("Bench", ns))
        for i in range(n):
            node = await folder.add_variable(
                ua.NodeId(f"Bench.{i}", ns), ua.QualifiedName(f"Bench{i}", ns), 0.0
            )
            self._add(f"Bench.{i}", node.nodeid, "Double")
        return [self.node_id(f"Bench.{i}") for i in range(n)]

    async def set_many(self, values: Mapping[str, float]) -> None:
        """Set many Double nodes at once (a benchmark's change wave)."""
        server = self._server_or_fail()
        now = datetime.now(UTC)
        for name, v in values.items():
            await server.write_attribute_value(
                self._nodes[name],
                ua.DataValue(Value=ua.Variant(float(v), ua.VariantType.Double), SourceTimestamp=now),
            )
        self.writes += len(values)

    async def step(self, dt: float = 0.1) -> None:
        """Move the Simulation nodes on by ``dt`` seconds (and the boiler towards its set point)."""
        self._t += dt
        t = self._t
        await self.set("Counter", int(self.get("Counter")) + 1)
        await self.set("Random", self._rng.random())
        await self.set("Sawtooth", (t % 10.0) / 10.0)
        await self.set("Sinusoid", math.sin(2 * math.pi * t / 10.0))
        await self.set("Square", 1.0 if (t % 10.0) < 5.0 else -1.0)
        await self.set("Triangle", 1.0 - abs((t % 10.0) / 5.0 - 1.0))
        temp = float(self.get("Boiler.Temperature"))
        setpoint = float(self.get("Boiler.Setpoint"))
        await self.set("Boiler.Temperature", temp + (setpoint - temp) * 0.05 + self._rng.gauss(0, 0.01))
        await self.set("Boiler.Level", 1.0 + 0.2 * math.sin(t / 3.0))

    async def run(self, period: float = 0.1) -> None:
        """Call :meth:`step` every ``period`` seconds until cancelled."""
        while True:
            if self._server is not None:
                await self.step(period)
            await asyncio.sleep(period)


def _is_der(path: Path) -> bool:
    return b"-----BEGIN" not in path.read_bytes()[:64]
