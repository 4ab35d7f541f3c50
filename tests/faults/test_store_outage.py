"""MongoDB stopped for 30 s mid-run and started again on the same port and data file:
every run succeeds, nothing runs twice, nothing recorded is lost."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.api.conftest import make_key, start_api
from tests.faults.stack import wait_until
from tests.faults.workload import check
from tests.servers import stop_group

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

OUTAGE_SECONDS = 30


def test_a_store_outage_fails_nothing(fresh, service, workload):
    fresh.start_worker("w1")
    fresh.start_worker("w2")
    workload.submit(service)
    total = workload.steps * workload.runs
    assert wait_until(lambda: workload.done_lines() >= total // 3, timeout=120)
    fresh.mongo.stop()
    time.sleep(OUTAGE_SECONDS)
    fresh.mongo.start()
    workload.wait(service, timeout=240)
    summary = check(workload, service)
    assert summary["succeeded"] == workload.runs


def test_with_the_store_down_the_api_answers_503_and_a_worker_starts_and_waits(
        fresh, tmp_path):
    env = fresh.env()
    key = make_key(env, "outage-op", "operator")
    fresh.mongo.stop()
    proc, url = start_api(env, tmp_path / "api.log")  # starts all the same
    try:
        worker = fresh.start_worker("patient")
        said = [line for line in worker.log.read_text().splitlines()
                if "MongoDB" in line and "unreachable" in line]
        assert len(said) == 1, worker.log.read_text()[-3000:]
        headers = {"Authorization": f"Bearer {key}"}
        body = {"workflow": {"name": "after-outage", "steps": [
            {"name": "a", "module": "echo", "params": {"x": 1}}]}}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for method, path, kwargs in (("GET", "/api/v1/runs", {}),
                                         ("GET", "/api/v1/runs/nope", {}),
                                         ("POST", "/api/v1/runs", {"json": body}),
                                         ("GET", "/api/v1/workflows", {})):
                answer = client.request(method, path, **kwargs)
                assert answer.status_code == 503, (path, answer.status_code, answer.text)
                assert answer.headers["retry-after"] and answer.json()["code"] == \
                    "store_unavailable"
            ready = client.get("/api/v1/ready")
            assert ready.status_code == 503 and "mongodb" in ready.json()["status"]
            fresh.mongo.start()
            assert wait_until(lambda: client.get("/api/v1/ready").status_code == 200,
                              timeout=30)
            created = client.post("/api/v1/runs", json=body)
            assert created.status_code == 201, created.text
            run_id = created.json()["run_id"]
            assert wait_until(lambda: client.get(f"/api/v1/runs/{run_id}").json()["status"]
                              == "succeeded", timeout=60)
    finally:
        stop_group(proc)
