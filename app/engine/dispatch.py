"""What the engine hands to an executor: constant-size task messages.

A message names a run, a step (and a ``foreach`` element) and an attempt; it never
carries the rest of the workflow, so its size does not grow with the workflow. The
executor (a thread pool, or Celery) only has to deliver it to ``Engine.execute``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class TaskKey:
    """A schedulable unit: a step, or one element of a ``foreach`` step."""

    step: str
    index: int | None = None

    @property
    def token(self) -> str:
        return self.step if self.index is None else f"{self.step}[{self.index}]"

    @classmethod
    def parse(cls, token: str) -> TaskKey:
        if token.endswith("]") and "[" in token:
            step, _, index = token[:-1].rpartition("[")
            return cls(step, int(index))
        return cls(token)


@dataclass(frozen=True, slots=True)
class TaskMessage:
    run_id: str
    step: str
    index: int | None
    attempt: int
    workflow: str
    queue: str | None = None
    priority: int | None = None
    timeout: float | None = None
    #: Seconds to wait before running (a retry's delay).
    countdown: float = 0.0
    #: Not a run but a retry whose delay is over, to queue again for a ``max_parallel``
    #: slot.
    readmit: bool = False
    #: Not a run but a ``foreach`` step to expand into its elements: a long list is
    #: expanded by a worker, not by the API process that released the step.
    expand: bool = False
    #: The next attempt of the attempt being executed right now (an executor may send it
    #: as its own retry, as Celery's ``Task.retry`` does).
    retry: bool = False
    #: How many times the run was re-run: part of the id, so a re-run never reuses the
    #: id of an earlier (perhaps revoked) message.
    generation: int = 0
    #: When the step was queued, for a claim to record should it come before the
    #: queueing's own write does (a released step is sent first, recorded after).
    queued_at: float | None = None
    #: The expired lease this message found on its step's running attempt, a grace
    #: ago: unchanged, the step is taken over (app/engine/lease.py).
    suspect: float | None = None
    #: An attempt's outcome still to be recorded (app/engine/outcome.py): the step is
    #: not run again. Only when the store was unreachable for longer than its patience.
    outcome: dict[str, Any] | None = None
    #: How many times the attempt waited for work done elsewhere (a job on a scheduler,
    #: app/engine/waiting.py): each wake-up is a message of its own, with an id of its own.
    poll: int = 0
    #: Elements of a long ``foreach`` this one message carries: ``batch`` consecutive
    #: ones from ``index`` (see ``foreach_batches``); 0 for a message of one task.
    batch: int = 0

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.step, self.index)

    @property
    def elements(self) -> range:
        """The ``foreach`` elements a batch carries (empty for any other message)."""
        start = self.index or 0
        return range(start, start + self.batch) if self.batch else range(0)

    @property
    def task_id(self) -> str:
        """Deterministic: a redelivered or duplicated message has the same id."""
        token = self.key.token if not self.batch else \
            f"{self.step}[{self.elements.start}-{self.elements.stop - 1}]"
        base = f"{self.run_id}:{token}:{self.attempt}"
        suffix = f".r{self.generation}" if self.generation else ""
        return base + suffix + (".admit" if self.readmit else "") + \
            (".expand" if self.expand else "") + (f".p{self.poll}" if self.poll else "")


#: Fewest messages a batched ``foreach`` is sent in (by default): batches never cost
#: parallelism that a cluster could use (a list of 100,000 still makes 1,563 tasks of
#: 64). A cluster with more worker slots than that says so
#: (``CHORDFLOW_FOREACH_MIN_MESSAGES``).
MIN_BATCHES = 1000


def foreach_batches(n: int, largest: int, fewest: int = MIN_BATCHES) -> list[tuple[int, int]]:
    """How ``n`` elements are sent: (first index, how many) per message.

    One element a message (Airflow's mapped tasks, Prefect's map) costs a broker round
    trip and a task's overhead per element, which for short elements is most of the
    work. Like Celery's ``chunks``, a long list goes in batches of consecutive
    elements, each still claimed, run, recorded and retried on its own; but never in
    fewer than ``fewest`` messages, and no more than ``largest`` a batch, so that a
    list short enough to spread over every worker is spread one element a message.
    """
    size = max(1, min(largest, n // fewest))
    return [(start, min(size, n - start)) for start in range(0, n, size)]


class Dispatcher(Protocol):
    def dispatch(self, message: TaskMessage) -> None:
        """Deliver ``message`` to some worker, which calls ``Engine.execute`` with it."""

    def dispatch_many(self, messages: list[TaskMessage]) -> None:
        """Deliver several messages (a run's roots), as ``dispatch`` would each."""

    def revoke(self, run_id: str, task_ids: list[str]) -> None:
        """Stop the run's running tasks and drop its queued ones (best effort).

        ``task_ids`` are the ids of the run's queued and running attempts; executors that
        track their work by run may ignore them.
        """
