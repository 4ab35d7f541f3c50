"""Structured logs: with CHORDFLOW_LOG_FORMAT=json, the API and workers write one JSON
object per line, and lines about a run carry its id (and the step's name)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from chordflow.workflow.loader import load_data

from tests.api.conftest import start_api
from tests.servers import celery_worker, stop_group


def json_lines(log: Path) -> list[dict[str, Any]]:
    records = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))  # every structured line is whole JSON
    return records


def test_worker_and_api_write_json_lines_with_the_run(celery_stack, tmp_path) -> None:
    env = celery_stack.env(CHORDFLOW_LOG_FORMAT="json", CHORDFLOW_API_AUTH="false")
    log = tmp_path / "worker.log"
    service = celery_stack.service()
    with celery_worker(env, "jsonw", "--queues", "jsonq", log=log):
        run_id = service.submit(load_data({"name": "jsonlogs", "steps": [
            {"name": "say", "module": "bash", "queue": "jsonq",
             "params": {"cmd": "echo hi"}}]}))
        assert service.wait(run_id, timeout=30).finished
        time.sleep(0.5)
    records = json_lines(log)
    assert any(r["message"].endswith(" ready.") for r in records)
    step = [r for r in records if r.get("run_id") == run_id and r.get("step") == "say"]
    assert step and step[0]["logger"] == "chordflow.step" and "exit code 0" in step[0]["message"]
    assert {"ts", "level", "process"} <= set(step[0])

    api_log = tmp_path / "api.log"
    proc, url = start_api(env, api_log)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            created = client.post("/api/v1/runs", json={"workflow": {
                "name": "jsonapi", "steps": [{"name": "a", "module": "echo"}]}}).json()
    finally:
        stop_group(proc)
    submitted = [r for r in json_lines(api_log) if r.get("run_id") == created["run_id"]]
    assert submitted and "submitted" in submitted[0]["message"]
