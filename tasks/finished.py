"""Telling whoever waits for a run that it has finished, through Celery's result backend.

The process that finishes a run (a worker, or the API on a cancel) stores a result under
the task id ``<run>:finished``; a waiter (``chordflow run --executor celery``, the
benchmarks) blocks on that result as it would on any Celery ``AsyncResult``, which the
Redis result backend answers by publish/subscribe the moment it is stored. So a waiter
learns of the end at once instead of at its next poll, and does not poll the store
several times a second meanwhile. The store stays the truth: a waiter reads the run
from it after every wake-up and at least every few seconds, so an announcement that is
lost (the backend was down) only slows it to that pace.
"""

from __future__ import annotations

import logging
import time

from celery import Celery, states
from celery.exceptions import TimeoutError as CeleryTimeout
from chordflow.engine.state import RunStatus

log = logging.getLogger("chordflow.finished")


def finished_id(run_id: str) -> str:
    return f"{run_id}:finished"


class FinishedSignal:
    def __init__(self, app: Celery):
        self.app = app

    def announce(self, run_id: str, status: RunStatus) -> None:
        """The engine's ``on_finish``: never fails the caller (the store has the truth)."""
        try:
            self.app.backend.store_result(finished_id(run_id), str(status), states.SUCCESS)
        except Exception as exc:  # waiters find it in the store within seconds
            log.info("could not announce the end of run %s (%s: %s)", run_id,
                     type(exc).__name__, exc)
            log.debug("announcing the end of run %s", run_id, exc_info=True)

    def wait(self, run_id: str, timeout: float) -> bool:
        """Block until the run's end is announced (True) or ``timeout`` passes (False)."""
        result = self.app.AsyncResult(finished_id(run_id))
        try:
            result.get(timeout=timeout, propagate=False, disable_sync_subtasks=False)
            woken = True
        except CeleryTimeout:
            woken = False
        except Exception:  # the backend is unreachable: wait as a poll would
            log.debug("waiting for run %s's end", run_id, exc_info=True)
            time.sleep(timeout)
            return False
        # Unsubscribe now, while the backend answers: left to AsyncResult.__del__, a
        # result kept alive by a timeout's traceback is collected whenever the garbage
        # collector gets to it (at exit, when the Redis may be gone and Celery prints a
        # reconnect traceback).
        try:
            result.backend.remove_pending_result(result)
        except Exception:
            log.debug("unsubscribing from run %s's end", run_id, exc_info=True)
        return woken
