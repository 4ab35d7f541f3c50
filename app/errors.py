"""The error types chordflow raises.

Every error about a workflow says *where* (the step and the field) as well as *what*,
because the person reading it is looking at a file with hundreds of steps. Validation
collects every problem before failing, so a user fixes a file in one pass instead of
one error per run.
"""

from __future__ import annotations

from collections.abc import Iterable


class ChordflowError(Exception):
    """Base class of every error chordflow raises on purpose."""


class WorkflowError(ChordflowError):
    """One problem in a workflow, located by step and field.

    ``step`` is None for workflow-level fields (``variables``, ``outputs``, ...).
    """

    def __init__(self, message: str, *, step: str | None = None, field: str | None = None):
        self.message = message
        self.step = step
        self.field = field
        super().__init__(self.__str__())

    def location(self) -> str:
        parts = []
        if self.step is not None:
            parts.append(f"step '{self.step}'")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts) if parts else "workflow"

    def __str__(self) -> str:
        return f"{self.location()}: {self.message}"

    def to_dict(self) -> dict[str, str | None]:
        return {"step": self.step, "field": self.field, "message": self.message}


class ValidationFailed(ChordflowError):
    """A workflow is invalid; carries every problem found, not just the first."""

    def __init__(self, errors: Iterable[WorkflowError]):
        self.errors = list(errors)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        n = len(self.errors)
        lines = [f"invalid workflow ({n} error{'s' if n != 1 else ''}):"]
        lines += [f"  - {e}" for e in self.errors]
        return "\n".join(lines)


class ReferenceResolutionError(ChordflowError):
    """A reference could not be resolved at run time (a missing key, a bad index)."""


class ConditionError(ChordflowError):
    """A ``when`` expression that does not parse, or cannot be evaluated."""


class StepFailed(ChordflowError):
    """Raised by a step module to fail its step with a clean message (no traceback)."""

    #: Retrying cannot help (the step fails at once, whatever its ``retries``).
    final: bool = False


class StepTimeout(StepFailed):
    """A step ran longer than its ``timeout``."""


class StepCancelled(ChordflowError):
    """The step's run was cancelled while the step ran."""


class StepWaiting(ChordflowError):
    """Raised by a step module whose work goes on elsewhere (a job on a scheduler):
    the attempt is not finished, and no worker should sit waiting for it.

    The engine records ``state`` on the step (``StepRecord.job``), gives the worker back
    and runs the method again ``after`` seconds later, as a delayed message, with
    ``StepContext.resume`` set to ``state``. The state must be JSON and small: it is
    recorded with the step, and a cancel of the run hands it to the method's ``cancel``
    hook (app/engine/waiting.py).
    """

    def __init__(self, after: float, state: dict[str, object], message: str = "waiting"):
        super().__init__(message)
        self.after = max(0.0, float(after))
        self.state = state


class RunNotFound(ChordflowError):
    """No run with that id is recorded."""


class StoreUnavailable(ChordflowError):
    """The store (MongoDB) did not answer within the configured patience.

    Nothing was lost: a worker sends its message back to the broker for later, the API
    answers 503 with Retry-After, the CLI says so in one line and exits 2.
    """

    #: Set by the engine when the attempt had run: the message (a TaskMessage) that
    #: records its outcome later, instead of running the step again.
    pending: object | None = None


class DispatchFailed(ChordflowError):
    """The broker refused (or could not be reached for) a run's messages."""


class ModuleUnavailable(StepFailed):
    """The step's module or method is not installed on the worker that received it.

    Retrying on the same worker cannot help, so the step fails at once.
    """

    final = True
