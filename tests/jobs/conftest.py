"""The job service the job tests submit to: tests/jobs/jobservice.py as a real server
process on a free port (JSON-RPC at /rpc, an HTTP job API at /jobs)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port, stop, wait_for_port

#: The token the service expects (a secret of the test workers and the test API).
JOB_TOKEN = "bvbrc-token-271828-never-in-clear"
#: A user's own token, stored with their API key (token_from: key); the service takes it.
KEY_TOKEN = "un=alice@bvbrc|tokenid=31415926|sig=key-token-never-in-clear"
#: The secret that encrypts tokens stored with keys (chordflow.jobs.key_tokens).
CIPHER = {"TOKEN_ENCRYPTION_KEY": "test-cipher-secret-0123456789abcdef"}


@dataclass
class JobService:
    url: str

    @property
    def rpc(self) -> str:
        return f"{self.url}/rpc"

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Every job the service was given, with its state now."""
        return dict(httpx.get(f"{self.url}/_jobs", timeout=10).json())

    def services(self, **policy: Any) -> dict[str, Any]:
        """``CHORDFLOW_JOB_SERVICES`` for this service: fast polling for the tests."""
        poll = {"poll_interval": 0.5, "max_poll_interval": 2.0, "backoff": 1.5, **policy}
        return {"bvbrc": {"client": "bvbrc", "url": self.rpc, "token_secret": "BVBRC_TOKEN",
                          **poll},
                "keyed": {"client": "bvbrc", "url": self.rpc, "token_from": "key", **poll},
                "jobs": {"client": "http", "submit_url": f"{self.url}/jobs",
                         "status_url": f"{self.url}/jobs/{{id}}", "id_path": "job.id",
                         "state_path": "state", "done_states": ["completed"],
                         "failed_states": ["failed", "deleted"], "result_path": "result",
                         "cancel_url": f"{self.url}/jobs/{{id}}",
                         "token_secret": "BVBRC_TOKEN", **poll}}

    def env(self, **policy: Any) -> dict[str, str]:
        """What workers, the API and the CLI are configured with to use it."""
        return {"CHORDFLOW_JOB_SERVICES": json.dumps(self.services(**policy)),
                "CHORDFLOW_JOB_APPS": json.dumps({
                    "GenomeAssembly2": "bvbrc", "GenomeAnnotation": "bvbrc",
                    "ComprehensiveGenomeAnalysis": {"service": "bvbrc",
                                                    "app_id": "ComprehensiveGenomeAnalysis"},
                    "Sleeper": "jobs",
                    "KeyedAssembly": {"service": "keyed", "app_id": "GenomeAssembly2"}})}


@pytest.fixture(scope="session")
def job_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobService]:
    port = free_port()
    log = tmp_path_factory.mktemp("jobservice") / "jobservice.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("jobservice.py")),
                                 str(port)], env={"JOB_TOKEN": f"{JOB_TOKEN},{KEY_TOKEN}",
                                                "PATH": ""},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log=log)
        yield JobService(f"http://127.0.0.1:{port}")
    finally:
        stop(proc)
