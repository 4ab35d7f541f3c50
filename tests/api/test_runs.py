"""Runs over HTTP against a real uvicorn server, real workers, Redis and MongoDB."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.api.conftest import Api


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_run(client: httpx.Client, run_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/v1/runs/{run_id}").json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, f"run {run_id} still {body['status']}"
        time.sleep(0.1)


def two_steps(name: str, cmd: str = "echo hi") -> dict[str, Any]:
    return {"name": name, "steps": [
        {"name": "a", "module": "echo", "params": {"x": "${variables.x}"}},
        {"name": "b", "module": "bash", "params": {"cmd": cmd}, "depends_on": ["a"]},
    ], "variables": {"x": 1}}


def test_submit_inspect_and_finish(api: Api) -> None:
    with api.client("author") as client:
        created = client.post("/api/v1/runs", json={"workflow": two_steps(unique("ok")),
                                                    "variables": {"x": 7}})
        assert created.status_code == 201, created.text
        body = created.json()
        run_id = body["run_id"]
        assert body["status"] in ("pending", "running")
        assert body["links"]["self"].endswith(f"/api/v1/runs/{run_id}")
        run = wait_run(client, run_id)
    assert run["status"] == "succeeded"
    assert run["variables"] == {"x": 7}
    a, b = run["steps"]
    assert (a["name"], a["status"], a["attempts"], a["outputs"]) == ("a", "succeeded", 1, {"x": 7})
    assert a["params"] == {"x": 7} and a["worker"] and "@" in a["worker"]
    assert b["outputs"]["stdout"] == "hi\n" and b["duration_seconds"] >= 0
    assert b["started_at"] and b["finished_at"] and b["queued_at"]


def test_invalid_workflow_names_step_and_field(api: Api) -> None:
    bad = {"name": "bad", "steps": [
        {"name": "a", "module": "nope"},
        {"name": "b", "module": "echo", "depends_on": ["missing"]}]}
    with api.client("author") as client:
        response = client.post("/api/v1/runs", json={"workflow": bad})
        assert response.status_code == 422
        errors = response.json()["errors"]
        assert {"step": "a", "field": "module"} in [
            {"step": e["step"], "field": e["field"]} for e in errors]
        assert any(e["step"] == "b" and e["field"] == "depends_on" for e in errors)
        validated = client.post("/api/v1/validate", json=bad).json()
        assert validated["valid"] is False and len(validated["errors"]) == len(errors)
        ok = client.post("/api/v1/validate", json=two_steps("fine")).json()
        assert ok["valid"] and ok["order"] == ["a", "b"] and "flowchart" in ok["mermaid"]
        unknown_var = client.post("/api/v1/runs", json={"workflow": two_steps("v"),
                                                        "variables": {"nope": 1}})
        assert unknown_var.status_code == 422
        both = client.post("/api/v1/runs", json={"workflow": two_steps("v"), "name": "x"})
        assert both.status_code == 422


def test_idempotency_key_returns_the_first_run(api: Api) -> None:
    key = unique("idem")
    with api.client("author") as client:
        first = client.post("/api/v1/runs", json={"workflow": two_steps(unique("i"))},
                            headers={"Idempotency-Key": key})
        again = client.post("/api/v1/runs", json={"workflow": two_steps(unique("i"))},
                            headers={"Idempotency-Key": key})
        assert first.status_code == 201 and again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["run_id"] == first.json()["run_id"]
        wait_run(client, first.json()["run_id"])


def test_list_filters_and_paginates(api: Api) -> None:
    name = unique("list")
    with api.client("author") as client:
        ids = [client.post("/api/v1/runs", json={"workflow": two_steps(name)}).json()["run_id"]
               for _ in range(5)]
        for run_id in ids:
            wait_run(client, run_id)
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"workflow": name, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/runs", params=params).json()
            seen += [r["run_id"] for r in page["runs"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == list(reversed(ids))  # newest first, each once
        none = client.get("/api/v1/runs", params={"workflow": name, "status": "failed"})
        assert none.json()["runs"] == []
        later = client.get("/api/v1/runs", params={"workflow": name,
                                                   "created_after": time.time() + 60})
        assert later.json()["runs"] == []
        assert client.get("/api/v1/runs", params={"cursor": "junk"}).status_code == 400


def test_cancel_stops_the_run_and_rerun_starts_from_failed(api: Api, tmp_path) -> None:
    flag = tmp_path / "flag"
    with api.client("author") as client:
        slow = client.post("/api/v1/runs", json={"workflow": {"name": unique("slow"), "steps": [
            {"name": "s", "module": "bash", "params": {"cmd": "sleep 30"}}]}}).json()["run_id"]
        deadline = time.monotonic() + 30
        while client.get(f"/api/v1/runs/{slow}").json()["steps"][0]["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        cancelled = client.post(f"/api/v1/runs/{slow}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert wait_run(client, slow)["status"] == "cancelled"
        assert client.post(f"/api/v1/runs/{slow}/cancel").status_code == 409

        failing = client.post("/api/v1/runs", json={"workflow": two_steps(
            unique("rerun"), f"test -f {flag}")}).json()["run_id"]
        first = wait_run(client, failing)
        assert first["status"] == "failed"
        flag.write_text("")
        rerun = client.post(f"/api/v1/runs/{failing}/rerun")
        assert rerun.status_code == 200 and rerun.json()["steps"] == ["b"]
        again = wait_run(client, failing)
        assert again["status"] == "succeeded" and again["reruns"] == 1
        assert again["steps"][0]["finished_at"] == first["steps"][0]["finished_at"]
        assert client.post(f"/api/v1/runs/{failing}/rerun").status_code == 409
        assert client.get(f"/api/v1/runs/{uuid.uuid4().hex}").status_code == 404


def test_events_stream_live_to_the_end(api: Api) -> None:
    with api.client("author") as client:
        run_id = client.post("/api/v1/runs", json={"workflow": {"name": unique("sse"), "steps": [
            {"name": "a", "module": "bash", "params": {"cmd": "sleep 1"}},
            {"name": "b", "module": "echo", "depends_on": ["a"]}]}}).json()["run_id"]
        received: list[tuple[str, dict[str, Any]]] = []
        started = time.monotonic()
        with client.stream("GET", f"/api/v1/runs/{run_id}/events", timeout=60) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: "):]
                elif line.startswith("data: ") and kind:
                    received.append((kind, json.loads(line[len("data: "):])))
                    if len(received) == 1:
                        first_at = time.monotonic() - started
    kinds = [k for k, _ in received]
    assert kinds[-1] == "end" and received[-1][1] == {"status": "succeeded"}
    assert first_at < 1.0  # the first events arrived while step a still ran
    for expected in ("run_created", "run_started", "step_started", "step_succeeded",
                     "run_succeeded"):
        assert expected in kinds
    steps = [d["step"] for k, d in received if k == "step_succeeded"]
    assert steps == ["a", "b"]


def test_logs_and_graph(api: Api) -> None:
    with api.client("author") as client:
        run_id = client.post("/api/v1/runs", json={"workflow": two_steps(
            unique("logs"), "echo out; echo err >&2")}).json()["run_id"]
        wait_run(client, run_id)
        logs = client.get(f"/api/v1/runs/{run_id}/logs")
        assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
        worker = client.get(f"/api/v1/runs/{run_id}").json()["steps"][1]["worker"]
        assert f"--- b stdout (attempt 1, {worker}) ---\nout" in logs.text
        assert f"--- b stderr (attempt 1, {worker}) ---\nerr" in logs.text
        assert "step_succeeded b" in logs.text
        only_a = client.get(f"/api/v1/runs/{run_id}/logs", params={"step": "a"}).text
        assert "step_succeeded a" in only_a and "stdout" not in only_a
        failed = client.post("/api/v1/runs", json={"workflow": two_steps(
            unique("logs"), "echo bad >&2; exit 3")}).json()["run_id"]
        wait_run(client, failed)
        failed_log = client.get(f"/api/v1/runs/{failed}/logs").text
        # A failed attempt's output is kept too, and the error follows it.
        assert "stderr (attempt 1, " in failed_log and "\nbad\n" in failed_log
        assert "--- b log (attempt 1, " in failed_log and "INFO exit code 3" in failed_log
        assert "--- b error ---\ncommand exited with code 3: bad" in failed_log
        assert "step_succeeded" not in client.get(f"/api/v1/runs/{failed}/logs", params={
            "events": "false"}).text
        graph = client.get(f"/api/v1/runs/{failed}/graph").json()
        assert graph["nodes"] == [{"id": "a", "module": "echo", "status": "succeeded"},
                                  {"id": "b", "module": "bash", "status": "failed"}]
        assert graph["edges"] == [{"source": "a", "target": "b"}]
        assert "s0 --> s1" in graph["mermaid"] and "fill:#f8d7da" in graph["mermaid"]


def test_modules_health_ready_and_docs(api: Api) -> None:
    with api.client(None) as anonymous:
        assert anonymous.get("/api/v1/health").json() == {"status": "ok"}
        schema = anonymous.get("/openapi.json").json()
        assert "/api/v1/runs" in schema["paths"] and "/api/v1/workflows/submit" in schema["paths"]
        assert anonymous.get("/docs").status_code == 200
    with api.client("viewer") as client:
        ready = client.get("/api/v1/ready")
        assert ready.status_code == 200 and ready.json()["checks"] == {
            "mongodb": "ok", "broker": "ok"}
        modules = {m["name"]: m for m in client.get("/api/v1/modules").json()}
        assert {"echo", "bash", "http", "file"} <= set(modules)


@pytest.mark.parametrize("size", [10 * 1024 * 1024])
def test_body_size_limit(api: Api, size: int) -> None:
    with api.client("author") as client:
        response = client.post("/api/v1/runs", content=b"{" + b" " * size + b"}",
                               headers={"content-type": "application/json"})
        assert response.status_code == 413


def test_logs_keep_every_attempt_and_the_step_logger(api: Api, tmp_path) -> None:
    """What steps print and log is stored with the run, per attempt and host, so it is
    readable from anywhere, including a failed attempt's output and log lines."""
    counter = tmp_path / "n"
    workflow = {"name": unique("attempts"), "steps": [
        {"name": "flaky", "module": "bash", "retries": 1, "retry_delay": 0,
         "params": {"cmd": f"echo try >> {counter}; echo out-$(wc -l < {counter}); "
                           f"test $(wc -l < {counter}) -ge 2"}},
        {"name": "each", "module": "echo", "foreach": [1, 2], "params": {"v": "${item}"},
         "depends_on": ["flaky"]}]}
    with api.client("author") as client:
        run_id = client.post("/api/v1/runs", json={"workflow": workflow}).json()["run_id"]
        assert wait_run(client, run_id)["status"] == "succeeded"
        text = client.get(f"/api/v1/runs/{run_id}/logs", params={"step": "flaky"}).text
    assert "--- flaky stdout (attempt 1, " in text and "out-1" in text
    assert "--- flaky stdout (attempt 2, " in text and "out-2" in text
    assert text.index("out-1") < text.index("out-2")


