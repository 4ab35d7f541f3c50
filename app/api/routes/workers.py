"""Workers and queues: who is online, what each runs, how many messages wait.

What Flower shows, in the API's own terms, so that the dashboard (and any client)
reads it with a key instead of reaching the broker: the online workers and the queues
they consume (Celery ``inspect`` broadcasts, as ``celery inspect`` does), the
steps each is running (its active tasks, named by run, step and attempt through their
deterministic task ids), and each queue's length (a passive declare on the broker,
which counts every priority level of a Redis queue).

Roles (``chordflow.api.security``): a viewer key.
"""

from __future__ import annotations

from typing import Any

from chordflow.api.security import AUTH_RESPONSES, Viewer
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from kombu.exceptions import ChannelError, OperationalError
from pydantic import BaseModel, Field

router = APIRouter(tags=["operations"], responses=AUTH_RESPONSES)

#: Seconds workers get to answer a broadcast (Flower's default, and ``celery inspect``'s).
INSPECT_TIMEOUT = 1.0


class RunningStep(BaseModel):
    task_id: str
    run_id: str | None = Field(description="From the task id '<run>:<step>:<attempt>'.")
    step: str | None
    attempt: int | None
    name: str = Field(description="The task's name as Flower shows it "
                                  "('<workflow>.<step>').")
    started_at: float | None = Field(default=None, description="UNIX time.")


class WorkerOut(BaseModel):
    name: str
    queues: list[str]
    concurrency: int | None = None
    pool: str | None = None
    running: list[RunningStep]


class QueueOut(BaseModel):
    name: str
    waiting: int | None = Field(description="Messages waiting in the broker; null when "
                                            "the broker could not say.")
    consumers: list[str] = Field(description="Online workers consuming it.")


class WorkersOut(BaseModel):
    workers: list[WorkerOut]
    queues: list[QueueOut]


def _running(task: dict[str, Any]) -> RunningStep:
    task_id = str(task.get("id") or "")
    run_id, step, attempt = (task_id.split(":") + [None, None, None])[:3]
    number = None
    if attempt is not None:
        digits = attempt.split(".", 1)[0]  # '3.r1' is attempt 3 of re-run 1
        number = int(digits) if digits.isdigit() else None
    started = task.get("time_start")
    return RunningStep(task_id=task_id, run_id=run_id, step=step, attempt=number,
                       name=str(task.get("name") or ""),
                       started_at=float(started) if isinstance(started, int | float) else None)


def inspect_workers(app: Any, default_queue: str) -> WorkersOut:
    """The queues broadcast finds the online workers (a broadcast waits its whole
    timeout: it cannot know how many will answer); their active tasks and stats are
    then asked of those workers only, each over as soon as they all answered. The
    queues' lengths come from the broker. A worker that does not answer is not online."""
    queues = app.control.inspect(timeout=INSPECT_TIMEOUT).active_queues() or {}
    online = sorted(queues)
    active: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    if online:
        inspect = app.control.inspect(destination=online, limit=len(online),
                                      timeout=INSPECT_TIMEOUT)
        active = inspect.active() or {}
        stats = inspect.stats() or {}
    workers = []
    for name in sorted(set(queues) | set(active)):
        pool = (stats.get(name) or {}).get("pool") or {}
        workers.append(WorkerOut(
            name=name, queues=sorted(q["name"] for q in queues.get(name) or ()),
            concurrency=pool.get("max-concurrency"),
            pool=str(pool.get("implementation") or "") or None,
            running=[_running(t) for t in active.get(name) or ()]))
    names = sorted({default_queue} | {q for w in workers for q in w.queues})
    return WorkersOut(workers=workers, queues=[
        QueueOut(name=q, waiting=_waiting(app, q),
                 consumers=[w.name for w in workers if q in w.queues]) for q in names])


def _waiting(app: Any, queue: str) -> int | None:
    try:
        with app.connection_for_read() as conn:
            declared = conn.default_channel.queue_declare(queue=queue, passive=True)
            return int(declared.message_count)
    except ChannelError as exc:
        # NOT_FOUND: no such queue, or (Redis) its lists are gone once emptied: none wait.
        return 0 if str(getattr(exc, "reply_code", "")) == "404" else None
    except (OperationalError, OSError):
        return None  # the broker is down


@router.get("/workers", response_model=WorkersOut)
async def workers(request: Request, _: Viewer) -> WorkersOut:
    """Online workers with their queues and running steps, and every queue's length."""
    service: Any = request.app.state.service
    return await run_in_threadpool(inspect_workers, service.engine.dispatcher.app,
                                   request.app.state.settings.default_queue)
