"""Shared fixtures. Fixtures that start real servers (Mosquitto, pymodbus, asyncua) live here and are
reused by every test module that needs one."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from connectors.modbus.simulator import ModbusSimulator as ModbusTestServer
from connectors.modbus.simulator import free_tcp_port
from edgeflow.demo.localbroker import find_mosquitto

#: The steering repository's shared data, beside the project checkout (or beside the folder of
#: worktrees, for a checkout in ``wt/<name>``).
_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = next(
    (c for c in (_ROOT.parent / "shared" / "data", _ROOT.parent.parent / "shared" / "data") if c.is_dir()),
    _ROOT.parent / "shared" / "data",
)


def _dump_asyncio_tasks(terminal: Any) -> None:
    """On a test timeout: where every task of the running event loop waits (pytest-timeout shows only
    the threads, and an asyncio test that hangs shows only the selector)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        terminal.sep("~", title=f"asyncio task {task.get_name()}")
        buf = io.StringIO()
        task.print_stack(file=buf)
        terminal.write(buf.getvalue())


with contextlib.suppress(ImportError):
    import pytest_timeout

    _dump_thread_stacks = pytest_timeout.dump_stacks

    def _dump_stacks_and_tasks(terminal: Any) -> None:
        _dump_thread_stacks(terminal)
        _dump_asyncio_tasks(terminal)

    pytest_timeout.dump_stacks = _dump_stacks_and_tasks


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that use it are skipped, with the reason, where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


# ==================================================================================================
# Modbus: a real pymodbus async server on a free loopback port (tests/test_modbus*.py, benchmarks)
# ==================================================================================================


ModbusServerFactory = Callable[..., Awaitable[ModbusTestServer]]


