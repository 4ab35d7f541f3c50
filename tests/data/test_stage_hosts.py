"""Staging on two worker hosts, through the real parts: Redis, a MongoDB-protocol
server, ``rclone serve s3`` and two ``chordflow worker`` processes, each with its own
stage cache directory, hostname, queue and metrics.

The hosts are Linux network namespaces (and UTS namespaces, for their hostnames) joined
to a core namespace that runs the servers, as in tests/integration/test_hosts.py, where
namespaces can be made (root, iproute2). Elsewhere the same test runs with every process
on this host's loopback, each worker still with its own cache directory and node name:
what makes a host a host for staging is its own cache, which both setups give.

- every step sees the object, each host downloads it once (and counts it in its
  metrics);
- ten concurrent steps of a prefork host needing one 100 MB object: one download;
- under a small bound, an object in use by a running step is not evicted;
- a download killed mid-way leaves no entry, and the step's retry completes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from chordflow.config import Settings
from chordflow.data.binary import find_binary
from chordflow.data.stage_cache import StageCache
from chordflow.data.stage_metrics import StageMetrics
from chordflow.workflow.loader import load_data
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_hosts import CORE, CORE_FOR_ROOT, LINKS, network
from tests.integration.test_hosts import SKIP as NO_NAMESPACES
from tests.servers import ROOT, TEST_SECRETS, free_port, redis_binary, stop_group, worker_env

MB = 1024 * 1024
BIN = Path(sys.executable).parent
DEADLINE = 60.0
#: Host B's bound on its stage cache (two 7 MB objects do not fit), and its rclone's
#: bandwidth (slow enough for a download to be killed half-way).
SMALL_BOUND = 12 * MB
BWLIMIT = "8M"


@dataclass
class Host:
    name: str
    queue: str
    cache_dir: Path
    metrics_port: int
    #: How to run a command on this host.
    prefix: list[str]

    def cache(self, bound: int) -> StageCache:
        """The host's cache as a process of the host sees it (same directory)."""
        return StageCache(self.cache_dir, bound, _unused_metrics())

    def scrape(self) -> dict[str, float]:
        """The worker's /metrics, from a process on its host (its own network)."""
        code = ("import sys, urllib.request; "
                "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())")
        text = subprocess.run(
            [*self.prefix, sys.executable, "-c", code,
             f"http://127.0.0.1:{self.metrics_port}/metrics"],
            capture_output=True, text=True, timeout=30, check=True).stdout
        return {s.name: s.value for family in text_string_to_metric_families(text)
                for s in family.samples if s.name.startswith("chordflow_stage_cache")}


@dataclass
class Cluster:
    settings: Settings
    served: Path
    hosts: dict[str, Host]
    service: Any = field(default=None)

    def run(self, doc: dict[str, Any], wait: bool = True) -> str:
        run_id = self.service.submit(load_data(doc))
        if wait:
            self.wait(run_id)
        return str(run_id)

    def wait(self, run_id: str) -> None:
        assert self.service.wait(run_id, DEADLINE).finished, f"run {run_id} did not finish"

    def steps(self, run_id: str) -> dict[str, Any]:
        return self.service.engine.store.get_steps(run_id)  # type: ignore[no-any-return]


def _unused_metrics() -> StageMetrics:
    from prometheus_client import CollectorRegistry, Counter, Gauge

    registry = CollectorRegistry()
    return StageMetrics(*(Counter(n, "", registry=registry) for n in ("h", "m", "e")),
                        Gauge("b", "", registry=registry))


def _start(stack: ExitStack, argv: list[str], log: Path,
           env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, start_new_session=True)
    stack.callback(stop_group, proc)
    return proc


