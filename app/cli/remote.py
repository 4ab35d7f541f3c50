"""The CLI over HTTP: ``submit``, ``runs``, ``logs``, ``workflows`` and ``schedules`` are
clients of a chordflow API (``chordflow api``); ``status``, ``cancel`` and ``rerun`` use it
too when ``CHORDFLOW_API_URL`` is set.

The API is at ``CHORDFLOW_API_URL`` (default ``http://CHORDFLOW_API_HOST:CHORDFLOW_API_PORT``,
i.e. http://127.0.0.1:8080), with the key ``CHORDFLOW_API_KEY`` sent as a bearer token.

Exit codes, as for the other commands: 0 done (a waited-for run succeeded), 1 the run
failed or was cancelled, 2 refused (an invalid workflow or request, no such run or
workflow, a missing key or role, a conflict, an unreachable API: the reason goes to
stderr, never a traceback), 130 interrupted while waiting (the run is cancelled first).

The helpers of ``chordflow.cli.main`` are imported where they are used: ``main`` registers
these commands while it is itself being imported.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
import yaml
from chordflow.engine.dispatch import TaskKey
from chordflow.engine.report import event_line
from rich.console import Console
from rich.markup import escape
from rich.table import Table

#: Seconds an ordinary request may take (an SSE stream has no read timeout).
TIMEOUT = 30.0
#: The API's path prefix; a ``CHORDFLOW_API_URL`` that already ends with it is accepted.
API_PREFIX = "/api/v1"
#: Seconds between two polls of a waited-for run (when its event stream is unavailable).
POLL_SECONDS = (0.2, 1.0)
#: Seconds a wait keeps retrying while the API is unreachable or unavailable (5xx).
WAIT_RETRY_SECONDS = 60.0
#: Exit code after Ctrl-C (or SIGTERM) while waiting: the shell's for SIGINT.
EXIT_INTERRUPTED = 130
#: Run statuses after which nothing more happens.
FINISHED = frozenset({"succeeded", "failed", "cancelled"})

out = Console()

workflows_app = typer.Typer(
    help="Stored workflows on the API: create, update (new versions), run, rename, "
         "enable/disable, delete, versions and diffs.",
    no_args_is_help=True,
)


# -- the client ---------------------------------------------------------------------------

class ApiUnreachable(Exception):
    """No answer from the API (connection refused, DNS, timeout, dropped connection)."""

    def __init__(self, url: str, exc: httpx.TransportError):
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            what = "cannot reach the chordflow API at"
        elif isinstance(exc, httpx.TimeoutException):
            what = "no answer in time from the chordflow API at"
        else:
            what = "lost the connection to the chordflow API at"
        super().__init__(f"{what} {url}: {exc or type(exc).__name__}")


class ApiError(Exception):
    """The API answered with an error status; ``detail`` is its reason."""

    def __init__(self, status: int, detail: str):
        self.status = status
        self.detail = detail
        super().__init__(detail)

    @classmethod
    def of(cls, response: httpx.Response) -> ApiError:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        status = response.status_code
        detail = body.get("detail") if isinstance(body, Mapping) else None
        errors = body.get("errors") if isinstance(body, Mapping) else None
        if isinstance(errors, list) and errors:
            # An invalid workflow: every error by step and field.
            return cls(status, _invalid_workflow(errors))
        if isinstance(detail, list):
            # FastAPI's request validation: [{"loc": [...], "msg": ...}, ...].
            lines = [f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
                     if isinstance(d, Mapping) else str(d) for d in detail]
            return cls(status, "invalid request:\n" + "\n".join(f"  - {x}" for x in lines))
        if detail is not None:
            return cls(status, str(detail))
        text = response.text.strip()[:300]
        reason = f"HTTP {status} {response.reason_phrase}".rstrip()
        return cls(status, f"{reason}: {text}" if text else reason)


def _invalid_workflow(errors: list[Any]) -> str:
    from chordflow.errors import WorkflowError

    lines = []
    for e in errors:
        if isinstance(e, Mapping):
            lines.append(str(WorkflowError(str(e.get("message")), step=e.get("step"),
                                           field=e.get("field"))))
        else:
            lines.append(str(e))
    n = len(lines)
    return "\n".join([f"invalid workflow ({n} error{'s' if n != 1 else ''}):",
                      *(f"  - {line}" for line in lines)])


def api_root(url: str) -> str:
    """``url`` without a trailing slash or ``/api/v1``."""
    url = url.rstrip("/")
    return url[: -len(API_PREFIX)] if url.endswith(API_PREFIX) else url


class Client:
    """The chordflow API at ``url`` (paths below are relative to ``/api/v1``)."""

    def __init__(self, url: str, key: str | None = None, timeout: float = TIMEOUT):
        self.url = api_root(url)
        headers = {"User-Agent": "chordflow-cli"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.timeout = timeout
        self.http = httpx.Client(base_url=self.url + API_PREFIX, headers=headers,
                                 timeout=timeout)

    @classmethod
    def from_settings(cls) -> Client:
        from chordflow.config import get_settings

        settings = get_settings()
        return cls(settings.api_base_url, settings.api_key)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, body: Any = None,
                params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> httpx.Response:
        """The response (2xx); ApiError for an error status, ApiUnreachable if none."""
        try:
            response = self.http.request(method, path, json=body, params=params,
                                         headers=headers)
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.url, exc) from None
        if response.is_error:
            raise ApiError.of(response)
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The response's JSON (None for an empty body)."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, f"{self.url} answered {path} with "
                           "something other than JSON: is it a chordflow API?") from None

    def text(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        return self.request("GET", path, params=params).text

    def events(self, run_id: str) -> Iterator[tuple[str, Any]]:
        """The run's Server-Sent Events as (event, data), up to and including ``end``."""
        timeout = httpx.Timeout(self.timeout, read=None)
        try:
            with self.http.stream("GET", f"{run_path(run_id)}/events",
                                  timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise ApiError.of(response)
                yield from _parse_sse(response.iter_lines())
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.url, exc) from None


