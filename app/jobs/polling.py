"""Submit a job, then poll it with backoff until it ends: one call per engine wake-up.

Each call of :func:`run_job` does one thing and returns or raises at once, so that no
worker waits for a job: the first call submits and raises ``StepWaiting`` with the
job's id; every later call (``ctx.resume`` set) asks for the job's state and either
returns the outputs, fails the step, or raises ``StepWaiting`` again with a longer
interval (app/engine/waiting.py records the state and sends the wake-up).

Decisions:
- The interval starts at ``interval`` and grows by ``backoff`` after each poll, up to
  ``max_interval`` (the replaced engine polled every 10 s: ``backoff`` 1 does that).
- A service that cannot be reached during a poll is asked again at the next wake-up;
  only ``MAX_POLL_ERRORS`` failures in a row fail the step (a scheduler restarting
  must not fail hours of work). A failed submission fails the attempt at once, so
  ``retries`` decide whether it is submitted again.
- ``timeout`` counts from the submission: past it the job is killed and the step fails
  for good, naming the limit.
- A job the service no longer knows (``gone``) fails the step, saying so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chordflow.errors import StepFailed, StepWaiting
from chordflow.jobs.base import JobClient, JobServiceError, JobStatus
from chordflow.modules.context import StepContext

#: Polls in a row that may fail (service unreachable) before the step fails.
MAX_POLL_ERRORS = 5


class JobTimedOut(StepFailed):
    """The job ran past its ``job_timeout``; it was killed. Retrying would wait as long."""

    final = True


@dataclass(frozen=True)
class PollPolicy:
    """How often a job is polled, and for how long."""

    interval: float = 10.0
    max_interval: float = 120.0
    backoff: float = 1.5
    #: Seconds from the submission after which the job is killed; None: no limit.
    timeout: float | None = None

    def after(self, interval: float) -> float:
        return min(self.max_interval, interval * self.backoff)


def run_job(ctx: StepContext, client: JobClient, policy: PollPolicy) -> dict[str, Any]:
    """One step of a job's life; see the module docstring. Returns the outputs of a job
    that succeeded (``job_id``, ``task_id``, ``status`` and what the client maps)."""
    state = ctx.resume
    if state is None:
        job_id, _ = client.submit()
        ctx.logger.info("submitted to %s: job %s", client.label, job_id)
        ctx.progress(job=job_id, status="submitted")
        raise StepWaiting(policy.interval, {
            "id": job_id, "service": client.label, "submitted_at": time.time(),
            "interval": policy.interval, "polls": 0, "errors": 0})
    job_id = str(state["id"])
    try:
        status = client.status(job_id)
    except JobServiceError as exc:
        errors = int(state.get("errors") or 0) + 1
        if errors >= MAX_POLL_ERRORS:
            raise StepFailed(f"job {job_id}: {errors} polls in a row failed, the last: "
                             f"{exc}") from None
        ctx.logger.warning("job %s: poll failed (%s); asking again", job_id, exc)
        raise StepWaiting(_next(policy, state), {**state, "errors": errors}) from None
    return _outcome(ctx, client, policy, state, job_id, status)


def _outcome(ctx: StepContext, client: JobClient, policy: PollPolicy, state: dict[str, Any],
             job_id: str, status: JobStatus) -> dict[str, Any]:
    ctx.progress(job=job_id, status=status.raw or status.state)
    if status.state == "succeeded":
        ctx.logger.info("job %s on %s: %s", job_id, client.label, status.raw or "done")
        return {"job_id": job_id, "task_id": job_id, "status": status.raw or "succeeded",
                **status.outputs}
    if status.state == "failed":
        detail = f": {status.detail}" if status.detail else ""
        raise StepFailed(f"job {job_id} on {client.label} failed "
                         f"({status.raw or 'failed'}){detail}")
    if status.state == "gone":
        raise StepFailed(f"job {job_id} is gone from {client.label}: the service no longer "
                         "knows it (deleted, expired, or lost by the service)")
    elapsed = time.time() - float(state.get("submitted_at") or time.time())
    if policy.timeout is not None and elapsed >= policy.timeout:
        try:
            answer = client.kill(job_id)
        except JobServiceError as exc:
            answer = f"killing it failed: {exc}"
        raise JobTimedOut(f"job {job_id} on {client.label} did not finish within "
                          f"{policy.timeout:g}s (job_timeout); it was cancelled "
                          f"({answer})")
    wait = _next(policy, state)
    if policy.timeout is not None:  # wake up at the limit rather than well past it
        wait = max(0.5, min(wait, policy.timeout - elapsed))
    raise StepWaiting(wait, {**state, "interval": wait, "errors": 0,
                             "polls": int(state.get("polls") or 0) + 1,
                             "status": status.raw or status.state})


def _next(policy: PollPolicy, state: dict[str, Any]) -> float:
    return policy.after(float(state.get("interval") or policy.interval))
