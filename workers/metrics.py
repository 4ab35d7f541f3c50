"""Prometheus metrics of a worker's steps, correct with every pool (prefork included).

``chordflow worker --metrics-port N`` (or ``CHORDFLOW_WORKER_METRICS_PORT``) calls
:func:`install` before Celery starts: it points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory (``CHORDFLOW_WORKER_METRICS_DIR`` if set, emptied of old ``*.db`` files, else a
new temporary directory) *before* ``prometheus_client`` is imported, so every pool
process forked afterwards writes its samples to its own files there. The main worker
process serves ``/metrics`` on the port once the worker is ready, aggregating the files
with ``MultiProcessCollector``; a pool process that exits calls ``mark_process_dead`` so
its ``livesum`` gauge stops counting, and one killed without a word (SIGKILL) has its
live gauges dropped at the next scrape. Without a port nothing is installed: no signal is
connected, no file is written and no extra read is made.

Metrics (``module`` is the step's module, e.g. ``bash``; ``status`` the outcome of one
attempt: ``succeeded``, ``failed`` (for good), ``retried`` (failed, another attempt
follows), ``cancelled``, ``skipped``, or ``error`` when the task itself crashed):

- ``chordflow_worker_steps_total{module,status}``: attempts run by this worker.
- ``chordflow_worker_step_duration_seconds{module}``: seconds from the task starting to
  it ending (the step's own work plus the engine's records and dispatch of its
  children), for every attempt counted above.
- ``chordflow_worker_steps_running{module}``: step tasks executing now (``livesum``).
- ``chordflow_worker_step_failures_total{module}``: failed attempts (``failed`` and
  ``retried``; a step that fails after two retries counts three).
- ``chordflow_stage_cache_hits_total``, ``_misses_total``, ``_evictions_total`` and
  ``chordflow_stage_cache_bytes``: the host's stage cache, counted by the pool processes
  that stage steps' inputs (app/data/stage_metrics.py), summed here like the others.

How the module and the outcome are known. The engine (``Engine.execute``) knows both but
has no observer hook, and the engine is not to be changed for metrics; so they are
derived from Celery's task signals on ``chordflow.step`` tasks (args ``(run_id, step,
index, attempt)``):

- ``task_prerun``: the module comes from the run's plan, through the same cached calls
  ``Engine.execute`` makes first (``running_run`` and ``plan_for``): the run record and
  the plan are read once per process and run, and ``execute`` then finds them cached,
  so this costs no extra read. A message for a run that is not running does nothing in
  the engine and is not counted here either. ``readmit`` messages (a retry queueing
  again for a ``max_parallel`` slot) are not attempts and are ignored.
- ``task_postrun``: a task that ended by raising Celery's ``Retry`` (how the engine
  sends a retry from inside its attempt) is ``retried`` without any read. Otherwise
  the step record is read once (``store.get_steps(run_id, (step,))``; the element for
  a ``foreach`` item): if this delivery claimed the attempt (the record names this
  task id and this worker, and was started after the task began) its status is the
  outcome (``queued``/``ready``: a retry waits, so ``retried``); if a later attempt has
  already started since the task began, the attempt was ``retried``; anything else is a
  duplicate or stale message the engine dropped, and is not counted.
- ``task_failure``: ``run_step`` records a step's failures itself, so this fires only
  when the task crashed outside any step; such a task counts as ``error`` unless the
  record shows an outcome.

One read of MongoDB per step task, only when metrics are on.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("chordflow.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STEP_TASK = "chordflow.step"  # tasks.dispatch.STEP_TASK, without importing Celery here

#: Histogram buckets, seconds: steps run from milliseconds to hours.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
                    1800, 3600, 7200, float("inf"))

_TERMINAL = {"succeeded", "failed", "cancelled", "skipped", "upstream_failed"}
_WAITING = {"queued", "ready"}


@dataclass
class _Started:
    module: str
    monotonic: float
    wall: float
    failed: bool = False


class WorkerMetrics:
    """The metric objects and the signal handlers (one instance per worker)."""

    def __init__(self, port: int, directory: Path, address: str = "127.0.0.1"):
        from prometheus_client import Counter, Gauge, Histogram

        self.port = port
        self.address = address
        self.directory = directory
        self.steps = Counter("chordflow_worker_steps", "Step attempts run by this worker.",
                             ["module", "status"])
        self.duration = Histogram("chordflow_worker_step_duration_seconds",
                                  "Seconds a step task ran.", ["module"],
                                  buckets=DURATION_BUCKETS)
        self.running = Gauge("chordflow_worker_steps_running", "Step tasks executing now.",
                             ["module"], multiprocess_mode="livesum")
        self.failures = Counter("chordflow_worker_step_failures",
                                "Failed step attempts (retried or failed for good).",
                                ["module"])
        self._started: dict[str, _Started] = {}
        self._lock = threading.Lock()
        self.server: Any = None

    # -- signal handlers -----------------------------------------------------------------

    def on_prerun(self, task_id: str | None = None, task: Any = None,
                  args: Any = None, kwargs: Any = None, **_: Any) -> None:
        if task_id is None or getattr(task, "name", None) != STEP_TASK:
            return
        try:
            module = self._module(list(args or ()), dict(kwargs or {}))
        except Exception:
            log.debug("no module for task %s", task_id, exc_info=True)
            return
        if module is None:
            return
        with self._lock:
            self._started[task_id] = _Started(module, time.monotonic(), time.time())
        self.running.labels(module).inc()

    def on_failure(self, task_id: str | None = None, **_: Any) -> None:
        with self._lock:
            started = self._started.get(task_id or "")
            if started is not None:
                started.failed = True

    def on_postrun(self, task_id: str | None = None, task: Any = None, args: Any = None,
                   kwargs: Any = None, state: str | None = None, **_: Any) -> None:
        with self._lock:
            started = self._started.pop(task_id or "", None)
        if started is None:
            return
        module = started.module
        self.running.labels(module).dec()
        try:
            outcome = self._outcome(task_id or "", task, list(args or ()), state, started)
        except Exception:
            log.debug("no outcome for task %s", task_id, exc_info=True)
            outcome = None
        if outcome is None and started.failed:
            outcome = "error"
        if outcome is None:
            return
        self.steps.labels(module, outcome).inc()
        self.duration.labels(module).observe(time.monotonic() - started.monotonic)
        if outcome in ("failed", "retried"):
            self.failures.labels(module).inc()

    def on_process_exit(self, **_: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())

    def on_ready(self, **_: Any) -> None:
        """Serve /metrics from the main worker process (the pool is forked by now)."""
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        registry.register(_LiveCollector(self.directory))
        self.server, _thread = start_http_server(self.port, addr=self.address,
                                                 registry=registry)
        log.info("worker metrics on http://%s:%s/metrics", self.address, self.port)

    def on_shutdown(self, **_: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    # -- lookups ---------------------------------------------------------------------------

    @staticmethod
    def _module(args: list[Any], kwargs: dict[str, Any]) -> str | None:
        """The step's module, or None when the engine will ignore the message."""
        if kwargs.get("readmit") or len(args) < 4:
            return None
        from chordflow.engine.dispatch import TaskMessage
        from chordflow.tasks.runtime import worker_engine

        engine = worker_engine()
        msg = TaskMessage(args[0], args[1], args[2], int(args[3]),
                          str(kwargs.get("workflow", "")),
                          generation=int(kwargs.get("generation", 0)))
        run = engine.running_run(msg)  # cached: Engine.execute reuses it
        if run is None:
            return None
        return str(engine.plan_for(run).steps[msg.step].module)

    @staticmethod
    def _outcome(task_id: str, task: Any, args: list[Any], state: str | None,
                 started: _Started) -> str | None:
        if state == "RETRY":  # the engine sent the next attempt as Celery's retry
            return "retried"
        from chordflow.tasks.runtime import worker_engine

        run_id, step, index, attempt = args[0], args[1], args[2], int(args[3])
        rec: Any = worker_engine().store.get_steps(run_id, (step,))[step]
        if index is not None:
            items = rec.items or []
            if index >= len(items):
                return None
            rec = items[index]
        status = str(getattr(rec.status, "value", rec.status))
        hostname = getattr(getattr(task, "request", None), "hostname", None)
        after_start = rec.started_at is not None and rec.started_at >= started.wall
        if (after_start and rec.task_id == task_id and rec.attempts in (attempt, attempt + 1)
                and (hostname is None or rec.worker == hostname)):
            if status in _TERMINAL:
                return status
            if status in _WAITING:
                return "retried"
            return None
        if after_start and rec.attempts > attempt:
            return "retried"  # the next attempt has already started (another process)
        return None


