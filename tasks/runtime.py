"""The engine wired for Celery: MongoDB records, Celery messages.

Workers build one engine per process, after the fork (pymongo clients must not cross a
fork); the CLI and the API build one to submit, inspect and control runs. The indexes
are made on a worker's first task that finds the store answering; a worker starts (and
waits, task by task) while the store is unreachable.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown
from chordflow.config import Settings, get_settings
from chordflow.data.staging import Stager
from chordflow.engine.counting import LINGER_SECONDS as COUNT_LINGER_SECONDS
from chordflow.engine.engine import Engine
from chordflow.engine.mongo_store import MongoStore
from chordflow.jobs.key_tokens import CIPHER_SECRET
from chordflow.modules.context import step_environment
from chordflow.modules.registry import default_registry
from chordflow.tasks.dispatch import CeleryDispatcher
from chordflow.tasks.finished import FinishedSignal

log = logging.getLogger("chordflow.runtime")

#: Seconds workers get to answer "which queues do you consume?".
INSPECT_TIMEOUT = 2.0


def build_engine(app: Celery, settings: Settings | None = None, *,
                 patience: float | None = None) -> Engine:
    """The engine on MongoDB and Celery. ``patience``: seconds a store call waits for an
    unreachable MongoDB (default: the workers' ``store_outage_seconds``; the API and the
    CLI pass a few seconds, someone is waiting for their answer)."""
    settings = settings or get_settings()
    store = MongoStore(settings.mongo_url, settings.mongo_db,
                       patience=settings.store_outage_seconds if patience is None else patience)
    return Engine(
        store,
        default_registry(),
        CeleryDispatcher(app, settings),
        # Not the key of the stored tokens' cipher: no workflow may name it.
        secrets={name: value for name, value in settings.load_secrets().items()
                 if name != CIPHER_SECRET},
        workdir=settings.workdir,
        count_linger=COUNT_LINGER_SECONDS,
        on_finish=FinishedSignal(app).announce,
        lease_seconds=settings.lease_seconds,
        step_env=step_environment(settings.step_env_passthrough),
        # A worker serves API users: its steps' paths are always confined.
        file_roots=settings.file_roots,
        limits=settings.limits(),
        foreach_batch=settings.foreach_batch,
        foreach_min_messages=settings.foreach_min_messages,
        stager=Stager.from_settings(settings),
        connections=settings.connection_catalog(store.db),
    )


def served_queues(app: Celery) -> set[str] | None:
    """The queues live workers consume (one broadcast); None if none answered."""
    replies = app.control.inspect(timeout=INSPECT_TIMEOUT).active_queues() or {}
    if not replies:
        return None
    return {queue["name"] for queues in replies.values() for queue in queues or ()}


_engine: Engine | None = None


def worker_engine() -> Engine:
    """This worker process's engine, built on first use."""
    global _engine
    if _engine is None:
        from chordflow.workers.celery_app import app

        _engine = build_engine(app)
    return _engine


_indexed: set[int] = set()


def ensure_indexes(engine: Engine) -> None:
    """Make the store's indexes once per process, on the first task that can (a task
    that meets an unreachable store waits, and comes back later if it must)."""
    if id(engine) not in _indexed:
        engine.store.ensure_indexes()  # type: ignore[attr-defined]
        _indexed.add(id(engine))


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