@pytest.fixture
async def modbus_server() -> AsyncIterator[ModbusServerFactory]:
    """Factory: ``server = await modbus_server(units=(1, 2), registers=((0, 100),), framer="socket")``
    starts a server on a free loopback port; every server is stopped at the end of the test."""
    pytest.importorskip("pymodbus")
    started: list[ModbusTestServer] = []

    async def make(**kwargs: Any) -> ModbusTestServer:
        server = ModbusTestServer(**kwargs)
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_tcp_server() -> AsyncIterator[Callable[[RawHandler], Awaitable[int]]]:
    """Factory: ``port = await raw_tcp_server(handler)`` serves ``handler(reader, writer)`` on a free
    loopback port: a device that stays silent, answers junk, or hangs up (closed at the end of the test)."""
    servers: list[asyncio.Server] = []

    async def make(handler: RawHandler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield make
    for server in servers:
        server.close()
        await server.wait_closed()


class TcpProxy:
    """A TCP relay to ``target`` on loopback that can cut the network without closing anything:
    :meth:`cut` stops relaying (bytes are swallowed, sockets stay open, new connections hang), as a
    pulled cable or a dead route does; :meth:`restore` drops the dead connections and relays again."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.is_cut = False
        self._server: asyncio.Server | None = None
        self._conns: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
        try:
            while data := await reader.read(65536):
                if not self.is_cut and writer is not None:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if writer is not None and not self.is_cut:
                writer.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            self._conns.append((writer, None))
            self._spawn(self._pump(reader, None))
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._conns.append((writer, up_writer))
        self._spawn(self._pump(reader, up_writer))
        self._spawn(self._pump(up_reader, writer))

    def cut(self) -> None:
        self.is_cut = True

    def restore(self) -> None:
        for down, up in self._conns:
            down.close()
            if up is not None:
                up.close()
        self._conns.clear()
        self.is_cut = False

    async def stop(self) -> None:
        self.restore()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def tcp_proxy() -> AsyncIterator[Callable[[int], Awaitable[TcpProxy]]]:
    """Factory: ``proxy = await tcp_proxy(port)`` relays a free loopback port to ``port``; ``proxy.cut()``
    and ``proxy.restore()`` pull and replug the network. Stopped at the end of the test."""
    proxies: list[TcpProxy] = []

    async def make(target: int) -> TcpProxy:
        proxy = TcpProxy(target)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.stop()


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two connected pseudo-terminals made by socat (skips where socat is absent): a serial line for
    a pymodbus serial server on one end and the connector on the other."""
    import shutil
    import subprocess
    import time

    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("socat is not installed")
    pytest.importorskip("serial")
    a, b = str(tmp_path / "ttyA"), str(tmp_path / "ttyB")
    proc = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            if os.path.exists(a) and os.path.exists(b):
                break
            time.sleep(0.01)
        else:
            pytest.fail("socat did not create the pseudo-terminals")
        yield a, b
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ==================================================================================================
# OPC-UA: real asyncua servers (connectors.opcua.simulator) on free loopback ports, and certificates
# made here for the security tests
# ==================================================================================================


OpcUaServerFactory = Callable[..., Awaitable[Any]]


async def _opcua_factory(cache: bool) -> AsyncIterator[OpcUaServerFactory]:
    pytest.importorskip("asyncua")
    from connectors.opcua.simulator import OpcUaSimulator

    started: dict[str, Any] = {}

    async def make(**kwargs: Any) -> Any:
        key = repr(sorted(kwargs.items())) if cache else str(len(started))
        if key in started:
            return started[key]
        kwargs.setdefault("port", free_tcp_port())
        sim = OpcUaSimulator(**kwargs)
        await sim.start()
        started[key] = sim
        return sim

    yield make
    for sim in started.values():
        await sim.stop()


@pytest.fixture
async def opcua_server() -> AsyncIterator[OpcUaServerFactory]:
    """Factory: ``sim = await opcua_server(policies=[...], users={...}, ...)`` starts a simulated
    OPC-UA server (:class:`connectors.opcua.simulator.OpcUaSimulator`) on a free loopback port; every
    server is stopped at the end of the test. Starting one takes a few seconds (asyncua builds its
    standard address space)."""
    async for make in _opcua_factory(cache=False):
        yield make


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def opcua_servers() -> AsyncIterator[OpcUaServerFactory]:
    """Like ``opcua_server``, for a whole module (whose tests run in the module's event loop:
    ``pytestmark = pytest.mark.asyncio(loop_scope="module")``): the same arguments give the same
    running server, so the module pays for each kind of server once."""
    async for make in _opcua_factory(cache=True):
        yield make


@dataclass
class OpcUaCerts:
    """DER certificates and PEM keys: the simulator's own (self-signed, ``urn:edgeflow:simulator``),
    edgeflow's (``urn:edgeflow:client``), a rogue client, a user identity, a CA and a server
    certificate it issued, and an unrelated server certificate nobody trusts."""

    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path
    user_cert: Path
    user_key: Path
    ca_cert: Path
    ca_server_cert: Path
    ca_server_key: Path
    stranger_cert: Path


def _make_cert(
    d: Path,
    name: str,
    uri: str,
    *,
    server: bool,
    issuer: tuple[Any, Any] | None = None,
    ca: bool = False,
) -> tuple[Path, Path, Any, Any]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = (
            builder.add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")]),
                critical=False,
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=True,
                    data_encipherment=True,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = d / f"{name}.der", d / f"{name}.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path, cert, key


@pytest.fixture(scope="session")
def opcua_certs(tmp_path_factory: pytest.TempPathFactory) -> OpcUaCerts:
    """Certificates for the OPC-UA security tests, made with ``cryptography``."""
    pytest.importorskip("cryptography")
    d = tmp_path_factory.mktemp("opcua-pki")
    server_cert, server_key, _, _ = _make_cert(d, "simulator", "urn:edgeflow:simulator", server=True)
    client_cert, client_key, _, _ = _make_cert(d, "edgeflow", "urn:edgeflow:client", server=False)
    rogue_cert, rogue_key, _, _ = _make_cert(d, "rogue", "urn:edgeflow:client", server=False)
    user_cert, user_key, _, _ = _make_cert(d, "operator", "urn:edgeflow:operator", server=False)
    ca_cert, _, ca, ca_key = _make_cert(d, "plant-ca", "", server=False, ca=True)
    ca_server_cert, ca_server_key, _, _ = _make_cert(
        d, "ca-simulator", "urn:edgeflow:simulator", server=True, issuer=(ca, ca_key)
    )
    stranger_cert, _, _, _ = _make_cert(d, "stranger", "urn:edgeflow:simulator", server=True)
    return OpcUaCerts(
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        rogue_cert=rogue_cert,
        rogue_key=rogue_key,
        user_cert=user_cert,
        user_key=user_key,
        ca_cert=ca_cert,
        ca_server_cert=ca_server_cert,
        ca_server_key=ca_server_key,
        stranger_cert=stranger_cert,
    )


# ==================================================================================================
# Mosquitto (uplink, receiver): a real broker on a free loopback port, from a config in tmp_path.
# Never the shared broker on 1883. A broker can be stopped and started again on the same port.
# ==================================================================================================


MOSQUITTO = find_mosquitto() or "/usr/sbin/mosquitto"


free_port = free_tcp_port


@contextlib.contextmanager
def silent_listener(port: int) -> Iterator[list[socket.socket]]:
    """A TCP listener on ``127.0.0.1:port`` that accepts connections and never answers: a broker that
    hangs. Yields the accepted sockets (closed on exit)."""
    accepted: list[socket.socket] = []
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen()
    srv.settimeout(0.05)
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(srv.accept()[0])

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield accepted
    finally:
        done.set()
        t.join(2)
        srv.close()
        for c in accepted:
            c.close()


def closed_by_peer(sock: socket.socket, within: float = 2.0) -> bool:
    """Whether the other end closed ``sock`` (reads what it sent, then EOF) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True  # reset: closed too
    return True


@dataclass
class TlsFiles:
    """PEM files made by ``trustme``: a CA, a server certificate for localhost/127.0.0.1, a client
    certificate from the same CA, and a second CA that signed none of them."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path


@dataclass
class MosquittoBroker:
    """One Mosquitto process. ``port`` is the plaintext listener, ``tls_port`` the TLS one (if any)."""

    workdir: Path
    port: int
    tls_port: int | None = None
    tls: TlsFiles | None = None
    require_certificate: bool = False
    password_file: Path | None = None
    #: Mosquitto ACL file contents (``topic readwrite #`` lets everyone do everything); None: no ACL.
    acl: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    host: str = "127.0.0.1"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        assert self.tls_port is not None
        return f"mqtts://{self.host}:{self.tls_port}"

    def write_config(self) -> None:
        lines = [
            "user root" if os.geteuid() == 0 else f"user {os.environ.get('USER', 'mosquitto')}",
            "per_listener_settings false",
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
            f"listener {self.port} 127.0.0.1",
        ]
        if self.password_file is not None:
            lines.insert(1, f"password_file {self.password_file}")
        if self.acl is not None:
            (self.workdir / "acl").write_text(self.acl)
            lines.insert(1, f"acl_file {self.workdir / 'acl'}")
        if self.tls is not None and self.tls_port is not None:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
            ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        self.write_config()
        seen = len(self.log_text())  # a restart appends to the same log: look only at what it writes
        with (self.workdir / "stderr.txt").open("ab") as err:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_path)], stdout=subprocess.DEVNULL, stderr=err
            )
        deadline = time.monotonic() + timeout
        ports = [p for p in (self.port, self.tls_port) if p is not None]
        while True:
            if self.proc.poll() is not None:
                err = (self.workdir / "stderr.txt").read_text()
                log = self.log_path.read_text() if self.log_path.exists() else ""
                self.proc = None
                raise RuntimeError(f"mosquitto exited at start: {err}\n{log}")
            log = self.log_text()[seen:]  # not a probe connection: tests count connections per listener
            # "running" comes after every listener is bound (a port another process took in the
            # meantime makes Mosquitto log the opening, fail the bind and exit instead)
            if all(f"listen socket on port {p}." in log for p in ports) and " running" in log:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on {ports} within {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM and wait (Mosquitto saves its persistence file on the way out)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def set_acl(self, acl: str) -> None:
        """Replace the ACL of a running broker (Mosquitto re-reads it on SIGHUP; connections stay)."""
        assert self.acl is not None and self.proc is not None, "started with an acl"
        self.acl = acl
        (self.workdir / "acl").write_text(acl)
        before = self.log_text().count("Reloading config")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.log_text().count("Reloading config") <= before:
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not reload its configuration")
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


MosquittoFactory = Callable[..., MosquittoBroker]


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[MosquittoFactory]:
    """``make(tls=None, require_certificate=False, users=None, acl=None, start=True)`` → a started
    :class:`MosquittoBroker` on free ports under ``tmp_path``; all are stopped at teardown.
    ``users`` is a ``{name: password}`` dict that turns anonymous access off."""
    if not os.access(MOSQUITTO, os.X_OK):
        pytest.skip(f"{MOSQUITTO} is not installed (.ci/run installs it)")
    brokers: list[MosquittoBroker] = []

    def make(
        *,
        tls: TlsFiles | None = None,
        require_certificate: bool = False,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        start: bool = True,
    ) -> MosquittoBroker:
        workdir = tmp_path / f"mosquitto-{len(brokers)}"
        workdir.mkdir()
        password_file = None
        if users:
            password_file = workdir / "passwd"
            password_file.touch(mode=0o600)
            for name, password in users.items():
                subprocess.run(
                    [
                        shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd",
                        "-b",
                        str(password_file),
                        name,
                        password,
                    ],
                    check=True,
                    capture_output=True,
                )
        broker = MosquittoBroker(
            workdir=workdir,
            port=free_port(),
            tls_port=free_port() if tls is not None else None,
            tls=tls,
            require_certificate=require_certificate,
            password_file=password_file,
            acl=acl,
        )
        brokers.append(broker)
        if start:
            for attempt in range(3):
                try:
                    broker.start()
                    break
                except RuntimeError as exc:  # a free port taken by another test in between: new ports
                    if "in use" not in str(exc) or attempt == 2:
                        raise
                    broker.port = free_port()
                    broker.tls_port = free_port() if tls is not None else None
        return broker

    yield make
    for b in brokers:
        b.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> MosquittoBroker:
    """A plain Mosquitto (anonymous, no TLS) on a free port."""
    return mosquitto_factory()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Certificates made by ``trustme`` for a TLS listener on 127.0.0.1 / localhost."""
    trustme = pytest.importorskip("trustme")
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", "broker.edgeflow.test")
    client = ca.issue_cert("edge-1@edgeflow.test", common_name="edge-1")
    wrong = trustme.CA()
    files = TlsFiles(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        wrong_ca=d / "wrong-ca.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    wrong.cert_pem.write_to_path(str(files.wrong_ca))
    return files


# ------------------------------------------------------------------------------------------------
# The cloud end (issue 14): a PostgreSQL cluster of the test's own, started with initdb + pg_ctl on a
# free port, its unix socket in its own temporary directory. As root, the server runs as the
# ``postgres`` user (PostgreSQL refuses to run as root). Nothing of the machine's own PostgreSQL is used.
# ------------------------------------------------------------------------------------------------


def _pg_bin() -> Path:
    """``EDGEFLOW_PG_BIN``, else the newest ``/usr/lib/postgresql/<major>/bin`` (Debian's layout)."""
    if os.environ.get("EDGEFLOW_PG_BIN"):
        return Path(os.environ["EDGEFLOW_PG_BIN"])
    found = sorted(
        (
            p
            for p in Path("/usr/lib/postgresql").glob("*/bin")
            if (p / "initdb").exists() and p.parent.name.isdigit()
        ),
        key=lambda p: int(p.parent.name),
    )
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


@dataclass
class PostgresCluster:
    """One PostgreSQL server (``initdb`` + ``pg_ctl``) in ``workdir``; superuser ``postgres``, trust
    authentication on loopback and the socket. :meth:`stop` / :meth:`start` keep the data."""

    workdir: Path
    port: int
    host: str = "127.0.0.1"
    #: The machine's own server (the fallback when initdb cannot run here): never stopped or started;
    #: the databases made in it are dropped at the end.
    external: bool = False
    made: list[str] = field(default_factory=list)

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = list(argv)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)

    def init(self) -> None:
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        )

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses={self.host} "
            "-c max_connections=50 -c shared_buffers=64MB -c log_min_messages=warning"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-o",
            opts,
            "-l",
            str(self.workdir / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    @property
    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"edgeflow_t{next(_PG_DB_COUNTER)}_{os.getpid()}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return self.url(name)


_PG_DB_COUNTER = iter(range(1_000_000))


def _new_cluster() -> PostgresCluster:
    import tempfile

    if not os.access(PG_BIN / "initdb", os.X_OK):
        pytest.skip(f"{PG_BIN}/initdb is not installed (.ci/run installs postgresql)")
    pytest.importorskip("psycopg")
    workdir = Path(tempfile.mkdtemp(prefix="edgeflow-pg-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    cluster = PostgresCluster(workdir=workdir, port=free_port())
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return cluster


def _drop_cluster(cluster: PostgresCluster) -> None:
    if cluster.external:
        import psycopg

        with psycopg.connect(cluster.url(), autocommit=True) as c:
            for name in cluster.made:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    if cluster.running:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.stop()
    shutil.rmtree(cluster.workdir, ignore_errors=True)


def _machine_server(why: BaseException) -> PostgresCluster:
    """The fallback when initdb cannot run: throwaway databases on the machine's 127.0.0.1:5432."""
    import psycopg

    server = PostgresCluster(workdir=Path("/nonexistent"), port=5432, external=True)
    try:
        with psycopg.connect(server.url(), connect_timeout=3):
            pass
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL: initdb failed ({why}) and 127.0.0.1:5432 refused ({exc})")
    return server


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One cluster per test process (xdist worker), shared by the tests that only need a database."""
    try:
        cluster = _new_cluster()
    except (OSError, LookupError, subprocess.SubprocessError) as exc:  # LookupError: no postgres user
        cluster = _machine_server(exc)
    yield cluster
    _drop_cluster(cluster)


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """A fresh database in the shared cluster."""
    return pg_cluster.create_database()


@pytest.fixture
def pg_own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test alone (it may stop and start it)."""
    cluster = _new_cluster()
    yield cluster
    _drop_cluster(cluster)
