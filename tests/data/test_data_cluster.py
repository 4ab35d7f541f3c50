"""The data plane on a real cluster: Redis, the MongoDB-protocol server, a prefork
Celery worker and a ``chordflow api`` (uvicorn), all subprocesses, with rclone's s3
and webdav servers as remotes and one remote that refuses connections.

``POST /transfers`` and ``chordflow transfer`` run on the worker, their progress reaches
the API's event stream, a cancel and a timeout kill rclone on the worker, a refusing
remote fails after its retries with rclone's reason, ``GET /remotes`` and ``check``
follow the roles, and no credential is in any record, event, log line or answer.
"""

from __future__ import annotations

import json
import os
import secrets as random_secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pymongo
import pytest
from chordflow.client import Client

from tests.api.conftest import CHORDFLOW, start_api
from tests.data.rclone_servers import RcloneServer, remotes_env
from tests.servers import (
    ROOT,
    TEST_SECRETS,
    celery_worker,
    free_port,
    redis_server,
    stop_group,
    worker_env,
)

#: Seconds a test waits for a run (or a process) at most.
PATIENCE = 60.0


@dataclass
class Cluster:
    url: str
    keys: dict[str, str]
    env: dict[str, str]
    mongo: str
    db: str
    logs: list[Path]
    secrets: list[str]

    def client(self, role: str) -> Client:
        return Client(self.url, self.keys[role])


@pytest.fixture(scope="module")
def cluster(mongo_url: str, s3_remote: RcloneServer, webdav_remote: RcloneServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("data-cluster")
    dead_secret = f"dead-{random_secrets.token_hex(8)}"
    data = remotes_env({"s3": s3_remote, "dav": webdav_remote},
                       extra_secrets={**TEST_SECRETS, "DEAD_SECRET": dead_secret})
    remotes = json.loads(data["CHORDFLOW_REMOTES"])
    remotes["dead"] = {"type": "s3", "provider": "Rclone",
                       "endpoint": f"http://127.0.0.1:{free_port()}",
                       "access_key_id": "AKIADEADKEY", "secret_access_key":
                       "${secrets.DEAD_SECRET}"}
    db = f"d{uuid.uuid4().hex[:10]}"
    with redis_server() as (broker, _, _):
        env = worker_env(broker, mongo_url, db, base / "work",
                         CHORDFLOW_REMOTES=json.dumps(remotes),
                         CHORDFLOW_SECRETS=data["CHORDFLOW_SECRETS"],
                         CHORDFLOW_FILE_ROOTS=str(base))
        env.pop("CHORDFLOW_API_URL", None)
        keys = make_keys(mongo_url, db)
        worker_log, api_log = base / "worker.log", base / "api.log"
        with celery_worker(env, "data1", "--concurrency", "2", log=worker_log):
            proc, url = start_api(env, api_log)
            try:
                secret_values = [s3_remote.password, s3_remote.user, webdav_remote.password,
                                 webdav_remote.user, dead_secret]
                yield Cluster(url, keys, env, mongo_url, db, [worker_log, api_log],
                              secret_values)
            finally:
                stop_group(proc)


def make_keys(mongo: str, db: str) -> dict[str, str]:
    """A viewer and an operator key, made as ``chordflow keys create`` makes them."""
    from chordflow.api.keys import ApiKeys
    from chordflow.api.principal import Role

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo)
    try:
        keys = ApiKeys(client[db])
        return {role: keys.create(f"data-{role}", Role(role))[1]
                for role in ("viewer", "operator")}
    finally:
        client.close()


