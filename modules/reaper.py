"""A step's processes die with the process that started them.

Each step's subprocess runs in a process group of its own, so that a timeout or a
cancel stops everything it started (modules/process.py). But if the worker process
itself dies (SIGKILL, the OOM killer), nobody is left to stop them: an orphaned
``bash`` step would go on and write its side effect while another worker runs the
step again.

So every process that starts step subprocesses has a reaper: a small companion
process, started on first use, that the worker tells (over a pipe) which process
groups it has running. When the worker dies, however it dies, the kernel closes the
pipe; the reaper reads end-of-file and kills every group still registered, then exits.
A group can also have a deadline, which its attempt's lease keeper moves forward at
each renewal (app/engine/lease.py): a worker process that is paused, and so cannot
renew, has its steps' processes killed by the reaper, which is not paused, before
anyone else may take the steps over.
That works with every pool (prefork, threads, solo, the embedded executor), on any
POSIX system, and for every process of the step's group (``sh -c "sleep 9; ..."``
included), not only the first. A process that leaves its group on purpose (``setsid``)
is on its own, as under any supervisor.

A forked child (a prefork pool process) gets a reaper of its own on first use; the one
it inherited belongs to its parent.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

log = logging.getLogger("chordflow.reaper")

#: The reaper itself. Lines in: ``+PGID DEADLINE`` (a group to watch; DEADLINE a
#: ``time.monotonic()`` value, or ``-`` for none), ``~PGID DEADLINE`` (a later deadline),
#: ``-PGID`` (ended). A group whose deadline passes is killed; at end-of-file, all are.
REAPER = r"""
import os, select, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
groups = {}
buffer = b""


def kill(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


while True:
    due = [d for d in groups.values() if d is not None]
    wait = max(0.0, min(due) - time.monotonic()) if due else None
    ready, _, _ = select.select([0], [], [], wait)
    if ready:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            parts = line.split()
            if len(parts) < 1 or not parts[0][1:].isdigit():
                continue
            sign, pgid = parts[0][:1], int(parts[0][1:])
            deadline = float(parts[1]) if len(parts) > 1 and parts[1] != b"-" else None
            if sign == b"-":
                groups.pop(pgid, None)
            elif sign == b"+" or pgid in groups:
                groups[pgid] = deadline
    now = time.monotonic()
    for pgid, deadline in list(groups.items()):
        if deadline is not None and deadline <= now:
            kill(pgid)
            del groups[pgid]
for pgid in groups:
    kill(pgid)
"""


class Reaper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None  # the write end of the reaper's input
        self._proc: subprocess.Popen[bytes] | None = None

    def register(self, pgid: int, deadline: float | None = None) -> None:
        """The group ``pgid`` runs for this process: kill it if this process dies, or
        at ``deadline`` (``time.monotonic()``) unless ``extend`` moves it first."""
        self._send(b"+%d %s\n" % (pgid, _deadline(deadline)))

    def extend(self, pgid: int, deadline: float | None) -> None:
        """A later deadline for a registered group (its attempt's lease was renewed)."""
        self._send(b"~%d %s\n" % (pgid, _deadline(deadline)))

    def forget(self, pgid: int) -> None:
        """The group ended (its leader was reaped): nothing to kill any more."""
        self._send(b"-%d\n" % pgid)

    def _send(self, line: bytes) -> None:
        with self._lock:
            for _ in range(2):
                try:
                    os.write(self._ensure(), line)
                    return
                except OSError:  # it died: start another (the groups it knew are lost)
                    log.warning("the reaper of process %d is gone; starting another",
                                os.getpid())
                    self._close()
            log.error("no reaper: a step's processes may outlive this worker")

    def _ensure(self) -> int:
        if self._fd is not None and self._proc is not None and self._proc.poll() is None:
            return self._fd
        self._close()
        read, write = os.pipe()  # not inherited by other children (PEP 446)
        try:
            # Its own session: a signal to this process's group (Ctrl-C, a supervisor's
            # SIGTERM, a SIGSTOP) does not reach it. It ignores them anyway; only the
            # end of its input ends it.
            self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and code
                [sys.executable, "-I", "-S", "-c", REAPER], stdin=read,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
        except BaseException:
            os.close(write)
            raise
        finally:
            os.close(read)
        self._fd = write
        return write

    def _close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd, self._proc = None, None

    def _after_fork(self) -> None:
        """In a forked child: the inherited reaper is the parent's; let it go (without
        closing the parent's, which lives on in the parent) and start afresh."""
        self._lock = threading.Lock()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd, self._proc = None, None


def _deadline(deadline: float | None) -> bytes:
    return b"-" if deadline is None else repr(deadline).encode()


reaper = Reaper()
os.register_at_fork(after_in_child=reaper._after_fork)
