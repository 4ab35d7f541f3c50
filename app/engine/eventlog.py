"""A run's event log, written in batches and off the path from one step to the next.

While a task runs, the events it causes (step started, step finished, children
skipped, ...) wait in a buffer that is written in one insert when the task ends, after
the children it released were dispatched: one round trip per task instead of one per
event, and none that the next step waits for. A background thread writes any buffer
older than ``linger`` seconds, so a long step's "started" still shows at once.

Events carry the time they happened and readers order them by it; a buffered event can
therefore reach the store after a later event of another task. Outside a batch (submit,
cancel, resume) an event is written immediately.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from app.engine.records import Event
from app.engine.store import Store

log = logging.getLogger("chordflow.events")

#: Seconds a buffered event may wait before the background thread writes it.
LINGER_SECONDS = 0.25


class _Buffer:
    __slots__ = ("events", "lock", "since", "__weakref__")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.since = 0.0

    def add(self, event: Event) -> None:
        with self.lock:
            if not self.events:
                self.since = time.monotonic()
            self.events.append(event)

    def take(self) -> list[Event]:
        with self.lock:
            events, self.events = self.events, []
            return events

    def give_back(self, events: list[Event]) -> None:
        with self.lock:
            self.events[:0] = events


class EventLog:
    def __init__(self, store: Store, linger: float = LINGER_SECONDS):
        self.store = store
        self.linger = linger
        self._local = threading.local()
        self._open: weakref.WeakSet[_Buffer] = weakref.WeakSet()
        self._open_lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def append(self, event: Event) -> None:
        buffer: _Buffer | None = getattr(self._local, "buffer", None)
        if buffer is None:
            self.store.append_event(event)
        else:
            buffer.add(event)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Buffer this thread's events until the block ends (nested blocks join it)."""
        if getattr(self._local, "buffer", None) is not None:
            yield
            return
        buffer = _Buffer()
        self._start_flusher()
        with self._open_lock:
            self._open.add(buffer)
        self._local.buffer = buffer
        try:
            yield
        finally:
            self._local.buffer = None
            with self._open_lock:
                self._open.discard(buffer)
            self._write(buffer)

    def _write(self, buffer: _Buffer) -> None:
        events = buffer.take()
        if events:
            try:
                self.store.append_events(events)
            except Exception:
                buffer.give_back(events)  # for the next write (the task's end) to retry
                raise

    def _start_flusher(self) -> None:
        if self._flusher is not None and self._flusher.is_alive():
            return
        with self._open_lock:
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=self._flush_old, daemon=True,
                                                 name="chordflow-events")
                self._flusher.start()

    def _flush_old(self) -> None:
        while True:
            time.sleep(self.linger)
            cutoff = time.monotonic() - self.linger
            with self._open_lock:
                buffers = list(self._open)
            for buffer in buffers:
                if buffer.events and buffer.since <= cutoff:
                    try:
                        self._write(buffer)
                    except Exception:  # the store is briefly down: the task's end retries
                        log.warning("could not write events", exc_info=True)