def follow(api: Client, run_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The run's events as the API streams them, and the finished run."""
    events, run = [], {}
    for kind, data in api.follow(run_id):
        if kind == "end":
            run = data
        elif isinstance(data, dict):
            events.append(data)
    return events, run


def rclone_processes(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline", "status"])
            if any(marker in part for part in p.info["cmdline"] or [])
            and p.info["status"] != "zombie" and "rclone" in (p.info["cmdline"] or [""])[0]]


def wait_until_gone(marker: str) -> list[psutil.Process]:
    deadline = time.monotonic() + PATIENCE
    while (left := rclone_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_a_transfer_runs_on_the_worker_with_progress_on_the_event_stream(
        cluster: Cluster, s3_remote: RcloneServer, webdav_remote: RcloneServer) -> None:
    bucket = s3_remote.root / "cluster-progress"
    bucket.mkdir()
    body = os.urandom(1024 * 1024)
    (bucket / "big.bin").write_bytes(body)
    with cluster.client("operator") as api:
        started = api.transfer({"source": "s3:cluster-progress", "dest": "dav:from-s3",
                                "flags": {"bwlimit": "1M"}})
        assert started.run["workflow"] == "transfer"
        events, run = follow(api, started.run_id)
    assert run["status"] == "succeeded", run
    [step] = run["steps"]
    assert step["name"] == "transfer" and step["worker"].startswith("data1@")
    assert step["outputs"]["files"] == 1 and step["outputs"]["bytes"] == len(body)
    progress = [e["data"] for e in events if e.get("type") == "step_progress"]
    assert progress, [e.get("type") for e in events]
    assert progress[-1]["bytes"] == progress[-1]["total"] == len(body)
    assert (webdav_remote.root / "from-s3" / "big.bin").read_bytes() == body


def test_remotes_follow_the_roles_and_show_no_credential(cluster: Cluster,
                                                         s3_remote: RcloneServer) -> None:
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        viewer = {"Authorization": f"Bearer {cluster.keys['viewer']}"}
        operator = {"Authorization": f"Bearer {cluster.keys['operator']}"}
        listing = http.get("/api/v1/remotes", headers=viewer)
        assert listing.status_code == 200
        assert [(r["name"], r["type"], r["source"]) for r in listing.json()["remotes"]] == [
            ("dav", "webdav", "settings"), ("dead", "s3", "settings"),
            ("s3", "s3", "settings")]
        assert http.get("/api/v1/remotes/s3", headers=viewer).json()["provider"] == "Rclone"
        assert http.get("/api/v1/remotes/nope", headers=viewer).status_code == 404
        assert http.post("/api/v1/remotes/s3/check", headers=viewer).status_code == 403
        ok = http.post("/api/v1/remotes/s3/check", headers=operator)
        assert ok.status_code == 200 and ok.json()["reachable"] is True
        dead = http.post("/api/v1/remotes/dead/check", headers=operator,
                         json={"path": "bucket"})
        assert dead.status_code == 200 and dead.json()["reachable"] is False
        assert "connection refused" in dead.json()["error"]
        assert http.post("/api/v1/remotes/nope/check", headers=operator).status_code == 404
        answers = [listing.text, ok.text, dead.text]
    for secret in cluster.secrets:
        assert not any(secret in text for text in answers)


def test_a_cancel_kills_rclone_on_the_worker(cluster: Cluster,
                                             s3_remote: RcloneServer) -> None:
    bucket = s3_remote.root / "cluster-cancel"
    bucket.mkdir()
    (bucket / "slow.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    with cluster.client("operator") as api:
        started = api.transfer({"source": "s3:cluster-cancel", "dest": "dav:cancelled",
                                "flags": {"bwlimit": "256K"}})
        for kind, data in api.events(started.run_id):
            if isinstance(data, dict) and data.get("type") == "step_progress":
                assert rclone_processes("s3:cluster-cancel"), "no rclone on the worker"
                api.cancel(started.run_id)
            if kind == "end":
                break
        run = api.get_run(started.run_id)
    assert run["status"] == "cancelled", run
    assert wait_until_gone("s3:cluster-cancel") == []


def test_a_timeout_kills_rclone_on_the_worker(cluster: Cluster,
                                              s3_remote: RcloneServer) -> None:
    bucket = s3_remote.root / "cluster-timeout"
    bucket.mkdir()
    (bucket / "slow.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    with cluster.client("operator") as api:
        started = api.transfer({"source": "s3:cluster-timeout", "dest": "dav:timed-out",
                                "flags": {"bwlimit": "256K"}, "timeout": 1.5,
                                "retries": 0})
        _, run = follow(api, started.run_id)
    assert run["status"] == "failed"
    assert "timed out" in run["steps"][0]["error"]
    assert wait_until_gone("s3:cluster-timeout") == []


def test_a_refusing_remote_fails_with_rclones_reason_after_retries(cluster: Cluster) -> None:
    with cluster.client("operator") as api:
        started = api.transfer({"method": "lsjson", "path": "dead:bucket", "retries": 1,
                                "flags": {"retries": 1, "low_level_retries": 1}})
        _, run = follow(api, started.run_id)
    [step] = run["steps"]
    assert run["status"] == "failed" and step["attempts"] == 2
    assert step["error"].startswith("step 'transfer': rclone lsjson failed, exit code")
    assert "connection refused" in step["error"]


def test_a_bad_transfer_is_a_422_naming_the_field(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=30,
                      headers={"Authorization": f"Bearer {cluster.keys['operator']}"}) as http:
        bad = http.post("/api/v1/transfers", json={"source": "s3:x", "dest": "dav:y",
                                                   "flags": {"config": "/etc/evil"}})
        assert bad.status_code == 422, bad.text
        assert {"step": "transfer", "field": "params.flags.config"}.items() <= \
            bad.json()["errors"][0].items()
        viewer = http.post("/api/v1/transfers", json={"source": "s3:x", "dest": "dav:y"},
                           headers={"Authorization": f"Bearer {cluster.keys['viewer']}"})
        assert viewer.status_code == 403


def test_the_cli_lists_checks_and_transfers_through_the_api(
        cluster: Cluster, s3_remote: RcloneServer) -> None:
    (s3_remote.root / "cluster-cli").mkdir()
    (s3_remote.root / "cluster-cli" / "x.txt").write_text("from the cli")
    env = {**{k: v for k, v in cluster.env.items() if k != "CHORDFLOW_REMOTES"},
           "CHORDFLOW_API_URL": cluster.url, "CHORDFLOW_API_KEY": cluster.keys["operator"]}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CHORDFLOW, *args], env=env, capture_output=True, text=True,
                              timeout=PATIENCE, cwd=ROOT)

    listed = cli("remotes", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split("\n")[1].split() == ["dav", "webdav", "settings"]
    dead = cli("remotes", "check", "dead")
    assert dead.returncode == 1 and "unreachable" in dead.stdout
    moved = cli("transfer", "s3:cluster-cli", "dav:cli-copy", "--json")
    assert moved.returncode == 0, moved.stderr
    run = json.loads(moved.stdout)
    assert run["status"] == "succeeded" and run["steps"][0]["outputs"]["files"] == 1
    for secret in cluster.secrets:
        assert secret not in listed.stdout + dead.stdout + moved.stdout + moved.stderr


def test_no_credential_in_any_record_event_or_log_line(cluster: Cluster) -> None:
    """After every test above: the whole store, the worker's and the API's logs."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(cluster.mongo)
    try:
        db = client[cluster.db]
        dumped = [json.dumps(list(db[name].find({}, {"_id": 0})), default=str)
                  for name in db.list_collection_names()]
    finally:
        client.close()
    assert any("step_progress" in text for text in dumped)
    logs = [path.read_text(errors="replace") for path in cluster.logs]
    assert any("rclone" in text for text in logs)
    for secret in cluster.secrets:
        assert not any(secret in text for text in dumped), "a credential is recorded"
        assert not any(secret in text for text in logs), "a credential is logged"
