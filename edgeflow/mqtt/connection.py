"""The one place paho-mqtt meets asyncio.

A :class:`MqttConnection` is one connection: one paho ``Client``, made fresh for every attempt, its
socket driven by the running event loop with ``add_reader``/``add_writer`` (as aiomqtt does) and a
one-second task for keepalives. paho's own reconnect and its internal re-send of unacknowledged
messages are not used: the caller owns reconnection (:class:`Backoff`) and re-sending (the outbox).

The blocking part of ``Client.connect`` — TCP connect and TLS handshake — runs in a worker thread;
everything else, including every paho callback, runs on the event loop.

paho errors are mapped here: a failed TLS handshake or a refused login is a
:class:`~edgeflow.errors.TransportSecurityError` that says what failed; anything else is an
:class:`~edgeflow.errors.UplinkError`.

Every wait here is ``asyncio.timeout``, never ``asyncio.wait_for``: on Python 3.11, ``wait_for`` returns
the result instead of raising when its task is cancelled just as the awaited thing completes, and a
caller stopping a reconnect loop would then be left with a connection nobody closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgeflow.backoff import Backoff
from edgeflow.errors import TransportSecurityError, UplinkError
from edgeflow.mqtt.spec import MqttAuthSpec, TlsSpec, parse_broker_url

__all__ = [
    "Backoff",
    "ClientTlsContext",
    "ConnectParams",
    "Delivery",
    "DeliveryHandler",
    "MqttConnection",
    "connect_params",
    "make_ssl_context",
]

log = logging.getLogger(__name__)

#: CONNACK reason codes (MQTT 5 numbering; paho maps 3.1.1 return codes 4 and 5 onto 0x86/0x87).
_AUTH_CODES: Final = {0x86, 0x87, 0x8C}
#: Packets read per wake-up of the socket reader at most.
_READ_BURST: Final = 256

MessageHandler = Callable[[str, bytes], None]
"""``(topic, payload)``; the message is acknowledged to the broker when the handler returns (also when it
raised: a subscriber that cannot take a message must not block the ones behind it)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One received message whose acknowledgement the receiver owns (see ``on_delivery``)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    #: The broker says it may have sent this message before (a redelivery after a lost connection).
    dup: bool


DeliveryHandler = Callable[[Delivery], None]
"""Gets each message; nothing is acknowledged until :meth:`MqttConnection.ack` is called for it. A
message never acknowledged is delivered again by the broker on the next connection of a persistent
session (same client id, ``clean_start=False``)."""

AckHandler = Callable[[int, bool, str], None]
"""``(mid, ok, reason)`` when the broker answers a QoS 1 publish (``reason``: the broker's reason code)."""


def make_ssl_context(
    *,
    ca_file: Path | None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    key_password: str | None = None,
    check_hostname: bool = True,
    min_version: Literal["1.2", "1.3"] = "1.2",
    server_hostname: str | None = None,
) -> ssl.SSLContext:
    """A client context that always verifies the broker's chain; ``server_hostname`` (if given)
    replaces the connect host as SNI and as the name checked against the certificate."""
    ctx = ClientTlsContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.sni_override = server_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = check_hostname
    try:
        if ca_file is not None:
            ctx.load_verify_locations(cafile=str(ca_file))
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if cert_file is not None:
            ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None, key_password)
    except (OSError, ssl.SSLError) as exc:
        what = f"CA file {ca_file}" if ca_file is not None else "system CA store"
        if cert_file is not None:
            what += f" / client certificate {cert_file}" + (f" with key {key_file}" if key_file else "")
        raise TransportSecurityError(f"TLS setup failed loading {what}: {exc}") from exc
    return ctx


class ClientTlsContext(ssl.SSLContext):
    """An SSL context that sends ``sni_override`` (when set) as SNI and checks the certificate against
    it, whatever host the socket connected to (paho passes its connect host). It remembers the last
    socket it wrapped, so a failed handshake inside paho can be closed rather than leaked."""

    sni_override: str | None = None
    last_socket: ssl.SSLSocket | None = None

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if self.sni_override:
            kwargs["server_hostname"] = self.sni_override
        wrapped = super().wrap_socket(sock, *args, **kwargs)
        self.last_socket = wrapped
        return wrapped


