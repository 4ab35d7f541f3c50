"""Running one rclone command: live progress, a timeout and a cancel that kill it, and
a result that says what moved and, on failure, why.

How to use it (the ``rclone`` step module, staging and the JIT tiers all do)::

    from chordflow.data.rclone import run_rclone
    from chordflow.data.remotes import Remotes

    result = run_rclone(["copy", "archive:bucket/ref", str(ctx.workdir / "ref")],
                        ctx=ctx,                      # deadline, cancel, lease, logger
                        remotes=Remotes.from_settings(),   # default: the same
                        on_progress=lambda done, total, rate, eta: ...)
    result.check("stage_in[0]")    # RcloneError (a StepFailed) naming it if it failed
    result.files, result.bytes, result.elapsed, result.stdout   # lsjson, size, ...

``ctx`` is optional: without a step (``remotes check`` in the API) pass ``timeout`` and
/or ``cancel`` (a ``threading.Event``). A timeout raises StepTimeout, a cancel (or a
lost lease) StepCancelled, both after rclone's process group is killed (SIGTERM, then
SIGKILL; at once SIGKILL if the lease is lost). The group is registered with the
reaper (modules/reaper.py) and the attempt's lease, so rclone dies with its worker.

``on_progress(bytes_done, total_bytes, rate, eta)`` is called from a reader thread at
each of rclone's JSON stats lines (``--use-json-log --stats 1s``): bytes so far, the
bytes rclone knows it will move (None before it knows), bytes per second and seconds
left (None when unknown). rclone's own error lines become ``result.messages``, its last
one the heart of ``result.error``. Credentials never reach the command line (they are
in rclone's environment, see remotes.py) and are redacted from everything rclone
prints before it is logged, captured or returned.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from chordflow.data.binary import RcloneError, RcloneNotFound, find_binary
from chordflow.data.remotes import Remotes
from chordflow.modules.context import StepContext, step_environment
from chordflow.modules.process import stop_group, wait_for_exit
from chordflow.modules.reaper import reaper

__all__ = ["ProgressFn", "RcloneError", "RcloneNotFound", "RcloneResult", "find_binary",
           "run_rclone"]

log = logging.getLogger("chordflow.rclone")

#: ``on_progress(bytes_done, total_bytes, rate_bytes_per_s, eta_seconds)``.
ProgressFn = Callable[[int, int | None, float | None, float | None], None]

#: Bytes of stdout (lsjson, hashsum, ...) kept by default.
KEEP_STDOUT = 16 * 1024 * 1024
#: rclone error lines kept in a result.
MAX_MESSAGES = 20
#: What rclone's exit codes mean (rclone docs, "Exit code").
EXIT_CODES = {
    1: "usage error, or the remote could not be opened",
    2: "error not otherwise categorised",
    3: "directory not found",
    4: "file not found",
    5: "temporary error (more retries might fix it)",
    6: "less serious errors",
    7: "fatal error (retries will not fix it)",
    8: "transfer limit exceeded",
    9: "no files were transferred",
    10: "duration limit exceeded",
}


@dataclass
class RcloneResult:
    """What one rclone command did. ``files`` and ``bytes`` are those transferred."""

    args: list[str]
    exit_code: int
    elapsed: float
    stdout: str = ""
    #: stdout was longer than ``keep_stdout``: ``stdout`` holds its start only.
    stdout_truncated: bool = False
    files: int = 0
    bytes: int = 0
    total_bytes: int | None = None
    checks: int = 0
    deletes: int = 0
    renames: int = 0
    errors: int = 0
    #: rclone's error lines (the last MAX_MESSAGES), credentials redacted.
    messages: list[str] = field(default_factory=list)
    #: rclone's last stats object, as it printed it.
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def error(self) -> str | None:
        """Why it failed, in one line: the command, the exit code's meaning, rclone's
        last error; None if it succeeded."""
        if self.ok:
            return None
        meaning = EXIT_CODES.get(self.exit_code, "failed")
        detail = self.messages[-1] if self.messages else "(rclone printed no error)"
        more = f" ({self.errors} errors)" if self.errors > 1 else ""
        return (f"rclone {self.args[0] if self.args else ''} failed, exit code "
                f"{self.exit_code} ({meaning}){more}: {detail}")

    def check(self, what: str = "") -> RcloneResult:
        """This result if rclone succeeded, else RcloneError: ``what`` names the caller
        (``step 'fetch'``, ``stage_in[0]``) in front of ``error``."""
        if not self.ok:
            raise RcloneError(f"{what}: {self.error}" if what else str(self.error))
        return self

    def summary(self) -> dict[str, Any]:
        """The counts as outputs: files, bytes, checks, deletes, renames, errors,
        elapsed (seconds)."""
        return {"files": self.files, "bytes": self.bytes, "checks": self.checks,
                "deletes": self.deletes, "renames": self.renames, "errors": self.errors,
                "elapsed": round(self.elapsed, 3)}


def run_rclone(
    args: Sequence[str],
    *,
    ctx: StepContext | None = None,
    remotes: Remotes | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_progress: ProgressFn | None = None,
    stats_interval: float = 1.0,
    keep_stdout: int = KEEP_STDOUT,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> RcloneResult:
    """Run ``rclone ARGS`` (``args[0]`` the subcommand) to its end; see the module
    docstring. Never raises for rclone's own failure (``result.check()`` does); raises
    StepTimeout / StepCancelled having killed it, RcloneError if it cannot start."""
    remotes = remotes if remotes is not None else Remotes.from_settings()
    args = [str(a) for a in args]
    binary = remotes.binary
    full_env = {**(ctx.base_env if ctx is not None else step_environment()),
                **remotes.environment(), **(env or {})}
    cmd = [binary, *args, "--use-json-log", "--stats", f"{stats_interval:g}s",
           "--stats-log-level", "NOTICE"]
    deadline, limit = _deadline(ctx, timeout)
    logger = ctx.logger if ctx is not None else log
    logger.info("rclone %s", " ".join(args))
    started = time.monotonic()
    try:
        proc = subprocess.Popen(  # noqa: S603 - our binary, arguments as a list
            cmd, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise RcloneError(f"cannot run {binary}: {exc.strerror}") from None
    lease = ctx.lease if ctx is not None else None
    reaper.register(proc.pid, lease.stop_deadline() if lease is not None else None)
    if lease is not None:
        lease.adopt(proc.pid)
    reader = _Stderr(remotes, logger, on_progress)
    out = _Stdout(keep_stdout)
    threads = [threading.Thread(target=reader.read, args=(proc.stderr,), daemon=True,
                                name=f"rclone-err-{proc.pid}"),
               threading.Thread(target=out.read, args=(proc.stdout,), daemon=True,
                                name=f"rclone-out-{proc.pid}")]
    for thread in threads:
        thread.start()
    try:
        code = wait_for_exit(
            proc, threads, deadline=deadline, limit=limit,
            what=f"rclone {args[0] if args else ''}".rstrip(),
            abandoned=lambda: ctx is not None and ctx.abandoned,
            cancelled=lambda: (cancel is not None and cancel.is_set())
            or (ctx is not None and ctx.cancel_event.is_set()))
    except BaseException:
        stop_group(proc, threads, at_once=ctx is not None and ctx.abandoned)
        raise
    finally:
        reaper.forget(proc.pid)
        if lease is not None:
            lease.release(proc.pid)
    elapsed = time.monotonic() - started
    stats = reader.stats
    stdout = out.text()
    if remotes.sensitive_values():
        stdout = remotes.redact(stdout)
    result = RcloneResult(
        args=args, exit_code=code, elapsed=elapsed, stdout=stdout,
        stdout_truncated=out.truncated, files=int(stats.get("transfers") or 0),
        bytes=int(stats.get("bytes") or 0),
        total_bytes=int(stats["totalBytes"]) if stats.get("totalBytes") else None,
        checks=int(stats.get("checks") or 0), deletes=int(stats.get("deletes") or 0),
        renames=int(stats.get("renames") or 0),
        errors=max(int(stats.get("errors") or 0), 1 if code else 0),
        messages=reader.messages[-MAX_MESSAGES:], stats=stats)
    if result.ok:
        logger.info("rclone %s: %d files, %d bytes in %.2fs", args[0] if args else "",
                    result.files, result.bytes, elapsed)
    else:
        logger.warning("%s", result.error)
    return result


def _deadline(ctx: StepContext | None, timeout: float | None) -> tuple[float | None, str]:
    """The earlier of the step's deadline and ``timeout`` from now, and its name."""
    deadline = ctx.deadline if ctx is not None else None
    limit = "the step's timeout"
    if timeout is not None:
        own = time.monotonic() + timeout
        if deadline is None or own < deadline:
            deadline, limit = own, f"{timeout:g}s"
    return deadline, limit


