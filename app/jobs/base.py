"""What every job client offers, whatever protocol it speaks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from chordflow.errors import StepFailed

#: A job's state as chordflow sees it; ``gone``: the service no longer knows the job.
State = Literal["running", "succeeded", "failed", "gone"]


@dataclass(frozen=True)
class JobStatus:
    state: State
    #: The service's own word for the state ("in-progress", "completed", ...).
    raw: str = ""
    #: Why it failed, when the service says.
    detail: str = ""
    #: What a finished job leaves as the step's outputs (its result, output paths).
    outputs: dict[str, Any] = field(default_factory=dict)


class JobServiceError(StepFailed):
    """The job service refused a call or could not be reached (the message names the
    service and the call, never a token)."""


class JobClient(Protocol):
    """One job service, as the polling loop uses it."""

    @property
    def label(self) -> str:
        """How errors and events name it ("BV-BRC app service at http://...")."""

    def submit(self) -> tuple[str, dict[str, Any]]:
        """Submit the job; its id and what the service said about it."""

    def status(self, job_id: str) -> JobStatus:
        """The job's state now."""

    def kill(self, job_id: str) -> str:
        """Stop the job; what the service answered."""
