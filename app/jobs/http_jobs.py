"""Any scheduler with an HTTP API: a submit URL, a status URL, states in its JSON.

The job is submitted with ``submit_method`` (POST) to ``submit_url`` with ``body`` as
JSON; ``id_path`` (a JSONPath, jsonpath-ng) finds the job's id in the answer. Its
state is read with GET ``status_url`` (``{id}`` replaced by the id) at ``state_path``;
a state in ``done_states`` is success, one in ``failed_states`` failure, anything else
still running. A status answer of 404 or 410 means the job is gone. ``result_path``
(optional) picks the part of the last status answer that becomes the ``result``
output (the whole answer is the ``response`` output). ``cancel_url`` (optional, with
``{id}``) is called with ``cancel_method`` (DELETE) when the run is cancelled.
A ``token`` is sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import quote

import httpx
from chordflow.jobs.base import JobServiceError, JobStatus
from jsonpath_ng import parse as parse_path
from jsonpath_ng.exceptions import JsonPathParserError

GONE = frozenset({404, 410})


def compile_path(text: str, field: str) -> Any:
    """A JSONPath (``status``, ``job.state``, ``$.items[0].id``); ValueError naming the
    field if it does not parse."""
    try:
        return parse_path(text)
    except (JsonPathParserError, Exception) as exc:  # jsonpath-ng raises plain Exception too
        raise ValueError(f"{field}: '{text}' is not a JSONPath ({exc})") from None


def pick(answer: Any, path: Any) -> Any:
    found = [m.value for m in path.find(answer)]
    return found[0] if found else None


class HttpJob:
    """A job on an HTTP scheduler (a :class:`~chordflow.jobs.base.JobClient`)."""

    def __init__(self, *, submit_url: str, status_url: str, body: Any = None,
                 submit_method: str = "POST", id_path: str = "id",
                 state_path: str = "status", done_states: Collection[str] = ("done",),
                 failed_states: Collection[str] = ("failed",),
                 result_path: str | None = None, cancel_url: str | None = None,
                 cancel_method: str = "DELETE", headers: Mapping[str, str] | None = None,
                 token: str | None = None, timeout: float = 30.0):
        self.submit_url, self.status_url, self.cancel_url = submit_url, status_url, cancel_url
        self.body, self.submit_method, self.cancel_method = body, submit_method, cancel_method
        self.id_path = compile_path(id_path, "id_path")
        self.state_path = compile_path(state_path, "state_path")
        self.result_path = compile_path(result_path, "result_path") if result_path else None
        self.done, self.failed = {str(s) for s in done_states}, {str(s) for s in failed_states}
        self.headers = dict(headers or {})
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    @property
    def label(self) -> str:
        return f"the job service at {self.submit_url}"

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return httpx.request(method, url, headers=self.headers, timeout=self.timeout,
                                 follow_redirects=True, **kwargs)
        except httpx.HTTPError as exc:
            raise JobServiceError(f"{method} {url}: {type(exc).__name__}: {exc}") from None

    def submit(self) -> tuple[str, dict[str, Any]]:
        response = self._send(self.submit_method, self.submit_url, json=self.body)
        answer = _json(response, f"{self.submit_method} {self.submit_url}")
        job_id = pick(answer, self.id_path)
        if job_id is None or job_id == "":
            raise JobServiceError(f"{self.submit_method} {self.submit_url}: the answer has "
                                  f"no job id at id_path '{self.id_path}': "
                                  f"{str(answer)[:300]}")
        return str(job_id), answer if isinstance(answer, dict) else {"answer": answer}

    def status(self, job_id: str) -> JobStatus:
        url = self.status_url.replace("{id}", quote(job_id, safe=""))
        response = self._send("GET", url)
        if response.status_code in GONE:
            return JobStatus("gone", str(response.status_code))
        answer = _json(response, f"GET {url}")
        state = pick(answer, self.state_path)
        if state is None:
            raise JobServiceError(f"GET {url}: no state at state_path '{self.state_path}': "
                                  f"{str(answer)[:300]}")
        raw = str(state)
        if raw in self.done:
            result = pick(answer, self.result_path) if self.result_path else answer
            return JobStatus("succeeded", raw, outputs={"result": result, "response": answer})
        if raw in self.failed:
            return JobStatus("failed", raw, detail=str(answer)[:500])
        return JobStatus("running", raw)

    def kill(self, job_id: str) -> str:
        if not self.cancel_url:
            return "no cancel_url: the job goes on"
        url = self.cancel_url.replace("{id}", quote(job_id, safe=""))
        response = self._send(self.cancel_method, url)
        if response.is_error and response.status_code not in GONE:
            raise JobServiceError(f"{self.cancel_method} {url} answered "
                                  f"{response.status_code}: {response.text[:300]}")
        return f"{self.cancel_method} {url}: {response.status_code}"


def _json(response: httpx.Response, what: str) -> Any:
    if response.is_error:
        raise JobServiceError(f"{what} answered {response.status_code}: {response.text[:300]}")
    try:
        return response.json()
    except ValueError:
        raise JobServiceError(f"{what}: the answer is not JSON: {response.text[:300]}") from None
