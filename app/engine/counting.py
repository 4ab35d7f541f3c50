"""Counting finished steps for their run, in batches when steps finish fast.

A run ends when its counter of steps left (its leaves; every step after a re-run)
reaches zero. Counting is one write per step on the run's document; in a wide fan-out
that is a third of all writes, every one on the same document. So, inside a task, a
count is written at once only if this process has not written one for the run in the
last ``linger`` seconds; otherwise it joins the process's pending counts, which a
background thread adds with one ``$inc`` per run every ``linger`` seconds. A chain (a
count now and then) is never held back; a fan-out's counts are written ten or twenty
at a time, and its run ends at most ``linger`` seconds after its last step.

Whoever brings the counter to zero finishes the run (``on_zero``), the background
thread included. A process that shuts down writes what is pending (``flush``). One
killed with SIGKILL loses its pending counts: the run then waits for a resume (the
reconciler's or ``chordflow resume``), which finishes a run whose steps all finished,
as after any lost count (see ``Store.count_steps``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from chordflow.engine.store import Store

log = logging.getLogger("chordflow.counting")

#: Seconds a count may wait for others of its run (Celery workers; None: write at once).
LINGER_SECONDS = 0.1


class RunCounts:
    def __init__(self, store: Store, on_zero: Callable[[str], None],
                 linger: float | None = None):
        self.store = store
        self.on_zero = on_zero
        self.linger = linger
        self._pending: Counter[str] = Counter()
        #: When this process last wrote a count of each run (monotonic seconds).
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def count(self, run_id: str, *, defer: bool) -> bool:
        """Count one finished step of the run; True if that finished the count here
        (the caller finishes the run). ``defer``: the caller is a task, whose counts
        may wait for the background writer."""
        if defer and self.linger is not None:
            clock = time.monotonic()
            with self._lock:
                recent = clock - self._written.get(run_id, -self.linger) < self.linger
                if recent or run_id in self._pending:
                    self._pending[run_id] += 1
                    self._start_flusher()
                    return False
                self._written[run_id] = clock
        return self.store.count_steps(run_id, 1) == 0

    def flush(self) -> None:
        """Write every pending count of this process now, finishing the runs they end."""
        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, Counter()
                clock = time.monotonic()
                for run_id in pending:
                    self._written[run_id] = clock
                for run_id, at in list(self._written.items()):
                    if clock - at > 2 * (self.linger or 0):
                        del self._written[run_id]
            counts = list(pending.items())
            for i, (run_id, n) in enumerate(counts):
                try:
                    left = self.store.count_steps(run_id, n)
                except Exception:
                    with self._lock:  # for the next flush to try again
                        for later, k in counts[i:]:
                            self._pending[later] += k
                    raise
                if left == 0:
                    try:
                        self.on_zero(run_id)
                    except Exception:  # a resume finishes it (all its steps finished)
                        log.warning("could not finish run %s", run_id, exc_info=True)

    def _start_flusher(self) -> None:
        """Called with ``_lock`` held."""
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(target=self._flush_every, daemon=True,
                                             name="chordflow-counts")
            self._flusher.start()

    def _flush_every(self) -> None:
        assert self.linger is not None
        while True:
            time.sleep(self.linger)
            try:
                self.flush()
            except Exception:
                log.warning("could not count finished steps; trying again", exc_info=True)
