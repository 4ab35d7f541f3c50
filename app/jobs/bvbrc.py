"""The BV-BRC app service's JSON-RPC, as the replaced DAG engine used it.

``AppService.start_app(app_id, params, workspace)`` submits a job and answers its task
(``id``, ``app``, ``status``, ``submit_time``, ...); ``AppService.query_tasks([ids])``
answers the tasks by id (a task missing from the answer is gone);
``AppService.kill_task(id)`` answers ``[killed, message]``. The service speaks JSON-RPC
1.1 over HTTP POST (``{"version": "1.1", "method", "params", "id"}``) and wraps each
result in a list, as KBase-style services do; unwrapped results are accepted too. The
user's token goes in the ``Authorization`` header as it is (not ``Bearer``), as the
BV-BRC clients send it.

Task states: ``completed`` is success; ``failed`` and ``deleted`` (killed) are
failure; anything else (``queued``, ``pending``, ``in-progress``, ``suspended``) is
still running.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from chordflow.jobs.base import JobServiceError, JobStatus

DONE = frozenset({"completed"})
FAILED = frozenset({"failed", "deleted"})


class AppService:
    """A JSON-RPC client of the app service (one HTTP client per instance)."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0):
        self.url = url
        self.timeout = timeout
        self._headers = {"Content-Type": "application/jsonrpc+json",
                         "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = token

    @property
    def label(self) -> str:
        return f"the BV-BRC app service at {self.url}"

    def call(self, method: str, *params: Any) -> Any:
        """``AppService.<method>(*params)``'s result (unwrapped); JobServiceError naming
        the call and what went wrong."""
        body = {"version": "1.1", "method": f"AppService.{method}", "params": list(params),
                "id": uuid.uuid4().hex}
        try:
            response = httpx.post(self.url, json=body, headers=self._headers,
                                  timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise JobServiceError(f"AppService.{method} at {self.url}: "
                                  f"{type(exc).__name__}: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise JobServiceError(f"AppService.{method} at {self.url} answered "
                                  f"{response.status_code} without a JSON-RPC reply: "
                                  f"{response.text[:300]}")
        error = answer.get("error")
        if error:
            message = error.get("message", error) if isinstance(error, dict) else error
            raise JobServiceError(f"AppService.{method} at {self.url} refused: {message}")
        if response.is_error:
            raise JobServiceError(f"AppService.{method} at {self.url} answered "
                                  f"{response.status_code}")
        return answer.get("result")

    def start_app(self, app_id: str, params: dict[str, Any], workspace: str) -> dict[str, Any]:
        task = _unwrap(self.call("start_app", app_id, params, workspace))
        if not isinstance(task, dict) or "id" not in task:
            raise JobServiceError(f"AppService.start_app at {self.url} answered no task: "
                                  f"{str(task)[:300]}")
        return task

    def query_tasks(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        tasks = _unwrap(self.call("query_tasks", task_ids))
        if not isinstance(tasks, dict):
            raise JobServiceError(f"AppService.query_tasks at {self.url} answered "
                                  f"{str(tasks)[:300]}")
        return {str(k): v for k, v in tasks.items()}

    def kill_task(self, task_id: str) -> tuple[int, str]:
        answer = self.call("kill_task", task_id)
        if isinstance(answer, list) and len(answer) == 1 and isinstance(answer[0], list):
            answer = answer[0]
        if isinstance(answer, list) and len(answer) >= 2:
            return int(answer[0] or 0), str(answer[1])
        return 0, str(answer)


def _unwrap(result: Any) -> Any:
    """KBase-style services answer ``[value]``."""
    if isinstance(result, list) and len(result) == 1:
        return result[0]
    return result


class AppJob:
    """One app's job on the app service (a :class:`~chordflow.jobs.base.JobClient`)."""

    def __init__(self, service: AppService, app_id: str, params: dict[str, Any],
                 workspace: str):
        self.service = service
        self.app_id = app_id
        self.params = params
        self.workspace = workspace

    @property
    def label(self) -> str:
        return self.service.label

    def submit(self) -> tuple[str, dict[str, Any]]:
        task = self.service.start_app(self.app_id, self.params, self.workspace)
        return str(task["id"]), task

    def status(self, job_id: str) -> JobStatus:
        task = self.service.query_tasks([job_id]).get(job_id)
        if not isinstance(task, dict):
            return JobStatus("gone")
        raw = str(task.get("status") or "")
        if raw in DONE:
            return JobStatus("succeeded", raw, outputs=self._outputs(task))
        if raw in FAILED:
            return JobStatus("failed", raw, detail=str(task.get("error") or
                                                       task.get("awe_status") or ""))
        return JobStatus("running", raw)

    def kill(self, job_id: str) -> str:
        killed, message = self.service.kill_task(job_id)
        return message or ("killed" if killed else "not killed")

    def _outputs(self, task: dict[str, Any]) -> dict[str, Any]:
        """The task, and where BV-BRC apps leave their files: ``output_path`` with the
        job's folder ``<output_path>/.<output_file>`` beside ``<output_file>``."""
        outputs: dict[str, Any] = {"task": task, "app": task.get("app", self.app_id)}
        path, name = self.params.get("output_path"), self.params.get("output_file")
        if path:
            outputs["output_path"] = path
        if path and name:
            outputs["output_file"] = name
            outputs["output_folder"] = f"{str(path).rstrip('/')}/.{name}"
        return outputs
