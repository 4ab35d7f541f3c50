"""A job service for the tests, run as its own process: the BV-BRC app service's
JSON-RPC (``AppService.start_app``, ``query_tasks``, ``kill_task``) at ``/rpc``, a plain
HTTP job API at ``/jobs``, and ``GET /_jobs`` listing every job for the tests' checks.

Jobs take ``test_duration`` seconds (a param of the job; 2 by default), then complete,
or fail if ``test_fail`` is set; a job with ``test_vanish_after`` is forgotten that many
seconds after its submission (as a scheduler that lost it). Every call must carry one
of the tokens of the ``JOB_TOKEN`` environment variable (comma-separated; JSON-RPC:
the ``Authorization`` header as it is; HTTP: ``Bearer``); each job records the token
it was submitted with (``token``) and the one of its last kill (``kill_token``).

Usage: python jobservice.py PORT
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
import uuid
from typing import Any

TOKENS = {t for t in os.environ.get("JOB_TOKEN", "").split(",") if t}
JOBS: dict[str, dict[str, Any]] = {}
LOCK = threading.Lock()


def _status(job: dict[str, Any]) -> str | None:
    """The job's state now; None once it vanished."""
    age = time.time() - job["submitted"]
    params = job["params"]
    if params.get("test_vanish_after") is not None and age >= float(params["test_vanish_after"]):
        return None
    if job["killed"]:
        return "deleted"
    if age < 0.2:
        return "queued"
    if age < float(params.get("test_duration", 2)):
        return "in-progress"
    return "failed" if params.get("test_fail") else "completed"


def _task(job_id: str) -> dict[str, Any] | None:
    job = JOBS[job_id]
    status = _status(job)
    if status is None:
        return None
    return {"id": job_id, "app": job["app"], "parameters": job["params"],
            "workspace": job["workspace"], "status": status, "user_id": "tester@bvbrc",
            "submit_time": job["submitted"]}


def _submit(app: str, params: dict[str, Any], workspace: str, token: str) -> str:
    job_id = str(uuid.uuid4().int % 10**9)
    with LOCK:
        JOBS[job_id] = {"app": app, "params": params, "workspace": workspace,
                        "submitted": time.time(), "killed": False, "kills": 0,
                        "polls": 0, "token": token, "kill_token": None}
    return job_id


def _kill(job_id: str, token: str) -> bool:
    with LOCK:
        job = JOBS.get(job_id)
        if job is None:
            return False
        job["kills"] += 1
        job["kill_token"] = token
        was_running = _status(job) in ("queued", "in-progress")
        job["killed"] = job["killed"] or was_running
        return was_running


def rpc(method: str, params: list[Any], token: str) -> Any:
    if method == "AppService.start_app":
        app, app_params, workspace = params
        return [_task(_submit(app, app_params, workspace, token))]
    if method == "AppService.query_tasks":
        found = {}
        for job_id in params[0]:
            if job_id in JOBS:
                JOBS[job_id]["polls"] += 1
                task = _task(job_id)
                if task is not None:
                    found[job_id] = task
        return [found]
    if method == "AppService.kill_task":
        killed = _kill(params[0], token)
        return [1 if killed else 0, "killed" if killed else "not running"]
    raise KeyError(method)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def do_POST(self) -> None:
        if self.path == "/rpc":
            call = self._body()
            token = self.headers.get("Authorization") or ""
            if token not in TOKENS:
                self._send(500, {"version": "1.1", "id": call.get("id"), "error": {
                    "name": "JSONRPCError", "code": -32400, "message": "Invalid token"}})
                return
            try:
                result = rpc(call["method"], call["params"], token)
            except KeyError as exc:
                self._send(500, {"version": "1.1", "id": call.get("id"), "error": {
                    "name": "JSONRPCError", "code": -32601,
                    "message": f"no method {exc}"}})
                return
            self._send(200, {"version": "1.1", "id": call.get("id"), "result": result})
        elif self.path == "/jobs":
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if token not in TOKENS:
                self._send(401, {"error": "unauthorized"})
                return
            body = self._body() or {}
            job_id = _submit(body.get("app", "http"), body.get("params") or {}, "", token)
            self._send(201, {"job": {"id": job_id}})
        else:
            self._send(404, {"error": "no such path"})

    def do_GET(self) -> None:
        if self.path == "/_jobs":
            with LOCK:
                self._send(200, {k: {**v, "status": _status(v)} for k, v in JOBS.items()})
        elif self.path.startswith("/jobs/"):
            job_id = self.path.rsplit("/", 1)[1]
            task = _task(job_id) if job_id in JOBS else None
            if task is None:
                self._send(404, {"error": "no such job"})
                return
            JOBS[job_id]["polls"] += 1
            self._send(200, {"state": task["status"], "result": {"answer": 42,
                                                                   "job": job_id}})
        else:
            self._send(404, {"error": "no such path"})

    def do_DELETE(self) -> None:
        job_id = self.path.rsplit("/", 1)[1]
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        self._send(200 if _kill(job_id, token) else 404, {"job": job_id})


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.serve_forever()
