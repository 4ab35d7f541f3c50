"""A chordflow stack whose parts can be killed, paused and restarted: for the fault
tests and ``bench/faults.py``.

Redis and an nx-27017 server of its own (never the session's: they are stopped and
started again on the same port and data file), ``chordflow worker`` processes started
and killed at will, ``chordflow`` commands run as an operator would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import (
    ROOT,
    celery_worker,
    free_port,
    nx_command,
    redis_binary,
    stop,
    stop_group,
    wait_for_port,
    worker_env,
)

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")
#: Seconds a lease lasts in the fault tests (the default is 30): takeovers in seconds.
LEASE_SECONDS = 4
#: Seconds before Redis gives an unacknowledged message (a dead worker's) to another.
VISIBILITY_SECONDS = 10


class Server:
    """A server process that can be stopped and started again on the same port."""

    def __init__(self, name: str, workdir: Path):
        self.name = name
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        log = self.workdir / f"{self.name}.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_for_port(self.port, self.proc, log=log)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Redis(Server):
    def command(self) -> list[str]:
        # Nothing kept on disk: a restart is a Redis that lost every message.
        return [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Mongo(Server):
    def command(self) -> list[str]:
        return nx_command(self.workdir, self.port)

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def pool_pids(self) -> list[int]:
        """Its pool processes (the main process's children that are Python)."""
        return [pid for pid in children(self.proc.pid) if _is_python(pid)]

    def tree(self) -> list[int]:
        """The worker's processes and their descendants."""
        return [self.proc.pid, *descendants(self.proc.pid)]


@dataclass
class FaultStack:
    base: Path
    redis: Redis
    mongo: Mongo
    db: str = field(default_factory=lambda: f"f{uuid.uuid4().hex[:10]}")
    workers: list[Worker] = field(default_factory=list)
    _contexts: list[object] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return worker_env(self.redis.url, self.mongo.url, self.db, self.base / "work",
                          **{"CHORDFLOW_LEASE_SECONDS": str(LEASE_SECONDS),
                             "CHORDFLOW_VISIBILITY_TIMEOUT": str(VISIBILITY_SECONDS),
                             "CHORDFLOW_RECONCILE_GRACE": "3", **extra})

    def settings(self):  # type: ignore[no-untyped-def]
        from chordflow.config import Settings

        return Settings(broker_url=self.redis.url, mongo_url=self.mongo.url,
                        mongo_db=self.db, workdir=self.base / "work",
                        lease_seconds=LEASE_SECONDS, visibility_timeout=VISIBILITY_SECONDS)

    def start_worker(self, name: str, *args: str, **env: str) -> Worker:
        log = self.base / f"{name}-{uuid.uuid4().hex[:4]}.log"
        context = celery_worker(self.env(**env), name, "--concurrency", "2", *args, log=log)
        proc = context.__enter__()
        self._contexts.append(context)
        worker = Worker(name, proc, log)
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            _resume_tree(worker)
            stop_group(worker.proc)
        for context in self._contexts:
            try:
                context.__exit__(None, None, None)  # type: ignore[attr-defined]
            except Exception:
                pass
        self.workers.clear()
        self._contexts.clear()

    def chordflow(self, *args: str, timeout: float = 60,
                  **env: str) -> subprocess.CompletedProcess[str]:
        """A ``chordflow`` command, as an operator on the cluster runs it."""
        return subprocess.run([CHORDFLOW, *args], env=self.env(**env), capture_output=True,
                              text=True, timeout=timeout, cwd=ROOT)


@contextmanager
def fault_stack() -> Iterator[FaultStack]:
    base = Path(tempfile.mkdtemp(prefix="chordflow-faults-"))
    redis, mongo = Redis("redis", base), Mongo("mongo", base)
    stack = FaultStack(base, redis, mongo)
    try:
        redis.start()
        mongo.start()
        yield stack
    finally:
        stack.stop_workers()
        redis.stop()
        mongo.stop()
        shutil.rmtree(base, ignore_errors=True)


# -- processes --------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    stack = children(pid)
    while stack:
        child = stack.pop()
        found.append(child)
        stack += children(child)
    return found


def _is_python(pid: int) -> bool:
    try:
        return "python" in os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Is ``pid`` a live process (not a zombie)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def living_in_groups(groups: set[int]) -> list[int]:
    """Live (not zombie) processes whose process group is one of ``groups``: a step's
    processes are its group (modules/process.py), ``sleep`` and the like included."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) in groups:
            found.append(int(entry))
    return found


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _resume_tree(worker: Worker) -> None:
    signal_all(worker.tree(), signal.SIGCONT)


def wait_until(predicate, timeout: float, poll: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return bool(predicate())
