"""What a store records about runs, steps and events.

Plain dataclasses: cheap to create by the ten thousand, and each maps one-to-one onto
a MongoDB document (``to_dict``), so the in-memory store and the MongoDB store keep
the same records.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from chordflow.engine.state import RunStatus, StepStatus


def now() -> float:
    """Wall-clock time as a UNIX timestamp: what records and reports carry."""
    return time.time()


@dataclass(slots=True)
class ItemRecord:
    """One element of a ``foreach`` step."""

    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    #: The element of the list this item runs for (``${item}``).
    value: Any = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    task_id: str | None = None
    #: The re-run generation that queued it: a message of another generation may not
    #: claim it (a leftover of a cancelled run after its re-run).
    generation: int = 0
    #: While running: until when (UNIX time) the attempt's holder has it, renewed as it
    #: runs; 0 once the holder gave it up. See app/engine/lease.py.
    lease_until: float | None = None
    #: While running: the process holding the lease ("host/namespace/pid").
    holder: str | None = None
    #: Times the reconciler sent a queued attempt's message again (it waits longer
    #: after each, see app/engine/recovery.py).
    resends: int = 0
    #: Work the attempt left running elsewhere (a job on a scheduler): ``{"attempt",
    #: "state", "polls"}``, see app/engine/waiting.py; kept once the step finished.
    job: dict[str, Any] | None = None


class _Copyable:
    """A fast shallow copy: stores hand out copies by the ten thousand."""

    def __copy__(self: Any) -> Any:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new


@dataclass
class StepRecord(_Copyable):
    run_id: str
    name: str
    module: str
    method: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    #: Rendered params of the last attempt (``${steps.S.params.P}`` reads them).
    params: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    #: The executor's id for the running attempt (Celery's task id), to revoke it.
    task_id: str | None = None
    #: Parents not yet finished; the last parent to finish releases this step. (The
    #: store also remembers which parents counted, so none counts twice.)
    waiting_on: int = 0
    #: The re-run generation that queued it (see ItemRecord.generation).
    generation: int = 0
    #: The running attempt's lease and holder, and resends (see ItemRecord).
    lease_until: float | None = None
    holder: str | None = None
    resends: int = 0
    #: Work left running elsewhere (see ItemRecord.job).
    job: dict[str, Any] | None = None
    items: list[ItemRecord] | None = None
    items_left: int = 0

    def view(self) -> dict[str, Any]:
        """What a reference ``${steps.NAME.<attr>}`` can read."""
        return {
            "outputs": self.outputs if self.outputs is not None else {},
            "params": self.params if self.params is not None else {},
            "status": str(self.status),
            "error": self.error,
            "attempts": self.attempts,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunRecord(_Copyable):
    id: str
    workflow: str
    version: str
    digest: str
    status: RunStatus = RunStatus.PENDING
    variables: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    #: Counted steps not yet finished; the step that brings this to zero finishes the
    #: run. Only the plan's leaves are counted (the run is finished when they are),
    #: except after a re-run, which counts every step it starts again (``count_all``).
    steps_left: int = 0
    count_all: bool = False
    max_parallel: int | None = None
    trigger: str = "manual"
    #: How many times the run was re-run (attempts keep counting across re-runs).
    reruns: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class LogLine:
    """Output of one attempt of a step: a stream's text, or one log message."""

    run_id: str
    step: str  # the task token: "fetch" or "each[3]"
    attempt: int
    stream: str  # "stdout", "stderr" or "log"
    text: str
    worker: str | None = None
    ts: float = field(default_factory=now)


@dataclass(slots=True)
class Event:
    """One line of a run's append-only log."""

    run_id: str
    type: str
    step: str | None = None
    data: dict[str, Any] | None = None
    ts: float = field(default_factory=now)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
