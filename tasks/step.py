"""The Celery tasks that run steps: one attempt of a step, and a chord's gather.

A task only turns its arguments into a TaskMessage and hands it to the engine, which
records everything in MongoDB and dispatches what the step unblocked. While a step
runs, the process's cancel watch (tasks/cancel_watch.py) looks at its run once a
second, so a cancel stops the step's work on whichever host runs it, whatever the pool.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Task
from celery.exceptions import Retry

from app.engine.dispatch import TaskMessage
from tasks.cancel_watch import CancelWatch
from tasks.dispatch import GATHER_TASK, STEP_TASK
from tasks.runtime import worker_engine
from workers.celery_app import app

log = logging.getLogger("chordflow.tasks")

@app.task(bind=True, name=STEP_TASK, acks_late=True)
def run_step(
    self: Task, run_id: str, step: str, index: int | None, attempt: int,
    workflow: str = "", timeout: float | None = None, readmit: bool = False,
    generation: int = 0, queued_at: float | None = None,
) -> None:
    engine = worker_engine()
    engine.worker = self.request.hostname or engine.worker
    message = TaskMessage(run_id, step, index, attempt, workflow, timeout=timeout,
                          readmit=readmit, generation=generation, queued_at=queued_at)
    token, cancel_event = _cancel_watch(engine).watch(run_id)
    try:
        engine.execute(message, cancel_event, task_id=self.request.id)
    except Retry:
        raise
    except Exception as exc:  # recorded; a chord must see this element finish
        engine.fail_unexpected(message, exc, task_id=self.request.id)
    finally:
        _cancel_watch(engine).unwatch(token)


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


@app.task(name=GATHER_TASK, acks_late=True)
def gather_items(run_id: str, step: str) -> None:
    worker_engine().gather(run_id, step)
