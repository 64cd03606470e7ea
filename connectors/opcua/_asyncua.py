"""The one module that calls the asyncua client (tested with asyncua 2.1; pinned ``asyncua>=2.1,<2.2``).

Every asyncua call sits behind :class:`UaLink` (one client, one session, to one endpoint), and every
asyncua exception becomes one of this module's :class:`LinkError` s. Values leave as plain Python
(:class:`Sample`; see :mod:`connectors.opcua._types`), never as asyncua objects.

Reconnection belongs to the connector, not to asyncua: clients are built with ``auto_reconnect=False``.
asyncua's supervisor then only *detects* a lost connection (a closed socket, or a failed server-state
probe every ``watchdog`` seconds) and reports it through ``connection_lost_callback``; this module
passes that on (``on_lost``) and the connector builds a new link. Subscriptions are created with the
low-level session services and a callback that takes a whole PublishResponse at a time, so a
notification message of a thousand items is decoded in one pass and handed over as one list.

Security: before a secured channel is opened, the endpoint's certificate is checked against the
configured trust (:mod:`connectors.opcua._trust`) and pinned for the session; an endpoint with the
configured policy and mode must exist, or the connection fails: never a silent downgrade to None.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from asyncua import Client, ua
from asyncua.common.node import Node
from asyncua.common.ua_utils import data_type_to_variant_type
from asyncua.crypto import security_policies
from asyncua.crypto.uacrypto import CertProperties
from cryptography.hazmat.primitives import serialization

from connectors.opcua._config import Deadband, DeadbandType, EndpointSpec, SecurityMode, SecurityPolicy
from connectors.opcua._nodes import NodeRef
from connectors.opcua._trust import (
    TrustError,
    application_uri,
    check_key_pair,
    check_server_certificate,
    describe,
    first_certificate,
    load_certificates,
    pem_key,
)
from connectors.opcua._types import Status, datetime_ns
from edgeflow.connector import Quality

__all__ = [
    "ItemRequest",
    "LinkClosed",
    "LinkError",
    "LinkSecurity",
    "LinkStatus",
    "LinkTimeout",
    "Sample",
    "UaLink",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_POLICY_CLASSES: dict[SecurityPolicy, Any] = {
    SecurityPolicy.NONE: security_policies.SecurityPolicyNone,
    SecurityPolicy.BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
    SecurityPolicy.AES128_SHA256_RSAOAEP: security_policies.SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicy.AES256_SHA256_RSAPSS: security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {
    SecurityMode.NONE: ua.MessageSecurityMode.None_,
    SecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    SecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
}
#: Service results that mean the session or channel is gone: the link is lost.
_SESSION_LOST = {
    "BadSessionIdInvalid",
    "BadSessionClosed",
    "BadSessionNotActivated",
    "BadSecureChannelIdInvalid",
    "BadSecureChannelClosed",
    "BadConnectionClosed",
    "BadServerNotConnected",
    "BadNotConnected",
    "BadShutdown",
}
#: The server refused edgeflow's application certificate.
_CERT_REJECTED = {
    "BadCertificateUntrusted",
    "BadCertificateInvalid",
    "BadCertificateTimeInvalid",
    "BadCertificateUriInvalid",
    "BadCertificateUseNotAllowed",
    "BadCertificateRevoked",
    "BadCertificateIssuerRevoked",
    "BadSecurityChecksFailed",
    "BadNoValidCertificates",
}
#: The server refused the user identity.
_IDENTITY_REJECTED = {
    "BadIdentityTokenInvalid",
    "BadIdentityTokenRejected",
    "BadUserAccessDenied",
    "BadUserSignatureInvalid",
}
_OBJECTS_FOLDER = ua.NodeId(ua.ObjectIds.ObjectsFolder)
_HIERARCHICAL = ua.NodeId(ua.ObjectIds.HierarchicalReferences)


class LinkError(Exception):
    """A request failed below the connector; the connector maps it to an edgeflow error."""


class LinkClosed(LinkError):
    """No connection, or it was lost."""


class LinkTimeout(LinkError):
    """No answer in time."""


class LinkStatus(LinkError):
    """The server answered a service with a Bad status; ``status`` is its name (``BadNodeIdUnknown``)."""

    def __init__(self, status: str, message: str) -> None:
        self.status = status
        super().__init__(message)


class LinkSecurity(LinkError):
    """Security failed: an untrusted server certificate, no endpoint with the configured policy and mode,
    edgeflow's certificate or identity refused. Never followed by a weaker attempt."""


