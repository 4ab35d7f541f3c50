"""Waiting out a store outage: retries with backoff and jitter, up to a tolerance.

A MongoDB that restarts, fails over or drops off the network for a while must not
fail a step whose module succeeded (DESIGN.md, "Durability rules"). So every store
call goes through :meth:`Patience.call`, which repeats it while the store cannot be
reached, sleeping a little longer each time (with jitter, so that a hundred waiting
processes do not knock on the store in step when it comes back), until it answers or
``tolerance`` seconds have passed; then it raises :class:`StoreUnavailable` and the
caller decides (a worker sends its message back to the broker, the API answers 503).

Repeating a call is safe only if the call is idempotent; the store makes its calls so
(app/engine/mongo_store.py): a compare-and-set carries a token that tells a retry
whether its first try was applied before the connection dropped (``retrying`` and
``token`` below), inserts have deterministic ids. Each process says once that the store
is unreachable and once that it is back, not once per call.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from chordflow.errors import StoreUnavailable
from pymongo.errors import ConnectionFailure

log = logging.getLogger("chordflow.store")

T = TypeVar("T")

#: The first pause between two tries, and the longest: a store that comes back is used
#: within a second (what lets a finished step's result be recorded before anyone could
#: take the step over, see app/engine/lease.py).
FIRST_PAUSE = 0.1
LONGEST_PAUSE = 1.0

#: What "the store cannot be reached" looks like to pymongo: a refused or reset
#: connection, no server selected in time, a network timeout (all ConnectionFailure).
UNREACHABLE: tuple[type[BaseException], ...] = (ConnectionFailure,)


class Patience:
    """How long store calls wait for an unreachable store, and the waiting itself."""

    def __init__(self, tolerance: float, *, what: str = "the store",
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        #: Seconds one call may wait; 0 tries once.
        self.tolerance = tolerance
        self.what = what
        self._sleep = sleep
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        #: When this process first found the store unreachable (None: reachable).
        self._down_since: float | None = None

    @property
    def retrying(self) -> bool:
        """Is this thread's current call a repeat (its first try may have been applied)?"""
        return bool(getattr(self._local, "retrying", False))

    @property
    def token(self) -> str:
        """A token for this thread's current call, the same on every try of it."""
        token: str | None = getattr(self._local, "token", None)
        if token is None:
            token = self._local.token = uuid.uuid4().hex[:16]
        return token

    @contextmanager
    def limited(self, seconds: float) -> Iterator[None]:
        """This thread's calls wait at most ``seconds`` inside the block (a pass of the
        reconciler, which must not spend a worker's full patience on every run)."""
        outer = getattr(self._local, "limit", None)
        self._local.limit = seconds if outer is None else min(outer, seconds)
        try:
            yield
        finally:
            self._local.limit = outer

    def call(self, fn: Callable[[], T], tolerance: float | None = None) -> T:
        """``fn()``, repeated while the store is unreachable, for up to ``tolerance``
        seconds (the patience's own by default, or a ``limited`` block's)."""
        if getattr(self._local, "active", False):
            return fn()  # nested: the outer call does the waiting
        limit = self.tolerance if tolerance is None else tolerance
        bound = getattr(self._local, "limit", None)
        if bound is not None:
            limit = min(limit, bound)
        self._local.active, self._local.retrying, self._local.token = True, False, None
        started = self._clock()
        pause = FIRST_PAUSE
        try:
            while True:
                try:
                    result = fn()
                except UNREACHABLE as exc:
                    waited = self._clock() - started
                    self._went_down(exc)
                    if waited >= limit:
                        raise StoreUnavailable(
                            f"{self.what} is unreachable ({type(exc).__name__}: "
                            f"{_first_line(exc)}); waited {waited:.0f}s") from exc
                    self._sleep(min(pause * random.uniform(0.5, 1.0), limit - waited))
                    pause = min(pause * 2, LONGEST_PAUSE)
                    self._local.retrying = True
                    continue
                self._came_back()
                return result
        finally:
            self._local.active, self._local.retrying, self._local.token = False, False, None

    @property
    def down(self) -> bool:
        """Did the last call find the store unreachable?"""
        return self._down_since is not None

    def _went_down(self, exc: BaseException) -> None:
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = self._clock()
        log.warning("%s is unreachable (%s); waiting for it, up to %gs per call",
                    self.what, _first_line(exc), self.tolerance)

    def _came_back(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning("%s answers again after %.1fs", self.what, self._clock() - since)


def _first_line(exc: BaseException) -> str:
    """The gist of a connection error: pymongo's ends with its timeouts and topology."""
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    gist = text[0].split(" (configured timeouts")[0].split(", Timeout:")[0]
    return gist[:200]
