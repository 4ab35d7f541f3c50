"""``chordflow dev`` through real parts: the command starts its own Redis, nx-27017,
worker, API and Flower; a workflow goes through ``chordflow submit --wait`` with the
printed export line; Ctrl-C stops every process of the cluster; a restart on the same
data directory keeps the runs and the key."""

from __future__ import annotations

import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.servers import free_port

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")
#: Seconds the cluster has to start (a cold worker on two busy cores) and to stop.
START_DEADLINE = 90.0
STOP_DEADLINE = 20.0

pytestmark = pytest.mark.slow

WORKFLOW = """\
name: devcheck
steps:
  - name: hello
    module: echo
    params: {greeting: hi}
  - name: shout
    module: bash
    params:
      cmd: echo ${steps.hello.outputs.greeting} there
"""


@dataclass
class Dev:
    """A running ``chordflow dev`` and what it printed."""

    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    data_dir: Path
    flower_port: int
    exports: dict[str, str] = field(default_factory=dict)
    #: Every process of the cluster seen so far (teardown kills those still running).
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def members(self) -> list[psutil.Process]:
        """The cluster's processes now: the command's descendants (servers, pools)."""
        found = psutil.Process(self.proc.pid).children(recursive=True)
        self.seen.update((p.pid, p) for p in found)
        return found

    def client_env(self) -> dict[str, str]:
        return {**_clean_env(), **self.exports}

    def output(self) -> str:
        return (f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}")

    def stop(self, signum: int) -> int:
        """Send ``signum``; the exit code, after checking it came within STOP_DEADLINE
        and left no process of the cluster behind."""
        members = self.members()
        assert {"redis-server", "nx_27017", "worker", "api", "flower"} <= _kinds(members), \
            [p.cmdline() for p in members]
        started = time.monotonic()
        self.proc.send_signal(signum)
        code = self.proc.wait(STOP_DEADLINE)
        assert time.monotonic() - started < STOP_DEADLINE
        _, alive = psutil.wait_procs(members, timeout=5)
        assert not alive, [p.cmdline() for p in alive]
        assert "stopped" in self.stderr.read_text(), self.output()
        return code


def _kinds(procs: list[psutil.Process]) -> set[str]:
    """Which servers ``procs`` are, from their command lines."""
    kinds = set()
    for proc in procs:
        line = " ".join(proc.cmdline())
        for kind, mark in (("redis-server", "redis-server"), ("nx_27017", "nx_27017"),
                           ("worker", "chordflow worker"), ("api", "chordflow api"),
                           ("flower", "chordflow flower")):
            if mark in line:
                kinds.add(kind)
    return kinds