@dataclass(slots=True)
class Sample:
    """One value as read or notified: plain ``value`` of built-in type ``builtin`` (``array`` if an array),
    its quality and status name, and the source and server timestamps in ns (0 when absent)."""

    value: Any
    builtin: str
    array: bool
    quality: Quality
    status: str
    source_ns: int
    server_ns: int


@dataclass(frozen=True, slots=True)
class ItemRequest:
    """A monitored item: ``handle`` is the connector's own, echoed in every notification."""

    handle: int
    node: NodeRef
    sampling_ms: float
    queue_size: int
    deadband: Deadband | None


#: A whole notification message's data changes: ``(handle, sample)`` pairs.
DataCallback = Callable[[list[tuple[int, Sample]]], None]
#: A subscription's status changed (``BadTimeout``: the server dropped it); the status name.
StatusCallback = Callable[[str], None]


def _status_name(code: Any) -> str:
    try:
        return str(ua.StatusCode(int(getattr(code, "value", code))).name)
    except Exception:  # an unknown code
        return f"0x{int(getattr(code, 'value', code)):08X}"


def plain(v: Any) -> Any:
    """An asyncua value as plain Python (see :mod:`connectors.opcua._types`)."""
    if v is None or isinstance(v, bool | int | float | str | bytes | datetime | uuid.UUID):
        return v
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    if isinstance(v, ua.StatusCode):
        return Status(int(v.value), _status_name(v.value))
    if isinstance(v, ua.LocalizedText | ua.XmlElement):
        return v.Text if isinstance(v, ua.LocalizedText) else v.Value
    if isinstance(v, ua.QualifiedName | ua.NodeId):
        return v.to_string()
    if isinstance(v, ua.Variant):
        return plain(v.Value)
    if isinstance(v, ua.DataValue):
        return {
            "value": plain(v.Value.Value if v.Value is not None else None),
            "status": _status_name(v.StatusCode.value if v.StatusCode is not None else 0),
            "sourceTimestamp": plain(v.SourceTimestamp),
        }
    if isinstance(v, Enum):
        return v.name
    if is_dataclass(v) and not isinstance(v, type):
        return {
            name: plain(getattr(v, name))
            for name in getattr(v, "__dataclass_fields__", {})
            if not name.startswith("_") and name not in ("Encoding", "data_type")
        }
    return str(v)


def sample(dv: ua.DataValue) -> Sample:
    variant = dv.Value
    if variant is None or variant.VariantType == ua.VariantType.Null:
        value, builtin, array = None, "Null", False
    else:
        value, builtin, array = plain(variant.Value), variant.VariantType.name, bool(variant.is_array)
    status = dv.StatusCode
    code = int(status.value) if status is not None else 0
    severity = code >> 30
    quality = Quality.GOOD if severity == 0 else Quality.UNCERTAIN if severity == 1 else Quality.BAD
    return Sample(
        value=value,
        builtin=builtin,
        array=array,
        quality=quality,
        status="Good" if code == 0 else _status_name(code),
        source_ns=datetime_ns(dv.SourceTimestamp) if dv.SourceTimestamp is not None else 0,
        server_ns=datetime_ns(dv.ServerTimestamp) if dv.ServerTimestamp is not None else 0,
    )