def _reap_dead(directory: Path) -> None:
    """Drop the live gauges of pool processes that died without saying so.

    A process killed by SIGKILL (or by the OOM killer) never runs
    ``worker_process_shutdown``, so its ``steps_running`` file would keep counting the
    step it died in for as long as the worker lives. The files carry the pid of the
    process that wrote them; the pool's processes are this process's children, on this
    host, so a pid that no longer exists is one of them gone.
    """
    from prometheus_client import multiprocess

    for live in directory.glob("gauge_live*_*.db"):
        try:
            pid = int(live.stem.rsplit("_", 1)[1])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(directory))
        except PermissionError:  # exists, someone else's: not one of ours
            continue


class _LiveCollector:
    """The processes' files aggregated, after dropping the live gauges of dead ones."""

    def __init__(self, directory: Path):
        from prometheus_client import multiprocess

        self.directory = directory
        self.files = multiprocess.MultiProcessCollector(None, path=str(directory))

    def collect(self) -> Any:
        try:
            _reap_dead(self.directory)
        except OSError:
            log.debug("dropping dead processes' gauges", exc_info=True)
        return self.files.collect()


_installed: WorkerMetrics | None = None


def prepare_directory(directory: Path | None) -> Path:
    """The multiprocess directory: ``directory`` emptied of old samples, or a new one."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="chordflow-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.db"):
        old.unlink()
    return directory


def install(port: int, directory: Path | None = None,
            address: str = "127.0.0.1") -> WorkerMetrics:
    """Set up metrics for the worker about to start in this process (before it forks).

    Must run before ``prometheus_client`` is first imported in this process.
    """
    global _installed
    if _installed is not None:
        return _installed
    path = prepare_directory(directory)
    os.environ[MULTIPROC_ENV] = str(path)
    import sys

    if "prometheus_client" in sys.modules:
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # imported early: switch to files
    from celery.signals import (
        task_failure,
        task_postrun,
        task_prerun,
        worker_process_shutdown,
        worker_ready,
        worker_shutdown,
    )

    metrics = WorkerMetrics(port, path, address)
    task_prerun.connect(metrics.on_prerun, weak=False)
    task_postrun.connect(metrics.on_postrun, weak=False)
    task_failure.connect(metrics.on_failure, weak=False)
    worker_process_shutdown.connect(metrics.on_process_exit, weak=False)
    worker_ready.connect(metrics.on_ready, weak=False)
    worker_shutdown.connect(metrics.on_shutdown, weak=False)
    _installed = metrics
    return metrics


def cleanup(metrics: WorkerMetrics, remove: bool) -> None:
    """After the worker stopped: remove the directory if :func:`install` made it."""
    metrics.on_shutdown()
    if remove:
        shutil.rmtree(metrics.directory, ignore_errors=True)
