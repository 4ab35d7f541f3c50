"""Sending task messages through Celery: the engine's Dispatcher for workers.

Each message names a run, a step (and ``foreach`` element) and an attempt, nothing
more, with a deterministic task id ``<run>:<step>:<attempt>`` and Celery's ``shadow``
name ``<workflow>.<step>`` so Flower and the logs show the step. A ``foreach`` without
``max_parallel`` goes out as one chord whose body gathers the elements. A retry of the
attempt a task is running goes through Celery's own ``Task.retry``, which keeps the
task id, so a chord counts each element once, when it is final.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, chord, current_task
from celery.canvas import Signature
from chordflow.config import Settings
from chordflow.engine.dispatch import TaskMessage
from chordflow.errors import DispatchFailed
from kombu.exceptions import OperationalError

log = logging.getLogger("chordflow.dispatch")

STEP_TASK = "chordflow.step"
GATHER_TASK = "chordflow.gather"
#: A step's own deadline stops it cooperatively; Celery's limits are the backstop for
#: code that ignores it: a soft limit raised into the task, then a hard kill.
SOFT_LIMIT_GRACE = 5.0
HARD_LIMIT_GRACE = 30.0


class CeleryDispatcher:
    supports_chords = True

    def __init__(self, app: Celery, settings: Settings):
        self.app = app
        self.settings = settings
        self.redis_priorities = settings.broker_url.startswith(("redis://", "rediss://"))

    # -- Dispatcher -----------------------------------------------------------------

    def dispatch(self, message: TaskMessage) -> None:
        task = current_task  # a proxy: false outside a task
        # (Not from a batch: its other elements are not done with.)
        if (message.retry and task and task.name == STEP_TASK
                and not (task.request.kwargs or {}).get("batch")
                and list(task.request.args or [])[:3] ==
                [message.run_id, message.step, message.index]):
            with _broker_errors(self.settings):
                raise task.retry(args=self._args(message), kwargs=self._kwargs(message),
                                 countdown=message.countdown, max_retries=None,
                                 **self._limits(message))
        # Only chord elements need a stored result; for the rest, not asking for one
        # also spares the sender a result subscription per message.
        with _broker_errors(self.settings):
            self.signature(message).apply_async(countdown=message.countdown or None,
                                                ignore_result=True)

    def dispatch_many(self, messages: list[TaskMessage]) -> None:
        """One producer (one broker connection) for them all, as ``group`` sends."""
        with _broker_errors(self.settings), self.app.producer_or_acquire() as producer:
            for message in messages:
                self.signature(message).apply_async(
                    countdown=message.countdown or None, ignore_result=True,
                    producer=producer)

    def dispatch_chord(self, messages: list[TaskMessage]) -> None:
        first = messages[0]
        body = self.app.signature(
            GATHER_TASK, args=(first.run_id, first.step), immutable=True,
            queue=first.queue or self.settings.default_queue,
            shadow=f"{first.workflow}.{first.step}.gather", ignore_result=True,
        )
        with _broker_errors(self.settings):
            result = chord([self.signature(m) for m in messages])(body)
        _stop_following(result)

    def revoke(self, run_id: str, task_ids: list[str]) -> None:
        if task_ids:
            # SIGUSR1 raises Celery's soft time limit inside a running task, which stops
            # its subprocesses (see modules/process.py); queued ones are dropped.
            self.app.control.revoke(task_ids, terminate=True, signal="SIGUSR1")

    # -- messages ----------------------------------------------------------------------

    def signature(self, message: TaskMessage) -> Signature:
        return self.app.signature(
            STEP_TASK, args=self._args(message), kwargs=self._kwargs(message),
            immutable=True, task_id=message.task_id,
            queue=message.queue or self.settings.default_queue,
            priority=self._priority(message.priority),
            shadow=f"{message.workflow}.{message.step}",
            **self._limits(message),
        )

    @staticmethod
    def _args(message: TaskMessage) -> list[Any]:
        return [message.run_id, message.step, message.index, message.attempt]

    @staticmethod
    def _kwargs(message: TaskMessage) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"workflow": message.workflow}
        if message.timeout:
            kwargs["timeout"] = message.timeout
        if message.readmit:
            kwargs["readmit"] = True
        if message.expand:
            kwargs["expand"] = True
        if message.generation:
            kwargs["generation"] = message.generation
        if message.queued_at is not None:
            kwargs["queued_at"] = message.queued_at
        if message.suspect is not None:
            kwargs["suspect"] = message.suspect
        if message.outcome is not None:
            kwargs["outcome"] = message.outcome
        if message.poll:
            kwargs["poll"] = message.poll
        if message.batch:
            kwargs["batch"] = message.batch
        return kwargs

    @staticmethod
    def _limits(message: TaskMessage) -> dict[str, Any]:
        if not message.timeout or message.readmit:
            return {}
        return {"soft_time_limit": message.timeout + SOFT_LIMIT_GRACE,
                "time_limit": message.timeout + HARD_LIMIT_GRACE}

    def _priority(self, priority: int | None) -> int:
        """Step priorities: 0-9, higher first; a step without one counts as 0 and waits
        behind all others, as a message without priority does in RabbitMQ. Redis serves
        lower numbers first, so its numbers are flipped."""
        priority = priority or 0
        return 9 - priority if self.redis_priorities else priority


@contextmanager
def _broker_errors(settings: Settings) -> Iterator[None]:
    """A broker that cannot be reached becomes DispatchFailed, naming it (no password)."""
    try:
        yield
    except (OperationalError, ConnectionError, OSError) as exc:
        raise DispatchFailed(f"the broker at {_safe_url(settings.broker_url)} is "
                             f"unreachable ({type(exc).__name__}: {exc})") from exc


def _safe_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rsplit('@', 1)[-1]}" if sep else url


def _stop_following(result: Any) -> None:
    """Forget a sent chord's parts in this process.

    Celery's chord makes a GroupResult of its parts, which subscribes the sending
    process to every part's result channel (Redis) and keeps every part's AsyncResult
    until it is ready. Nobody here waits on a part (the chord's body gathers them), so
    an API process that starts a 100,000-element ``foreach`` would hold 100,000
    subscriptions and decode each part's result as it arrives: they are dropped at once.
    """
    header = getattr(result, "parent", None)
    ids = [part.id for part in getattr(header, "results", None) or ()]
    backend = getattr(header, "backend", None)
    # The waiters are Celery's own AsyncResult objects for those ids (not the ones the
    # GroupResult lists): they are dropped by id, then the channels unsubscribed.
    pending = getattr(backend, "_pending_results", None)
    consumer = getattr(backend, "result_consumer", None)
    if not ids or pending is None or consumer is None:
        return
    try:
        for task_id in ids:
            for mapping in pending:
                mapping.pop(task_id, None)
            consumer.cancel_for(task_id)
    except Exception:  # a subscription left behind costs memory, not correctness
        log.debug("could not forget the parts of chord %s", getattr(header, "id", "?"),
                  exc_info=True)
