"""The just-in-time tests' stack: Redis, one ``chordflow worker`` (threads, four at
once), a ``chordflow api`` subprocess, on the session's MongoDB-protocol server, with
``rclone serve s3`` as the tiers' primary and ``rclone serve webdav`` as their
secondary. Every process is stopped when the module ends, failed tests or not."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.api.conftest import CHORDFLOW, make_key, start_api
from tests.data.rclone_servers import RcloneServer, remotes_env
from tests.servers import celery_worker, redis_server, stop_group, worker_env

#: What the fixture events call the primary and the secondary (tests/fixtures/jit).
PRIMARY_URL = "https://scruffy.lab.example.net:9000"
SECONDARY_URL = "https://data.archive.example.org:443"
ARGO_PRIMARY = "naa-vre-user-data/analyst@example.org"
ARGO_SECONDARY = "naa-vre-public/datasets"
FINISHED = ("succeeded", "failed", "cancelled")


@dataclass
class JitStack:
    url: str
    keys: dict[str, str]
    env: dict[str, str]
    s3: RcloneServer
    dav: RcloneServer
    tiers: dict[str, dict[str, Any]]
    logs: list[Path]
    #: Every API answer the tests read (credentials must be absent from all).
    answers: list[str]

    def client(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.keys[role]}"},
                            event_hooks={"response": [self._keep]})

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        self.answers.append(response.text)

    def primary_root(self, tier: str) -> Path:
        bucket_and_folder = self.tiers[tier]["primary"].partition(":")[2]
        return self.s3.root / bucket_and_folder

    def secondary_root(self, tier: str) -> Path:
        return self.dav.root / self.tiers[tier]["secondary"].partition(":")[2]

    def put(self, tier: str, files: dict[str, int]) -> None:
        """Files of these sizes on the tier's secondary."""
        for path, size in files.items():
            target = self.secondary_root(tier) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.encode()[:1] * size)

    def on_primary(self, tier: str) -> dict[str, int]:
        root = self.primary_root(tier)
        return {str(p.relative_to(root)): p.stat().st_size
                for p in root.rglob("*") if p.is_file()} if root.exists() else {}

    def wait(self, run_id: str, timeout: float = 180) -> dict[str, Any]:
        """The run once it has finished."""
        deadline = time.monotonic() + timeout
        with self.client() as api:
            while True:
                run = api.get(f"/api/v1/runs/{run_id}").json()
                if run["status"] in FINISHED:
                    return dict(run)
                assert time.monotonic() < deadline, f"run {run_id} did not finish: {run}"
                time.sleep(0.1)


def tier_settings(tag: str) -> dict[str, dict[str, Any]]:
    """Three tiers: the Argo events' (matched by the fixtures' endpoints and folders),
    one for concurrent events, one that runs read through."""
    return {
        f"argo-{tag}": {"primary": f"scratch:{ARGO_PRIMARY}",
                        "secondary": f"archive:{ARGO_SECONDARY}", "capacity": 5000,
                        "primary_endpoint": PRIMARY_URL, "secondary_endpoint": SECONDARY_URL,
                        "retry_delay": 0.2},
        f"race-{tag}": {"primary": f"scratch:race/{tag}", "secondary": f"archive:race-{tag}",
                        "capacity": 4000, "retry_delay": 0.2},
        f"read-{tag}": {"primary": f"scratch:read/{tag}", "secondary": f"archive:read-{tag}",
                        "capacity": 2000, "retries": 0},
    }


@contextmanager
def jit_stack(mongo_url: str, s3: RcloneServer, dav: RcloneServer,
              base: Path) -> Iterator[JitStack]:
    tag = uuid.uuid4().hex[:8]
    tiers = tier_settings(tag)
    for bucket in ("naa-vre-user-data", "race", "read"):
        (s3.root / bucket).mkdir(exist_ok=True)
    with ExitStack() as stack:
        broker, _, _ = stack.enter_context(redis_server())
        env = worker_env(broker, mongo_url, f"j{tag}", base / "work",
                         **remotes_env({"scratch": s3, "archive": dav}),
                         CHORDFLOW_JIT_TIERS=json.dumps(tiers),
                         CHORDFLOW_STAGE_CACHE_DIR=str(base / "stage-cache"),
                         CHORDFLOW_AUTH_FAILURES_PER_MINUTE="10000")
        worker_log, api_log = base / "worker.log", base / "api.log"
        stack.enter_context(celery_worker(env, "jit", "--pool", "threads",
                                          "--concurrency", "4", log=worker_log))
        keys = {role: make_key(env, f"jit-{role}-{tag}", role)
                for role in ("viewer", "operator", "admin")}
        proc, url = start_api(env, api_log)
        stack.callback(stop_group, proc)
        yield JitStack(url, keys, env, s3, dav, tiers, [worker_log, api_log], [])


__all__ = ["CHORDFLOW", "JitStack", "jit_stack"]
