"""Advisory file locks shared by every process of a host (``flock``), that wait politely.

The stage cache (app/data/stage_cache.py) coordinates separate worker processes, on one
host, through lock files: a shared lock is a lease on a cached object (it must not be
evicted while held), an exclusive one is the right to download it or to evict it. The
kernel drops a process's locks when it dies, however it dies (SIGKILL included), so a
killed step never leaves an object leased forever.

Two details make lock files safe to delete (the cache removes an evicted object's lock
files, or they would pile up one per object ever seen):

- Whoever deletes a lock file holds it exclusively while doing so.
- Whoever acquires a lock checks afterwards that the file it locked is still the one at
  that path (same inode). If the file was deleted (or replaced) while it waited, the lock
  is worthless: it opens the path again and retries.

Waiting is a loop of non-blocking tries with short sleeps rather than one blocking call,
so that a step waiting for another process's download still notices its own cancel or
timeout (``check`` raises) within a fraction of a second.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

#: Seconds between two tries of a lock that is held by another process.
POLL_SECONDS = 0.05

SHARED = fcntl.LOCK_SH
EXCLUSIVE = fcntl.LOCK_EX


def _no_check() -> None:
    """Waiting forever is fine: nothing asks the wait to stop."""


class FileLock:
    """One ``flock`` on one path, held by this object until :meth:`release`.

    Not re-entrant and not shared between threads: each user opens its own (a second
    ``flock`` through another open file of the same process conflicts like another
    process's would, which is what two steps in two threads of one worker need).
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self.mode: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, mode: int, check: Callable[[], None] = _no_check) -> None:
        """Wait for the lock (``SHARED`` or ``EXCLUSIVE``), calling ``check`` between
        tries: whatever it raises ends the wait, with nothing held."""
        while not self.try_acquire(mode):
            check()
            time.sleep(POLL_SECONDS)

    def try_acquire(self, mode: int) -> bool:
        """Take the lock if nobody conflicting holds it; never waits."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is locked by this object already")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if not _same_file(fd, self.path):  # deleted while we took it: take the new one
            os.close(fd)
            return self.try_acquire(mode)
        self._fd, self.mode = fd, mode
        return True

    def release(self) -> None:
        """Let go (closing the file releases the ``flock``); harmless if not held."""
        if self._fd is not None:
            fd, self._fd, self.mode = self._fd, None, None
            os.close(fd)

    def unlink_and_release(self) -> None:
        """Delete the lock file, then let go: only while holding it exclusively, so that
        nobody holds a lock on the file being deleted (see the module's docstring)."""
        if self.mode != EXCLUSIVE:
            raise RuntimeError(f"{self.path} must be held exclusively to be deleted")
        self.path.unlink(missing_ok=True)
        self.release()

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    """Is the open file ``fd`` still the file at ``path``?"""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (at_path.st_dev, at_path.st_ino)
