"""The Celery tasks that run steps: one attempt of a step, and a chord's gather.

A task only turns its arguments into a TaskMessage and hands it to the engine, which
records everything in MongoDB and dispatches what the step unblocked. While a step
runs, the process's cancel watch (tasks/cancel_watch.py) looks at its run once a
second, so a cancel stops the step's work on whichever host runs it, whatever the pool.

What Flower shows is the truth about the step: a task whose attempt failed raises
:class:`StepAttemptFailed` once the failure is recorded (Flower: FAILURE, with the
step's error), a retry goes through Celery's own ``Task.retry`` (RETRY). A store that
stays unreachable past its patience sends the message back for later (RETRY too),
carrying the attempt's outcome if the module had run, so nothing is lost and nothing
runs twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any

from celery import Task
from celery.exceptions import Reject, Retry
from chordflow.engine.dispatch import TaskMessage
from chordflow.errors import DispatchFailed, StoreUnavailable
from chordflow.tasks.cancel_watch import CancelWatch
from chordflow.tasks.dispatch import GATHER_TASK, STEP_TASK
from chordflow.tasks.runtime import ensure_indexes, worker_engine
from chordflow.workers.celery_app import app

log = logging.getLogger("chordflow.tasks")

#: Seconds before a message that met an unreachable store (past its patience) comes back;
#: one that carries an attempt's outcome comes back at once (it then waits for the store
#: in the worker that takes it, to record the outcome the moment the store answers,
#: before anyone could take the step over).
STORE_RETRY_SECONDS = 30.0
OUTCOME_RETRY_SECONDS = 1.0


class StepAttemptFailed(Exception):
    """Raised by a step task after recording that its attempt failed, so that Celery
    (and Flower) see a failed task. The step's own error is the message."""


#: ``throws``: an expected failure, logged by the worker as one line, not a traceback.
@app.task(bind=True, name=STEP_TASK, acks_late=True, throws=(StepAttemptFailed,))
def run_step(
    self: Task, run_id: str, step: str, index: int | None, attempt: int,
    workflow: str = "", timeout: float | None = None, readmit: bool = False,
    generation: int = 0, queued_at: float | None = None, suspect: float | None = None,
    outcome: dict[str, Any] | None = None, expand: bool = False, poll: int = 0,
    batch: int = 0,
) -> None:
    engine = worker_engine()
    engine.worker = self.request.hostname or engine.worker
    message = TaskMessage(run_id, step, index, attempt, workflow, timeout=timeout,
                          readmit=readmit, generation=generation, queued_at=queued_at,
                          suspect=suspect, outcome=outcome, expand=expand, poll=poll,
                          batch=batch)
    watch = _cancel_watch(engine)
    token, cancel_event = watch.watch(run_id)
    try:
        ensure_indexes(engine)
        failure = engine.execute(message, cancel_event, task_id=self.request.id,
                                 cancel_events=lambda: watch.watching(run_id))
    except Retry:
        raise
    except StoreUnavailable as exc:
        pending = exc.pending if isinstance(exc.pending, TaskMessage) else message
        wait = OUTCOME_RETRY_SECONDS if pending.outcome is not None else STORE_RETRY_SECONDS
        log.warning("run %s step %s: %s; the message comes back in %gs", run_id, step, exc,
                    wait, extra={"run_id": run_id, "step": step})
        try:
            rest = getattr(exc, "rest", None)  # a batch to come back after the outcome
            if isinstance(rest, TaskMessage):
                engine.dispatcher.dispatch(replace(rest, countdown=STORE_RETRY_SECONDS))
            engine.dispatcher.dispatch(replace(pending, retry=True, countdown=wait))
        except DispatchFailed as down:  # the broker too: leave the message where it is
            raise Reject(str(down), requeue=True) from exc
        if message.batch:
            return  # its elements are in the messages just sent
        raise  # not reached: the dispatch raises Celery's Retry
    except DispatchFailed as exc:  # a message it had to send could not be
        log.error("run %s step %s: %s; the message goes back to the queue", run_id, step,
                  exc, extra={"run_id": run_id, "step": step})
        raise Reject(str(exc), requeue=True) from exc
    except Exception as exc:  # recorded; a chord must see this element finish
        if not message.batch:  # (a batch records its elements' own failures)
            engine.fail_unexpected(message, exc, task_id=self.request.id)
        raise
    finally:
        _cancel_watch(engine).unwatch(token)
    if failure is not None:
        raise StepAttemptFailed(failure)


_watches: dict[int, CancelWatch] = {}
_watches_lock = threading.Lock()


def _cancel_watch(engine: Any) -> CancelWatch:
    """The process's watch (per engine: a forked pool process builds its own)."""
    with _watches_lock:
        watch = _watches.get(id(engine))
        if watch is None:
            watch = _watches[id(engine)] = CancelWatch(
                lambda run: engine.store.get_run(run).status)
        return watch


@app.task(bind=True, name=GATHER_TASK, acks_late=True)
def gather_items(self: Task, run_id: str, step: str) -> None:
    try:
        worker_engine().gather(run_id, step)
    except StoreUnavailable as exc:  # the elements are recorded: gather later
        raise self.retry(countdown=STORE_RETRY_SECONDS, max_retries=None) from exc
