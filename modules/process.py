"""Running a subprocess that a timeout or a cancel really stops, in a minimal
environment.

A step's processes get ``PATH``, ``HOME``, ``LANG``, ``LC_ALL``, ``TZ`` and ``TMPDIR``
from the worker (and the names an admin adds in ``CHORDFLOW_STEP_ENV_PASSTHROUGH``),
plus the step's own ``env``; never the worker's settings (no ``CHORDFLOW_*`` variable,
whatever the list says: they hold the store's and broker's addresses and every secret)
and no secret the step did not reference in its own params.

The process gets its own session (process group), so stopping it stops everything it
started too (``sh -c "sleep 30"`` leaves no orphaned ``sleep``). It is sent SIGTERM,
then SIGKILL after a short grace period; at once SIGKILL if the attempt lost its lease
(another attempt may be running the step already). The group is registered with the
process's reaper (modules/reaper.py), which kills it if the worker itself dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.errors import StepCancelled, StepTimeout
from modules.context import StepContext
from modules.reaper import reaper

#: How often a waiting step looks at its cancel event: the latency of a cancel.
POLL_SECONDS = 0.1
GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class Completed:
    exit_code: int
    stdout: str
    stderr: str


def run_process(
    ctx: StepContext,
    cmd: str | Sequence[str],
    *,
    shell: bool,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stdin: str | None = None,
) -> Completed:
    """Run ``cmd`` to completion, or raise StepTimeout / StepCancelled having killed it."""
    full_env = {**ctx.base_env, **{str(k): str(v) for k, v in (env or {}).items()}}
    deadline, limit = ctx.deadline, "the step's timeout"
    if timeout is not None:
        own = time.monotonic() + timeout
        if deadline is None or own < deadline:
            deadline, limit = own, f"{timeout:g}s"
    proc = subprocess.Popen(  # noqa: S603 - running commands is this module's job
        cmd if shell or not isinstance(cmd, str) else [cmd],
        shell=shell,
        cwd=cwd,
        env=full_env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    lease = ctx.lease
    reaper.register(proc.pid, lease.stop_deadline() if lease is not None else None)
    if lease is not None:
        lease.adopt(proc.pid)
    try:
        return _wait(ctx, proc, stdin, deadline, limit)
    except BaseException:
        # Whatever stops this step (a timeout, a cancel, a lost lease, Celery's soft
        # time limit or a revoke raised into the task) stops its processes too; what
        # they printed so far is kept.
        out, err = _stop(proc, at_once=ctx.abandoned)
        ctx.capture("stdout", out)
        ctx.capture("stderr", err)
        raise
    finally:
        reaper.forget(proc.pid)
        if lease is not None:
            lease.release(proc.pid)


def _wait(
    ctx: StepContext, proc: subprocess.Popen[str], stdin: str | None,
    deadline: float | None, limit: str,
) -> Completed:
    pending_input = stdin
    while True:
        wait = POLL_SECONDS
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - time.monotonic()))
        try:
            out, err = proc.communicate(input=pending_input, timeout=wait)
            ctx.capture("stdout", out)
            ctx.capture("stderr", err)
            return Completed(proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            pending_input = None
        if ctx.abandoned:
            raise StepCancelled("command was killed: the attempt lost its lease") from None
        if deadline is not None and time.monotonic() >= deadline:
            raise StepTimeout(f"command timed out after {limit} and was killed") from None
        if ctx.cancel_event.is_set():
            raise StepCancelled("command was killed: the run was cancelled") from None


def _stop(proc: subprocess.Popen[str], *, at_once: bool = False) -> tuple[str, str]:
    """Kill the process group (SIGTERM, then SIGKILL; ``at_once``: SIGKILL); what it
    printed, as far as it can still be read."""
    signals = ((signal.SIGKILL, 5.0),) if at_once else \
        ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 5.0))
    for sig, wait in signals:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            out, err = proc.communicate(timeout=wait)
            return out or "", err or ""
        except subprocess.TimeoutExpired:
            continue
        except ValueError:  # the pipes were closed already
            return "", ""
    return "", ""
