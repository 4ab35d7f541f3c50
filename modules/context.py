"""What a step module receives besides its params: the step's context.

The context carries the two signals a long step must honour, a deadline and a
cancel event, so that a timeout or a cancelled run really stops the work (a killed
subprocess) rather than merely marking the step as failed while it goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from chordflow.errors import StepCancelled, StepTimeout
from chordflow.modules.limits import Captured
from chordflow.workflow.limits import Limits

if TYPE_CHECKING:
    from chordflow.connections.catalog import Resolved

#: What a step's processes inherit of the worker's environment (see ``step_environment``).
BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
#: Never inherited, whatever an admin lists: the worker's own settings (the store's
#: and the broker's addresses, every secret).
PRIVATE_PREFIX = "CHORDFLOW_"


def step_environment(extra: Iterable[str] = ()) -> dict[str, str]:
    """The part of this process's environment a step's processes get: ``BASE_ENV`` and
    the ``extra`` names an admin allows (``CHORDFLOW_STEP_ENV_PASSTHROUGH``)."""
    return {name: os.environ[name] for name in (*BASE_ENV, *extra)
            if name in os.environ and not name.upper().startswith(PRIVATE_PREFIX)}


class AttemptLease(Protocol):
    """What a step's module sees of its attempt's lease (app/engine/lease.py)."""

    lost: threading.Event

    def stop_deadline(self) -> float:
        """When (``time.monotonic()``) the attempt's processes must be stopped unless
        the lease is renewed first."""

    def adopt(self, pgid: int) -> None:
        """A process group of the attempt, for the reaper to kill at the deadline."""

    def release(self, pgid: int) -> None:
        """That group ended."""


@dataclass
class StepContext:
    run_id: str
    step: str
    attempt: int
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    #: Parent of the per-run scratch directories; the system temp dir if None.
    workdir_root: os.PathLike[str] | str | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)
    #: ``time.monotonic()`` value after which the step must stop; None for no limit.
    deadline: float | None = None
    #: Set when the run is cancelled or the step timed out.
    cancel_event: threading.Event = field(default_factory=threading.Event)
    item_index: int | None = None
    workflow: str = ""
    #: What the attempt printed and logged: the engine stores it with the run when the
    #: attempt ends, so ``chordflow logs`` reads it from any host. Modules add to it
    #: with ``capture``; ``logger`` messages land here too. Bounded by ``limits.logs``
    #: (its head and tail kept, see modules/limits.py): the engine makes both.
    captured: Captured = field(default_factory=Captured)
    #: What the step may leave behind: a module that returns what it read or printed
    #: (bash's stdout) keeps it within ``limits.outputs``.
    limits: Limits = field(default_factory=Limits)
    #: Who runs the attempt (a Celery worker's node name, or host:pid).
    worker: str = ""
    #: The attempt's lease, where there are leases (Celery): once it is lost, another
    #: attempt may run the step, so this one must stop at once, without a grace period.
    lease: AttemptLease | None = None
    #: The environment the step's subprocesses start from (its own ``env`` is added).
    base_env: Mapping[str, str] = field(default_factory=step_environment)
    #: Where the step's local paths may lead besides its run's scratch directory (the
    #: admin's ``CHORDFLOW_FILE_ROOTS``); None: anywhere (a local embedded run). Modules
    #: check their path params with ``modules.paths.confine``.
    file_roots: tuple[Path, ...] | None = None
    #: The step's ``connection:`` (a name or an inline definition), None without one.
    connection: str | Mapping[str, Any] | None = None
    #: Resolves a ``connection:`` with this process's catalog and secrets (the engine's);
    #: modules reach it through chordflow.connections.use, never directly.
    connections: Callable[[str | Mapping[str, Any]], Resolved] | None = None

    #: Where the engine takes a step's events (``progress``): ``(kind, data)``; None
    #: where nothing records them.
    on_event: Callable[[str, dict[str, Any]], None] | None = None
    #: What the method left when it last raised ``StepWaiting`` in this attempt (a job's
    #: id and polling state); None on the attempt's first call (app/engine/waiting.py).
    resume: dict[str, Any] | None = None

    def progress(self, **data: Any) -> None:
        """Report how far the step is (``bytes``, ``total``, ``rate``, ``eta``, ...): a
        ``step_progress`` event of the run, shown live by ``chordflow run``'s table,
        ``logs --follow`` and the API's event stream. Cheap and never blocking: call it
        as often as there is news (about once a second)."""
        if self.on_event is not None:
            self.on_event("step_progress", data)

    @property
    def abandoned(self) -> bool:
        """Has the attempt lost its lease (stop now, nothing it does counts)?"""
        return self.lease is not None and self.lease.lost.is_set()

    def capture(self, stream: str, text: str) -> None:
        """Keep a stream's output ("stdout", "stderr") or a message ("log")."""
        self.captured.add(stream, text)

    @property
    def scratch_root(self) -> Path:
        """The parent of every run's scratch directory."""
        return Path(self.workdir_root or Path(tempfile.gettempdir()) / "chordflow")

    @property
    def run_dir(self) -> Path:
        """The run's scratch directory: its steps' directories are inside it."""
        return self.scratch_root / self.run_id

    @property
    def workdir(self) -> Path:
        """This step's scratch directory, created on first use (most steps need none)."""
        name = self.step if self.item_index is None else f"{self.step}-{self.item_index}"
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        """Raise if the step should stop now; long loops in modules call this."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise StepTimeout(f"step '{self.step}' timed out")
        if self.cancel_event.is_set():
            raise StepCancelled(f"step '{self.step}' was cancelled")


class CapturingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A step's logger: each message goes to the worker's log (with run id and step)
    and to the step's captured output."""

    def __init__(self, logger: logging.Logger, ctx_extra: dict[str, Any], sink: Captured):
        super().__init__(logger, ctx_extra)
        self.sink = sink

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level) or level >= logging.INFO:
            # Formatted as logging would (a dict argument, %-style); never raises.
            record = logging.LogRecord("step", level, "", 0, msg, args, None)
            try:
                text = record.getMessage()
            except Exception:
                text = f"{msg} {args}"
            self.sink.add("log", f"{logging.getLevelName(level)} {text}")
        super().log(level, msg, *args, **kwargs)


def run_coroutine(coro: Any, ctx: StepContext) -> Any:
    """Run an async step in its own event loop, stopping it at the deadline or on cancel."""

    async def supervised() -> Any:
        task = asyncio.ensure_future(coro)
        while not task.done():
            remaining = ctx.remaining()
            wait = 0.05 if remaining is None else min(0.05, remaining)
            await asyncio.wait({task}, timeout=wait)
            if not task.done() and (ctx.cancel_event.is_set() or ctx.remaining() == 0):
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                ctx.check()
                raise StepCancelled(f"step '{ctx.step}' was cancelled")
        return task.result()

    return asyncio.run(supervised())
