"""What ``chordflow.flow`` raises: one base class, each error naming the step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class FlowError(ValueError):
    """A workflow that cannot be built or run as given (names the step and what to fix)."""


class CycleError(FlowError):
    """Functions that depend on each other in a circle; ``cycle`` is its path."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("cycle in the workflow: " + " -> ".join(cycle))


class NotImportable(FlowError):
    """A function a worker could not import by its path (defined in ``__main__``, in
    another function, a lambda, or shadowed by another object of the same name)."""


class NotSerializable(FlowError):
    """A value that would not survive the trip to a worker (``strict=True``)."""


class WorkflowFailed(Exception):
    """A run in which a step failed.

    ``states`` maps every step to its final state (``succeeded``, ``failed``,
    ``upstream_failed``, ``skipped``, ``cancelled``); ``errors`` each failed step to its
    exception (on Celery, to the error text its worker recorded); ``first_error`` is the
    first failure in time, with its original traceback (also this exception's
    ``__cause__``); ``results`` holds what the steps that succeeded returned.
    """

    def __init__(self, message: str, states: Mapping[str, str],
                 errors: Mapping[str, BaseException | str], first_error: BaseException | str | None,
                 results: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.states = dict(states)
        self.errors = dict(errors)
        self.first_error = first_error
        self.results = dict(results or {})


class WorkflowCancelled(WorkflowFailed):
    """A run stopped by ``Workflow.cancel()`` (or the run's cancel on Celery)."""
