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

Its stdout and stderr are read as they come, each into a ``HeadTail`` (modules/limits.py)
that keeps the first and the last part and counts the rest: a command printing 100 MB
costs the worker about the attempt's log limit (``CHORDFLOW_MAX_LOG_BYTES``) per stream,
never the 100 MB. What it printed is captured for ``chordflow logs`` within that limit,
and returned (``Completed``) within ``keep``.
"""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from chordflow.errors import StepCancelled, StepTimeout
from chordflow.modules.context import StepContext
from chordflow.modules.limits import HeadTail, format_bytes, json_size
from chordflow.modules.reaper import reaper

#: How often a waiting step looks at its cancel event: the latency of a cancel.
POLL_SECONDS = 0.1
GRACE_SECONDS = 2.0
#: Bytes read from a pipe at a time.
CHUNK = 64 * 1024
#: Seconds a stopped step waits for its pipes to close (a process it started may have
#: left the group and still hold them).
DRAIN_SECONDS = 2.0


@dataclass(frozen=True)
class Completed:
    exit_code: int
    #: What the process printed; beyond ``keep`` (see ``run_process``) its head and its
    #: tail, with a line between them saying how much was cut.
    stdout: str
    stderr: str
    #: Bytes it printed on each, all of it (more than the text above when cut).
    stdout_bytes: int = 0
    stderr_bytes: int = 0


def run_process(
    ctx: StepContext,
    cmd: str | Sequence[str],
    *,
    shell: bool,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stdin: str | None = None,
    keep: int | None = None,
    keep_reason: str = "",
) -> Completed:
    """Run ``cmd`` to completion, or raise StepTimeout / StepCancelled having killed it.

    ``keep``: bytes (JSON-encoded: the text usually becomes an output) of each stream
    the result holds, its head and its tail; by default the attempt's log limit.
    ``keep_reason`` says why, in the line that replaces what was cut.
    """
    full_env = {**ctx.base_env, **{str(k): str(v) for k, v in (env or {}).items()}}
    deadline, limit = ctx.deadline, "the step's timeout"
    if timeout is not None:
        own = time.monotonic() + timeout
        if deadline is None or own < deadline:
            deadline, limit = own, f"{timeout:g}s"
    log_limit = ctx.limits.logs
    keep = log_limit if keep is None else keep
    proc = subprocess.Popen(  # noqa: S603 - running commands is this module's job
        cmd if shell or not isinstance(cmd, str) else [cmd],
        shell=shell,
        cwd=cwd,
        env=full_env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    lease = ctx.lease
    reaper.register(proc.pid, lease.stop_deadline() if lease is not None else None)
    if lease is not None:
        lease.adopt(proc.pid)
    streams = {"stdout": HeadTail(max(keep, log_limit)), "stderr": HeadTail(max(keep, log_limit))}
    pipes: list[tuple[IO[bytes] | None, HeadTail]] = [
        (proc.stdout, streams["stdout"]), (proc.stderr, streams["stderr"])]
    threads = [threading.Thread(target=_drain, args=(pipe, sink), daemon=True,
                                name=f"drain-{proc.pid}") for pipe, sink in pipes]
    if stdin is not None:
        threads.append(threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True,
                                        name=f"feed-{proc.pid}"))
    for name, sink in streams.items():  # seen while it runs (app/engine/live_output.py)
        ctx.captured.follow(name, sink)
    for thread in threads:
        thread.start()
    readers = threads[:2]
    try:
        code = _wait(ctx, proc, readers, deadline, limit)
    except BaseException:
        # Whatever stops this step (a timeout, a cancel, a lost lease, Celery's soft
        # time limit or a revoke raised into the task) stops its processes too; what
        # they printed so far is kept.
        stop_group(proc, readers, at_once=ctx.abandoned)
        _capture(ctx, streams, log_limit)
        raise
    finally:
        reaper.forget(proc.pid)
        if lease is not None:
            lease.release(proc.pid)
    _capture(ctx, streams, log_limit)

    def cut_line(stream: str) -> Callable[[int], str]:
        why = f": {keep_reason}" if keep_reason else ""
        return lambda cut: f"\n[... {format_bytes(cut)} of {stream} cut{why} ...]\n"

    out, err = (streams[name].text(keep, cut_line(name), json_size)
                for name in ("stdout", "stderr"))
    return Completed(code, out, err, streams["stdout"].total, streams["stderr"].total)


def _drain(pipe: IO[bytes] | None, sink: HeadTail) -> None:
    """Read a pipe to its end into ``sink`` (the reader thread of one stream)."""
    if pipe is None:
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        fd = pipe.fileno()
        while chunk := os.read(fd, CHUNK):
            sink.write(decoder.decode(chunk))
        sink.write(decoder.decode(b"", final=True))
    except (OSError, ValueError):
        pass  # closed under us: the step is over
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _feed(pipe: IO[bytes] | None, text: str) -> None:
    """Write the command's standard input, then close it (its own thread: a command
    that prints before it has read all of it must not block us)."""
    if pipe is None:
        return
    try:
        pipe.write(text.encode())
    except (BrokenPipeError, OSError, ValueError):
        pass  # the command did not read it all; its exit code says what that meant
    finally:
        try:
            pipe.close()
        except (BrokenPipeError, OSError):
            pass


def _capture(ctx: StepContext, streams: Mapping[str, HeadTail], limit: int) -> None:
    """Hand each stream to the attempt's captured output, within the log limit: its
    head, what was cut (a gap), its tail."""
    for name, buffer in streams.items():
        head, cut, tail = buffer.parts(limit)
        ctx.captured.add(name, head)
        ctx.captured.add_gap(name, cut)
        ctx.captured.add(name, tail)
        ctx.captured.unfollow(buffer)


def _wait(
    ctx: StepContext, proc: subprocess.Popen[bytes], readers: Sequence[threading.Thread],
    deadline: float | None, limit: str,
) -> int:
    """The exit code, once the process has exited and its pipes are read to the end."""
    return wait_for_exit(proc, readers, deadline=deadline, limit=limit,
                         abandoned=lambda: ctx.abandoned, cancelled=ctx.cancel_event.is_set)


def wait_for_exit(
    proc: subprocess.Popen[bytes], readers: Sequence[threading.Thread], *,
    deadline: float | None, limit: str, abandoned: Callable[[], bool],
    cancelled: Callable[[], bool], what: str = "command",
) -> int:
    """The exit code, once the process has exited and its pipes are read to the end;
    StepCancelled or StepTimeout (naming ``what`` and ``limit``) as soon as the attempt
    is abandoned (its lease lost), cancelled, or past its deadline: the caller then
    stops the process group (``stop_group``). Shared by every module that runs a
    process of its own (bash, rclone)."""
    while True:
        wait = POLL_SECONDS
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - time.monotonic()))
        try:
            proc.wait(timeout=wait)
            for reader in readers:
                reader.join(wait)
            if not any(reader.is_alive() for reader in readers):
                return proc.returncode
        except subprocess.TimeoutExpired:
            pass
        if abandoned():
            raise StepCancelled(f"{what} was killed: the attempt lost its lease")
        if deadline is not None and time.monotonic() >= deadline:
            raise StepTimeout(f"{what} timed out after {limit} and was killed")
        if cancelled():
            raise StepCancelled(f"{what} was killed: the run was cancelled")


def stop_group(proc: subprocess.Popen[bytes], readers: Sequence[threading.Thread], *,
               at_once: bool = False) -> None:
    """Kill the process group (SIGTERM, then SIGKILL; ``at_once``: SIGKILL), then let
    the readers take what it printed, as far as it can still be read."""
    signals = ((signal.SIGKILL, 5.0),) if at_once else \
        ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 5.0))
    for sig, wait in signals:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        until = time.monotonic() + wait
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # Its pipes close once the rest of its group is gone too; a member that
        # outlives the signal (holding them) gets the next one.
        for reader in readers:
            reader.join(max(0.0, until - time.monotonic()))
        if not any(reader.is_alive() for reader in readers):
            return
    for reader in readers:
        reader.join(DRAIN_SECONDS)