def _parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
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


def run_path(run_id: str) -> str:
    return f"/runs/{quote(run_id, safe='')}"


def workflow_path(name: str) -> str:
    return f"/workflows/{quote(name, safe='')}"


@contextmanager
def client() -> Iterator[Client]:
    """A client of the configured API; its errors end the command (exit 2) with the
    server's reason on stderr, Ctrl-C ends it with 130 (and no traceback)."""
    try:
        with Client.from_settings() as api:
            yield api
    except (ApiError, ApiUnreachable) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def fail(message: str) -> NoReturn:
    """Print ``message`` (plain text, not markup) as the error and exit 2."""
    from chordflow.cli.main import fail_invalid

    fail_invalid(escape(message))


def note(message: str) -> None:
    """A remark on stderr (stdout carries only what a script would read)."""
    Console(stderr=True, soft_wrap=True).print(escape(message), highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal; elsewhere (a pipe, a file) plain aligned columns,
    never cut to 80 characters, one row a line."""
    if out.is_terminal:
        table = Table(*columns)
        table.columns[0].no_wrap = True
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        out.print(table)
        return
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    for row in [[c.upper() for c in columns], *rows]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")


def when(value: Any) -> str:
    """An ISO time from the API, to the second: 2024-05-01T12:00:00Z."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if moment.tzinfo else "")


# -- runs: what status, cancel and rerun of chordflow.cli.main call -----------------------------

def as_report(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run as ``GET /runs/{id}`` answers it, in the shape of the CLI's run report
    (``chordflow run --json``, ``status --json``)."""
    return {
        "run_id": run.get("run_id"),
        "workflow": run.get("workflow"),
        "status": run.get("status"),
        "error": run.get("error"),
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "steps": {
            step.get("name"): {key: step.get(key) for key in
                               ("status", "attempts", "outputs", "error", "started_at",
                                "finished_at")}
            for step in run.get("steps") or [] if isinstance(step, Mapping)
        },
        "outputs": run.get("outputs"),
    }


def report_over_http(run_id: str) -> dict[str, Any]:
    """``status``: the run's report from the API."""
    with client() as api:
        return as_report(api.call("GET", run_path(run_id)))


def cancel_over_http(run_id: str) -> None:
    """``cancel``: exits 2 with the server's reason if the run is unknown or finished."""
    with client() as api:
        api.call("POST", f"{run_path(run_id)}/cancel")


def rerun_over_http(run_id: str) -> list[str]:
    """``rerun``: the steps started again (exit 2 unless the run failed or was
    cancelled)."""
    with client() as api:
        body = api.call("POST", f"{run_path(run_id)}/rerun")
    steps = body.get("steps") if isinstance(body, Mapping) else None
    return [str(s) for s in steps or []]


def wait_over_http(run_id: str) -> dict[str, Any]:
    """``rerun --wait``: follow the run to its end; its report."""
    with client() as api:
        return as_report(wait_for(api, run_id))


# -- following a run ---------------------------------------------------------------------

def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("terminated (SIGTERM)")


def wait_for(api: Client, run_id: str) -> dict[str, Any]:
    """Follow the run until it ends (its event stream, polling if that breaks) and
    return ``GET /runs/{id}``. Ctrl-C (or SIGTERM) cancels the run and exits 130."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            for event, _ in api.events(run_id):
                if event == "end":
                    break
        except ApiUnreachable:
            pass  # the stream broke (a proxy's timeout, a restarted server): poll
        except ApiError as exc:
            if exc.status < 500:
                raise
        return _poll(api, run_id)
    except KeyboardInterrupt as exc:
        _cancel_interrupted(api, run_id, str(exc) or "interrupted (Ctrl-C)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _poll(api: Client, run_id: str) -> dict[str, Any]:
    delay, failing_since = POLL_SECONDS[0], None
    while True:
        try:
            run: dict[str, Any] = api.call("GET", run_path(run_id))
            failing_since = None
            if run.get("status") in FINISHED:
                return run
        except (ApiUnreachable, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status < 500:
                raise
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > WAIT_RETRY_SECONDS:
                raise
        time.sleep(delay)
        delay = min(delay * 1.5, POLL_SECONDS[1])


def _cancel_interrupted(api: Client, run_id: str, reason: str) -> None:
    try:
        api.call("POST", f"{run_path(run_id)}/cancel")
        note(f"{reason}: run {run_id} cancelled")
    except ApiError as exc:  # it finished meanwhile (409), or the key may not cancel
        note(f"{reason}: run {run_id} not cancelled: {exc}")
    except ApiUnreachable as exc:
        note(f"{reason}: run {run_id} not cancelled: {exc}")


def print_run(report: Mapping[str, Any]) -> None:
    """What ``status`` prints: the summary, then one line per step."""
    from chordflow.cli.main import print_report

    print_report(report)


def _start(api: Client, path: str, body: dict[str, Any], wait: bool, as_json: bool,
           idempotency_key: str | None) -> None:
    """POST a run to ``path``; print its id (or JSON), or wait and report it."""
    from chordflow.cli.main import EXIT_FAILED, EXIT_OK

    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    response = api.request("POST", path, body=body, headers=headers)
    try:
        created: dict[str, Any] = response.json()
    except ValueError:
        fail(f"{api.url} answered {path} with something other than JSON: is it a "
             "chordflow API?")
    run_id = str(created["run_id"])
    if response.headers.get("idempotent-replayed") == "true":
        note(f"run {run_id} was submitted earlier with this idempotency key")
    if not wait:
        if as_json:
            print_json(created)
        else:
            sys.stdout.write(run_id + "\n")
        return
    note(f"run {run_id} of {created.get('workflow')}: {created.get('status')}, waiting "
         "(Ctrl-C cancels it)")
    run = wait_for(api, run_id)
    if as_json:
        print_json(run)
    else:
        print_run(as_report(run))
    raise typer.Exit(EXIT_OK if run.get("status") == "succeeded" else EXIT_FAILED)


# -- files --------------------------------------------------------------------------------

def read_document(file: Path) -> dict[str, Any]:
    """A workflow file (JSON or YAML, any dialect) as a document. As ``chordflow run``
    does, an unnamed canonical or procedures workflow is named after its file."""
    from chordflow.workflow.dialects import CANONICAL, detect, procedures

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    except yaml.YAMLError as exc:
        fail(f"{file} is not valid JSON or YAML: {exc}")
    if not isinstance(data, dict):
        fail(f"{file}: a workflow must be an object")
    if not data.get("name") and detect(data) in (CANONICAL, procedures.NAME):
        data = {**data, "name": file.stem}
    return data


# -- commands -----------------------------------------------------------------------------

FileArg = Annotated[Path, typer.Argument(help="Workflow file (JSON or YAML, any dialect).")]
VarOpt = Annotated[
    list[str] | None,
    typer.Option("--var", "-v", help="Set a variable: K=V (V parsed as JSON if it can be)."),
]
WaitOpt = Annotated[bool, typer.Option(
    "--wait", help="Wait for the run to end, print its report, exit 0 if it succeeded "
                   "(else 1). Ctrl-C cancels the run.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the server's JSON.")]
IdempotencyOpt = Annotated[str | None, typer.Option(
    "--idempotency-key", help="Submitting again with the same key returns the first run "
                              "instead of starting another.")]
NameArg = Annotated[str, typer.Argument(help="The stored workflow's name.")]


def submit(
    file: FileArg,
    var: VarOpt = None,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
    idempotency_key: IdempotencyOpt = None,
) -> None:
    """Submit a workflow file to the API; print the run id, or with --wait its report."""
    from chordflow.cli.main import parse_vars

    variables = parse_vars(var)
    document = read_document(file)
    with client() as api:
        _start(api, "/runs", {"workflow": document, "variables": variables}, wait, as_json,
               idempotency_key)


def runs(
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    status: Annotated[list[str] | None, typer.Option(
        "--status", "-s", help="Only runs in this status (repeat for several): pending, "
                               "running, succeeded, failed, cancelled.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """List runs on the API, newest first."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    with client() as api:
        while len(found) < limit:
            params: dict[str, Any] = {"limit": min(limit - len(found), 500)}
            if workflow:
                params["workflow"] = workflow
            if status:
                params["status"] = status
            if cursor:
                params["cursor"] = cursor
            page = api.call("GET", "/runs", params=params)
            found += page.get("runs") or []
            cursor = page.get("next_cursor")
            if not cursor:
                break
    if as_json:
        print_json(found)
        return
    if not found:
        note("no runs")
        return
    print_table(["run", "workflow", "version", "status", "trigger", "created", "finished"],
                [[str(run.get(key) or "") for key in ("run_id", "workflow", "version",
                                                       "status", "trigger")]
                 + [when(run.get("created_at")), when(run.get("finished_at"))]
                 for run in found])


def logs(
    run_id: Annotated[str, typer.Argument(help="A run id.")],
    step: Annotated[str | None, typer.Option(help="Only this step.")] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Print events as they happen until the run ends.")] = False,
) -> None:
    """Print a run's log: its events, then each step's output and error."""
    with client() as api:
        if not follow:
            sys.stdout.write(api.text(f"{run_path(run_id)}/logs",
                                      params={"step": step} if step else None))
            return
        for event, data in api.events(run_id):
            if event == "end":
                break
            if not isinstance(data, Mapping):
                continue
            name = data.get("step")
            if step is not None and not (name and TaskKey.parse(name).step == step):
                continue
            sys.stdout.write(event_line(data["ts"], str(data.get("type")), name,
                                        data.get("data")) + "\n")
            sys.stdout.flush()
        params = {"events": "false", **({"step": step} if step else {})}
        sys.stdout.write(api.text(f"{run_path(run_id)}/logs", params=params))


# -- workflows ----------------------------------------------------------------------------

def _entries(body: Any, key: str) -> list[Any]:
    """The list in ``body`` (``{key: [...]}`` or a bare list)."""
    if isinstance(body, Mapping):
        body = body.get(key)
    return list(body) if isinstance(body, list) else []


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


def _fields(body: Any) -> None:
    """Every scalar field of ``body``, one per line."""
    if not isinstance(body, Mapping):
        out.print(escape(str(body)), highlight=False)
        return
    for key, value in body.items():
        if not isinstance(value, Mapping | list):
            out.print(escape(f"{key}: {_cell(value)}"), highlight=False)


def _show_entry(verb: str, body: Any) -> None:
    if isinstance(body, Mapping):
        version = f" (version {body['version']})" if body.get("version") is not None else ""
        out.print(f"{verb} workflow {escape(str(body.get('name')))}{escape(version)}",
                  highlight=False)
    else:
        _fields(body)


@workflows_app.command("list")
def workflows_list(
    show_all: Annotated[bool, typer.Option("--all", help="Include deleted ones.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List stored workflows with their latest version."""
    with client() as api:
        body = api.call("GET", "/workflows",
                        params={"include_deleted": "true"} if show_all else None)
    if as_json:
        print_json(body)
        return
    entries = _entries(body, "workflows")
    if not entries:
        note("no stored workflows")
        return
    keys = ["name", "version", "enabled", "updated_at", "created_by"]
    if show_all:
        keys.insert(3, "deleted")
    print_table([k.replace("_at", "").replace("_", " ") for k in keys],
                [[when(e.get(k)) if k.endswith("_at") else _cell(e.get(k)) for k in keys]
                 for e in entries if isinstance(e, Mapping)])


@workflows_app.command("show")
def workflows_show(
    name: NameArg,
    version: Annotated[int | None, typer.Option(
        help="This version (default: the latest).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a stored workflow and its document (as YAML)."""
    path = workflow_path(name) + (f"/versions/{version}" if version is not None else "")
    with client() as api:
        body = api.call("GET", path)
    if as_json:
        print_json(body)
        return
    _fields(body)
    document = body.get("document") if isinstance(body, Mapping) else None
    if document is not None:
        out.print("document:")
        sys.stdout.flush()
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


@workflows_app.command("create")
def workflows_create(file: FileArg, as_json: JsonOpt = False) -> None:
    """Store a new workflow (named by its document) as version 1."""
    document = read_document(file)
    with client() as api:
        body = api.call("POST", "/workflows", body=document)
    if as_json:
        print_json(body)
    else:
        _show_entry("created", body)


@workflows_app.command("update")
def workflows_update(name: NameArg, file: FileArg, as_json: JsonOpt = False) -> None:
    """Store a file as the next version of a workflow (every version is kept)."""
    document = read_document(file)
    with client() as api:
        body = api.call("PUT", workflow_path(name), body=document)
    if as_json:
        print_json(body)
    else:
        _show_entry("updated", body)


@workflows_app.command("delete")
def workflows_delete(name: NameArg, as_json: JsonOpt = False) -> None:
    """Delete a workflow: no longer listed or runnable, its versions kept."""
    with client() as api:
        body = api.call("DELETE", workflow_path(name))
    if as_json:
        print_json(body)
    else:
        out.print(f"deleted workflow {escape(name)}", highlight=False)


@workflows_app.command("rename")
def workflows_rename(
    name: NameArg,
    new_name: Annotated[str, typer.Argument(help="The new name.")],
    as_json: JsonOpt = False,
) -> None:
    """Rename a workflow; its versions and history follow it."""
    with client() as api:
        body = api.call("POST", f"{workflow_path(name)}/rename", body={"new_name": new_name})
    if as_json:
        print_json(body)
    else:
        out.print(f"renamed workflow {escape(name)} to {escape(new_name)}", highlight=False)


def _set_enabled(name: str, enabled: bool, as_json: bool) -> None:
    action = "enable" if enabled else "disable"
    with client() as api:
        body = api.call("POST", f"{workflow_path(name)}/{action}")
    if as_json:
        print_json(body)
    else:
        out.print(f"workflow {escape(name)}: {action}d", highlight=False)


@workflows_app.command("enable")
def workflows_enable(name: NameArg, as_json: JsonOpt = False) -> None:
    """Allow runs of a workflow again."""
    _set_enabled(name, True, as_json)


@workflows_app.command("disable")
def workflows_disable(name: NameArg, as_json: JsonOpt = False) -> None:
    """Refuse new runs of a workflow until it is enabled (runs under way go on)."""
    _set_enabled(name, False, as_json)


@workflows_app.command("versions")
def workflows_versions(name: NameArg, as_json: JsonOpt = False) -> None:
    """List a workflow's versions, oldest first."""
    with client() as api:
        body = api.call("GET", f"{workflow_path(name)}/versions")
    if as_json:
        print_json(body)
        return
    print_table(["version", "digest", "created", "created by"],
                [[_cell(e.get("version")), str(e.get("digest") or "").split(":")[-1][:12],
                  when(e.get("created_at")), _cell(e.get("created_by"))]
                 for e in _entries(body, "versions") if isinstance(e, Mapping)])


@workflows_app.command("diff")
def workflows_diff(
    name: NameArg,
    from_version: Annotated[int | None, typer.Argument(
        help="The older version (default: the one before the newer).")] = None,
    to_version: Annotated[int | None, typer.Argument(
        help="The newer version (default: the latest).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two versions: a summary by step, then a unified diff."""
    params = {k: v for k, v in (("from", from_version), ("to", to_version)) if v is not None}
    with client() as api:
        body = api.call("GET", f"{workflow_path(name)}/diff", params=params)
    if as_json:
        print_json(body)
        return
    if not isinstance(body, Mapping):
        _fields(body)
        return
    versions = f"versions {body.get('from_version')} and {body.get('to_version')}"
    if body.get("identical"):
        out.print(f"{escape(name)}: {versions} are identical", highlight=False)
        return
    out.print(f"{escape(name)}: {versions}", highlight=False)
    summary = body.get("summary")
    if isinstance(summary, Mapping):
        for key in ("added", "removed", "workflow_fields"):
            if summary.get(key):
                label = key.replace("_", " ")
                out.print(f"  {label}: {escape(', '.join(map(str, summary[key])))}",
                          highlight=False)
        for change in summary.get("changed") or []:
            if isinstance(change, Mapping):
                fields = ", ".join(map(str, change.get("fields") or []))
                out.print(f"  changed: {escape(str(change.get('step')))} ({escape(fields)})",
                          highlight=False)
    if body.get("diff"):
        sys.stdout.flush()
        sys.stdout.write(str(body["diff"]))


@workflows_app.command("run")
def workflows_run(
    name: NameArg,
    var: VarOpt = None,
    version: Annotated[int | None, typer.Option(
        min=1, help="Run this version (default: the latest).")] = None,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
    idempotency_key: IdempotencyOpt = None,
) -> None:
    """Run a stored workflow; print the run id, or with --wait its report."""
    from chordflow.cli.main import parse_vars

    body: dict[str, Any] = {"variables": parse_vars(var)}
    if version is not None:
        body["version"] = version
    with client() as api:
        _start(api, f"{workflow_path(name)}/runs", body, wait, as_json, idempotency_key)


# -- schedules ----------------------------------------------------------------------------

schedules_app = typer.Typer(
    help="Scheduled runs of stored workflows (cron or every N seconds): list, create, "
         "show, pause, resume, delete, trigger now. Fired by 'chordflow worker --beat'.",
    no_args_is_help=True,
)

ScheduleIdArg = Annotated[str, typer.Argument(help="The schedule's id.")]


def schedule_path(schedule_id: str) -> str:
    return f"/schedules/{quote(schedule_id, safe='')}"


def _schedule_trigger(body: Mapping[str, Any]) -> str:
    if body.get("cron"):
        zone = body.get("timezone") or "UTC"
        return f"cron {body['cron']}" + ("" if zone == "UTC" else f" ({zone})")
    seconds = body.get("interval_seconds")
    return f"every {seconds:g}s" if isinstance(seconds, int | float) else ""


def _show_schedule(verb: str, body: Any) -> None:
    if not isinstance(body, Mapping):
        _fields(body)
        return
    state = "" if body.get("enabled", True) else ", paused"
    out.print(escape(f"{verb} schedule {body.get('id')}: {body.get('workflow')} "
                     f"{_schedule_trigger(body)}{state}"), highlight=False)


@schedules_app.command("list")
def schedules_list(
    workflow: Annotated[str | None, typer.Option(
        help="Only the schedules of this stored workflow.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List schedules with their trigger, state and next run."""
    with client() as api:
        body = api.call("GET", "/schedules",
                        params={"workflow": workflow} if workflow else None)
    if as_json:
        print_json(body)
        return
    entries = [e for e in _entries(body, "schedules") if isinstance(e, Mapping)]
    if not entries:
        note("no schedules")
        return
    print_table(["id", "workflow", "trigger", "enabled", "next run", "last run", "last run id"],
                [[_cell(e.get("id")), _cell(e.get("workflow")), _schedule_trigger(e),
                  _cell(e.get("enabled")), when(e.get("next_run_at")),
                  when(e.get("last_run_at")), _cell(e.get("last_run_id"))] for e in entries])


@schedules_app.command("create")
def schedules_create(
    name: NameArg,
    cron: Annotated[str | None, typer.Option(
        "--cron", help="A cron expression, e.g. '*/15 * * * *', or '@hourly'.")] = None,
    every: Annotated[float | None, typer.Option(
        "--every", help="Run every this many seconds.")] = None,
    var: VarOpt = None,
    version: Annotated[int | None, typer.Option(
        min=1, help="Run this version (default: the latest at each run).")] = None,
    timezone: Annotated[str, typer.Option(
        help="IANA time zone of the cron expression.")] = "UTC",
    paused: Annotated[bool, typer.Option(
        "--paused", help="Create it paused (resume it to start).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Schedule runs of a stored workflow: --cron EXPR or --every SECONDS."""
    from chordflow.cli.main import parse_vars

    if (cron is None) == (every is None):
        fail("give exactly one of --cron and --every")
    body: dict[str, Any] = {"workflow": name, "variables": parse_vars(var),
                            "cron": cron, "interval_seconds": every,
                            "timezone": timezone, "enabled": not paused}
    if version is not None:
        body["version"] = version
    with client() as api:
        created = api.call("POST", "/schedules", body=body)
    if as_json:
        print_json(created)
    else:
        _show_schedule("created", created)


@schedules_app.command("show")
def schedules_show(schedule_id: ScheduleIdArg, as_json: JsonOpt = False) -> None:
    """Show a schedule: trigger, variables, next and last runs."""
    with client() as api:
        body = api.call("GET", schedule_path(schedule_id))
    if as_json:
        print_json(body)
        return
    _fields(body)
    if isinstance(body, Mapping) and body.get("variables"):
        out.print(escape(f"variables: {json.dumps(body['variables'])}"), highlight=False)


def _set_schedule_enabled(schedule_id: str, enabled: bool, as_json: bool) -> None:
    with client() as api:
        body = api.call("PATCH", schedule_path(schedule_id), body={"enabled": enabled})
    if as_json:
        print_json(body)
    else:
        _show_schedule("resumed" if enabled else "paused", body)


@schedules_app.command("pause")
def schedules_pause(schedule_id: ScheduleIdArg, as_json: JsonOpt = False) -> None:
    """Stop starting runs (runs under way go on) until the schedule is resumed."""
    _set_schedule_enabled(schedule_id, False, as_json)


@schedules_app.command("resume")
def schedules_resume(schedule_id: ScheduleIdArg, as_json: JsonOpt = False) -> None:
    """Start runs again; the next one is computed from now (missed ones are skipped)."""
    _set_schedule_enabled(schedule_id, True, as_json)


@schedules_app.command("delete")
def schedules_delete(schedule_id: ScheduleIdArg, as_json: JsonOpt = False) -> None:
    """Delete a schedule (the runs it started are kept)."""
    with client() as api:
        body = api.call("DELETE", schedule_path(schedule_id))
    if as_json:
        print_json(body)
    else:
        out.print(f"deleted schedule {escape(schedule_id)}", highlight=False)


@schedules_app.command("trigger")
def schedules_trigger(
    schedule_id: ScheduleIdArg,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a schedule's workflow now; print the run id, or with --wait its report."""
    with client() as api:
        _start(api, f"{schedule_path(schedule_id)}/trigger", {}, wait, as_json, None)