@dataclass(frozen=True, slots=True)
class ConnectParams:
    host: str
    port: int
    client_id: str
    protocol: Literal["3.1.1", "5"] = "5"
    keepalive: int = 30
    connect_timeout: float = 10.0
    ssl_context: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    #: False: ask the broker to keep the session (subscriptions, queued QoS 1 messages) across connections.
    clean_start: bool = True
    #: MQTT 5 session expiry interval (seconds) when ``clean_start`` is False.
    session_expiry: int = 0
    max_inflight: int = 100
    #: MQTT 5 Receive Maximum: QoS 1/2 messages the broker may have unacknowledged at this client at
    #: once (0: not sent, the broker's own limit applies). Bounds what a client that acknowledges late
    #: (``on_delivery``) holds in memory.
    receive_maximum: int = 0

    @property
    def where(self) -> str:
        scheme = "mqtts" if self.ssl_context is not None else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"


def connect_params(
    url: str,
    *,
    client_id: str,
    tls: TlsSpec | None = None,
    auth: MqttAuthSpec | None = None,
    protocol: Literal["3.1.1", "5"] = "5",
    keepalive: int = 30,
    connect_timeout: float = 10.0,
    clean_start: bool = True,
    session_expiry: int = 0,
    max_inflight: int = 100,
    receive_maximum: int = 0,
) -> ConnectParams:
    """Everything one connection needs, from the settings a user writes. TLS is on exactly when the URL
    is ``mqtts://`` (TLS settings with a plaintext URL are an error, never ignored)."""
    broker = parse_broker_url(url)
    if tls is not None and not broker.tls:
        raise UplinkError(f"TLS options given but {url!r} is not mqtts://")
    ssl_context = None
    if broker.tls:
        t = tls or TlsSpec()
        ssl_context = make_ssl_context(
            ca_file=t.ca_file,
            cert_file=t.cert_file,
            key_file=t.key_file,
            key_password=t.key_password.get_secret_value() if t.key_password else None,
            check_hostname=t.check_hostname,
            min_version=t.min_version,
            server_hostname=t.server_hostname,
        )
    return ConnectParams(
        host=broker.host,
        port=broker.port,
        client_id=client_id,
        protocol=protocol,
        keepalive=keepalive,
        connect_timeout=connect_timeout,
        ssl_context=ssl_context,
        username=auth.username if auth else None,
        password=auth.secret() if auth else None,
        clean_start=clean_start,
        session_expiry=session_expiry,
        max_inflight=max_inflight,
        receive_maximum=receive_maximum,
    )


class _ErrorCapture(logging.Logger):
    """paho's logger: remembers its last error line (why a connection broke) and passes errors on at
    debug level; everything below error costs nothing (paho formats only via the logger)."""

    def __init__(self, conn: MqttConnection) -> None:
        super().__init__("edgeflow.mqtt.paho", logging.ERROR)
        self._conn = conn

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR:
            text = str(msg) % args if args else str(msg)
            self._conn._last_error = text
            log.debug("paho: %s", text)


