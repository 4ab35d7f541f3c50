"""The periodic reconciler: resume every running run whose messages were lost.

Scheduled by Celery beat (``chordflow worker --beat``) every ``reconcile_interval``
seconds, and runnable once by hand (``chordflow reconcile``). Each pass resumes up to
``RUNS_PER_PASS`` pending or running runs, continuing where the last pass stopped (so a
pass does bounded work however many runs there are, and every run is reached in
turn): attempts queued longer than ``reconcile_grace`` are sent again, with growing
delays; attempts whose lease was given up or ran out are taken over; a run its
submitter recorded but never started (it stopped, its client got an error) is failed,
saying so, not started behind the client's back. Liveness is the leases' business
alone (app/engine/lease.py): the workers are asked only which queues they serve, to
name the queues whose steps nobody will run.

Each run is handled on its own: an error in one is logged with its id, counted
(``chordflow_reconcile_errors_total`` in the API's metrics) and skipped, and the pass
goes on with the others. Every action is idempotent, so an overlapping pass does no
harm.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

from celery import Celery
from chordflow.config import get_settings
from chordflow.engine.engine import Engine
from chordflow.engine.state import RunStatus
from chordflow.errors import StoreUnavailable
from chordflow.tasks.runtime import served_queues, worker_engine
from chordflow.workers.celery_app import app

log = logging.getLogger("chordflow.reconcile")

#: Runs one pass resumes at most.
RUNS_PER_PASS = 500
#: Seconds a pass's store calls wait for an unreachable store: a pass that meets one
#: ends (the next pass tries again) rather than spend a worker's patience on each run.
PASS_PATIENCE = 5.0
#: Where a pass stopped (a run id), per process; a pass that reaches the end starts over.
_cursor: dict[int, str | None] = {}


def reconcile(engine: Engine, celery: Celery | None, grace: float, default_queue: str,
              *, limit: int = RUNS_PER_PASS) -> dict[str, Any]:
    """One pass; a report by run id of what was done (or the error met). Without a
    Celery app, no worker is asked which queues it serves (none is named unserved)."""
    store: Any = engine.store
    patience = getattr(store, "patience", None)
    try:
        with patience.limited(PASS_PATIENCE) if patience is not None else nullcontext():
            return _reconcile(engine, celery, grace, default_queue, limit)
    except StoreUnavailable as exc:
        log.warning("reconciler pass ended: %s", exc)
        return {}


def _reconcile(engine: Engine, celery: Celery | None, grace: float, default_queue: str,
               limit: int) -> dict[str, Any]:
    store: Any = engine.store
    after = _cursor.get(id(engine))
    runs = store.list_runs({RunStatus.PENDING, RunStatus.RUNNING}, after=after, limit=limit)
    _cursor[id(engine)] = runs[-1].id if len(runs) == limit else None
    report: dict[str, Any] = {}
    errors = 0
    waiting: dict[str, int] = {}
    for run in runs:
        try:
            done = engine.resume(run.id, grace=grace, backoff=True, start_pending=False)
        except StoreUnavailable:
            raise  # not this run's fault: the pass ends
        except Exception as exc:
            errors += 1
            report[run.id] = {"error": f"{type(exc).__name__}: {exc}"}
            log.error("reconciling run %s failed; the other runs go on: %s", run.id, exc,
                      exc_info=True, extra={"run_id": run.id})
            continue
        for queue, n in done.waiting.items():
            waiting[queue or default_queue] = waiting.get(queue or default_queue, 0) + n
        if done:
            report[run.id] = {"resent": done.resent, "taken_over": done.taken_over,
                              "released": done.released, "gathered": done.gathered}
            log.warning("reconciled run %s: %s", run.id, report[run.id],
                        extra={"run_id": run.id})
    served = served_queues(celery) if waiting and celery is not None else None
    unserved = {q: n for q, n in waiting.items() if served is not None and q not in served}
    for queue, n in unserved.items():
        log.warning("%d steps wait on queue %r, which no live worker consumes", n, queue)
    try:
        store.note_reconcile(errors, unserved)
    except Exception:
        log.warning("could not record the reconciler's pass", exc_info=True)
    return report


@app.task(name="chordflow.reconcile", acks_late=False, ignore_result=True,
          send_events=False)
def reconcile_task() -> dict[str, Any]:
    settings = get_settings()
    return reconcile(worker_engine(), app, settings.reconcile_grace, settings.default_queue)
