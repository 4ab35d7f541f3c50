"""A small pool of clients per connection per worker process, with failover.

Consecutive steps of a run may execute on different hosts, so a live client never
passes between steps; instead each worker process keeps up to ``pool_size`` idle
clients per connection (keyed by the definition and its credentials: a changed
password gets new clients) and a step borrows one for its operation.

Connecting goes through ``hosts`` in order, ``retry_count`` passes, ``retry_delay``
seconds apart, each host given ``timeout`` seconds; the first that answers serves the
step (its ``host:port`` is the step's ``connected_node``). A client whose operation
failed on the connection itself (``Driver.broken``) is closed, never put back, and
with ``retry_on_error`` the operation is run once more on a fresh client, which is
how a worker reconnects after a server restart or fails over to the next host.

The pools are per process: Celery's prefork children each start with none
(``os.register_at_fork``), since a socket must never be shared across a fork.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from chordflow.connections.catalog import Resolved
from chordflow.connections.models import Host
from chordflow.errors import StepFailed, StepTimeout

C = TypeVar("C")
T = TypeVar("T")


class ConnectFailed(StepFailed):
    """No host of the connection answered."""


class Driver(Protocol[C]):
    """How one kind of server is connected to (one per module: mysql, ssh, ...)."""

    #: The connection types it serves.
    types: tuple[str, ...]

    def open(self, resolved: Resolved, host: Host, timeout: float) -> C:
        """A connected client of ``host``; raise on failure (within ``timeout``)."""

    def close(self, client: C) -> None:
        """Close the client (``discard`` ignores what a broken one raises)."""

    def broken(self, exc: BaseException) -> bool:
        """Did ``exc`` come from the connection (not from the request itself)?"""

    def alive(self, client: C) -> bool:
        """A cheap check of an idle client before it is used again."""


def discard(driver: Driver[C], client: C) -> None:
    """Close a client that is done with, whatever closing it raises: a broken or
    already closed client has nothing left to release (so no driver needs its own
    guard)."""
    try:
        driver.close(client)
    except Exception:
        pass


@dataclass
class Session(Generic[C]):
    """A borrowed client and the host it is connected to."""

    client: C
    host: Host

    @property
    def node(self) -> str:
        return self.host.node


def _bounded(timeout: float, remaining: float | None) -> float:
    return timeout if remaining is None else max(0.1, min(timeout, remaining))


def open_first(resolved: Resolved, driver: Driver[C],
               remaining: Callable[[], float | None] = lambda: None) -> Session[C]:
    """Connect to the first host that answers, in order, ``retry_count`` passes."""
    conn = resolved.connection
    hosts = conn.parsed_hosts()
    failures: list[str] = []
    for attempt in range(conn.retry_count):
        if attempt:
            left = remaining()
            if left is not None and left <= conn.retry_delay:
                break
            time.sleep(conn.retry_delay)
        for host in hosts:
            left = remaining()
            if left is not None and left <= 0:
                raise StepTimeout(f"connection '{resolved.name}': the step's time ran out "
                                  f"while connecting ({'; '.join(failures[-3:])})")
            try:
                return Session(driver.open(resolved, host, _bounded(conn.timeout, left)), host)
            except Exception as exc:  # any failure of one host: try the next
                failures.append(f"{host.node}: {type(exc).__name__}: {_first_line(exc)}")
    raise ConnectFailed(f"connection '{resolved.name}': no host answered "
                        f"({conn.retry_count} pass{'es' if conn.retry_count > 1 else ''} "
                        f"over {len(hosts)} host{'s' if len(hosts) > 1 else ''}): "
                        + "; ".join(failures[-len(hosts):]))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else "")[:300]


class Pool(Generic[C]):
    """Idle clients of one resolved connection, shared by the threads of a process."""

    def __init__(self, resolved: Resolved, driver: Driver[C]):
        self.resolved = resolved
        self.driver = driver
        self._idle: list[Session[C]] = []
        self._lock = threading.Lock()
        #: Clients opened so far (a reconnect opens one more): what tests and metrics read.
        self.opened = 0

    def _take(self, remaining: Callable[[], float | None]) -> Session[C]:
        while True:
            with self._lock:
                session = self._idle.pop() if self._idle else None
            if session is None:
                break
            if self.driver.alive(session.client):
                return session
            discard(self.driver, session.client)
        session = open_first(self.resolved, self.driver, remaining)
        with self._lock:
            self.opened += 1
        return session

    def _give_back(self, session: Session[C]) -> None:
        with self._lock:
            if len(self._idle) < self.resolved.connection.pool_size:
                self._idle.append(session)
                return
        discard(self.driver, session.client)

    def run(self, fn: Callable[[Session[C]], T],
            remaining: Callable[[], float | None] = lambda: None) -> T:
        """``fn`` with a borrowed client. A client broken under it is dropped, and with
        ``retry_on_error`` ``fn`` runs once more on a fresh one."""
        tries = 2 if self.resolved.connection.retry_on_error else 1
        for attempt in range(tries):
            session = self._take(remaining)
            try:
                result = fn(session)
            except BaseException as exc:
                if isinstance(exc, Exception) and self.driver.broken(exc):
                    discard(self.driver, session.client)
                    if attempt + 1 < tries:
                        continue
                else:
                    self._give_back(session)
                raise
            self._give_back(session)
            return result
        raise AssertionError("unreachable")  # the loop returns or raises

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for session in idle:
            discard(self.driver, session.client)


_pools: dict[tuple[str, int], Pool[Any]] = {}
_pools_lock = threading.Lock()


def pool_for(resolved: Resolved, driver: Driver[C]) -> Pool[C]:
    """This process's pool of ``resolved`` for ``driver``."""
    key = (resolved.fingerprint, id(driver))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = Pool(resolved, driver)
    return pool


def close_pools() -> None:
    """Close every idle client of this process (at exit, and in tests)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def _forget_after_fork() -> None:
    # The parent's sockets belong to the parent: a child starts with no pool.
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
