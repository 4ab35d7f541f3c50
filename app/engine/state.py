"""The run and step state machines, shared by every executor and every store.

Run:  pending → running → succeeded | failed | cancelled
Step: pending → ready → queued → running → succeeded | failed | skipped |
      upstream_failed | cancelled

A step that nothing holds back (no ``max_parallel``) goes from pending to queued in
one write; ``ready`` is where a step waits for a slot. Such a step's message is sent
before its queueing is recorded (the next step need not wait for that write), so its
worker may claim it while it still reads pending: pending → running is allowed, and
only ever made by a claim, which only a sent message makes.

A retry goes running → queued → running again, counting ``attempts`` (running →
ready → queued → running when it must queue for a ``max_parallel`` slot again). A step that will
not run is decided while it is still pending or ready (skipped, upstream_failed,
cancelled). Terminal states never change: that is what makes completion idempotent,
since every store update is a compare-and-set on the expected current state.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in RUN_FINISHED


class StepStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in STEP_FINISHED


RUN_FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
STEP_FINISHED = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.SKIPPED,
        StepStatus.UPSTREAM_FAILED,
        StepStatus.CANCELLED,
    }
)
STEP_UNFINISHED = frozenset(set(StepStatus) - STEP_FINISHED)
#: One-status sets, for the compare-and-set calls that expect exactly that status.
PENDING_ONLY = frozenset({StepStatus.PENDING})
READY_ONLY = frozenset({StepStatus.READY})
QUEUED_ONLY = frozenset({StepStatus.QUEUED})
RUNNING_ONLY = frozenset({StepStatus.RUNNING})
#: What a task message may find its step (or element) in and claim it from.
CLAIMABLE = frozenset({StepStatus.PENDING, StepStatus.QUEUED})

#: Every allowed step transition; stores apply only these (see ``check_step``).
STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset(
        {
            StepStatus.READY,
            StepStatus.QUEUED,  # released with no max_parallel slot to wait for
            StepStatus.RUNNING,  # claimed before its queueing was recorded
            StepStatus.SKIPPED,
            StepStatus.UPSTREAM_FAILED,
            StepStatus.CANCELLED,
            StepStatus.FAILED,  # a `when` or `foreach` that cannot be evaluated
            StepStatus.SUCCEEDED,  # a `foreach` over an empty list
        }
    ),
    StepStatus.READY: frozenset({StepStatus.QUEUED, StepStatus.CANCELLED}),
    StepStatus.QUEUED: frozenset(
        {StepStatus.RUNNING, StepStatus.CANCELLED, StepStatus.FAILED}
    ),
    StepStatus.RUNNING: frozenset(
        {
            StepStatus.QUEUED,  # retry
            StepStatus.READY,  # retry that must queue for a max_parallel slot again
            StepStatus.RUNNING,  # taken over by another worker after its own was lost
            StepStatus.SUCCEEDED,
            StepStatus.FAILED,
            StepStatus.CANCELLED,
        }
    ),
}

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    # Re-running a finished run from its failed steps.
    RunStatus.FAILED: frozenset({RunStatus.RUNNING}),
    RunStatus.CANCELLED: frozenset({RunStatus.RUNNING}),
}


class TransitionError(ValueError):
    """A transition the state machine does not allow (a bug, never user error)."""


def check_step(frm: StepStatus, to: StepStatus) -> None:
    if to not in STEP_TRANSITIONS.get(frm, frozenset()):
        raise TransitionError(f"step cannot go from {frm} to {to}")


def check_run(frm: RunStatus, to: RunStatus) -> None:
    if to not in RUN_TRANSITIONS.get(frm, frozenset()):
        raise TransitionError(f"run cannot go from {frm} to {to}")
