"""A Python client of the chordflow HTTP API (``chordflow api``).

The CLI's ``submit``, ``runs``, ``logs``, ``workflows`` and ``schedules`` commands are
thin wrappers over it, so a script gets exactly what the CLI does, without parsing its
output::

    from chordflow.client import ApiError, Client

    with Client("http://127.0.0.1:8080", key="cf_...") as api:
        started = api.submit({"name": "hello", "steps": [
            {"name": "greet", "module": "bash", "params": {"cmd": "echo hi"}}]})
        run = api.wait(started.run_id)          # follows the event stream to the end
        print(run["status"], run["steps"][0]["outputs"]["stdout"])
        try:
            api.cancel(started.run_id)
        except ApiError as exc:                 # 409: it already finished
            print(exc.status, exc.code, exc.message)

``Client.from_settings()`` reads ``CHORDFLOW_API_URL`` and ``CHORDFLOW_API_KEY`` as the
CLI does. Every failure is one exception, :class:`ApiError`, with the HTTP status (None
when the API did not answer), a short machine-readable code and the server's message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

#: Seconds an ordinary request may take (an event stream has no read timeout).
TIMEOUT = 30.0
#: The API's path prefix; a URL that already ends with it is accepted.
API_PREFIX = "/api/v1"
#: Seconds between two polls of a waited-for run (when its event stream is unavailable).
POLL_SECONDS = (0.2, 1.0)
#: Seconds a wait keeps retrying while the API is unreachable or unavailable (5xx).
WAIT_RETRY_SECONDS = 60.0
#: Run statuses after which nothing more happens.
FINISHED = frozenset({"succeeded", "failed", "cancelled"})

#: The ``code`` of an error status the server did not name itself.
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         409: "conflict", 413: "too_large", 422: "invalid", 429: "rate_limited",
         503: "unavailable"}


class ApiError(Exception):
    """The API refused a request, or did not answer.

    ``status`` is the HTTP status (None when no answer came), ``code`` a short name for
    the kind of failure (``not_found``, ``conflict``, ``invalid``, ``unreachable``,
    ``timeout``, ..., or the server's own ``code``) and ``message`` the reason, one line
    or, for an invalid workflow, one line per error.
    """

    def __init__(self, status: int | None, code: str, message: str):
        self.status = status
        self.code = code
        self.message = message
        super().__init__(message)

    @property
    def retryable(self) -> bool:
        """No answer, or a 5xx: the same request may succeed later."""
        return self.status is None or self.status >= 500

    @classmethod
    def unreachable(cls, url: str, exc: httpx.TransportError) -> ApiError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            code, what = "unreachable", "cannot reach the chordflow API at"
        elif isinstance(exc, httpx.TimeoutException):
            code, what = "timeout", "no answer in time from the chordflow API at"
        else:
            code, what = "disconnected", "lost the connection to the chordflow API at"
        return cls(None, code, f"{what} {url}: {exc or type(exc).__name__}")

    @classmethod
    def of(cls, response: httpx.Response) -> ApiError:
        """The error an error response stands for: its ``detail`` (and ``errors``) when
        it is the API's JSON, else ``HTTP 404 Not Found`` (never an HTML page)."""
        status = response.status_code
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, Mapping) else {}
        code = str(body.get("code") or CODES.get(status, f"http_{status}"))
        detail, errors = body.get("detail"), body.get("errors")
        if isinstance(errors, list) and errors:  # an invalid workflow, by step and field
            return cls(status, "invalid_workflow", _invalid_workflow(errors))
        if isinstance(detail, list):  # FastAPI's request validation
            lines = [f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
                     if isinstance(d, Mapping) else str(d) for d in detail]
            return cls(status, code,
                       "invalid request:\n" + "\n".join(f"  - {x}" for x in lines))
        if detail is not None:
            return cls(status, code, str(detail))
        return cls(status, code, f"HTTP {status} {response.reason_phrase}".rstrip())