def _clean_env() -> dict[str, str]:
    """This environment without chordflow's and Flower's settings: the cluster's own
    servers, not whatever the developer's shell points at."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CHORDFLOW_", "FLOWER_"))}


@contextmanager
def dev_cluster(data_dir: Path, logs: Path) -> Iterator[Dev]:
    """``chordflow dev`` on free ports, in its own process group; yields once it has
    printed its export line. Teardown kills whatever of it is still running."""
    logs.mkdir(parents=True, exist_ok=True)
    flower_port = free_port()
    stdout, stderr = logs / "dev.out", logs / "dev.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [CHORDFLOW, "dev", "--data-dir", str(data_dir), "--api-port", str(free_port()),
             "--flower-port", str(flower_port), "--redis-port", str(free_port()),
             "--mongo-port", str(free_port()), "--concurrency", "2"],
            stdout=out, stderr=err, env=_clean_env(), cwd=logs, start_new_session=True)
    dev = Dev(proc, stdout, stderr, data_dir, flower_port)
    try:
        deadline = time.monotonic() + START_DEADLINE
        while not dev.exports:
            assert proc.poll() is None, f"chordflow dev exited {proc.returncode}\n{dev.output()}"
            assert time.monotonic() < deadline, f"no export line\n{dev.output()}"
            for line in stdout.read_text().splitlines():
                if line.startswith("export CHORDFLOW_API_URL="):
                    dev.exports = dict(w.split("=", 1) for w in shlex.split(line)[1:])
            time.sleep(0.2)
        dev.members()
        yield dev
    finally:
        if proc.poll() is None:
            dev.members()
            proc.kill()
            proc.wait(10)
        for member in dev.seen.values():
            try:
                os.killpg(member.pid, signal.SIGKILL)  # the servers lead their groups
            except (ProcessLookupError, PermissionError):
                pass
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass


def submit(dev: Dev, workflow: Path) -> dict[str, object]:
    done = subprocess.run([CHORDFLOW, "submit", str(workflow), "--wait", "--json"],
                          env=dev.client_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{dev.output()}"
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_dev_runs_a_cluster_that_takes_a_submit_and_stops_on_ctrl_c(tmp_path):
    workflow = tmp_path / "devcheck.yaml"
    workflow.write_text(WORKFLOW)
    with dev_cluster(tmp_path / "data", tmp_path / "logs") as dev:
        assert dev.exports["CHORDFLOW_API_URL"].startswith("http://127.0.0.1:")
        report = submit(dev, workflow)
        assert report["status"] == "succeeded", report
        steps = report["steps"]
        assert isinstance(steps, list)
        shout = next(s for s in steps if s["name"] == "shout")
        assert shout["outputs"]["stdout"].strip() == "hi there"

        # The key is kept for this user alone; Flower wants the login kept with it.
        creds_file = dev.data_dir / "credentials.json"
        assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
        creds = json.loads(creds_file.read_text())
        assert creds["api_key"] == dev.exports["CHORDFLOW_API_KEY"]
        assert creds["flower_login"] in dev.stdout.read_text()
        flower = f"http://127.0.0.1:{dev.flower_port}/api/workers"
        assert httpx.get(flower, timeout=10).status_code == 401
        user, password = creds["flower_login"].split(":", 1)
        assert httpx.get(flower, auth=(user, password), timeout=10).status_code == 200

        assert dev.stop(signal.SIGINT) == 130
    for name in ("redis", "mongo", "worker", "api", "flower"):
        assert (tmp_path / "data" / "logs" / f"{name}.log").exists()


def test_dev_restarted_on_its_data_dir_keeps_the_runs_and_the_key(tmp_path):
    workflow = tmp_path / "devcheck.yaml"
    workflow.write_text(WORKFLOW)
    data = tmp_path / "data"
    with dev_cluster(data, tmp_path / "first") as first:
        run_id = submit(first, workflow)["run_id"]
        assert first.stop(signal.SIGTERM) == 0
    with dev_cluster(data, tmp_path / "second") as second:
        assert second.exports["CHORDFLOW_API_KEY"] == first.exports["CHORDFLOW_API_KEY"]
        listed = httpx.get(f"{second.exports['CHORDFLOW_API_URL']}/api/v1/runs",
                           headers={"Authorization":
                                    f"Bearer {second.exports['CHORDFLOW_API_KEY']}"},
                           timeout=10)
        assert listed.status_code == 200, listed.text
        runs = {r["run_id"]: r["status"] for r in listed.json()["runs"]}
        assert runs.get(run_id) == "succeeded", runs
        assert second.stop(signal.SIGINT) == 130


def test_dev_stops_everything_and_names_the_server_that_died(tmp_path):
    with dev_cluster(tmp_path / "data", tmp_path / "logs") as dev:
        members = dev.members()
        api = next(p for p in members if "chordflow api" in " ".join(p.cmdline()))
        os.killpg(api.pid, signal.SIGKILL)
        assert dev.proc.wait(STOP_DEADLINE) == 1
        _, alive = psutil.wait_procs(members, timeout=5)
        assert not alive, [p.cmdline() for p in alive]
        said = dev.stderr.read_text()
        assert "api stopped unexpectedly (exit code -9)" in said, said
        assert str(tmp_path / "data" / "logs" / "api.log") in said
        assert "Uvicorn running" in said  # the api's last log lines
