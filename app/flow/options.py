"""``@step(...)``: a function's options as a step. A plain function needs none.

The options are the workflow format's step options (docs/workflows.md), so the same
function means the same step embedded and on Celery workers. ``queue`` and
``priority`` only matter on Celery (an embedded run has no queues).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: Where ``@step`` keeps a function's options (the function itself is returned as is,
#: so that its type, and ``Depends`` on it, stay what they were).
ATTRIBUTE = "__chordflow_step__"


@dataclass(frozen=True, slots=True)
class StepOptions:
    """A step's options; the defaults are the workflow format's."""

    name: str | None = None
    retries: int = 0
    retry_delay: float = 0.0
    retry_backoff: float = 1.0
    timeout: float | None = None
    queue: str | None = None
    priority: int | None = None
    #: A predicate over dependency results (called with those it names as parameters),
    #: or a condition of the workflow format (``"${steps.count.outputs.result} > 3"``).
    when: Callable[..., Any] | str | None = None
    #: How the result travels between workers: "json" (the default), "pickle", or the
    #: import path of an object with ``dumps(value) -> bytes`` and ``loads(bytes)``.
    serializer: str = "json"
    continue_on_failure: bool = False

    def __post_init__(self) -> None:
        where = f"@step({self.name!r})" if self.name else "@step()"
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"{where}: retries must be an int >= 0, not {self.retries!r}")
        if self.retry_delay < 0:
            raise ValueError(f"{where}: retry_delay must be >= 0, not {self.retry_delay!r}")
        if self.retry_backoff < 1:
            raise ValueError(f"{where}: retry_backoff must be >= 1, not {self.retry_backoff!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"{where}: timeout must be > 0 seconds, not {self.timeout!r}")
        if self.priority is not None and not 0 <= self.priority <= 9:
            raise ValueError(f"{where}: priority must be 0-9, not {self.priority!r}")
        if self.when is not None and not (callable(self.when) or isinstance(self.when, str)):
            raise ValueError(f"{where}: when must be a function or a condition string")


DEFAULT = StepOptions()


def step(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    retry_backoff: float = 1.0,
    timeout: float | None = None,
    queue: str | None = None,
    priority: int | None = None,
    when: Callable[..., Any] | str | None = None,
    serializer: str = "json",
    continue_on_failure: bool = False,
) -> Callable[[F], F]:
    """Give a function step options; it is returned unchanged otherwise.

    ``continue_on_failure``: if it fails, its dependents still run (receiving None)
    and the run does not fail for it, as the workflow format's option of that name.
    """
    options = StepOptions(name, retries, retry_delay, retry_backoff, timeout, queue,
                          priority, when, serializer, continue_on_failure)

    def decorate(fn: F) -> F:
        setattr(fn, ATTRIBUTE, options)
        return fn

    return decorate


def options_of(fn: Callable[..., Any]) -> StepOptions:
    found = getattr(fn, ATTRIBUTE, DEFAULT)
    return found if isinstance(found, StepOptions) else DEFAULT
