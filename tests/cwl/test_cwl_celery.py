"""CWL on real Celery workers (the session's stack: Redis, the MongoDB-protocol
server, a prefork and a threads worker), and ``POST /api/v1/workflows/submit-cwl``
through the real API (uvicorn): each CWL step is a chordflow step recorded in MongoDB,
a scatter is a foreach whose jobs run as tasks on the workers, the output object is
the run's ``outputs.cwl`` and names files where the caller reads them."""

from __future__ import annotations

import time
from pathlib import Path

from chordflow.cwl.convert import cwl_document
from chordflow.workflow.loader import load_data

from tests.api.conftest import Api, api  # noqa: F401 - the session's API fixture

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
