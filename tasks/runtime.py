"""The engine wired for Celery: MongoDB records, Celery messages.

Workers build one engine per process, after the fork (pymongo clients must not cross a
fork); the CLI and the API build one to submit, inspect and control runs.
"""

from __future__ import annotations

import logging

from celery import Celery
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
    return Engine(
        store,
        default_registry(),
        CeleryDispatcher(app, settings),
        secrets=settings.load_secrets(),
        workdir=settings.workdir,
        holder_alive=lambda worker, task_id: holder_alive(app, worker, task_id),
        count_linger=COUNT_LINGER_SECONDS,
        on_finish=FinishedSignal(app).announce,
    )


def holder_alive(app: Celery, worker: str | None, task_id: str | None) -> bool:
    """Is ``worker`` (a Celery node name) up and still running ``task_id``?

    A node that does not answer is gone; a node that answers without the task lost it
    (its pool process was killed). Both mean the attempt will never finish by itself.
    """
    if not worker or "@" not in worker:
        return False
    replies = app.control.inspect(destination=[worker], timeout=INSPECT_TIMEOUT).active()
    active = (replies or {}).get(worker)
    if active is None:
        return False
    return any(task.get("id") == task_id for task in active)


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
