"""``python``: call a Python function by its import path.

``function`` is ``"package.module:attribute"`` (``"package.module.attribute"`` also
works). An ``async def`` function runs in its own event loop and is cancelled at the
step's deadline or when the run is cancelled. If the function takes a parameter named
``ctx`` it receives the step context. The return value is the ``result`` output.

What the function prints (``print``, ``sys.stdout.write``, ``sys.stderr``) is the step's
captured output, read by ``chordflow logs`` like a ``bash`` step's. The function runs
in the worker's own process, where several steps may run at once (the threads pool,
the embedded executor), so ``contextlib.redirect_stdout``, which swaps the process's
one ``sys.stdout``, would mix their output: ``sys.stdout`` and ``sys.stderr`` are
wrapped instead by ``StepStream``, which sends a write to the step the writing thread
runs, and anything else to the stream it wraps (Celery's own logging proxy, a
terminal). Threads the function starts itself are not followed. When the function
raises, its traceback is written to the captured stderr (the error names only the
exception), where the dashboard's step drawer and ``chordflow logs`` show it.
"""

from __future__ import annotations

import inspect
import io
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from chordflow.errors import StepCancelled, StepFailed
from chordflow.importing import NotImportable, import_attribute
from chordflow.modules.context import StepContext, run_coroutine
from chordflow.modules.registry import StepModule

module = StepModule("python", "Call a Python function.", default_method="call")


def load_function(path: str) -> Callable[..., Any]:
    modname, sep, attr = path.partition(":")
    if not sep:
        modname, _, attr = path.rpartition(".")
    if not modname or not attr:
        raise StepFailed(f"function '{path}' must look like 'package.module:function'")
    try:
        target = import_attribute(modname, attr)
    except NotImportable as exc:
        raise StepFailed(str(exc)) from None
    if not callable(target):
        raise StepFailed(f"'{path}' is not callable")
    return target  # type: ignore[no-any-return]


class _Writer:
    """The step a thread runs and its unfinished last line per stream (a line is
    captured once whole, so that ``print("a", "b")``'s pieces make one line)."""

    def __init__(self, ctx: StepContext):
        self.ctx = ctx
        self.partial: dict[str, str] = {}

    def write(self, stream: str, text: str) -> None:
        text = self.partial.pop(stream, "") + text
        whole, sep, rest = text.rpartition("\n")
        if sep:
            self.ctx.capture(stream, whole + sep)
        if rest:
            self.partial[stream] = rest

    def flush(self) -> None:
        for stream, rest in self.partial.items():
            self.ctx.capture(stream, rest)
        self.partial.clear()


_current = threading.local()


class StepStream(io.TextIOBase):
    """``sys.stdout`` (or ``sys.stderr``) routing writes to the step the writing thread
    runs, if any, else to ``fallback``, the stream it replaced (attributes too)."""

    def __init__(self, stream: str, fallback: TextIO):
        super().__init__()
        self.stream = stream
        self.fallback = fallback

    def write(self, text: str) -> int:  # type: ignore[override]
        writer: _Writer | None = getattr(_current, "writer", None)
        if writer is None:
            return self.fallback.write(text)
        writer.write(self.stream, str(text))
        return len(text)

    def flush(self) -> None:
        if getattr(_current, "writer", None) is None:
            self.fallback.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False if getattr(_current, "writer", None) else self.fallback.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.fallback, "encoding", None) or "utf-8"

    def fileno(self) -> int:
        return self.fallback.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fallback, name)


_install_lock = threading.Lock()
_active = 0


def _wrap(stream: str) -> None:
    """Wrap ``sys.<stream>`` as it is now (Celery replaces it at start, a test runner
    may have since), unless it is already a StepStream."""
    current = getattr(sys, stream)
    if not isinstance(current, StepStream):
        setattr(sys, stream, StepStream(stream, current))


def _unwrap(stream: str) -> None:
    """Put back what ``sys.<stream>`` was, if nobody replaced the StepStream since."""
    current = getattr(sys, stream)
    if isinstance(current, StepStream):
        setattr(sys, stream, current.fallback)


@contextmanager
def captured_prints(ctx: StepContext) -> Iterator[None]:
    """Within: what this thread prints is ``ctx``'s captured output. The streams are
    wrapped while any step of the process is inside, and put back after the last."""
    global _active
    with _install_lock:
        _wrap("stdout")
        _wrap("stderr")
        _active += 1
    writer = _Writer(ctx)
    outer = getattr(_current, "writer", None)
    _current.writer = writer
    try:
        yield
    finally:
        _current.writer = outer
        writer.flush()
        with _install_lock:
            _active -= 1
            if _active == 0:
                _unwrap("stdout")
                _unwrap("stderr")


@module.method
def call(
    ctx: StepContext,
    function: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Call function(*args, **kwargs); outputs result.

    function: "package.module:function".
    args: positional arguments.
    kwargs: keyword arguments.
    """
    fn = load_function(function)
    kw = dict(kwargs or {})
    try:
        if "ctx" in inspect.signature(fn).parameters:
            kw["ctx"] = ctx
    except (TypeError, ValueError):
        pass
    with captured_prints(ctx):
        try:
            if inspect.iscoroutinefunction(fn):
                result = run_coroutine(fn(*(args or []), **kw), ctx)
            else:
                result = fn(*(args or []), **kw)
        except (StepCancelled, StepFailed):
            raise  # the step's own words: no traceback to read
        except Exception:
            # The step's error names the exception; where it came from is its captured
            # stderr, as a Celery task's traceback is in its worker's log.
            traceback.print_exc(file=sys.stderr)
            raise
    return {"result": result}
