"""The API under test: a real ``chordflow api`` (uvicorn) subprocess on the session's
Celery stack (Redis, the MongoDB-protocol server, two workers), with one key per role
made by ``chordflow keys create`` as an operator would."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import ROOT, free_port, stop_group, wait_for_port

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")
#: The roles, lowest first; the session's API has a key of each, named test-<role>.
ROLES = ("viewer", "operator", "author", "admin")


@dataclass
class Api:
    url: str
    keys: dict[str, str]  # role -> key
    env: dict[str, str]
    log: Path

    def client(self, role: str | None = "admin", **kwargs: object) -> httpx.Client:
        """An HTTP client with the key of ``role`` (None: no key)."""
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


def make_key(env: dict[str, str], name: str, role: str) -> str:
    done = subprocess.run([CHORDFLOW, "keys", "create", "--name", name, "--role", role,
                           "--json"], env=env, capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["key"])


def start_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([CHORDFLOW, "api", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
    try:
        wait_for_port(port, proc, log=log)
    except BaseException:
        stop_group(proc)
        raise
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def api(celery_stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    base = tmp_path_factory.mktemp("api")
    env = celery_stack.env()
    keys = {role: make_key(env, f"test-{role}", role)
            for role in ROLES}
    log = base / "api.log"
    # Every test calls from 127.0.0.1, and some send wrong keys on purpose: a budget
    # the whole session cannot spend (tests/api/test_roles.py checks the limits on an
    # API of its own).
    proc, url = start_api({**env, "CHORDFLOW_AUTH_FAILURES_PER_MINUTE": "10000"}, log)
    try:
        yield Api(url, keys, env, log)
    finally:
        stop_group(proc)