class MqttConnection:
    """One MQTT connection driven by the running loop. Use :meth:`connect` once; after it is lost,
    make a new one. ``closed`` resolves (never raises) with the reason the connection ended."""

    def __init__(
        self,
        params: ConnectParams,
        *,
        on_ack: AckHandler | None = None,
        on_message: MessageHandler | None = None,
        on_delivery: DeliveryHandler | None = None,
    ) -> None:
        if on_message is not None and on_delivery is not None:
            raise ValueError(
                "give on_message (acknowledged on return) or on_delivery (acknowledged by ack())"
            )
        self.params = params
        self._on_ack = on_ack
        self._on_message = on_message
        self._on_delivery = on_delivery
        self._loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self.closed: asyncio.Future[BaseException] = self._loop.create_future()
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._sock: socket.socket | None = None
        self._misc_task: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self._closing = False
        self._packets_in = 0
        #: Whether the broker kept this client's session (its subscriptions) from an earlier connection.
        self.session_present = False
        protocol = paho.MQTTv5 if params.protocol == "5" else paho.MQTTv311
        kwargs: dict[str, Any] = {}
        if params.protocol != "5":
            kwargs["clean_session"] = params.clean_start
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=params.client_id,
            protocol=protocol,
            reconnect_on_failure=False,
            manual_ack=on_message is not None or on_delivery is not None,
            **kwargs,
        )
        c.connect_timeout = params.connect_timeout
        c.max_inflight_messages_set(params.max_inflight)
        c.max_queued_messages_set(0)
        if params.ssl_context is not None:
            c.tls_set_context(params.ssl_context)
            if not params.ssl_context.check_hostname:
                c.tls_insecure_set(True)  # the chain is still verified; only the name check is off
        if params.username is not None:
            c.username_pw_set(params.username, params.password)
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        c.on_publish = self._handle_publish
        c.on_message = self._handle_message
        c.on_subscribe = self._handle_subscribe
        c.enable_logger(_ErrorCapture(self))
        # Set before connect, so paho never writes from the connect thread: it asks for a writer
        # instead, and every read and write happens on the loop.
        c.on_socket_close = self._handle_socket_close
        c.on_socket_register_write = self._register_write
        c.on_socket_unregister_write = self._unregister_write
        self._loop_thread = threading.get_ident()
        self._client = c

    # -- connecting -------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and wait for CONNACK; raises :class:`TransportSecurityError` or :class:`UplinkError`."""
        p = self.params
        props: Properties | None = None
        clean: Any = paho.MQTT_CLEAN_START_FIRST_ONLY
        if p.protocol == "5":
            clean = p.clean_start
            if not p.clean_start and p.session_expiry:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = p.session_expiry
            if p.receive_maximum:
                props = props or Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.ReceiveMaximum = min(p.receive_maximum, 65535)
        try:
            async with asyncio.timeout(p.connect_timeout + 1.0):
                await asyncio.to_thread(
                    self._client.connect, p.host, p.port, p.keepalive, clean_start=clean, properties=props
                )
        except ssl.SSLCertVerificationError as exc:
            self._abandon()
            raise TransportSecurityError(
                f"TLS to {p.where}: the broker's certificate was not accepted: {exc.verify_message or exc}"
            ) from exc
        except ssl.CertificateError as exc:
            self._abandon()
            raise TransportSecurityError(f"TLS to {p.where}: certificate name check failed: {exc}") from exc
        except ssl.SSLError as exc:
            self._abandon()
            raise TransportSecurityError(f"TLS handshake with {p.where} failed: {exc.reason or exc}") from exc
        except (OSError, TimeoutError) as exc:
            ctx = p.ssl_context
            handshaking = isinstance(ctx, ClientTlsContext) and ctx.last_socket is not None
            self._abandon()
            if handshaking:  # TCP was up, the TLS handshake broke: not a TLS endpoint, or it refused us
                raise TransportSecurityError(
                    f"TLS handshake with {p.where} failed: {exc or type(exc).__name__} (is that port speaking TLS?)"
                ) from exc
            raise UplinkError(f"cannot reach broker {p.where}: {exc or type(exc).__name__}") from exc
        sock = self._client.socket()
        if not isinstance(sock, socket.socket):
            # Lost before the connect thread returned: the CONNECT was already written from the loop
            # (the writer runs as soon as paho asks for it) and the broker hung up; on_disconnect
            # put the reason into the CONNACK future.
            reason = (
                self._connack.exception() if self._connack.done() and not self._connack.cancelled() else None
            )
            self._abandon()
            raise reason or UplinkError(f"broker {p.where}: connection lost while connecting")
        self._sock = sock
        if isinstance(p.ssl_context, ClientTlsContext):
            p.ssl_context.last_socket = None
        self._loop.add_reader(sock, self._readable)
        if self._client.want_write():
            self._loop.add_writer(sock, self._writable)
        self._misc_task = self._loop.create_task(self._misc(), name=f"mqtt-misc {p.client_id}")
        try:
            async with asyncio.timeout(p.connect_timeout):
                await asyncio.shield(self._connack)
        except TimeoutError:
            self._abandon()
            raise UplinkError(
                f"broker {p.where} did not answer CONNECT within {p.connect_timeout} s"
            ) from None
        except BaseException:
            self._abandon()
            raise
        log.info("connected to %s as %s (MQTT %s)", p.where, p.client_id, p.protocol)

    def _handle_connect(self, _c: Any, _u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if self._connack.done():
            return
        if not rc.is_failure:
            self.session_present = bool(getattr(flags, "session_present", False))
            self._connack.set_result(None)
            return
        who = f" as user {self.params.username!r}" if self.params.username else ""
        if rc.value in _AUTH_CODES:
            self._connack.set_exception(
                TransportSecurityError(f"broker {self.params.where} refused authentication{who}: {rc}")
            )
        else:
            self._connack.set_exception(
                UplinkError(f"broker {self.params.where} refused the connection: {rc}")
            )

    def _lost_reason(self, rc: Any) -> BaseException:
        err = self._last_error or ""
        if (
            self.params.ssl_context is not None
            and not self._connack.done()
            and ("ssl" in err.lower() or "tls" in err.lower())
        ):
            return TransportSecurityError(
                f"TLS to {self.params.where}: the broker ended the TLS session before accepting the client"
                f" (does it require a client certificate this client does not have?): {err}"
            )
        detail = f": {err}" if err else ""
        return UplinkError(f"connection to {self.params.where} lost ({rc}){detail}")

    # -- socket driving ---------------------------------------------------------------------------

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif not self._loop.is_closed():  # paho's client finalised after the loop closed: nothing to drive
            self._loop.call_soon_threadsafe(fn, *args)

    def _register_write(self, _c: Any, _u: Any, sock: Any) -> None:
        self._on_loop(self._loop.add_writer, sock, self._writable)

    def _unregister_write(self, _c: Any, _u: Any, sock: Any) -> None:
        self._on_loop(self._loop.remove_writer, sock)

    def _readable(self) -> None:
        # paho reads one packet per loop_read (when nothing is in flight); read on while packets come,
        # so a burst of messages is handled in one wake-up (and its acks written in one go), up to a
        # bound that keeps the loop fair to other tasks.
        client = self._client
        for _ in range(_READ_BURST):
            before = self._packets_in
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or self._packets_in == before:
                break
        if client.want_write():  # the burst's acks go out now: the broker's window refills sooner
            client.loop_write()
        sock = self._sock
        if isinstance(sock, ssl.SSLSocket) and not self.closed.done():
            # Bytes TLS already decrypted are invisible to the selector: read them now.
            with contextlib.suppress(OSError, ValueError):
                if sock.pending():
                    self._loop.call_soon(self._readable)

    def _writable(self) -> None:
        self._client.loop_write()

    async def _misc(self) -> None:
        while True:  # keepalive pings and the keepalive-timeout check, once a second
            if self._client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            await asyncio.sleep(1.0)

    def _handle_socket_close(self, _c: Any, _u: Any, sock: Any) -> None:
        self._on_loop(self._forget_socket, sock)

    def _forget_socket(self, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)

    def _handle_disconnect(self, _c: Any, _u: Any, _flags: Any, rc: Any, _props: Any) -> None:
        reason = self._lost_reason(rc)
        if not self._connack.done():
            self._connack.set_exception(reason)
        self._finish(reason)

    def _finish(self, reason: BaseException) -> None:
        if self._misc_task is not None and self._misc_task is not asyncio.current_task():
            self._misc_task.cancel()
        for fut in self._subacks.values():
            if not fut.done():
                fut.set_exception(reason)
        self._subacks.clear()
        if not self.closed.done():
            if not self._closing and self._was_accepted():
                # (a connection refused at CONNECT is reported once, by connect(), with its reason)
                log.warning("%s", reason)
            self.closed.set_result(reason)

    def _was_accepted(self) -> bool:
        c = self._connack
        return c.done() and not c.cancelled() and c.exception() is None

    def _abandon(self) -> None:
        """Tear down a half-made connection."""
        self._closing = True
        socks: list[Any] = [self._sock, self._client.socket()]
        ctx = self.params.ssl_context
        if isinstance(ctx, ClientTlsContext):
            socks.append(ctx.last_socket)
            ctx.last_socket = None
        for s in socks:
            if s is not None:
                self._handle_socket_close(None, None, s)
                with contextlib.suppress(OSError):
                    s.close()
        self._finish(UplinkError(f"connection to {self.params.where} abandoned"))
        if not self._connack.done():
            self._connack.cancel()

    async def disconnect(self, wait: float = 2.0) -> None:
        """Send DISCONNECT and close. Unacknowledged publishes stay unacknowledged."""
        if self.closed.done():
            return
        self._closing = True
        self._client.disconnect()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await asyncio.shield(self.closed)
        if not self.closed.done():
            self._abandon()

    # -- messages ---------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Queue a publish (QoS 0, 1 or 2); returns its message id (the ack handler gets it back)."""
        try:
            info = self._client.publish(topic, payload, qos=qos)
        except ValueError as exc:  # paho checks the topic, the QoS and the payload's size
            raise UplinkError(f"publish to {topic!r} on {self.params.where} refused: {exc}") from exc
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise UplinkError(
                f"publish to {topic!r} on {self.params.where} failed: {paho.error_string(info.rc)}"
            )
        return int(info.mid)

    def _handle_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _props: Any) -> None:
        self._packets_in += 1
        if self._on_ack is not None:
            ok = not rc.is_failure
            if not ok:
                log.debug("broker %s rejected publish %d: %s", self.params.where, mid, rc)
            self._on_ack(mid, ok, "" if ok else str(rc))

    async def subscribe(self, topic: str, qos: int = 1) -> int:
        """Subscribe and wait for SUBACK; returns the QoS the broker granted (it may grant less)."""
        try:
            result, mid = self._client.subscribe(topic, qos)
        except ValueError as exc:  # paho checks the filter and the QoS
            raise UplinkError(f"subscribe to {topic!r} on {self.params.where} refused: {exc}") from exc
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise UplinkError(
                f"subscribe to {topic!r} on {self.params.where} failed: {paho.error_string(result)}"
            )
        fut: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subacks[mid] = fut
        while True:
            # A broker delivers a persistent session's backlog ahead of the SUBACK: wait as long as
            # packets keep coming, and give up only after connect_timeout without any.
            before = self._packets_in
            try:
                async with asyncio.timeout(self.params.connect_timeout):
                    codes = await asyncio.shield(fut)
                break
            except TimeoutError:
                if self._packets_in == before:
                    self._subacks.pop(mid, None)
                    raise UplinkError(
                        f"broker {self.params.where} did not answer the subscription to {topic!r} "
                        f"within {self.params.connect_timeout} s"
                    ) from None
        bad = [c for c in codes if c.is_failure]
        if bad:
            raise UplinkError(f"broker {self.params.where} refused subscription {topic!r}: {bad[0]}")
        return min(int(c.value) for c in codes) if codes else qos

    def _handle_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[ReasonCode], _props: Any) -> None:
        self._packets_in += 1
        fut = self._subacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(list(codes))

    def ack(self, delivery: Delivery) -> bool:
        """Acknowledge a message given to ``on_delivery`` (QoS 0: nothing to do). False when this
        connection is gone: the broker delivers the message again on the next one."""
        if delivery.qos == 0:
            return True
        if self.closed.done():
            return False
        return self._client.ack(delivery.mid, delivery.qos) == MQTTErrorCode.MQTT_ERR_SUCCESS

    def pause_reading(self) -> None:
        """Take no more messages from the socket (acknowledgements and DISCONNECT still go out)."""
        if self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._sock)

    def _handle_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        """Hand the message over. With ``on_message``, acknowledge it when the handler returns: a QoS 1
        message is confirmed to the broker only after the handler has dealt with it. With
        ``on_delivery``, the handler acknowledges it (:meth:`ack`) once it has stored it."""
        self._packets_in += 1
        if self._on_delivery is not None:
            self._on_delivery(
                Delivery(msg.topic, bytes(msg.payload), int(msg.mid), int(msg.qos), bool(msg.dup))
            )
            return
        if self._on_message is None:
            return
        try:
            self._on_message(msg.topic, bytes(msg.payload))
        except Exception:
            log.exception("message handler failed on %s", msg.topic)
        finally:
            if msg.qos > 0:
                self._client.ack(msg.mid, msg.qos)
