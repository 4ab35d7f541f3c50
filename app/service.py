"""What the CLI (and the HTTP API) do with runs on Celery workers.

One engine on the MongoDB store with the Celery dispatcher: submitting compiles the
workflow, records the run and sends its first steps; the workers do the rest. Waiting
and reporting read the store, so they work from any host; a waiter is woken the moment
the run ends by the announcement its last worker makes (tasks/finished.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, Protocol

from chordflow.config import Settings, get_settings
from chordflow.engine.engine import Engine
from chordflow.engine.mongo_store import CLIENT_PATIENCE
from chordflow.engine.plan import Plan
from chordflow.engine.report import run_report
from chordflow.engine.state import RUN_FINISHED, RunStatus
from chordflow.errors import StoreUnavailable
from chordflow.workflow.models import Workflow

#: Elements of a ``foreach`` the API or the CLI expands itself; a longer list is
#: expanded by a worker.
EXPAND_HERE_MAX = 1000
#: With an announcement to wake it, a waiter still reads the store this often.
STORE_CHECK_SECONDS = 2.0


class EndSignal(Protocol):
    def wait(self, run_id: str, timeout: float) -> bool:
        """Block until the run's end is announced, or ``timeout`` seconds."""


class RunService:
    def __init__(self, engine: Engine, finished: EndSignal | None = None):
        self.engine = engine
        self.finished = finished

    @classmethod
    def celery(cls, settings: Settings | None = None, *,
               patience: float = CLIENT_PATIENCE) -> RunService:
        """On MongoDB and Celery. ``patience``: seconds a store call waits for an
        unreachable MongoDB before StoreUnavailable (someone is waiting for the answer:
        a person at the CLI, an HTTP client)."""
        from chordflow.tasks.finished import FinishedSignal
        from chordflow.tasks.runtime import build_engine
        from chordflow.workers.celery_app import app, make_celery

        settings = settings or get_settings()
        celery_app = app if settings == get_settings() else make_celery(settings)
        engine = build_engine(celery_app, settings, patience=patience)
        # A long foreach released here is expanded by a worker: a submission answers
        # in the time of one message, not of one per element.
        engine.expand_elsewhere = EXPAND_HERE_MAX
        return cls(engine, FinishedSignal(celery_app))

    def submit(self, workflow: Workflow | Plan, variables: Mapping[str, Any] | None = None,
               *, trigger: str = "manual", run_id: str | None = None) -> str:
        plan = workflow if isinstance(workflow, Plan) else self.engine.compile(workflow)
        with self.engine.events.gathered():
            run_id = self.engine.submit(plan, variables, trigger=trigger, run_id=run_id)
            self.engine.start(run_id)
        return run_id

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 0.2) -> RunStatus:
        """Wait until the run finishes (or ``timeout``); Ctrl-C cancels it.

        Woken by the run's announced end where there is one, else polling the store
        every ``poll`` seconds. A store outage is waited out: the run goes on meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        status = RunStatus.RUNNING
        try:
            while True:
                try:
                    status = self.engine.store.get_run(run_id).status
                except StoreUnavailable:
                    pass  # the run goes on without us: keep waiting for the store
                if status in RUN_FINISHED:
                    return status
                left = math.inf if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return status
                if self.finished is not None:
                    self.finished.wait(run_id, min(left, STORE_CHECK_SECONDS))
                else:
                    time.sleep(min(left, poll))
        except KeyboardInterrupt as exc:
            self.engine.cancel(run_id, str(exc) or "interrupted (Ctrl-C)")
            raise

    def report(self, run_id: str) -> dict[str, Any]:
        run = self.engine.store.get_run(run_id)
        return run_report(self.engine.store, run_id, list(self.engine.plan_for(run).order))

    def cancel(self, run_id: str, reason: str = "cancelled") -> bool:
        return self.engine.cancel(run_id, reason)

    def close(self) -> None:
        """Close the store's connections (and a Celery app made for these settings)."""
        close = getattr(self.engine.store, "close", None)
        if close:
            close()
        app = getattr(self.engine.dispatcher, "app", None)
        if app is not None and app is not _default_app():
            app.close()


def _default_app() -> Any:
    from chordflow.workers.celery_app import app

    return app
