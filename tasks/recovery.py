"""The periodic reconciler: resume every running run whose messages were lost.

Scheduled by Celery beat (``chordflow worker --beat``) every ``reconcile_interval``
seconds, and runnable once by hand (``chordflow reconcile``). It asks all workers at
once what they are running, then resumes each running run: attempts queued longer than
``reconcile_grace`` are sent again, attempts held by a worker that no longer runs them
are taken over. Every action is idempotent, so an overlapping pass does no harm.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from app.config import get_settings
from app.engine.engine import Engine
from app.engine.state import RunStatus
from tasks.runtime import active_task_ids, worker_engine
from workers.celery_app import app

log = logging.getLogger("chordflow.reconcile")


def reconcile(engine: Engine, celery: Celery, grace: float) -> dict[str, Any]:
    nodes, active = active_task_ids(celery)

    def alive(worker: str | None, task_id: str | None) -> bool:
        return worker in nodes and task_id in active

    report: dict[str, Any] = {}
    store: Any = engine.store
    for run in store.list_runs({RunStatus.PENDING, RunStatus.RUNNING}):
        done = engine.resume(run.id, holder_alive=alive, grace=grace)
        if done:
            report[run.id] = {"resent": done.resent, "taken_over": done.taken_over,
                              "released": done.released, "gathered": done.gathered}
            log.warning("reconciled run %s: %s", run.id, report[run.id])
    return report


@app.task(name="chordflow.reconcile", acks_late=False, ignore_result=True)
def reconcile_task() -> dict[str, Any]:
    return reconcile(worker_engine(), app, get_settings().reconcile_grace)
