"""The reaper (modules/reaper.py): a step's process group dies with the process that
started it, or at its deadline unless its lease keeper moves the deadline on."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from chordflow.modules.reaper import reaper

ROOT = Path(__file__).resolve().parent.parent


def group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def wait_until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def sleeper() -> subprocess.Popen[bytes]:
    """``sh`` with a child ``sleep``, in a process group of its own, as a step's is."""
    return subprocess.Popen(["sh", "-c", "sleep 30; true"], start_new_session=True)


def test_a_group_past_its_deadline_is_killed_and_one_moved_on_lives():
    doomed, kept = sleeper(), sleeper()
    try:
        reaper.register(doomed.pid, time.monotonic() + 0.3)
        reaper.register(kept.pid, time.monotonic() + 0.3)
        reaper.extend(kept.pid, time.monotonic() + 30)
        assert wait_until(lambda: not group_alive(doomed.pid), timeout=5)
        assert group_alive(kept.pid)
        reaper.forget(kept.pid)
    finally:
        for proc in (doomed, kept):
            proc.kill()
            proc.wait()


def test_the_groups_of_a_process_that_dies_die_with_it(tmp_path):
    pidfile = tmp_path / "pgid"
    code = (
        "import os, subprocess, sys\n"
        "from chordflow.modules.reaper import reaper\n"
        "p = subprocess.Popen(['sh', '-c', 'sleep 30; true'], start_new_session=True)\n"
        "reaper.register(p.pid)\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "os.kill(os.getpid(), 9)\n"  # as SIGKILL would take a worker: no cleanup at all
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=30)
    pgid = int(pidfile.read_text())
    assert wait_until(lambda: not group_alive(pgid), timeout=5)
