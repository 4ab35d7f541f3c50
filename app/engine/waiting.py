"""Steps whose work goes on elsewhere: they wait as a delayed message, not in a worker.

A step that submitted a job to another system (a scheduler, modules/job.py) has
nothing to do until the job ends, which may take hours. Holding a worker process that
long would let ten pending jobs take ten worker slots, so the module raises
``StepWaiting(after, state)`` instead (chordflow.errors), and the engine:

1. records ``state`` on the step (``StepRecord.job``: ``{"attempt", "state",
   "polls"}``) and puts the step back to ``queued``, with its attempt count unchanged
   (the wake-up continues the same attempt; it is not a retry) and ``queued_at`` set
   to when the wake-up is due;
2. sends the wake-up as a message delayed by ``after`` seconds (Celery's
   ``countdown``; a timer in the embedded executor), with an id of its own
   (``<run>:<step>:<attempt>.p<n>``), and the worker is free at once;
3. when the wake-up is claimed, calls the method again with ``StepContext.resume`` set
   to the recorded state, read from the store (never from the message): a wake-up lost
   with the broker is resent by the reconciler once it is overdue (``queued_at`` is the
   due time, so it is not resent early), and the resent message finds the state in
   the record, so the job is polled, never submitted twice.

Decisions where Celery, Airflow and Prefect users have expectations:

- A waiting step keeps its run's ``max_parallel`` slot: its job is running. (Airflow's
  deferred tasks free their pool slot unless the pool counts deferred tasks; here the
  slot bounds how many jobs a run has on the scheduler at once, which is what users of
  the replaced engine relied on.)
- The step shows ``queued`` while it waits, with a ``step_waiting`` event per wait
  (its job id and the delay), and ``running`` while a poll runs.
- ``retries`` retry the whole job (a new attempt submits again; the state of an
  earlier attempt is never resumed), ``timeout`` bounds each call of the method, and
  the job's own limit is the module's (``job_timeout``).
- Cancelling the run cancels the job: each step, and each ``foreach`` element, that
  has a recorded job and is not finished has its method's ``cancel`` hook called with
  the state and its params rendered again (an element's with its ``${item}``), where
  the cancel is made (the API, the CLI or the embedded executor, with that process's
  secrets). A cancel that comes while the job is being submitted is caught when the
  submission returns: the step is cancelled by then, so the new job is cancelled at
  once. A cancel that comes during a poll has killed the recorded job already: the
  poll, when it returns, does not kill it again (:func:`recorded_job`).
"""

from __future__ import annotations

import logging
from typing import Any

from chordflow.engine.records import ItemRecord, StepRecord
from chordflow.modules.context import StepContext
from chordflow.modules.registry import MethodSpec

log = logging.getLogger("chordflow.engine")


def job_record(attempt: int, state: dict[str, Any], polls: int) -> dict[str, Any]:
    """What a step's record keeps of a job it waits for."""
    return {"attempt": attempt, "state": state, "polls": polls}


def resume_state(record: StepRecord | ItemRecord | None, attempt: int) -> dict[str, Any] | None:
    """The state the method left in this very attempt (None: it starts afresh, as the
    first call of an attempt, a retry's included, does)."""
    job = record.job if record is not None else None
    if not job or job.get("attempt") != attempt:
        return None
    state = job.get("state")
    return dict(state) if isinstance(state, dict) else None


def recorded_job(record: StepRecord | ItemRecord | None, attempt: int,
                 state: dict[str, Any]) -> bool:
    """Is the job of ``state`` the one the record keeps for this attempt? A cancel
    kills the jobs it finds recorded; a poll that ends after the cancel must not kill
    that job again, only one it submitted itself, which no record has yet."""
    job = record.job if record is not None else None
    if not job or job.get("attempt") != attempt:
        return False
    kept = job.get("state")
    return isinstance(kept, dict) and kept.get("id") == state.get("id")


def cancel_job(method: MethodSpec, params: dict[str, Any], ctx: StepContext) -> str | None:
    """Call the method's ``cancel`` hook; the error as text if it failed, else None.

    A cancel must go on to the next step whatever one job service answers, so every
    failure is caught here and reported (as a ``job_cancel_failed`` event), never
    raised.
    """
    if method.cancel is None:
        return None
    try:
        method.cancel(ctx, **params)
    except Exception as exc:  # reported by the caller, which cancels the other steps too
        log.warning("run %s step %s: could not cancel its job: %s", ctx.run_id, ctx.step,
                    exc)
        return f"{type(exc).__name__}: {exc}"
    return None
