"""The engine wired for Celery: MongoDB records, Celery messages.

Workers build one engine per process, after the fork (pymongo clients must not cross a
fork); the CLI and the API build one to submit, inspect and control runs.
"""

from __future__ import annotations

import logging
import os

from celery import Celery, current_task
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

from app.config import Settings, get_settings
from app.engine.counting import LINGER_SECONDS as COUNT_LINGER_SECONDS
from app.engine.engine import Engine
from app.engine.mongo_store import MongoStore
from modules.registry import default_registry
from tasks.dispatch import CeleryDispatcher
from tasks.finished import FinishedSignal

log = logging.getLogger("chordflow.runtime")

#: Seconds a node gets to answer "what are you running?".
INSPECT_TIMEOUT = 2.0


def build_engine(app: Celery, settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    store = MongoStore(settings.mongo_url, settings.mongo_db)
    store.ensure_indexes()
    engine = Engine(
        store,
        default_registry(),
        CeleryDispatcher(app, settings),
        secrets=settings.load_secrets(),
        workdir=settings.workdir,
        count_linger=COUNT_LINGER_SECONDS,
        on_finish=FinishedSignal(app).announce,
    )
    # Read at each call: a step task sets engine.worker to its node's name, and Celery's
    # current task (thread-local) is the delivery asking.
    engine.holder_alive = lambda worker, task_id: holder_alive(
        app, worker, task_id, asker=engine.worker,
        asking_task=getattr(getattr(current_task, "request", None), "id", None))
    return engine


def holder_alive(app: Celery, worker: str | None, task_id: str | None,
                 asker: str | None = None, asking_task: str | None = None) -> bool:
    """Is ``worker`` (a Celery node name) up and still running ``task_id``?

    A node that does not answer is gone; a node that answers without the task lost it
    (its pool process was killed). Both mean the attempt will never finish by itself.

    ``asker`` is the node asking and ``asking_task`` the task it runs. When a pool
    process is killed, Celery gives its message back to the broker with the same task
    id, and that redelivery often lands on the same node, which then lists the task as
    active because the asker itself is running it. So when the asker is that very task
    on that very node, one entry with this process's pid is its own and does not count
    (on the threads pool every entry has the process's pid, and the asker's own is
    always listed: Celery lists a task before a thread runs it); any other entry (a
    duplicate being worked on by another pool process or thread) does.
    """
    if not worker or "@" not in worker:
        return False
    replies = app.control.inspect(destination=[worker], timeout=INSPECT_TIMEOUT).active()
    active = (replies or {}).get(worker)
    if active is None:
        return False
    holding = [task for task in active if task.get("id") == task_id]
    if worker == asker and asking_task == task_id:
        mine = next((task for task in holding if task.get("worker_pid") == os.getpid()), None)
        if mine is not None:
            holding.remove(mine)
    return bool(holding)


def active_task_ids(app: Celery) -> tuple[set[str], set[str]]:
    """(node names that answered, ids of the tasks they run): one broadcast for all."""
    replies = app.control.inspect(timeout=INSPECT_TIMEOUT).active() or {}
    return set(replies), {task["id"] for tasks in replies.values() for task in tasks}


_engine: Engine | None = None


def worker_engine() -> Engine:
    """This worker process's engine, built on first use."""
    global _engine
    if _engine is None:
        from workers.celery_app import app

        _engine = build_engine(app)
    return _engine


@worker_process_init.connect
def _after_fork(**_: object) -> None:
    global _engine
    _engine = None


@worker_process_shutdown.connect  # a prefork pool process
@worker_shutdown.connect  # the worker itself (thread and solo pools)
def _before_exit(**_: object) -> None:
    """Write the counts and events still waiting for the background writers."""
    if _engine is not None:
        for what, flush in (("counts", _engine.counts.flush),
                            ("events", _engine.events.flush)):
            try:
                flush()
            except Exception:
                log.warning("could not write the last %s", what, exc_info=True)
