"""Several hosts: the broker, the MongoDB-protocol server and the API on one, workers on
two others, each serving its own queue, over a private network.

Hosts are Linux network namespaces joined by veth pairs on 10.231.0.0/16 (the test
process itself is a fourth host reaching the core one); each worker also gets its own
UTS namespace, so its hostname, and the node name in the step records, is its host's.
Skipped with the reason where namespaces cannot be created (no root, no iproute2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.servers import ROOT, redis_binary, stop_group, worker_env

BIN = Path(sys.executable).parent
PREFIX = f"cf{uuid.uuid4().hex[:6]}"
CORE, HOST_A, HOST_B = f"{PREFIX}core", f"{PREFIX}a", f"{PREFIX}b"
#: (namespace, its address, the core's address on that link); the test is "root".
LINKS = [("root", "10.231.0.2", "10.231.0.1"), (HOST_A, "10.231.1.2", "10.231.1.1"),
         (HOST_B, "10.231.2.2", "10.231.2.1")]
CORE_FOR_ROOT = "10.231.0.1"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _namespaces_usable() -> str | None:
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "iproute2 or unshare is missing"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"{PREFIX}probe"
    try:
        _ip("netns", "add", probe)
        _ip("netns", "del", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"cannot create a network namespace: {exc}"
    return None


SKIP = _namespaces_usable()


@contextmanager
def network() -> Iterator[None]:
    """The core namespace linked to the test's own and to two worker namespaces."""
    made: list[str] = []
    try:
        for ns in (CORE, HOST_A, HOST_B):
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        for i, (ns, address, core_address) in enumerate(LINKS):
            outer, inner = f"{PREFIX}o{i}", f"{PREFIX}i{i}"
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "netns", CORE)
            _ip("-n", CORE, "addr", "add", f"{core_address}/24", "dev", outer)
            _ip("-n", CORE, "link", "set", outer, "up")
            if ns == "root":
                _ip("addr", "add", f"{address}/24", "dev", inner)
                _ip("link", "set", inner, "up")
            else:
                _ip("link", "set", inner, "netns", ns)
                _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
        yield
    finally:
        for ns in made:  # deleting a namespace deletes its ends of the veth pairs
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", f"{PREFIX}i0"], capture_output=True, timeout=10)


def _start(stack: ExitStack, argv: list[str], log: Path, env: dict[str, str] | None = None,
           ) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, start_new_session=True)
    stack.callback(stop_group, proc)
    return proc


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer: {log.read_text()[-3000:]}")


def _wait_log(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


@pytest.mark.skipif(SKIP is not None, reason=SKIP or "")
def test_workers_on_two_hosts_serve_their_own_queues(tmp_path: Path) -> None:
    redis_port, mongo_port, api_port = 6390, 27090, 8090  # inside the core namespace
    core_exec = ["ip", "netns", "exec", CORE]
    db = f"hosts{uuid.uuid4().hex[:8]}"
    with network(), ExitStack() as stack:
        redis_dir = Path(tempfile.mkdtemp(prefix="chordflow-hosts-"))
        stack.callback(shutil.rmtree, redis_dir, True)
        redis = _start(stack, [*core_exec, redis_binary(), "--port", str(redis_port),
                               "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "",
                               "--appendonly", "no", "--dir", str(redis_dir)],
                       tmp_path / "redis.log")
        mongo = _start(stack, [*core_exec, str(BIN / "nx-27017"), "--db",
                               str(redis_dir / "db.sqlite"), "--host", "0.0.0.0", "-p",
                               str(mongo_port), "--threaded", "--pid-file",
                               str(redis_dir / "nx.pid"), "--log-file",
                               str(redis_dir / "nx-file.log")], tmp_path / "mongo.log")

        def env_for(core: str) -> dict[str, str]:
            return worker_env(f"redis://{core}:{redis_port}/0", f"mongodb://{core}:{mongo_port}",
                              db, tmp_path / "work", CHORDFLOW_API_AUTH="false")

        api_log = tmp_path / "api.log"
        api = _start(stack, [*core_exec, str(BIN / "chordflow"), "api", "--host", "0.0.0.0",
                             "--port", str(api_port)], api_log, env_for("127.0.0.1"))
        assert redis.poll() is None and mongo.poll() is None
        base = f"http://{CORE_FOR_ROOT}:{api_port}"
        _wait_http(f"{base}/api/v1/ready", api, api_log)
        for ns, _address, core_address in LINKS[1:]:
            host = f"host-{ns[-1]}"
            log = tmp_path / f"{host}.log"
            # Its own network and its own hostname: a host of its own.
            worker = _start(stack, [
                "ip", "netns", "exec", ns, "unshare", "--uts", "sh", "-c",
                f'hostname {host} && exec "$0" "$@"', str(BIN / "chordflow"), "worker",
                "--queues", f"q-{host}", "--hostname", "w@%h", "--concurrency", "2"],
                log, env_for(core_address))
            _wait_log(log, " ready.", worker)

        workflow = {"name": "two-hosts", "steps": [
            {"name": "first", "module": "bash", "queue": "q-host-a",
             "params": {"cmd": "hostname"}},
            {"name": "second", "module": "bash", "queue": "q-host-b",
             # The output is inserted quoted, its newline too: printf keeps one.
             "params": {"cmd": "hostname; printf 'from %s' ${steps.first.outputs.stdout}"}},
            {"name": "third", "module": "echo", "queue": "q-host-a",
             "params": {"b": "${steps.second.outputs.stdout}"}},
        ]}
        with httpx.Client(base_url=base, timeout=30) as client:
            run_id = client.post("/api/v1/runs", json={"workflow": workflow}).json()["run_id"]
            deadline = time.monotonic() + 60
            while (run := client.get(f"/api/v1/runs/{run_id}").json())["status"] not in (
                    "succeeded", "failed", "cancelled"):
                assert time.monotonic() < deadline, run
                time.sleep(0.2)
    assert run["status"] == "succeeded", run
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["first"]["worker"] == "w@host-a"
    assert steps["second"]["worker"] == "w@host-b"
    assert steps["third"]["worker"] == "w@host-a"
    assert steps["first"]["outputs"]["stdout"] == "host-a\n"
    assert steps["second"]["outputs"]["stdout"] == "host-b\nfrom host-a\n"
