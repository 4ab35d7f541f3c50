"""The Celery tasks that run steps: one attempt of a step, and a chord's gather.

A task only turns its arguments into a TaskMessage and hands it to the engine, which
records everything in MongoDB and dispatches what the step unblocked. While a step
runs, a watcher polls its run once a second, so a cancel stops the step's work on
whichever host runs it, whatever the pool.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Task
from celery.exceptions import Retry

from app.engine.dispatch import TaskMessage
from app.engine.state import RunStatus
from tasks.dispatch import GATHER_TASK, STEP_TASK
from tasks.runtime import worker_engine
from workers.celery_app import app

log = logging.getLogger("chordflow.tasks")

CANCEL_POLL_SECONDS = 1.0


@app.task(bind=True, name=STEP_TASK, acks_late=True)
def run_step(
    self: Task, run_id: str, step: str, index: int | None, attempt: int,
    workflow: str = "", timeout: float | None = None, readmit: bool = False,
    generation: int = 0,
) -> None:
    engine = worker_engine()
    engine.worker = self.request.hostname or engine.worker
    message = TaskMessage(run_id, step, index, attempt, workflow, timeout=timeout,
                          readmit=readmit, generation=generation)
    cancel_event = threading.Event()
    stop_watch = threading.Event()
    watcher = threading.Thread(target=_watch_cancel, daemon=True,
                               args=(engine, run_id, cancel_event, stop_watch))
    watcher.start()
    try:
        engine.execute(message, cancel_event, task_id=self.request.id)
    except Retry:
        raise
    except Exception as exc:  # recorded; a chord must see this element finish
        engine.fail_unexpected(message, exc, task_id=self.request.id)
    finally:
        stop_watch.set()


def _watch_cancel(engine: Any, run_id: str, cancel_event: threading.Event,
                  stop: threading.Event) -> None:
    while not stop.wait(CANCEL_POLL_SECONDS):
        try:
            if engine.store.get_run(run_id).status is RunStatus.CANCELLED:
                cancel_event.set()
                return
        except Exception:  # the store is briefly unreachable: look again next time
            log.debug("cancel watch for %s failed", run_id, exc_info=True)


@app.task(name=GATHER_TASK, acks_late=True)
def gather_items(run_id: str, step: str) -> None:
    worker_engine().gather(run_id, step)
