"""The replaced DAG engine's workflows, whose steps are BV-BRC app jobs, on a real
stack: Redis, the MongoDB-protocol server, ONE Celery worker of concurrency 1, the API
(uvicorn) and the test job service (JSON-RPC), each a real process.

Ten jobs of one run are left pending on the service while a 3-step workflow in the
replaced engine's format runs to the end on that single worker slot: a waiting job
holds no slot. The run's document shows each step's job id as its ``task_id``;
cancelling the run kills its ten jobs on the service, and those of a ``foreach``'s
elements; a vanished job fails its step. A service with ``token_from: key`` sends the
token stored with the submitting API key, which no answer, record or log shows.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from tests.api.conftest import CHORDFLOW, make_key, start_api
from tests.jobs.conftest import CIPHER, JOB_TOKEN, KEY_TOKEN, JobService
from tests.servers import (
    ROOT,
    TEST_SECRETS,
    celery_worker,
    redis_server,
    stop_group,
    worker_env,
)

pytestmark = pytest.mark.timeout(240)


@dataclass
class Stack:
    api: httpx.Client
    service: JobService
    log: Path
    env: dict[str, str]
    mongo_url: str

    def status(self, run_id: str) -> dict[str, Any]:
        answer = self.api.get(f"/api/v1/workflows/{run_id}/status")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def wait(self, run_id: str, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(run_id)
            if status["status"] in ("succeeded", "failed", "cancelled"):
                return status
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} did not finish within {timeout}s: "
                             f"{self.status(run_id)}\n{self.log.read_text()[-3000:]}")

    def submit(self, doc: dict[str, Any]) -> str:
        answer = self.api.post("/api/v1/workflows/submit", json=doc)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["workflow_id"])


@pytest.fixture(scope="module")
def stack(mongo_url: str, job_service: JobService,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("jobs-celery")
    with redis_server() as (broker, _, _):
        env = worker_env(broker, mongo_url, f"j{uuid.uuid4().hex[:10]}", base / "work",
                         CHORDFLOW_SECRETS=json.dumps({**TEST_SECRETS, **CIPHER,
                                                       "BVBRC_TOKEN": JOB_TOKEN}),
                         # The dialect tests' hand-written app modules would clash.
                         CHORDFLOW_MODULES_PATH="", **job_service.env())
        log = base / "worker.log"
        with celery_worker(env, "jobs1", "--concurrency", "1", log=log):
            key = make_key(env, "jobs-admin", "admin")
            proc, url = start_api(env, base / "api.log")
            try:
                with httpx.Client(base_url=url, timeout=30,
                                  headers={"Authorization": f"Bearer {key}"}) as client:
                    yield Stack(client, job_service, log, env, mongo_url)
            finally:
                stop_group(proc)


def pending_workflow(name: str, count: int) -> dict[str, Any]:
    return {"workflow_name": name, "steps": [
        {"step_name": f"long{i}", "app": "GenomeAssembly2",
         "params": {"output_path": "/tester@bvbrc/home/long", "output_file": f"l{i}",
                    "test_duration": 600}} for i in range(count)]}


THREE_STEPS = {
    "workflow_name": "assembly-annotation",
    "base_context": {"home": "/tester@bvbrc/home"},
    "steps": [
        {"step_name": "assemble", "app": "GenomeAssembly2",
         "params": {"output_path": "${home}/asm", "output_file": "contigs",
                    "recipe": "auto", "test_duration": 1},
         "outputs": {"contigs": "${params.output_path}/.${params.output_file}/contigs.fasta"}},
        {"step_name": "annotate", "app": "GenomeAnnotation",
         "params": {"contigs": "${steps.assemble.outputs.contigs}",
                    "output_path": "${home}/annot", "output_file": "genome",
                    "test_duration": 1}},
        {"step_name": "analyse", "app": "ComprehensiveGenomeAnalysis",
         "params": {"genome": "${steps.annotate.outputs.output_folder}",
                    "output_path": "${home}/cga", "output_file": "report",
                    "test_duration": 1},
         "depends_on": ["annotate"]},
    ],
    "workflow_outputs": ["${steps.analyse.outputs.output_folder}"],
}


def jobs_of(service: JobService, output_path: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in service.jobs().items() if v["workspace"] == output_path}


def test_three_steps_run_on_one_slot_while_ten_jobs_wait_then_cancel_kills_them(
        stack: Stack) -> None:
    waiting = stack.submit(pending_workflow("ten-pending", 10))
    deadline = time.monotonic() + 60
    while len(jobs_of(stack.service, "/tester@bvbrc/home/long")) < 10:
        assert time.monotonic() < deadline, stack.status(waiting)
        time.sleep(0.2)

    run_id = stack.submit(THREE_STEPS)
    done = stack.wait(run_id)
    assert done["status"] == "succeeded", done
    ten = jobs_of(stack.service, "/tester@bvbrc/home/long")
    # Still pending on the service while the other run used the only worker slot.
    assert [job["status"] for job in ten.values()] == ["in-progress"] * 10
    doc = stack.api.get(f"/api/v1/workflows/{run_id}").json()
    steps = {s["step_name"]: s for s in doc["steps"]}
    jobs = stack.service.jobs()
    for name, app in (("assemble", "GenomeAssembly2"), ("annotate", "GenomeAnnotation"),
                      ("analyse", "ComprehensiveGenomeAnalysis")):
        job = jobs[steps[name]["task_id"]]  # the job id is the step's task_id
        assert job["app"] == app and job["status"] == "completed"
    annotate = jobs[steps["annotate"]["task_id"]]
    assert annotate["params"]["contigs"] == "/tester@bvbrc/home/asm/.contigs/contigs.fasta"
    assert doc["workflow_outputs"] == {"analyse.output_folder": "/tester@bvbrc/home/cga/.report"}
    assert JOB_TOKEN not in json.dumps(doc)

    pending = stack.api.get(f"/api/v1/workflows/{waiting}").json()
    assert {s["task_id"] for s in pending["steps"]} == set(ten)
    answer = stack.api.post(f"/api/v1/workflows/{waiting}/cancel")
    assert answer.status_code == 200, answer.text
    ten = jobs_of(stack.service, "/tester@bvbrc/home/long")
    assert [(job["status"], job["kills"]) for job in ten.values()] == [("deleted", 1)] * 10
    assert {s["status"] for s in stack.status(waiting)["steps"]} == {"cancelled"}


def test_vanished_and_failed_jobs_fail_their_steps(stack: Stack) -> None:
    run_id = stack.submit({"workflow_name": "lost-jobs", "steps": [
        {"step_name": "lost", "app": "GenomeAssembly2",
         "params": {"test_duration": 60, "test_vanish_after": 1}},
        {"step_name": "broken", "app": "GenomeAnnotation",
         "params": {"test_duration": 0.5, "test_fail": True}},
        {"step_name": "after", "app": "GenomeAnnotation", "depends_on": ["lost"],
         "params": {"test_duration": 0.5}},
    ]})
    assert stack.wait(run_id)["status"] == "failed"
    steps = {s["step_name"]: s for s in stack.api.get(f"/api/v1/workflows/{run_id}").json()
             ["steps"]}
    assert steps["lost"]["status"] == "failed"
    assert f"job {steps['lost']['task_id']} is gone from the BV-BRC app service" in \
        steps["lost"]["error_message"]
    assert steps["broken"]["status"] == "failed"
    assert "failed (failed)" in steps["broken"]["error_message"]
    assert steps["after"]["status"] == "upstream_failed"


def test_cancel_kills_the_jobs_of_foreach_elements(stack: Stack) -> None:
    workspace = "/tester@bvbrc/home/fan"
    answer = stack.api.post("/api/v1/runs", json={"workflow": {
        "name": "fan-out-jobs", "steps": [{
            "name": "each", "module": "GenomeAssembly2", "foreach": [0, 1, 2],
            "params": {"output_path": workspace, "output_file": "f${item}",
                       "test_duration": 600}}]}})
    assert answer.status_code == 201, answer.text
    run_id = answer.json()["run_id"]
    deadline = time.monotonic() + 60
    while len(jobs_of(stack.service, workspace)) < 3:
        assert time.monotonic() < deadline, stack.api.get(f"/api/v1/runs/{run_id}").text
        time.sleep(0.2)
    answer = stack.api.post(f"/api/v1/runs/{run_id}/cancel")
    assert answer.status_code == 200, answer.text
    jobs = jobs_of(stack.service, workspace)
    assert sorted((job["params"]["output_file"], job["status"], job["kills"])
                  for job in jobs.values()) == [(f"f{i}", "deleted", 1) for i in range(3)]
    events = [json.loads(line[len("data: "):]) for line in
              stack.api.get(f"/api/v1/runs/{run_id}/events").text.splitlines()
              if line.startswith("data: {\"type\"")]
    assert sorted(e["step"] for e in events if e["type"] == "job_cancelled") == \
        [f"each[{i}]" for i in range(3)]


def new_key(stack: Stack, name: str) -> tuple[str, str]:
    """An operator key (the key, its id), made by the admin API (faster than the CLI)."""
    made = stack.api.post("/api/v1/keys", json={"name": name, "role": "operator"}).json()
    return str(made["key"]), str(made["key_id"])


def set_token_cli(stack: Stack, key_id: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHORDFLOW, "keys", "set-token", key_id, "--json"], input=token,
                          env=stack.env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_token_from_key_sends_the_submitting_keys_token_never_recorded(stack: Stack) -> None:
    alice, alice_id = new_key(stack, "alice")
    done = set_token_cli(stack, alice_id, KEY_TOKEN)
    assert done.returncode == 0, done.stderr
    assert KEY_TOKEN not in done.stdout + done.stderr
    headers = {"Authorization": f"Bearer {alice}"}

    def submit(name: str, workspace: str, duration: float, key: str = alice) -> str:
        answer = stack.api.post("/api/v1/workflows/submit", headers={
            "Authorization": f"Bearer {key}"}, json={"workflow_name": name, "steps": [
                {"step_name": "asm", "app": "KeyedAssembly",
                 "params": {"output_path": workspace, "test_duration": duration}}]})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["workflow_id"])

    run_id = submit("keyed", "/alice/home/keyed", 1)
    assert stack.wait(run_id)["status"] == "succeeded"
    [job] = jobs_of(stack.service, "/alice/home/keyed").values()
    assert job["token"] == KEY_TOKEN and job["polls"] >= 1  # the key's, not the secret's

    # Cancelled: the kill is sent (by the API) with the same key's token.
    long_id = submit("keyed-long", "/alice/home/keyed-long", 600)
    deadline = time.monotonic() + 30
    while not jobs_of(stack.service, "/alice/home/keyed-long"):
        assert time.monotonic() < deadline, stack.status(long_id)
        time.sleep(0.2)
    assert stack.api.post(f"/api/v1/workflows/{long_id}/cancel").status_code == 200
    [killed] = jobs_of(stack.service, "/alice/home/keyed-long").values()
    assert (killed["status"], killed["kill_token"]) == ("deleted", KEY_TOKEN)

    # A key without a token: the step fails for good, naming the key and the fix.
    bob, bob_id = new_key(stack, "bob")
    failed_id = submit("keyed-bob", "/bob/home", 1, key=bob)
    assert stack.wait(failed_id)["status"] == "failed"
    [step] = stack.api.get(f"/api/v1/workflows/{failed_id}").json()["steps"]
    assert f"API key {bob_id} (bob) has no stored token" in step["error_message"]
    assert "chordflow keys set-token" in step["error_message"]
    assert jobs_of(stack.service, "/bob/home") == {}
    # Re-run by alice: it acts for alice now (the key that starts it again), not bob.
    rerun = stack.api.post(f"/api/v1/runs/{failed_id}/rerun", headers=headers)
    assert rerun.status_code == 200, rerun.text
    assert stack.wait(failed_id)["status"] == "succeeded"
    [rerun_job] = jobs_of(stack.service, "/bob/home").values()
    assert rerun_job["token"] == KEY_TOKEN

    # Never in clear: not in what the API answers, nor in MongoDB, nor in the logs.
    for rid in (run_id, long_id):
        for path in (f"/api/v1/runs/{rid}", f"/api/v1/runs/{rid}/logs",
                     f"/api/v1/runs/{rid}/events", f"/api/v1/workflows/{rid}",
                     f"/api/v1/workflows/{rid}/status", f"/api/v1/workflows/{rid}/logs"):
            answer = stack.api.get(path, headers=headers)
            assert answer.status_code in (200, 404), (path, answer.text)
            assert KEY_TOKEN not in answer.text, path
    db = MongoClient(stack.mongo_url, serverSelectionTimeoutMS=10_000)[stack.env[
        "CHORDFLOW_MONGO_DB"]]
    docs = [doc for rid in (run_id, long_id) for doc in
            [*db.runs.find({"_id": rid}), *db.steps.find({"run_id": rid}),
             *db.items.find({"run_id": rid}), *db.events.find({"run_id": rid})]]
    assert len(docs) > 5 and KEY_TOKEN not in json.dumps(docs, default=str)
    stored = db.api_keys.find_one({"_id": alice_id})
    assert stored["token_cipher"] and KEY_TOKEN not in json.dumps(stored, default=str)
    assert KEY_TOKEN not in stack.log.read_text() + (stack.log.parent / "api.log").read_text()

    # The admin API stores one too, and shows none: "***".
    keys = {k["key_id"]: k for k in stack.api.get("/api/v1/keys").json()}
    assert keys[alice_id]["token"] == "***" and keys[bob_id]["token"] is None
    answer = stack.api.put(f"/api/v1/keys/{bob_id}/token",
                           json={"token": KEY_TOKEN})
    assert answer.status_code == 200 and answer.json()["token"] == "***", answer.text
    assert KEY_TOKEN not in answer.text
    assert stack.api.put("/api/v1/keys/nope/token", json={"token": "x" * 8}).status_code == 404


def test_no_workflow_may_name_the_secret_that_keys_the_stored_tokens(stack: Stack) -> None:
    """TOKEN_ENCRYPTION_KEY is configured with the other secrets, but with it and a copy
    of the keys' collection every stored token decrypts: a workflow naming it is
    refused at submission, as an unknown secret is, and the refusal does not show it."""
    answer = stack.api.post("/api/v1/runs", json={"workflow": {"name": "leak", "steps": [
        {"name": "send", "module": "echo",
         "params": {"key": "${secrets.TOKEN_ENCRYPTION_KEY}"}}]}})
    assert answer.status_code == 422, answer.text
    assert "TOKEN_ENCRYPTION_KEY" in answer.text and "send" in answer.text
    assert CIPHER["TOKEN_ENCRYPTION_KEY"] not in answer.text
