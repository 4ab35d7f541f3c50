"""The replaced DAG engine's endpoints: same paths and fields, on a real server."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from tests.api.conftest import Api
from tests.api.test_runs import unique, wait_run
from tests.test_embedded import alive, wait_for_file

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dialects"


def test_submit_status_get_and_cancel_like_the_original(api: Api) -> None:
    workflow = json.loads((FIXTURES / "dag_engine_readme_2step.json").read_text())
    with api.client("author") as client:
        submitted = client.post("/api/v1/workflows/submit", json=workflow)
        assert submitted.status_code == 200, submitted.text
        body = submitted.json()
        assert set(body) == {"workflow_id", "status", "message"}
        assert body["status"] == "pending"
        run_id = body["workflow_id"]
        assert wait_run(client, run_id)["status"] == "succeeded"

        status = client.get(f"/api/v1/workflows/{run_id}/status").json()
        assert set(status) == {"workflow_id", "workflow_name", "status", "created_at",
                               "updated_at", "steps"}
        assert (status["workflow_id"], status["workflow_name"], status["status"]) == (
            run_id, "my-pipeline", "succeeded")
        assert status["updated_at"] >= status["created_at"]
        assert status["steps"] == [
            {"step_id": "step1", "step_name": "step1", "status": "succeeded",
             "app": "GenomeAssembly2"},
            {"step_id": "step2", "step_name": "step2", "status": "succeeded",
             "app": "GenomeAnnotation"}]

        document = client.get(f"/api/v1/workflows/{run_id}").json()
        assert document["workflow_name"] == "my-pipeline"
        assert document["base_context"]["workspace_output_folder"] == "/user/home/output"
        step1 = document["steps"][0]
        assert step1["params"]["output_path"] == "/user/home/output/Assembly"
        assert step1["outputs"]["contigs"] == \
            "/user/home/output/Assembly/.assembly_output/contigs.fa"
        assert document["steps"][1]["depends_on"] == ["step1"]
        assert step1["completed_at"] and step1["elapsed_time"] >= 0 and step1["task_id"]

        finished = client.post(f"/api/v1/workflows/{run_id}/cancel")
        assert finished.status_code == 400
        assert "succeeded" in finished.json()["detail"]


def test_cancel_really_stops_the_run(api: Api, tmp_path) -> None:
    marker, pidfile = tmp_path / "after", tmp_path / "pid"
    workflow = {"workflow_name": unique("compat-cancel"), "steps": [
        {"step_name": "long", "app": "bash", "params": {"cmd": f"echo $$ > {pidfile}; sleep 30"}},
        {"step_name": "next", "app": "bash", "depends_on": ["long"],
         "params": {"cmd": f"touch {marker}"}}]}
    with api.client("author") as client:
        run_id = client.post("/api/v1/workflows/submit", json=workflow).json()["workflow_id"]
        deadline = time.monotonic() + 30
        while client.get(f"/api/v1/workflows/{run_id}/status").json()["steps"][0][
                "status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        started = time.monotonic()
        cancelled = client.post(f"/api/v1/workflows/{run_id}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json() == {"workflow_id": run_id, "status": "cancelled",
                                    "message": "Workflow cancelled successfully"}
        status = client.get(f"/api/v1/workflows/{run_id}/status").json()
        assert status["status"] == "cancelled"
        assert [s["status"] for s in status["steps"]] == ["cancelled", "cancelled"]
        # The step's process on the worker was killed well before its 30 s.
        pid = int(wait_for_file(pidfile))
        while alive(pid):
            assert time.monotonic() - started < 20, "the step's process still runs"
            time.sleep(0.1)
        time.sleep(1)
        assert not marker.exists()
        assert client.get(f"/api/v1/workflows/{uuid.uuid4().hex}/status").status_code == 404
