"""Noticing a cancel while a step runs, whatever the pool and whichever host.

One thread per worker process looks, once a second, at the status of every run whose
steps the process is running, and sets the cancel event of those steps when their run
was cancelled; the step (its subprocess, its async task) then stops. One thread and
one read per run per second, however many steps run, rather than a thread per step.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from chordflow.engine.state import RunStatus

log = logging.getLogger("chordflow.tasks")

CANCEL_POLL_SECONDS = 1.0

RunStatusOf = Callable[[str], RunStatus]


class CancelWatch:
    def __init__(self, status_of: RunStatusOf, poll: float = CANCEL_POLL_SECONDS):
        self.status_of = status_of
        self.poll = poll
        self._watched: dict[int, tuple[str, threading.Event]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, run_id: str) -> tuple[int, threading.Event]:
        """Start watching a step of ``run_id``: (token for ``unwatch``, its cancel event)."""
        event = threading.Event()
        with self._lock:
            token = next(self._ids)
            self._watched[token] = (run_id, event)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="chordflow-cancel-watch")
                self._thread.start()
        return token, event

    def unwatch(self, token: int) -> None:
        with self._lock:
            self._watched.pop(token, None)

    @contextmanager
    def watching(self, run_id: str) -> Iterator[threading.Event]:
        """A cancel event of its own for one task of ``run_id``, watched while inside
        (each element of a batch gets its own: a lost lease sets one element's)."""
        token, event = self.watch(run_id)
        try:
            yield event
        finally:
            self.unwatch(token)

    def _loop(self) -> None:
        while True:
            time.sleep(self.poll)
            with self._lock:
                watched = list(self._watched.values())
            for run_id in {run_id for run_id, _ in watched}:
                try:
                    cancelled = self.status_of(run_id) is RunStatus.CANCELLED
                except Exception:  # the store is briefly unreachable: look again next time
                    log.debug("cancel watch for %s failed", run_id, exc_info=True)
                    continue
                if cancelled:
                    for watched_run, event in watched:
                        if watched_run == run_id:
                            event.set()