def _invalid_workflow(errors: list[Any]) -> str:
    from chordflow.errors import WorkflowError

    lines = [str(WorkflowError(str(e.get("message")), step=e.get("step"),
                               field=e.get("field"))) if isinstance(e, Mapping) else str(e)
             for e in errors]
    n = len(lines)
    return "\n".join([f"invalid workflow ({n} error{'s' if n != 1 else ''}):",
                      *(f"  - {line}" for line in lines)])


@dataclass(frozen=True)
class Started:
    """A run the API started: its ``POST`` answer, and whether an earlier submission
    with the same idempotency key was returned instead of a new run."""

    run: dict[str, Any]
    replayed: bool = False

    @property
    def run_id(self) -> str:
        return str(self.run["run_id"])


def api_root(url: str) -> str:
    """``url`` without a trailing slash or ``/api/v1``."""
    url = url.rstrip("/")
    return url[: -len(API_PREFIX)] if url.endswith(API_PREFIX) else url


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


class Client:
    """The chordflow API at ``url``, with ``key`` sent as a bearer token."""

    def __init__(self, url: str, key: str | None = None, timeout: float = TIMEOUT,
                 user_agent: str = "chordflow-client"):
        self.url = api_root(url)
        headers = {"User-Agent": user_agent}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.timeout = timeout
        self.http = httpx.Client(base_url=self.url + API_PREFIX, headers=headers,
                                 timeout=timeout)

    @classmethod
    def from_settings(cls, user_agent: str = "chordflow-client") -> Client:
        """The API of ``CHORDFLOW_API_URL`` (default http://127.0.0.1:8080) with the key
        ``CHORDFLOW_API_KEY``."""
        from chordflow.config import get_settings

        settings = get_settings()
        return cls(settings.api_base_url, settings.api_key, user_agent=user_agent)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------

    def request(self, method: str, path: str, *, body: Any = None,
                params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> httpx.Response:
        """The response (2xx); ApiError for an error status or no answer."""
        try:
            response = self.http.request(method, path, json=body, params=params,
                                         headers=headers)
        except httpx.TransportError as exc:
            raise ApiError.unreachable(self.url, exc) from None
        if response.is_error:
            raise ApiError.of(response)
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The response's JSON (None for an empty body)."""
        response = self.request(method, path, **kwargs)
        return self._json(response, path)

    def _json(self, response: httpx.Response, path: str) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, "not_json",
                           f"{self.url} answered {path} with something other than JSON: "
                           "is it a chordflow API?") from None

    def _start(self, path: str, body: dict[str, Any],
               idempotency_key: str | None) -> Started:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self.request("POST", path, body=body, headers=headers)
        created = self._json(response, path)
        if not isinstance(created, dict) or "run_id" not in created:
            raise ApiError(response.status_code, "not_json",
                           f"{self.url} answered {path} without a run id")
        return Started(created, response.headers.get("idempotent-replayed") == "true")

    # -- runs ---------------------------------------------------------------------------

    def submit(self, document: Mapping[str, Any], variables: Mapping[str, Any] | None = None,
               idempotency_key: str | None = None) -> Started:
        """Run an inline workflow document (any dialect)."""
        return self._start("/runs", {"workflow": dict(document),
                                     "variables": dict(variables or {})}, idempotency_key)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run with every step (``GET /runs/{id}``)."""
        run: dict[str, Any] = self.call("GET", _path("runs", run_id))
        return run

    def list_runs(self, workflow: str | None = None, status: Sequence[str] = (),
                  limit: int = 20) -> list[dict[str, Any]]:
        """Up to ``limit`` runs, newest first, following the pages."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(found) < limit:
            params: dict[str, Any] = {"limit": min(limit - len(found), 500)}
            if workflow:
                params["workflow"] = workflow
            if status:
                params["status"] = list(status)
            if cursor:
                params["cursor"] = cursor
            page = self.call("GET", "/runs", params=params) or {}
            found += page.get("runs") or []
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found

    def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel a pending or running run (409 once it finished)."""
        body: dict[str, Any] = self.call("POST", _path("runs", run_id, "cancel"))
        return body

    def rerun(self, run_id: str) -> list[str]:
        """Run a failed or cancelled run again from its failed steps; the steps started."""
        body = self.call("POST", _path("runs", run_id, "rerun"))
        steps = body.get("steps") if isinstance(body, Mapping) else None
        return [str(s) for s in steps or []]

    def logs(self, run_id: str, step: str | None = None, events: bool = True) -> str:
        """The run's text log: its events (unless ``events`` is False), then each step's
        output and error."""
        params: dict[str, str] = {} if events else {"events": "false"}
        if step:
            params["step"] = step
        return self.request("GET", _path("runs", run_id, "logs"), params=params or None).text

    def events(self, run_id: str) -> Iterator[tuple[str, Any]]:
        """The run's Server-Sent Events as (event, data), up to and including ``end``."""
        timeout = httpx.Timeout(self.timeout, read=None)
        try:
            with self.http.stream("GET", _path("runs", run_id, "events"),
                                  timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise ApiError.of(response)
                yield from parse_sse(response.iter_lines())
        except httpx.TransportError as exc:
            raise ApiError.unreachable(self.url, exc) from None

    def follow(self, run_id: str) -> Iterator[tuple[str, Any]]:
        """The run's events until it ends, then one ``("end", run)`` with the finished
        run: the event stream, and polling if the stream breaks (a proxy's timeout, a
        restarted server) or the API is briefly unavailable."""
        try:
            for event, data in self.events(run_id):
                if event == "end":
                    break
                yield event, data
        except ApiError as exc:
            if not exc.retryable:
                raise
        yield "end", self._poll(run_id)

    def wait(self, run_id: str) -> dict[str, Any]:
        """Block until the run ends; the finished run (``GET /runs/{id}``)."""
        run: dict[str, Any] = {}
        for event, data in self.follow(run_id):
            if event == "end":
                run = data
        return run

    def _poll(self, run_id: str) -> dict[str, Any]:
        delay, failing_since = POLL_SECONDS[0], None
        while True:
            try:
                run = self.get_run(run_id)
                failing_since = None
                if run.get("status") in FINISHED:
                    return run
            except ApiError as exc:
                if not exc.retryable:
                    raise
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > WAIT_RETRY_SECONDS:
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, POLL_SECONDS[1])

    # -- stored workflows ---------------------------------------------------------------

    def list_workflows(self, include_deleted: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = self.call(
            "GET", "/workflows", params={"include_deleted": "true"} if include_deleted else None)
        return body

    def get_workflow(self, name: str, version: int | str | None = None) -> dict[str, Any]:
        """A stored workflow (its latest version, or ``version``) with its document."""
        path = _path("workflows", name) if version is None else _path(
            "workflows", name, "versions", str(version))
        body: dict[str, Any] = self.call("GET", path)
        return body

    def create_workflow(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Store a new workflow, named by its document, as version 1."""
        body: dict[str, Any] = self.call("POST", "/workflows", body=dict(document))
        return body

    def update_workflow(self, name: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """Store ``document`` as the next version of ``name``."""
        body: dict[str, Any] = self.call("PUT", _path("workflows", name), body=dict(document))
        return body

    def versions(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", _path("workflows", name, "versions"))
        return body

    def diff(self, name: str, from_version: int | None = None,
             to_version: int | None = None) -> dict[str, Any]:
        """What changed between two versions (default: the latest and the one before)."""
        params = {k: v for k, v in (("from", from_version), ("to", to_version))
                  if v is not None}
        body: dict[str, Any] = self.call("GET", _path("workflows", name, "diff"),
                                         params=params)
        return body

    def rename_workflow(self, name: str, new_name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("POST", _path("workflows", name, "rename"),
                                         body={"new_name": new_name})
        return body

    def enable_workflow(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("POST", _path("workflows", name, "enable"))
        return body

    def disable_workflow(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("POST", _path("workflows", name, "disable"))
        return body

    def delete_workflow(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("DELETE", _path("workflows", name))
        return body

    def run_workflow(self, name: str, variables: Mapping[str, Any] | None = None,
                     version: int | None = None,
                     idempotency_key: str | None = None) -> Started:
        """Run a stored workflow (its latest version, or ``version``)."""
        body: dict[str, Any] = {"variables": dict(variables or {})}
        if version is not None:
            body["version"] = version
        return self._start(_path("workflows", name, "runs"), body, idempotency_key)

    # -- schedules ----------------------------------------------------------------------

    def list_schedules(self, workflow: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = self.call(
            "GET", "/schedules", params={"workflow": workflow} if workflow else None)
        return body

    def create_schedule(self, workflow: str, *, cron: str | None = None,
                        every: float | None = None,
                        variables: Mapping[str, Any] | None = None,
                        version: int | None = None, timezone: str = "UTC",
                        enabled: bool = True) -> dict[str, Any]:
        """Schedule runs of a stored workflow: ``cron`` or ``every`` seconds."""
        request: dict[str, Any] = {"workflow": workflow, "variables": dict(variables or {}),
                                   "cron": cron, "interval_seconds": every,
                                   "timezone": timezone, "enabled": enabled}
        if version is not None:
            request["version"] = version
        body: dict[str, Any] = self.call("POST", "/schedules", body=request)
        return body

    def get_schedule(self, schedule_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", _path("schedules", schedule_id))
        return body

    def update_schedule(self, schedule_id: str, **fields: Any) -> dict[str, Any]:
        """Change a schedule's fields (``enabled=False`` pauses it)."""
        body: dict[str, Any] = self.call("PATCH", _path("schedules", schedule_id), body=fields)
        return body

    def delete_schedule(self, schedule_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("DELETE", _path("schedules", schedule_id))
        return body

    def trigger_schedule(self, schedule_id: str) -> Started:
        """Run a schedule's workflow now."""
        return self._start(_path("schedules", schedule_id, "trigger"), {}, None)

    # -- remotes and transfers (the data plane) -----------------------------------------

    def list_remotes(self) -> list[dict[str, Any]]:
        """The deployment's remotes: name, type, provider, source (no credential)."""
        body: dict[str, Any] = self.call("GET", "/remotes")
        return list(body.get("remotes") or [])

    def check_remote(self, name: str, path: str = "") -> dict[str, Any]:
        """Whether remote ``name`` answers (its top, or ``path``, listed once)."""
        body: dict[str, Any] = self.call("POST", _path("remotes", name, "check"),
                                         body={"path": path})
        return body

    def transfer(self, request: Mapping[str, Any],
                 idempotency_key: str | None = None) -> Started:
        """Run one rclone operation as a one-step run (``POST /transfers``)."""
        return self._start("/transfers", dict(request), idempotency_key)

    # -- keys (admin) -------------------------------------------------------------------

    def list_keys(self) -> list[dict[str, Any]]:
        body: list[dict[str, Any]] = self.call("GET", "/keys")
        return body

    def create_key(self, name: str, role: str = "viewer") -> dict[str, Any]:
        """A new key; its secret is in the answer only."""
        body: dict[str, Any] = self.call("POST", "/keys", body={"name": name, "role": role})
        return body

    def set_key_role(self, key_id: str, role: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("PATCH", _path("keys", key_id), body={"role": role})
        return body

    def revoke_key(self, key_id: str) -> None:
        self.call("DELETE", _path("keys", key_id))


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """Server-Sent Events from text lines: (event, data parsed as JSON if it is)."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                raw = "\n".join(data)
                try:
                    yield event, json.loads(raw)
                except ValueError:
                    yield event, raw
            event, data = "message", []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
