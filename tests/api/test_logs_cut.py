"""``chordflow logs`` (over HTTP, the API's /logs) of a step that printed more than
``CHORDFLOW_MAX_LOG_BYTES``: the head, the tail, and a line saying how much was cut
between them, never nothing (issue 12). Real CLI, API, workers and MongoDB."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

from tests.api.conftest import CHORDFLOW, Api
from tests.servers import ROOT


def chordflow(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**api.env, "CHORDFLOW_API_URL": api.url, "CHORDFLOW_API_KEY": api.keys["admin"]}
    return subprocess.run([CHORDFLOW, *args], capture_output=True, text=True, timeout=90,
                          cwd=ROOT, env=env)


def test_logs_show_the_head_the_tail_and_how_much_was_cut(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "loud.json"
    path.write_text(json.dumps({"name": f"loud-{uuid.uuid4().hex[:8]}", "steps": [
        {"name": "loud", "module": "bash", "params": {
            "cmd": "echo the-start; head -c 3000000 /dev/zero | tr '\\0' x; echo; "
                   "echo the-end"}}]}))
    done = chordflow(api, "submit", str(path), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]

    logs = chordflow(api, "logs", run_id, "--step", "loud")
    assert logs.returncode == 0, logs.stderr
    out = logs.stdout
    # 3,000,035 bytes (the lines, and bash's "INFO exit code 0") less the 1 MiB kept.
    notice = ("[... 1.9 MiB of output cut: CHORDFLOW_MAX_LOG_BYTES is 1 MiB; "
              "the head and the tail are kept ...]")
    assert "--- loud stdout (attempt 1," in out
    assert out.index("the-start\nxxx") < out.index(notice) < out.index("xxx\nthe-end")
    assert out.count(notice) == 1
    assert len(out) < 1024 * 1024 + 4096