def _wait_tcp(address: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{address}:{port}: {log.read_text()[-3000:]}"
            time.sleep(0.1)


def _wait_log(log: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE
    while text not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def _objects(served: Path) -> None:
    """What the remote holds, written before its server first lists it."""
    bucket = served / "data"
    bucket.mkdir(parents=True)
    (bucket / "shared.bin").write_bytes(b"shared object " * (MB // 14))
    chunk = os.urandom(MB)
    with (bucket / "big.bin").open("wb") as out:  # 100 MB
        for _ in range(100):
            out.write(chunk)
    for name, size in (("first.bin", 7), ("second.bin", 7), ("slow.bin", 8)):
        (bucket / name).write_bytes(chunk[: MB // 2] * (2 * size))
    (served / "results").mkdir()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("stage-hosts")
    namespaces = NO_NAMESPACES is None
    redis_port, mongo_port, s3_port = (6391, 27091, 9391) if namespaces else (
        free_port(), free_port(), free_port())
    core_exec = ["ip", "netns", "exec", CORE] if namespaces else []
    bind = "0.0.0.0" if namespaces else "127.0.0.1"
    for_root = CORE_FOR_ROOT if namespaces else "127.0.0.1"
    user, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    served = base / "s3"
    _objects(served)
    db = f"stage{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        if namespaces:
            stack.enter_context(network())
        scratch = Path(tempfile.mkdtemp(prefix="chordflow-stage-hosts-"))
        stack.callback(shutil.rmtree, scratch, True)
        redis = _start(stack, [*core_exec, redis_binary(), "--port", str(redis_port),
                               "--bind", bind, "--protected-mode", "no", "--save", "",
                               "--appendonly", "no", "--dir", str(scratch)],
                       base / "redis.log")
        mongo = _start(stack, [*core_exec, str(BIN / "nx-27017"), "--db",
                               str(scratch / "db.sqlite"), "--host", bind, "-p",
                               str(mongo_port), "--threaded", "--pid-file",
                               str(scratch / "nx.pid"), "--log-file",
                               str(scratch / "nx-file.log")], base / "mongo.log")
        s3 = _start(stack, [*core_exec, find_binary(), "serve", "s3", "--addr",
                            f"{bind}:{s3_port}", str(served)], base / "s3.log",
                    {"PATH": "/usr/bin:/bin", "HOME": str(scratch),
                     "RCLONE_CONFIG": os.devnull, "RCLONE_AUTH_KEY": f'"{user},{password}"'})
        for port, proc, log in ((redis_port, redis, "redis"), (mongo_port, mongo, "mongo"),
                                (s3_port, s3, "s3")):
            _wait_tcp(for_root, port, proc, base / f"{log}.log")

        def env_for(core: str, workdir: Path, **extra: str) -> dict[str, str]:
            remote = {"type": "s3", "provider": "Rclone", "endpoint": f"http://{core}:{s3_port}",
                      "access_key_id": "${secrets.S3_USER}",
                      "secret_access_key": "${secrets.S3_PASSWORD}",
                      "use_multipart_uploads": False}
            secrets = {**TEST_SECRETS, "S3_USER": user, "S3_PASSWORD": password}
            return worker_env(f"redis://{core}:{redis_port}/0", f"mongodb://{core}:{mongo_port}",
                              db, workdir, CHORDFLOW_REMOTES=json.dumps({"s3": remote}),
                              CHORDFLOW_SECRETS=json.dumps(secrets), **extra)

        hosts: dict[str, Host] = {}
        for (ns, _address, core_address), host, pool, extra in (
                (LINKS[1], "host-a", ["--concurrency", "10"], {}),
                (LINKS[2], "host-b", ["--pool", "threads", "--concurrency", "4"],
                 {"CHORDFLOW_STAGE_CACHE_BYTES": str(SMALL_BOUND), "RCLONE_BWLIMIT": BWLIMIT,
                  "CHORDFLOW_STEP_ENV_PASSTHROUGH": "RCLONE_BWLIMIT"})):
            prefix = ["ip", "netns", "exec", ns, "unshare", "--uts", "sh", "-c",
                      f'hostname {host} && exec "$0" "$@"'] if namespaces else []
            core = core_address if namespaces else "127.0.0.1"
            info = Host(host, f"q-{host}", base / f"cache-{host}", free_port(), prefix)
            env = env_for(core, base / "work" / host, CHORDFLOW_STAGE_CACHE_DIR=str(info.cache_dir),
                          CHORDFLOW_WORKER_METRICS_DIR=str(base / f"prom-{host}"), **extra)
            log = base / f"{host}.log"
            node = "w@%h" if namespaces else f"w@{host}"
            worker = _start(stack, [*prefix, str(BIN / "chordflow"), "worker", "--queues",
                                    info.queue, "--hostname", node, *pool, "--metrics-port",
                                    str(info.metrics_port)], log, env)
            _wait_log(log, " ready.", worker)
            hosts[host] = info

        from chordflow.service import RunService

        settings = Settings(broker_url=f"redis://{for_root}:{redis_port}/0",
                            mongo_url=f"mongodb://{for_root}:{mongo_port}", mongo_db=db,
                            workdir=base / "work" / "client", visibility_timeout=30)
        found = Cluster(settings, served, hosts, RunService.celery(settings))
        stack.callback(found.service.close)
        yield found


def staged(rec: Any) -> list[dict[str, Any]]:
    return rec.outputs["staging"]["stage_in"]  # type: ignore[no-any-return]


def test_each_host_downloads_an_object_once_and_every_step_sees_it(cluster: Cluster):
    before = {name: host.scrape() for name, host in cluster.hosts.items()}
    steps = [{"name": f"{host[-1]}{i}", "module": "bash", "queue": f"q-{host}",
              "stage_in": [{"source": "s3:data/shared.bin", "path": "inputs/shared.bin"}],
              "params": {"cmd": "hostname > seen && sha256sum < inputs/shared.bin >> seen"},
              "stage_out": [{"path": "seen",
                             "dest": f"s3:results/${{run.id}}/{host[-1]}{i}.txt"}]}
             for host in ("host-a", "host-b") for i in range(3)]
    run_id = cluster.run({"name": "two-hosts-stage", "steps": steps})
    records = cluster.steps(run_id)
    shared = (cluster.served / "data" / "shared.bin").read_bytes()
    digest = hashlib.sha256(shared).hexdigest()
    for host in ("host-a", "host-b"):
        mine = [rec for name, rec in records.items() if name.startswith(host[-1])]
        assert all(str(rec.status) == "succeeded" for rec in mine), [r.error for r in mine]
        assert {rec.worker for rec in mine} == {f"w@{host}"}
        assert sorted(staged(rec)[0]["cache"] for rec in mine) == ["hit", "hit", "miss"]
        for rec in mine:  # every step saw the whole object, and pushed what it saw
            seen = (cluster.served / "results" / run_id / f"{rec.name}.txt").read_text()
            assert seen.split()[-2] == digest
            assert rec.outputs["staging"]["stage_out"][0]["files"] == 1
        after = cluster.hosts[host].scrape()
        delta = {k: after.get(k, 0) - before[host].get(k, 0) for k in after}
        assert delta["chordflow_stage_cache_misses_total"] == 1
        assert delta["chordflow_stage_cache_hits_total"] == 2
        assert after["chordflow_stage_cache_bytes"] >= len(shared)
    if NO_NAMESPACES is None:  # each host is a host of its own, with its own name
        for name, host in (("a0", "host-a"), ("b0", "host-b")):
            seen = (cluster.served / "results" / run_id / f"{name}.txt").read_text()
            assert seen.split()[0] == host


def test_ten_concurrent_steps_on_one_host_download_a_100_mb_object_once(cluster: Cluster):
    host = cluster.hosts["host-a"]
    steps = [{"name": f"read{i}", "module": "bash", "queue": host.queue,
              "stage_in": [{"source": "s3:data/big.bin", "path": "big.bin"}],
              "params": {"cmd": "wc -c < big.bin"}} for i in range(10)]
    run_id = cluster.run({"name": "ten-readers", "steps": steps})
    records = cluster.steps(run_id).values()
    assert all(str(rec.status) == "succeeded" for rec in records), [r.error for r in records]
    assert {rec.outputs["stdout"].strip() for rec in records} == {str(100 * MB)}
    assert sorted(staged(rec)[0]["cache"] for rec in records) == ["hit"] * 9 + ["miss"]
    assert len({rec.worker for rec in records}) == 1
    entries = [e for e in host.cache(10**12).entries() if e.source == "s3:data/big.bin"]
    assert [e.bytes for e in entries] == [100 * MB]


def test_an_object_in_use_is_not_evicted_under_a_small_bound(cluster: Cluster,
                                                             tmp_path: Path):
    host = cluster.hosts["host-b"]
    marks = tmp_path / "marks"
    marks.mkdir()
    holder = cluster.run({"name": "holder", "steps": [{
        "name": "hold", "module": "bash", "queue": host.queue,
        "stage_in": [{"source": "s3:data/first.bin", "path": "first.bin"}],
        "params": {"cmd": f"touch {marks}/ready; while [ ! -e {marks}/go ]; do sleep 0.1; "
                          "done; wc -c < first.bin"}}]}, wait=False)
    deadline = time.monotonic() + DEADLINE
    while not (marks / "ready").exists():
        assert time.monotonic() < deadline, cluster.steps(holder)
        time.sleep(0.1)
    before = host.scrape()
    # Another step of the host needs more room than the bound leaves (7 + 7 > 12 MB).
    other = cluster.run({"name": "other", "steps": [{
        "name": "other", "module": "bash", "queue": host.queue,
        "stage_in": [{"source": "s3:data/second.bin", "path": "second.bin"}],
        "params": {"cmd": "wc -c < second.bin"}}]})
    rec = cluster.steps(other)["other"]
    assert str(rec.status) == "succeeded" and staged(rec)[0]["cache"] == "miss"
    # The least recently used object is the held one, yet the one evicted (once the
    # other step released it) is the other: an object in use is never evicted.
    cache = host.cache(SMALL_BOUND)
    assert [(e.source, e.in_use) for e in cache.entries()] == [("s3:data/first.bin", True)]
    assert host.scrape()["chordflow_stage_cache_evictions_total"] > \
        before["chordflow_stage_cache_evictions_total"]

    (marks / "go").touch()
    cluster.wait(holder)
    rec = cluster.steps(holder)["hold"]
    assert str(rec.status) == "succeeded" and rec.outputs["stdout"].strip() == str(7 * MB)
    assert [(e.source, e.in_use) for e in cache.entries()] == [("s3:data/first.bin", False)]


def test_a_download_killed_midway_leaves_no_entry_and_the_retry_completes(cluster: Cluster):
    host = cluster.hosts["host-b"]
    cache = host.cache(SMALL_BOUND)
    assert "s3:data/slow.bin" not in {e.source for e in cache.entries()}
    run_id = cluster.run({"name": "killed", "steps": [{
        "name": "fetch", "module": "bash", "queue": host.queue, "retries": 1,
        "retry_delay": 2,
        "stage_in": [{"source": "s3:data/slow.bin", "path": "slow.bin"}],
        "params": {"cmd": "wc -c < slow.bin"}}]}, wait=False)

    def downloading() -> psutil.Process | None:
        if not any(p.stat().st_size > 0 for p in (host.cache_dir / "tmp").glob("*")):
            return None
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if "copyto" in cmdline and "s3:data/slow.bin" in cmdline:
                return proc
        return None

    deadline = time.monotonic() + DEADLINE
    while (rclone := downloading()) is None:
        assert time.monotonic() < deadline, cluster.steps(run_id)
        time.sleep(0.02)
    rclone.send_signal(signal.SIGKILL)
    rclone.wait(DEADLINE)
    # Killed half-way: a partial file under a temporary name, no entry.
    assert "s3:data/slow.bin" not in {e.source for e in cache.entries()}

    cluster.wait(run_id)
    rec = cluster.steps(run_id)["fetch"]
    assert str(rec.status) == "succeeded", rec.error
    assert rec.attempts == 2
    assert rec.outputs["stdout"].strip() == str(8 * MB)
    assert staged(rec)[0] == {"source": "s3:data/slow.bin", "path": "slow.bin",
                              "cache": "miss", "bytes": 8 * MB, "link": "hardlink"}
    assert list((host.cache_dir / "tmp").iterdir()) == []  # the partial file is gone
    events = cluster.service.engine.store.events(run_id)
    retry = [e for e in events if e.type == "step_retry"]
    assert len(retry) == 1 and "stage_in[0] s3:data/slow.bin: rclone copyto failed" in \
        retry[0].data["error"], retry