class UaLink:
    """One asyncua client, one session, to one endpoint. Build a new one to reconnect."""

    def __init__(
        self,
        spec: EndpointSpec,
        *,
        watchdog: float = 5.0,
        max_per_request: int = 1000,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self._watchdog = watchdog
        self._max = max_per_request
        self._on_lost = on_lost
        self._client: Client | None = None
        self._connected = False
        self._lost_reported = False
        self._namespaces: list[str] = []
        self._nodes: dict[NodeRef, ua.NodeId] = {}
        self._types: dict[NodeRef, tuple[str, int]] = {}
        self._method_inputs: dict[NodeRef, list[tuple[str, int]]] = {}
        self._subs: dict[int, tuple[float, DataCallback, StatusCallback]] = {}
        self.last_publish: dict[int, float] = {}
        self.revised: dict[int, tuple[float, int]] = {}  # subscription -> (interval ms, keep-alive count)

    # ------------------------------------------------------------------ connection

    @property
    def connected(self) -> bool:
        return self._connected

    def _lost(self, reason: str) -> None:
        if not self._connected or self._lost_reported:
            return
        self._connected = False
        self._lost_reported = True
        if self._on_lost is not None:
            self._on_lost(reason)

    async def _connection_lost(self, exc: Exception) -> None:
        if isinstance(exc, TimeoutError):
            why = "the server stopped answering (the watchdog's server-state probe timed out)"
        else:
            why = f"{type(exc).__name__}: {exc}".rstrip(": ")
        self._lost(f"connection to {self.spec.url} lost: {why}")

    def _build(self) -> Client:
        spec = self.spec
        client = Client(
            spec.url, timeout=spec.timeout, watchdog_intervall=self._watchdog, auto_reconnect=False
        )
        client.name = "edgeflow"
        client.description = "edgeflow"
        client.product_uri = "urn:edgeflow"
        client.application_uri = spec.application_uri or "urn:edgeflow:client"
        client.session_timeout = 60_000
        client.connection_lost_callback = self._connection_lost
        if spec.username is not None:
            client.set_user(spec.username)
            client.set_password(spec.password or "")
        return client

    async def connect(self) -> None:
        """Connect, secure, open a session. Raises LinkClosed, LinkTimeout, LinkSecurity or LinkError."""
        spec = self.spec
        client = self._build()
        try:
            if spec.user_cert_file is not None and spec.user_key_file is not None:
                client.user_certificate = check_key_pair(spec.user_cert_file, spec.user_key_file, None)
                client.user_private_key = serialization.load_pem_private_key(
                    pem_key(spec.user_key_file, None), None
                )
            if spec.policy is not SecurityPolicy.NONE:
                await self._secure(client)
            await client.connect()
        except TrustError as exc:
            await _quietly(client.disconnect())
            raise LinkSecurity(str(exc)) from None
        except LinkError:
            await _quietly(client.disconnect())
            raise
        except BaseException as exc:
            await _quietly(client.disconnect())
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
            raise self._map_connect_error(exc) from None
        self._client = client
        self._connected = True
        try:
            self._namespaces = list(await client.get_namespace_array())
        except Exception as exc:
            await self.close()
            raise _map(exc, f"reading the namespace array of {spec.url}") from None
        log.info("connected to %s as %s", spec.describe(), spec.identity)

    async def _secure(self, client: Client) -> None:
        """Pick the endpoint with the configured policy and mode, check its certificate, pin it."""
        spec = self.spec
        assert spec.cert_file is not None and spec.key_file is not None
        own = check_key_pair(spec.cert_file, spec.key_file, spec.key_password)
        client.application_uri = spec.application_uri or application_uri(own) or client.application_uri
        try:
            endpoints = await client.connect_and_get_server_endpoints()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise self._map_connect_error(exc) from None
        policy_cls = _POLICY_CLASSES[spec.policy]
        mode = _MODES[spec.mode]
        chosen = None
        for ep in endpoints:
            if ep.SecurityPolicyUri == policy_cls.URI and ep.SecurityMode == mode:
                chosen = ep
                break
        if chosen is None:
            offered = ", ".join(
                sorted(
                    {
                        f"{ep.SecurityPolicyUri.rpartition('#')[2]}/{ep.SecurityMode.name.rstrip('_')}"
                        for ep in endpoints
                    }
                )
            )
            raise LinkSecurity(
                f"{spec.url} offers no endpoint with {spec.policy.value}/{spec.mode.value} (it offers {offered}); "
                "edgeflow does not fall back to a weaker one"
            )
        trusted = load_certificates(spec.trusted_certs)
        server_der = first_certificate(chosen.ServerCertificate or b"")
        check_server_certificate(
            server_der, trusted, sources=spec.trusted_certs, announced_uri=chosen.Server.ApplicationUri
        )
        key_pem = pem_key(spec.key_file, spec.key_password)
        await client.set_security(
            policy_cls,
            CertProperties(own.public_bytes(serialization.Encoding.DER), extension="der"),
            CertProperties(key_pem, extension="pem"),
            server_certificate=CertProperties(server_der, extension="der"),
            mode=mode,
        )

    def _map_connect_error(self, exc: BaseException) -> LinkError:
        spec = self.spec
        if isinstance(exc, ua.UaStatusCodeError):
            name = _status_name(exc.code)
            if name in _CERT_REJECTED:
                who = ""
                if spec.cert_file is not None:
                    try:
                        who = " " + describe(load_certificates([spec.cert_file])[0])
                    except TrustError:
                        who = f" ({spec.cert_file})"
                return LinkSecurity(
                    f"{spec.url} refused edgeflow's application certificate{who} ({name}); add it to the "
                    "server's trusted certificates"
                )
            if name in _IDENTITY_REJECTED:
                return LinkSecurity(f"{spec.url} refused the identity {spec.identity} ({name})")
            if name == "BadSecurityPolicyRejected":
                return LinkSecurity(
                    f"{spec.url} refused security {spec.policy.value}/{spec.mode.value} ({name}); "
                    "configure a Policy and Mode the server offers"
                )
            return LinkStatus(name, f"connecting to {spec.url}: {name}")
        if isinstance(exc, TimeoutError):
            return LinkTimeout(f"connecting to {spec.url} timed out after {spec.timeout:g} s")
        if isinstance(exc, OSError | ConnectionError):
            return LinkClosed(f"cannot connect to {spec.url}: {exc.strerror or exc}")
        return LinkError(f"cannot connect to {spec.url}: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        """Close the session (deleting its subscriptions) and the socket; never raises."""
        client, self._client = self._client, None
        self._connected = False
        self._lost_reported = True
        self._subs.clear()
        if client is not None:
            client.connection_lost_callback = None
            await _quietly(asyncio.wait_for(client.disconnect(), self.spec.timeout))

    # ------------------------------------------------------------------ requests

    async def _call(self, what: str, request: Awaitable[T]) -> T:
        if self._client is None or not self._connected:
            if asyncio.iscoroutine(request):
                request.close()
            raise LinkClosed(f"not connected to {self.spec.url}")
        try:
            return await request
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
            err = _map(exc, what)
            if isinstance(err, LinkClosed) or (isinstance(err, LinkStatus) and err.status in _SESSION_LOST):
                self._lost(str(err))
                raise LinkClosed(str(err)) from None
            raise err from None

    def _session(self) -> Any:
        assert self._client is not None
        return self._client.uaclient

    def _resolve_local(self, ref: NodeRef) -> ua.NodeId | None:
        """A NodeId reference without a round trip (None for browse paths not resolved yet)."""
        found = self._nodes.get(ref)
        if found is not None:
            return found
        if ref.kind == "path":
            return None
        ns = ref.ns
        if ref.nsu is not None:
            if ref.nsu not in self._namespaces:
                raise LinkStatus("BadNodeIdUnknown", f"{ref}: the server has no namespace {ref.nsu!r}")
            ns = self._namespaces.index(ref.nsu)
        node = ua.NodeId(ref.identifier, ns)
        self._nodes[ref] = node
        return node

    async def resolve(self, refs: Sequence[NodeRef]) -> dict[NodeRef, ua.NodeId | LinkStatus]:
        """NodeIds for ``refs``; browse paths are translated in one request (cached per link)."""
        out: dict[NodeRef, ua.NodeId | LinkStatus] = {}
        paths: list[NodeRef] = []
        for ref in refs:
            try:
                node = self._resolve_local(ref)
            except LinkStatus as exc:
                out[ref] = exc
                continue
            if node is None:
                paths.append(ref)
            else:
                out[ref] = node
        if paths:
            unique = list(dict.fromkeys(paths))
            bps = []
            for ref in unique:
                elements = [
                    ua.RelativePathElement(
                        ReferenceTypeId=_HIERARCHICAL,
                        IsInverse=False,
                        IncludeSubtypes=True,
                        TargetName=ua.QualifiedName(name, ns),
                    )
                    for ns, name in ref.path
                ]
                bps.append(
                    ua.BrowsePath(
                        StartingNode=_OBJECTS_FOLDER, RelativePath=ua.RelativePath(Elements=elements)
                    )
                )
            results = await self._call(
                f"translating browse paths on {self.spec.url}",
                self._session().translate_browsepaths_to_nodeids(bps),
            )
            for ref, res in zip(unique, results, strict=True):
                if res.StatusCode.is_good() and res.Targets:
                    target = res.Targets[0].TargetId
                    node = ua.NodeId(target.Identifier, target.NamespaceIndex)
                    self._nodes[ref] = node
                    out[ref] = node
                else:
                    name = _status_name(res.StatusCode.value)
                    out[ref] = LinkStatus(name, f"browse path {ref} not found ({name})")
        return out

    async def read(self, refs: Sequence[NodeRef]) -> list[Sample]:
        """The Value attribute of each node, in order (with source and server timestamps)."""
        nodes = await self.resolve(refs)
        out: list[Sample | None] = [None] * len(refs)
        todo: list[tuple[int, ua.NodeId]] = []
        for i, ref in enumerate(refs):
            node = nodes[ref]
            if isinstance(node, LinkStatus):
                out[i] = Sample(None, "Null", False, Quality.BAD, node.status, 0, 0)
            else:
                todo.append((i, node))
        for start in range(0, len(todo), self._max):
            chunk = todo[start : start + self._max]
            params = ua.ReadParameters(
                MaxAge=0,
                TimestampsToReturn=ua.TimestampsToReturn.Both,
                NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for _, n in chunk],
            )
            values = await self._call(
                f"reading {len(chunk)} nodes on {self.spec.url}", self._session().read(params)
            )
            for (i, _), dv in zip(chunk, values, strict=True):
                out[i] = sample(dv)
        return [s for s in out if s is not None]

    async def node_types(self, refs: Sequence[NodeRef]) -> dict[NodeRef, tuple[str, int] | LinkStatus]:
        """Each variable's built-in type (from its DataType, through super types) and ValueRank."""
        out: dict[NodeRef, tuple[str, int] | LinkStatus] = {}
        nodes = await self.resolve(refs)
        todo = []
        for ref in dict.fromkeys(refs):
            node = nodes[ref]
            if isinstance(node, LinkStatus):
                out[ref] = node
            elif ref in self._types:
                out[ref] = self._types[ref]
            else:
                todo.append((ref, node))
        if todo:
            params = ua.ReadParameters(
                NodesToRead=[
                    ua.ReadValueId(NodeId=n, AttributeId=attr)
                    for _, n in todo
                    for attr in (ua.AttributeIds.DataType, ua.AttributeIds.ValueRank)
                ]
            )
            values = await self._call(f"reading data types on {self.spec.url}", self._session().read(params))
            for k, (ref, _) in enumerate(todo):
                dt, rank = values[2 * k], values[2 * k + 1]
                if not dt.StatusCode.is_good() or dt.Value is None:
                    name = _status_name(dt.StatusCode.value)
                    out[ref] = LinkStatus(name, f"{ref}: cannot read its DataType ({name})")
                    continue
                builtin = await self._builtin(dt.Value.Value)
                vr = int(rank.Value.Value) if rank.StatusCode.is_good() and rank.Value is not None else -1
                self._types[ref] = (builtin, vr)
                out[ref] = (builtin, vr)
        return out

    async def _builtin(self, data_type: ua.NodeId) -> str:
        if (
            data_type.NamespaceIndex == 0
            and isinstance(data_type.Identifier, int)
            and 1 <= data_type.Identifier <= 25
        ):
            return str(ua.VariantType(data_type.Identifier).name)
        assert self._client is not None
        vt = await self._call(
            f"finding the built-in type of {data_type.to_string()}",
            data_type_to_variant_type(Node(self._client.uaclient.session, data_type)),
        )
        return str(vt.name)

    async def write(self, items: Sequence[tuple[NodeRef, str, bool, Any]]) -> list[str]:
        """Write ``(node, built-in type, is array, plain value)`` items in one request; a status name each."""
        nodes = await self.resolve([ref for ref, *_ in items])
        statuses: list[str] = [""] * len(items)
        todo = []
        for i, (ref, builtin, array, value) in enumerate(items):
            node = nodes[ref]
            if isinstance(node, LinkStatus):
                statuses[i] = node.status
                continue
            wv = ua.WriteValue(
                NodeId=node,
                AttributeId=ua.AttributeIds.Value,
                Value=ua.DataValue(Value=_variant(builtin, array, value)),
            )
            todo.append((i, wv))
        if todo:
            params = ua.WriteParameters(NodesToWrite=[wv for _, wv in todo])
            results = await self._call(
                f"writing {len(todo)} nodes on {self.spec.url}", self._session().write(params)
            )
            for (i, _), st in zip(todo, results, strict=True):
                statuses[i] = "Good" if st.is_good() else _status_name(st.value)
        return statuses

    async def method_inputs(self, method: NodeRef) -> list[tuple[str, int]]:
        """The built-in type and ValueRank of each input argument the method declares."""
        cached = self._method_inputs.get(method)
        if cached is not None:
            return cached
        node = (await self.resolve([method]))[method]
        if isinstance(node, LinkStatus):
            raise node
        assert self._client is not None
        args_node = Node(self._client.uaclient.session, node)
        try:
            child = await self._call(f"browsing {method}", args_node.get_child("0:InputArguments"))
            arguments = await self._call(f"reading the input arguments of {method}", child.read_value())
        except LinkStatus as exc:
            if exc.status not in ("BadNoMatch", "BadNodeIdUnknown"):
                raise
            arguments = []
        out = [(await self._builtin(a.DataType), int(a.ValueRank)) for a in (arguments or [])]
        self._method_inputs[method] = out
        return out

    async def call(self, obj: NodeRef, method: NodeRef, inputs: Sequence[tuple[str, bool, Any]]) -> list[Any]:
        """Call ``method`` on ``obj`` with typed inputs; the output arguments, plain."""
        nodes = await self.resolve([obj, method])
        for ref in (obj, method):
            if isinstance(nodes[ref], LinkStatus):
                raise nodes[ref]
        request = ua.CallMethodRequest(
            ObjectId=nodes[obj],
            MethodId=nodes[method],
            InputArguments=[_variant(b, a, v) for b, a, v in inputs],
        )
        (result,) = await self._call(f"calling {method} on {obj}", self._session().call([request]))
        if not result.StatusCode.is_good():
            name = _status_name(result.StatusCode.value)
            bad_inputs = [
                f"input {k}: {_status_name(s.value)}"
                for k, s in enumerate(result.InputArgumentResults or [])
                if not s.is_good()
            ]
            detail = f" ({'; '.join(bad_inputs)})" if bad_inputs else ""
            raise LinkStatus(name, f"method {method} on {obj} answered {name}{detail}")
        return [plain(v.Value) for v in (result.OutputArguments or [])]

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(self, publishing_ms: float, on_data: DataCallback, on_status: StatusCallback) -> int:
        """A subscription whose notification messages go to ``on_data`` whole; its id."""
        # a keep-alive after ~5 s of silence, so a subscription the server dropped shows within seconds
        keepalive = max(3, min(1000, round(5000 / max(publishing_ms, 1.0))))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=publishing_ms,
            RequestedLifetimeCount=keepalive * 10,
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        holder: dict[str, int] = {}

        def callback(result: ua.PublishResult) -> None:
            self._publish(holder.get("id", result.SubscriptionId), result)

        res = await self._call(
            f"creating a subscription on {self.spec.url}",
            self._session().create_subscription(params, callback),
        )
        sid = int(res.SubscriptionId)
        holder["id"] = sid
        self._subs[sid] = (publishing_ms, on_data, on_status)
        self.last_publish[sid] = time.monotonic()
        self.revised[sid] = (float(res.RevisedPublishingInterval), int(res.RevisedMaxKeepAliveCount))
        return sid

    def _publish(self, sid: int, result: ua.PublishResult) -> None:
        entry = self._subs.get(sid)
        if entry is None:
            return
        self.last_publish[sid] = time.monotonic()
        _, on_data, on_status = entry
        for notif in result.NotificationMessage.NotificationData or []:
            if isinstance(notif, ua.DataChangeNotification):
                items = [(int(item.ClientHandle), sample(item.Value)) for item in notif.MonitoredItems]
                if items:
                    on_data(items)
            elif isinstance(notif, ua.StatusChangeNotification):
                on_status(
                    _status_name(notif.Status.value if hasattr(notif.Status, "value") else notif.Status)
                )

    async def monitor(self, sid: int, items: Sequence[ItemRequest]) -> list[str]:
        """Create monitored items (Value, with their DataChangeFilter); a status name each."""
        nodes = await self.resolve([it.node for it in items])
        statuses: list[str] = [""] * len(items)
        todo = []
        for i, it in enumerate(items):
            node = nodes[it.node]
            if isinstance(node, LinkStatus):
                statuses[i] = node.status
                continue
            flt = None
            if it.deadband is not None:
                flt = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValue,
                    DeadbandType=_DEADBAND_TYPES[it.deadband.type],
                    DeadbandValue=float(it.deadband.value),
                )
            todo.append(
                (
                    i,
                    ua.MonitoredItemCreateRequest(
                        ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value),
                        MonitoringMode=ua.MonitoringMode.Reporting,
                        RequestedParameters=ua.MonitoringParameters(
                            ClientHandle=it.handle,
                            SamplingInterval=it.sampling_ms,
                            Filter=flt,
                            QueueSize=it.queue_size,
                            DiscardOldest=True,
                        ),
                    ),
                )
            )
        for start in range(0, len(todo), self._max):
            chunk = todo[start : start + self._max]
            params = ua.CreateMonitoredItemsParameters(
                SubscriptionId=sid,
                TimestampsToReturn=ua.TimestampsToReturn.Both,
                ItemsToCreate=[req for _, req in chunk],
            )
            results = await self._call(
                f"creating {len(chunk)} monitored items on {self.spec.url}",
                self._session().create_monitored_items(params),
            )
            for (i, _), res in zip(chunk, results, strict=True):
                statuses[i] = "Good" if res.StatusCode.is_good() else _status_name(res.StatusCode.value)
        return statuses

    def silent_subscriptions(self, margin: float = 3.0) -> list[tuple[int, float]]:
        """Subscriptions that sent nothing, not even a keep-alive, for ``margin`` keep-alive periods."""
        now = time.monotonic()
        out = []
        for sid, last in self.last_publish.items():
            interval_ms, keepalive = self.revised.get(sid, (1000.0, 10))
            allowed = max(interval_ms * keepalive / 1000.0 * margin, self.spec.timeout + self._watchdog)
            if now - last > allowed:
                out.append((sid, now - last))
        return out


