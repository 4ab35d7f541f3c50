"""Real servers for the connection modules' tests, each stopped in teardown.

- MariaDB: the machine's at 127.0.0.1:3306 (root, no password); tests skip, saying so,
  where none answers. Each test gets its own database, dropped afterwards.
- SSH: an AsyncSSH server in a thread of the test process, on a free port, with a
  fresh host key and a fresh client key (authorized); commands run by /bin/sh.
- SMTP: aiosmtpd with STARTTLS (a self-signed certificate made here) and login.
- Pushgateway: Debian's ``prometheus-pushgateway`` on a free port, where installed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from chordflow.config import Settings
from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.engine.report import run_report
from chordflow.workflow.loader import load_data

from tests.servers import SMTP_PASSWORD, SSH_PASSWORD, free_port, stop, wait_for_port

MARIADB = ("127.0.0.1", 3306)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Maria:
    """A database of its own on the machine's MariaDB."""

    database: str

    def sql(self, statement: str, args: Any = None) -> list[dict[str, Any]]:
        import pymysql
        import pymysql.cursors

        conn = pymysql.connect(host=MARIADB[0], port=MARIADB[1], user="root",
                               connect_timeout=5, read_timeout=30, autocommit=True,
                               cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args)
                return list(cur.fetchall())
        finally:
            conn.close()


@pytest.fixture
def maria() -> Iterator[Maria]:
    if not _answers(*MARIADB):
        pytest.skip("no MariaDB/MySQL answers at 127.0.0.1:3306 (root, no password)")
    m = Maria(f"cf_{uuid.uuid4().hex[:10]}")
    m.sql(f"CREATE DATABASE `{m.database}`")
    try:
        yield m
    finally:
        m.sql(f"DROP DATABASE IF EXISTS `{m.database}`")


Run = Callable[..., dict[str, Any]]


@pytest.fixture
def run_embedded(tmp_path: Path) -> Iterator[Callable[..., dict[str, Any]]]:
    """Run a document embedded with ``connections`` and ``secrets``; the report."""
    executors: list[EmbeddedExecutor] = []

    def run(doc: dict[str, Any], connections: dict[str, Any] | None = None,
            secrets: dict[str, str] | None = None, timeout: float = 60) -> dict[str, Any]:
        settings = Settings(workdir=tmp_path / "work", file_roots=[tmp_path],
                            embedded_confined=True, connections=connections or {},
                            secrets=secrets or {})
        ex = EmbeddedExecutor(settings=settings, threads=4)
        executors.append(ex)
        plan = ex.compile(load_data(doc))
        run_id = ex.run(plan, timeout=timeout)
        return run_report(ex.store, run_id, list(plan.order))

    yield run
    for ex in executors:
        ex.close()


# -- SSH ---------------------------------------------------------------------------------

@dataclass
class SshServer:
    port: int
    host_key: str  # "ssh-ed25519 AAAA..."
    client_key: str  # the private key's OpenSSH text
    user: str = "tester"
    password: str = SSH_PASSWORD
    commands: list[str] = field(default_factory=list)

    def connection(self, **extra: Any) -> dict[str, Any]:
        return {"type": "ssh", "hosts": [f"127.0.0.1:{self.port}"], "login": self.user,
                "credentials": {"private_key": "ssh_key"},
                "options": {"host_key": self.host_key}, "retry_count": 1, **extra}


@pytest.fixture(scope="module")
def ssh_server() -> Iterator[SshServer]:
    import asyncssh

    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    server = SshServer(0, host_key.export_public_key().decode().strip(),
                       client_key.export_private_key().decode())
    authorized = client_key.export_public_key().decode()

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return username == server.user and password == server.password

    async def handle(process: Any) -> None:
        command = process.command or ""
        server.commands.append(command)
        data = await process.stdin.read()
        local = await asyncio.create_subprocess_shell(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(local.communicate(data.encode()), 60)
        except TimeoutError:
            local.kill()
            out, err = b"", b"timed out"
        process.stdout.write(out.decode(errors="replace"))
        process.stderr.write(err.decode(errors="replace"))
        process.exit(local.returncode or 0)

    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        listener = await asyncssh.create_server(
            Server, "127.0.0.1", 0, server_host_keys=[host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(authorized),
            process_factory=handle, sftp_factory=True, encoding="utf-8")
        holder["listener"] = listener
        server.port = listener.sockets[0].getsockname()[1]
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    assert started.wait(30)
    try:
        yield server
    finally:
        async def shutdown() -> None:
            holder["listener"].close()
            await holder["listener"].wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


# -- SMTP --------------------------------------------------------------------------------

def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class SmtpServer:
    port: int
    cert: Path
    messages: list[Any]
    user: str = "mailer"
    password: str = SMTP_PASSWORD


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = self_signed(tmp_path_factory.mktemp("smtp"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpServer(free_port(), cert, [])

    class Handler:
        async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
            server.messages.append(envelope)
            return "250 OK"

    def authenticator(srv: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and \
            auth_data.login.decode() == server.user and \
            auth_data.password.decode() == server.password
        return AuthResult(success=ok)

    controller = Controller(Handler(), hostname="127.0.0.1", port=server.port,
                            tls_context=context, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True,
                            ready_timeout=30)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


# -- Pushgateway ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.skip("Debian's prometheus-pushgateway is not installed "
                    "(apt-get install prometheus-pushgateway)")
    port = free_port()
    log = tmp_path_factory.mktemp("pgw") / "pgw.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