class _Stderr:
    """rclone's JSON log lines: stats become progress, errors become messages, and
    each line but the stats is logged (credentials redacted)."""

    def __init__(self, remotes: Remotes, logger: Any, on_progress: ProgressFn | None):
        self.remotes = remotes
        self.logger = logger
        self.on_progress = on_progress
        self.stats: dict[str, Any] = {}
        self.messages: list[str] = []
        self.secrets = remotes.sensitive_values()

    def read(self, pipe: IO[bytes] | None) -> None:
        if pipe is None:
            return
        try:
            for raw in pipe:
                self.line(raw.decode("utf-8", errors="replace").rstrip("\n"))
        except (OSError, ValueError):
            pass  # closed under us: the command is over
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def line(self, text: str) -> None:
        if not text.strip():
            return
        if self.secrets:
            text = self.remotes.redact(text, self.secrets)
        try:
            entry = json.loads(text)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):  # not a log line (a panic, a usage text)
            self.messages.append(text.strip())
            self.logger.warning("rclone: %s", text.strip())
            return
        stats = entry.get("stats")
        if isinstance(stats, dict):
            self.stats = stats
            self._progress(stats)
            return
        level = str(entry.get("level") or "")
        msg = str(entry.get("msg") or "").strip()
        if entry.get("object"):
            msg = f"{entry['object']}: {msg}" if not msg.startswith(str(entry["object"])) \
                else msg
        if level in ("error", "critical", "fatal", "emergency", "alert"):
            self.messages.append(msg)
            if len(self.messages) > 4 * MAX_MESSAGES:
                del self.messages[:-MAX_MESSAGES]
            self.logger.warning("rclone %s: %s", level, msg)
        else:
            self.logger.info("rclone %s: %s", level, msg)

    def _progress(self, stats: Mapping[str, Any]) -> None:
        if self.on_progress is None:
            return
        done = int(stats.get("bytes") or 0)
        total = int(stats["totalBytes"]) if stats.get("totalBytes") else None
        rate = float(stats.get("speed") or 0.0) or sum(
            float(t.get("speed") or 0.0) for t in stats.get("transferring") or []
            if isinstance(t, Mapping)) or None
        eta = float(stats["eta"]) if isinstance(stats.get("eta"), int | float) else None
        try:
            self.on_progress(done, total, rate, eta)
        except Exception:  # noqa: BLE001 - a reporting failure must not stop the copy
            log.warning("an rclone progress callback failed", exc_info=True)


class _Stdout:
    """rclone's stdout (a listing, sums), its first ``keep`` bytes."""

    def __init__(self, keep: int):
        self.keep = keep
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False

    def read(self, pipe: IO[bytes] | None) -> None:
        if pipe is None:
            return
        try:
            fd = pipe.fileno()
            while chunk := os.read(fd, 64 * 1024):
                room = self.keep - self.size
                if room > 0:
                    self.chunks.append(chunk[:room])
                    self.size += min(room, len(chunk))
                if len(chunk) > room:
                    self.truncated = True
        except (OSError, ValueError):
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", errors="replace")