_DEADBAND_TYPES = {
    DeadbandType.NONE: ua.DeadbandType.None_,
    DeadbandType.ABSOLUTE: ua.DeadbandType.Absolute,
    DeadbandType.PERCENT: ua.DeadbandType.Percent,
}


def _variant(builtin: str, array: bool, value: Any) -> ua.Variant:
    if builtin == "Variant":
        return ua.Variant(value)
    vt = ua.VariantType[builtin]

    def conv(v: Any) -> Any:
        if builtin in ("NodeId", "ExpandedNodeId"):
            return ua.NodeId.from_string(v)
        if builtin == "QualifiedName":
            return ua.QualifiedName.from_string(v)
        if builtin == "LocalizedText":
            return ua.LocalizedText(v)
        if builtin == "XmlElement":
            return ua.XmlElement(v)
        if builtin == "StatusCode":
            return ua.StatusCode(v)
        return v

    try:
        return ua.Variant([conv(v) for v in value] if array else conv(value), vt, is_array=array)
    except (ua.UaError, ValueError, TypeError) as exc:
        raise LinkStatus("BadTypeMismatch", f"{value!r} is not a {builtin}: {exc}") from None


def _map(exc: BaseException, what: str) -> LinkError:
    if isinstance(exc, LinkError):
        return exc
    if isinstance(exc, ua.UaStatusCodeError):
        name = _status_name(exc.code)
        return LinkStatus(name, f"{what}: {name}")
    if isinstance(exc, TimeoutError):
        return LinkTimeout(f"{what}: no answer in time")
    if isinstance(exc, ConnectionError | OSError):
        return LinkClosed(f"{what}: {exc}")
    return LinkError(f"{what}: {type(exc).__name__}: {exc}")


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except asyncio.CancelledError:
        raise
    except BaseException:  # closing a client that is already broken
        log.debug("ignored error while closing an OPC-UA client", exc_info=True)