def test_a_chunked_body_over_the_limit_gets_413(api: Api) -> None:
    def chunks():
        yield b'{"workflow": "'
        for _ in range(5 * 1024):
            yield b"x" * 1024
        yield b'"}'

    with api.client("author") as client:
        response = client.post("/api/v1/runs", content=chunks(),
                               headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text


def test_a_run_whose_definition_does_not_compile_is_a_404_not_a_500(api: Api) -> None:
    """A run recorded by something other than a submission (here: a bare record with an
    empty definition, as the store's own tests write) is unreadable, not a crash:
    schemathesis found GET .../logs answering 500 for one."""
    from chordflow.engine.mongo_store import MongoStore
    from chordflow.engine.records import RunRecord, StepRecord

    store = MongoStore(api.env["CHORDFLOW_MONGO_URL"], api.env["CHORDFLOW_MONGO_DB"])
    run_id = f"bare{uuid.uuid4().hex[:10]}"
    store.create_run(RunRecord(run_id, "bare", "1", f"digest-{run_id}"),
                     [StepRecord(run_id, "a", "echo", "run")], {})
    store.close()
    with api.client("viewer") as client:
        for path in ("", "/logs", "/graph"):
            answer = client.get(f"/api/v1/runs/{run_id}{path}")
            assert answer.status_code == 404, (path, answer.status_code, answer.text)
            assert "does not compile" in answer.json()["detail"], answer.text
