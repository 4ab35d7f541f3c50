"""The embedded executor: the engine on a thread pool, in one process, nothing installed.

The engine decides everything; this file only delivers task messages to threads, runs
the watchdog that enforces each step's ``timeout`` and stops running work on cancel.
Work is stopped through the step context's cancel event: a ``bash`` step's process
group is killed, an async step's task is cancelled. Plain Python code in a thread
cannot be killed; its step is failed at the deadline and its late result is ignored.

Local paths are not confined by default (``chordflow run`` and the Python API run the
local user's own workflows, with the user's own rights: ``--var out=./out`` works);
``CHORDFLOW_EMBEDDED_CONFINED=true`` confines them as on workers (modules/paths.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from chordflow.config import Settings, get_settings
from chordflow.data.staging import Stager
from chordflow.engine.dispatch import TaskMessage
from chordflow.engine.engine import Engine
from chordflow.engine.memory_store import MemoryStore
from chordflow.engine.plan import Plan
from chordflow.engine.state import RunStatus
from chordflow.engine.store import Store
from chordflow.errors import StoreUnavailable
from chordflow.modules.context import step_environment
from chordflow.modules.registry import Registry, default_registry
from chordflow.workflow.models import Workflow

log = logging.getLogger("chordflow.embedded")

#: How long a timed-out step gets to stop by itself before it is failed regardless.
TIMEOUT_GRACE_SECONDS = 5.0
#: When a store stayed unreachable past its patience, how long until its task is tried
#: again (only with a store that can be unreachable: MongoDB).
STORE_RETRY_SECONDS = 10.0


class EmbeddedExecutor:
    """Run workflows in this process. Use as a context manager, or call ``close``."""

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        threads: int | None = None,
        settings: Settings | None = None,
        store: Store | None = None,
    ):
        settings = settings or get_settings()
        #: In memory by default; any store works (the tests run it on MongoDB too).
        self.store: Store = store or MemoryStore()
        self.engine = Engine(
            self.store,
            registry or default_registry(),
            self,
            secrets=settings.load_secrets(),
            workdir=settings.workdir,
            on_finish=self._on_finish,
            step_env=step_environment(settings.step_env_passthrough),
            # A local run is the user's own: confined only if asked (modules/paths.py).
            file_roots=settings.file_roots if settings.embedded_confined else None,
            limits=settings.limits(),
            stager=Stager.from_settings(settings),
            # The settings' connections, and the store's where it is MongoDB.
            connections=settings.connection_catalog(getattr(self.store, "db", None)),
        )
        self._pool = ThreadPoolExecutor(
            max_workers=threads or settings.embedded_threads, thread_name_prefix="chordflow"
        )
        self._lock = threading.Lock()
        self._done: dict[str, threading.Event] = {}
        self._running: dict[str, set[threading.Event]] = defaultdict(set)
        self._timers: dict[str, set[threading.Timer]] = defaultdict(set)
        self._closed = False
        #: Tasks executing right now; ``close`` waits for this to reach zero.
        self._busy = 0
        self._idle = threading.Condition(self._lock)

    # -- the public API --------------------------------------------------------------

    def compile(self, workflow: Workflow) -> Plan:
        return self.engine.compile(workflow)

    def submit(
        self, workflow: Workflow | Plan, variables: Mapping[str, Any] | None = None
    ) -> str:
        """Start a run and return its id at once."""
        plan = workflow if isinstance(workflow, Plan) else self.compile(workflow)
        run_id = self.engine.submit(plan, variables)
        with self._lock:
            self._done[run_id] = threading.Event()
        self.engine.start(run_id)
        return run_id

    def wait(self, run_id: str, timeout: float | None = None) -> RunStatus:
        """Block until the run finishes; Ctrl-C cancels it (and is re-raised)."""
        done = self._done[run_id]
        try:
            # Short waits so that the main thread sees KeyboardInterrupt promptly.
            remaining = timeout
            while not done.wait(0.1 if remaining is None else min(0.1, remaining)):
                if remaining is not None:
                    remaining -= 0.1
                    if remaining <= 0:
                        break
        except KeyboardInterrupt as exc:
            self.cancel(run_id, str(exc) or "interrupted (Ctrl-C)")
            raise
        return self.store.get_run(run_id).status

    def run(
        self,
        workflow: Workflow | Plan,
        variables: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> str:
        """Submit and wait; return the run id (read the outcome from ``store``)."""
        run_id = self.submit(workflow, variables)
        self.wait(run_id, timeout)
        return run_id

    def rerun(self, run_id: str) -> list[str]:
        """Start a failed or cancelled run again from its failed steps (``wait`` for it)."""
        with self._lock:
            self._done.setdefault(run_id, threading.Event()).clear()
        return self.engine.rerun(run_id)

    def cancel(self, run_id: str, reason: str = "cancelled") -> bool:
        return self.engine.cancel(run_id, reason)

    def close(self, timeout: float | None = None) -> bool:
        """Cancel unfinished runs, stop timers, and wait for the threads to exit.

        With a ``timeout``, stop waiting after that many seconds and return False if a
        thread is still busy (a step that ignores cancellation); True otherwise.
        """
        if not self._closed:
            self._closed = True
            for run_id, done in list(self._done.items()):
                if not done.is_set():
                    self.cancel(run_id, "executor closed")
            self._pool.shutdown(wait=False, cancel_futures=True)
        with self._idle:
            idle = self._idle.wait_for(lambda: self._busy == 0, timeout)
        self.engine.events.flush()
        return idle

    def __enter__(self) -> EmbeddedExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the Dispatcher protocol -------------------------------------------------------

    def dispatch(self, message: TaskMessage) -> None:
        if message.countdown > 0:
            timer = threading.Timer(message.countdown, self._delayed, (message,))
            timer.daemon = True
            with self._lock:
                self._timers[message.run_id].add(timer)
            timer.start()
        else:
            self._submit(message)

    def dispatch_many(self, messages: list[TaskMessage]) -> None:
        for message in messages:
            self.dispatch(message)

    def revoke(self, run_id: str, task_ids: list[str] | None = None) -> None:
        with self._lock:
            events = list(self._running.get(run_id, ()))
            timers = list(self._timers.pop(run_id, ()))
        for timer in timers:
            timer.cancel()
        for event in events:
            event.set()

    # -- internals -------------------------------------------------------------------

    def _delayed(self, message: TaskMessage) -> None:
        with self._lock:
            self._timers[message.run_id].discard(threading.current_thread())  # type: ignore[arg-type]
        self._submit(message)

    def _submit(self, message: TaskMessage) -> None:
        if self._closed:
            return
        try:
            self._pool.submit(self._work, message)
        except RuntimeError:  # the pool is shutting down
            log.debug("dropped %s: executor closed", message.task_id)

    def _work(self, message: TaskMessage) -> None:
        cancel_event = threading.Event()
        with self._lock:
            self._running[message.run_id].add(cancel_event)
            self._busy += 1
        finished = threading.Event()
        watchdog = None
        deadline = time.monotonic() + message.timeout if message.timeout else None
        if message.timeout:
            watchdog = threading.Timer(
                message.timeout, self._time_out, (message, cancel_event, finished)
            )
            watchdog.daemon = True
            watchdog.start()
        try:
            self.engine.execute(message, cancel_event, deadline)
        except StoreUnavailable as exc:  # its store (MongoDB) stayed away: try again later
            pending = exc.pending if isinstance(exc.pending, TaskMessage) else message
            self.dispatch(replace(pending, countdown=STORE_RETRY_SECONDS))
        except BaseException as exc:  # noqa: BLE001 - recorded, never lost
            self.engine.fail_unexpected(message, exc)
        finally:
            finished.set()
            if watchdog is not None:
                watchdog.cancel()
            with self._lock:
                self._running[message.run_id].discard(cancel_event)
                self._busy -= 1
                self._idle.notify_all()

    def _time_out(
        self, message: TaskMessage, cancel_event: threading.Event, finished: threading.Event
    ) -> None:
        """Signal the step to stop; if it does not within the grace period, fail it anyway.

        A cooperating step (a subprocess, async code) stops and records its own timeout,
        so the run does not finish while its work still runs. Only code that ignores the
        signal (plain Python in a thread) is failed from here and left to finish alone.
        """
        cancel_event.set()
        if not finished.wait(TIMEOUT_GRACE_SECONDS):
            self.engine.attempt_failed(message, f"timed out after {message.timeout:g}s")

    def _on_finish(self, run_id: str, status: RunStatus) -> None:
        with self._lock:
            done = self._done.get(run_id)
            self._running.pop(run_id, None)
        if done is not None:
            done.set()
