"""The broker lost or down: a Redis restarted empty loses every queued message, and
``chordflow resume`` gets every run going again at once; a broker down at submission
gets a clear refusal and a run recorded failed, which nothing starts later."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from chordflow.engine.state import RunStatus, StepStatus

from tests.api.conftest import make_key, start_api
from tests.faults.stack import wait_until
from tests.faults.workload import check
from tests.servers import stop_group

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_redis_restarted_empty_then_resume(fresh, service, workload):
    """No beat runs here, so only ``chordflow resume`` can get the runs going: each
    finishes after it, not at some reconciler pass."""
    fresh.start_worker("w1")
    fresh.start_worker("w2")
    workload.submit(service)
    total = workload.steps * workload.runs
    assert wait_until(lambda: workload.done_lines() >= total // 3, timeout=120)
    fresh.redis.restart()  # every queued message is gone
    time.sleep(2)  # workers reconnect; the steps they were running finish meanwhile
    for run_id in workload.run_ids:
        done = fresh.chordflow("resume", run_id)
        assert done.returncode == 0, done.stderr
    workload.wait(service, timeout=120)
    check(workload, service)


def broker_down_env(fresh):
    return {"CHORDFLOW_BROKER_URL": "redis://127.0.0.1:1/0",
            "CHORDFLOW_RESULT_BACKEND": fresh.redis.url}


def test_broker_down_at_submit_refuses_in_one_line_and_records_the_run_failed(
        fresh, service, tmp_path):
    marker = tmp_path / "ran"
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({"name": "down-at-submit", "steps": [
        {"name": "a", "module": "bash", "params": {"cmd": f"echo a >> {marker}"}},
        {"name": "b", "module": "bash", "depends_on": ["a"],
         "params": {"cmd": f"echo b >> {marker}"}}]}))
    fresh.redis.stop()
    try:
        done = fresh.chordflow("run", str(wf), "--executor", "celery", timeout=120)
    finally:
        fresh.redis.start()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "broker" in done.stderr and "unreachable" in done.stderr
    runs = service.engine.store.find_runs(workflow="down-at-submit")
    assert len(runs) == 1 and runs[0].status is RunStatus.FAILED
    assert "could not start" in runs[0].error
    # The broker is back, with a worker and the reconciler: still nothing runs.
    fresh.start_worker("w1", "--beat", CHORDFLOW_RECONCILE_INTERVAL="1")
    assert fresh.chordflow("reconcile").returncode == 0
    time.sleep(3)
    assert not marker.exists()
    assert service.engine.store.get_run(runs[0].id).status is RunStatus.FAILED
    steps = service.engine.store.get_steps(runs[0].id)
    assert all(rec.status is not StepStatus.RUNNING and rec.attempts == 0
               for rec in steps.values())


def test_an_idempotent_retry_after_the_broker_is_back_starts_exactly_one_run(
        fresh, tmp_path):
    env = fresh.env()
    key = make_key(env, "faults-op", "operator")
    proc, url = start_api(env, tmp_path / "api.log")
    body = {"workflow": {"name": "idem-down", "steps": [
        {"name": "a", "module": "echo", "params": {"x": 1}}]}}
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "retry-me-1"}
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            fresh.redis.stop()
            try:
                refused = client.post("/api/v1/runs", json=body, headers=headers)
                ready = client.get("/api/v1/ready")
            finally:
                fresh.redis.start()
            assert refused.status_code == 503, refused.text
            assert refused.headers.get("retry-after")
            assert refused.json()["code"] == "broker_unavailable"
            assert ready.status_code == 503 and "broker" in ready.json()["status"]
            fresh.start_worker("w1")
            first = client.post("/api/v1/runs", json=body, headers=headers)
            again = client.post("/api/v1/runs", json=body, headers=headers)
            assert first.status_code == 201, first.text
            assert again.status_code == 200 and again.json()["run_id"] == first.json()["run_id"]
            run_id = first.json()["run_id"]
            assert wait_until(lambda: client.get(f"/api/v1/runs/{run_id}", headers=headers)
                              .json()["status"] == "succeeded", timeout=60)
            runs = client.get("/api/v1/runs", params={"workflow": "idem-down"},
                              headers=headers).json()["runs"]
            started = [r for r in runs if r["status"] != "failed"]
            assert len(started) == 1 and started[0]["run_id"] == run_id
    finally:
        stop_group(proc)
