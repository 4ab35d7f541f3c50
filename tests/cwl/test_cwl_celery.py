"""CWL on real Celery workers (the session's stack: Redis, the MongoDB-protocol
server, a prefork and a threads worker), and ``POST /api/v1/workflows/submit-cwl``
through the real API (uvicorn): each CWL step is a chordflow step recorded in MongoDB,
a scatter is a foreach whose jobs run as tasks on the workers, the output object is
the run's ``outputs.cwl`` and names files where the caller reads them."""

from __future__ import annotations

import json
import time
from pathlib import Path

from chordflow.cwl.convert import cwl_document
from chordflow.cwl.runner import outcome
from chordflow.service import RunService
from chordflow.workflow.loader import load_data

from tests.api.conftest import Api, api  # noqa: F401 - the session's API fixture
from tests.servers import celery_worker

DOCS = Path(__file__).with_name("docs")


def test_scatter_workflow_runs_on_workers(celery_stack, tmp_path: Path) -> None:
    service = celery_stack.service()
    doc = cwl_document(DOCS / "scatter.cwl", DOCS / "scatter-job.json", tmp_path / "out")
    run_id = service.submit(load_data(doc))
    assert service.wait(run_id, 180).finished
    report = service.report(run_id)
    assert report["status"] == "succeeded", report
    assert report["outputs"]["cwl"] == {"lines": [["hello ada!"], ["hi ada!"]]}
    greet = service.engine.store.get_steps(run_id, ["greet"])["greet"]
    items = [service.engine.store.get_item(run_id, "greet", i) for i in range(2)]
    assert greet.status == "succeeded" and all(i.status == "succeeded" for i in items)
    assert {i.worker.split("@")[0] for i in items} <= {"w1", "w2"}  # ran on the workers


def test_submit_cwl_through_the_api_with_its_imports(api: Api, tmp_path: Path) -> None:  # noqa: F811
    files = {"tools/greet.cwl": (DOCS / "tools" / "greet.cwl").read_text()}
    with api.client("author") as client:
        answer = client.post("/api/v1/workflows/submit-cwl", json={
            "document": (DOCS / "scatter.cwl").read_text(), "files": files,
            "job": {"names": ["lin"], "greetings": ["hi"]}})
        assert answer.status_code == 200, answer.text
        run_id = answer.json()["workflow_id"]
        deadline = time.monotonic() + 180
        while (status := client.get(f"/api/v1/workflows/{run_id}/status").json())[
                "status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status["status"] == "succeeded", client.get(f"/api/v1/runs/{run_id}").text
        assert [s["step_name"] for s in status["steps"]] == ["greet__scatter", "greet",
                                                             "cwl_outputs"]
        run = client.get(f"/api/v1/workflows/{run_id}").json()
        assert run["workflow_outputs"] == {"cwl": {"lines": [["hi lin!"]]}}

        missing = client.post("/api/v1/workflows/submit-cwl", json={
            "document": (DOCS / "scatter.cwl").read_text(), "job": {}})
        assert missing.status_code == 422 and "tools/greet.cwl" in missing.text
        escape = client.post("/api/v1/workflows/submit-cwl", json={
            "document": "class: Workflow", "files": {"../x.cwl": "x"}})
        assert escape.status_code == 422 and "files.../x.cwl" in escape.text
        # What schemathesis sent: names and texts no file can have (a NUL, a lone
        # surrogate), and a document no CWL loader can read: 422 naming it, never a 500.
        for body in ('{"document": "class: Workflow", "files": {"a\\u0000b": "x"}}',
                     '{"document": "class: Workflow", "files": {"\\ud800": "y"}}',
                     '{"document": "\\ud800", "job": {}}',
                     '{"document": "[unclosed", "job": {}}',
                     '{"document": {"class": 3, "inputs": [[]]}, "job": {}}'):
            odd = client.post("/api/v1/workflows/submit-cwl", content=body,
                              headers={"Content-Type": "application/json"})
            assert odd.status_code == 422, (body, odd.status_code, odd.text)


def test_integer_beyond_8_bytes_on_workers(celery_stack, tmp_path: Path) -> None:
    # MongoDB cannot hold it: the run records it encoded, the steps and the runner's
    # output object see the integer itself.
    service = celery_stack.service()
    doc = cwl_document(DOCS / "bigint.cwl", None, tmp_path / "out")
    run_id = service.submit(load_data(doc))
    assert service.wait(run_id, 120).finished
    report = service.report(run_id)
    assert report["status"] == "succeeded", report
    big = 4200000000000000000000000000000000000000000
    assert report["outputs"]["cwl"]["big"] == {"cwl:bigint": str(big)}
    code, output = outcome(report)
    assert code == 0 and output == {"big": big, "small": 4242424242}


def test_files_move_through_a_remote_between_workers_sharing_no_directory(
        celery_stack, tmp_path: Path) -> None:
    # Two workers, each its own scratch directory and stage cache: "make" runs on one
    # (routed there by its ResourceRequirement: coresMin 2, the rule's threshold),
    # "shout" and the outputs on the other, which fetch make's file from the remote
    # (CHORDFLOW_CWL_REMOTE) it was pushed to.
    remote = tmp_path / "remote"
    remote.mkdir()
    queue = f"cwl-rest-{tmp_path.name}"
    env = {"CHORDFLOW_REMOTES": json.dumps({"store": {"type": "local"}}),
           "CHORDFLOW_CWL_REMOTE": f"store:{remote}", "CHORDFLOW_DEFAULT_QUEUE": queue}
    envs = {side: celery_stack.env(**env, CHORDFLOW_WORKDIR=str(tmp_path / side / "work"),
                                   CHORDFLOW_STAGE_CACHE_DIR=str(tmp_path / side / "cache"))
            for side in ("a", "b")}
    settings = celery_stack.settings().model_copy(update={"default_queue": queue})
    service = RunService.celery(settings)
    doc = cwl_document(DOCS / "remote.cwl", None, tmp_path / "out",
                       queues=[{"queue": "cwl-a", "coresMin": 2}])
    try:
        with celery_worker(envs["a"], "a", "--queues", "cwl-a", "--pool", "threads",
                           log=tmp_path / "a.log"), \
                celery_worker(envs["b"], "b", "--queues", queue, "--pool", "threads",
                              log=tmp_path / "b.log"):
            run_id = service.submit(load_data(doc))
            assert service.wait(run_id, 120).finished
        report = service.report(run_id)
        assert report["status"] == "succeeded", report
        made = report["steps"]["make"]["outputs"]["made"]
        assert made["location"] == f"store:{remote}/{run_id}/make/out/made.txt"
        assert (remote / run_id / "make" / "out" / "made.txt").read_text() == "remote\n"
        steps = service.engine.store.get_steps(run_id, ["make", "shout", "cwl_outputs"])
        assert steps["make"].worker.startswith("a@") and steps["shout"].worker.startswith("b@")
        # b read make's file from its own scratch directory, fetched from the remote
        assert list((tmp_path / "b" / "work").glob(f"{run_id}/shout/in/*/made.txt"))
        assert not (tmp_path / "b" / "work" / run_id / "make").exists()
        assert (tmp_path / "out" / "upper.txt").read_text() == "REMOTE\n"
        assert report["outputs"]["cwl"]["upper"]["location"] == \
            (tmp_path / "out" / "upper.txt").as_uri()
    finally:
        service.close()
