"""The CLI over MongoDB directly, when the world is not as asked: an unknown run id, an
unreachable store. One line on stderr and exit 2, never a traceback, as over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT, free_port

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")


def chordflow(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHORDFLOW, *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, **env})


@pytest.mark.parametrize("command", ["status", "resume", "rerun", "cancel"])
def test_an_unknown_run_id_is_one_line_and_exit_2(command, mongo_url):
    done = chordflow(command, "no-such-run", CHORDFLOW_MONGO_URL=mongo_url,
                     CHORDFLOW_MONGO_DB="cli-errors")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: no run 'no-such-run'"


@pytest.mark.parametrize("command", ["status", "resume", "rerun", "cancel"])
def test_an_unreachable_store_is_one_line_and_exit_2(command):
    done = chordflow(command, "any-run", CHORDFLOW_MONGO_URL=f"mongodb://127.0.0.1:{free_port()}")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: MongoDB (127.0.0.1:") and "unreachable" in lines[0]
