"""A run's event log, written in batches and off the path from one step to the next.

Events that tasks cause (step started, step finished, children skipped, ...) are kept
in one list per process while the task runs, and written with one insert when it
ends (``Engine.execute`` flushes after the step's children were sent, so no step waits
for that write), or by a background thread every ``linger`` seconds, whichever comes
first: one round trip per task at most instead of one or two per event. The task that
finishes a run writes everything pending in its process before it reports the run
finished, and so does a process that shuts down (``flush``). A worker killed with
SIGKILL loses the events of the attempts it had not finished, and at most those of the
one it was finishing (killed between recording the step and the end of its task).

Events carry the time they happened and readers order them by it, so an event that
reaches the store late still reads in its place. Events outside a task (submit,
cancel, resume, re-run) are written at once, a submission's in one insert (``gathered``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from chordflow.engine.records import Event
from chordflow.engine.store import Store

log = logging.getLogger("chordflow.events")

#: Seconds a task's event may wait before the background thread writes it.
LINGER_SECONDS = 0.25
#: Events kept while the store cannot be reached; the oldest are dropped beyond this.
MAX_PENDING = 100_000


class EventLog:
    def __init__(self, store: Store, linger: float = LINGER_SECONDS):
        self.store = store
        self.linger = linger
        self._local = threading.local()
        self._pending: list[Event] = []
        self._lock = threading.Lock()
        # Serializes writers, so a flush returns only once everything before it is in.
        self._write_lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def append(self, event: Event) -> None:
        gathering: list[Event] | None = getattr(self._local, "gathering", None)
        if gathering is not None:
            gathering.append(event)
            return
        if not self.deferring:
            self.store.append_event(event)
            return
        with self._lock:
            self._pending.append(event)
            if len(self._pending) > MAX_PENDING:
                del self._pending[: len(self._pending) - MAX_PENDING]
                log.warning("event log: store unreachable, dropped the oldest events")
        self._start_flusher()

    @property
    def deferring(self) -> bool:
        """Is this thread in a ``deferred`` block (a task)?"""
        return bool(getattr(self._local, "deferred", False))

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Leave the events of this block (a task) to the background writer."""
        outer = getattr(self._local, "deferred", False)
        self._local.deferred = True
        try:
            yield
        finally:
            self._local.deferred = outer

    @contextmanager
    def gathered(self) -> Iterator[None]:
        """Write this block's events in one insert as it ends (even by an exception).

        For a submission, whose ``run_created`` and ``run_started`` would otherwise be
        two round trips on the path of every POST /runs.
        """
        if getattr(self._local, "gathering", None) is not None:
            yield  # the outer block writes them
            return
        self._local.gathering = []
        try:
            yield
        finally:
            events, self._local.gathering = self._local.gathering, None
            if events:
                self.store.append_events(events)

    def flush(self) -> None:
        """Write every pending event of this process now."""
        with self._write_lock:
            with self._lock:
                events, self._pending = self._pending, []
            if not events:
                return
            try:
                self.store.append_events(events)
            except Exception:
                with self._lock:  # for the next flush to try again
                    self._pending[:0] = events
                raise

    def _start_flusher(self) -> None:
        if self._flusher is not None and self._flusher.is_alive():
            return
        with self._lock:
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=self._flush_every, daemon=True,
                                                 name="chordflow-events")
                self._flusher.start()

    def _flush_every(self) -> None:
        while True:
            time.sleep(self.linger)
            try:
                self.flush()
            except Exception:
                log.warning("could not write events; trying again", exc_info=True)
