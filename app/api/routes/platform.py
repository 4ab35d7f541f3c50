"""The REST paths of the JSON-procedure automation platform chordflow replaces, beside
chordflow's own (as the DAG engine's are in compat.py), so its clients keep working.

Same paths and bodies as its Flask API: answers ``{"status": true, "data": ...}``,
errors ``{"status": false, "error": "..."}`` (with ``errors`` by step and field where a
workflow is invalid). Its workflows are chordflow's stored workflows (every change a new
version), its runs chordflow's runs, shown with its run fields: ``status`` ``running``
/ ``success`` / ``failed``, ``trigger_by``, ``start_time``, ``end_time`` (UTC,
``YYYY-MM-DD HH:MM:SS.mmm``), ``duration_ms``, ``error_msg``, and steps with
``step_order``, ``result_data``.

Decisions where chordflow differs:

- Keys are chordflow's (``X-Api-Key`` or ``Authorization: Bearer``) on every path, where
  the original checked one only on ``/backup``: reading needs a viewer key, running an
  operator's, changing a workflow an author's, backup and restore an admin's.
- ``POST /flow/<name>/run`` waits for the run, as the original did, up to ``wait``
  seconds (a query parameter, default 25; 0 returns at once); a run still going then
  answers 202 with ``run_status: running`` (``GET /run/<run_id>`` follows it).
- ``DELETE`` is chordflow's soft delete: the name is free again and the versions are
  kept (the original renamed the row ``<name>_<time>_deleted``).
- Run ids are chordflow's (text), not the original's integers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from chordflow.api.audit import audit
from chordflow.api.library import WorkflowDisabled, WorkflowExists, WorkflowMissing
from chordflow.api.routes.runs import service_of, submit_run
from chordflow.api.routes.workflows import NAME_PATTERN, library_of, validated
from chordflow.api.schemas import ErrorBody, RunCreate
from chordflow.api.security import AUTH_RESPONSES, Author, Operator, Principal, Viewer
from chordflow.engine.records import RunRecord, StepRecord
from chordflow.engine.state import RUN_FINISHED, RunStatus, StepStatus
from chordflow.errors import RunNotFound, ValidationFailed
from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class PlatformError(BaseModel):
    """The platform's error body (its clients read ``status`` and ``error``)."""

    status: bool = False
    error: str
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="An invalid workflow: every problem by step and field.")


#: Its own errors in its shape; a body FastAPI cannot read, or a key refused, in
#: chordflow's (``ErrorBody``), as on every path.
_EITHER = PlatformError | ErrorBody
router = APIRouter(tags=["platform compatibility"], responses={
    **AUTH_RESPONSES,
    400: {"model": _EITHER, "description": "A body without what the path needs."},
    404: {"model": PlatformError, "description": "No such workflow or run."},
    409: {"model": PlatformError,
          "description": "The name is taken, or the workflow is disabled."},
    422: {"model": _EITHER, "description": "An invalid workflow or name."},
})

#: Seconds ``POST /flow/<name>/run`` waits for the run by default: under the 30 s at
#: which common clients and proxies give up on a request.
RUN_WAIT_SECONDS = 25.0

Answer = dict[str, Any] | JSONResponse
Document = Annotated[dict[str, Any], Body(description="{name, procedures, variables, ...}")]


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status,
                        content={"status": False, "error": message, **extra})


def _answer(work: Callable[[], Answer]) -> Answer:
    """``work()``, with the library's and the validation's errors in the platform's
    shape."""
    try:
        return work()
    except ValidationFailed as exc:
        return _error(422, str(exc), errors=[e.to_dict() for e in exc.errors])
    except (WorkflowMissing, RunNotFound) as exc:
        return _error(404, str(exc))
    except (WorkflowExists, WorkflowDisabled) as exc:
        return _error(409, str(exc))


def platform_time(ts: float | None) -> str | None:
    """A time as the platform wrote it: UTC, ``YYYY-MM-DD HH:MM:SS.mmm``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _ms(start: float | None, end: float | None) -> int | None:
    return None if start is None or end is None else int(round((end - start) * 1000))


def run_status(status: RunStatus) -> str:
    if status is RunStatus.SUCCEEDED:
        return "success"
    return "failed" if status in RUN_FINISHED else "running"


_STEP_STATUS = {StepStatus.SUCCEEDED: "success", StepStatus.RUNNING: "running",
                StepStatus.SKIPPED: "skipped", StepStatus.FAILED: "failed",
                StepStatus.UPSTREAM_FAILED: "failed", StepStatus.CANCELLED: "failed"}


def run_row(run: RunRecord) -> dict[str, Any]:
    """A run as a ``wf_run_history`` row."""
    start = run.started_at or run.created_at
    return {"id": run.id, "flow_name": run.workflow, "status": run_status(run.status),
            "trigger_by": run.trigger, "start_time": platform_time(start),
            "end_time": platform_time(run.finished_at),
            "duration_ms": _ms(start, run.finished_at), "error_msg": run.error}


def step_row(run_id: str, order: int, rec: StepRecord) -> dict[str, Any]:
    """A step as a ``wf_run_step`` row."""
    return {"id": f"{run_id}:{rec.name}", "run_id": run_id, "step_name": rec.name,
            "step_order": order, "status": _STEP_STATUS.get(rec.status, "pending"),
            "start_time": platform_time(rec.started_at),
            "end_time": platform_time(rec.finished_at),
            "duration_ms": _ms(rec.started_at, rec.finished_at),
            "result_data": rec.outputs, "error_msg": rec.error}


def _flow(request: Request, name: str) -> dict[str, Any]:
    """A stored workflow as a ``wf_flow`` row, with its latest document."""
    library = library_of(request)
    entry = library.get(name)
    document = dict(library.version(name, entry.latest).document)
    document.pop("name", None)
    return {"id": entry.id, "flow_name": entry.name, "flow_procedures": document,
            "enabled": entry.enabled, "deleted": entry.deleted, "version": entry.latest,
            "created_at": platform_time(entry.created_at),
            "updated_at": platform_time(entry.updated_at)}


def _done(name: str) -> dict[str, Any]:
    return {"status": True, "data": {"flow_name": name}}


def _stored(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The document to store: the body as sent, named ``name``."""
    return {**body, "name": name}


# -- workflows ---------------------------------------------------------------------------

@router.get("/flow", response_model=None)
def list_flows(request: Request, _: Viewer) -> Answer:
    """Every stored workflow, with its latest document."""
    def work() -> Answer:
        names = [e.name for e in library_of(request).workflows()]
        return {"status": True, "data": [_flow(request, n) for n in names]}

    return _answer(work)


@router.get("/flow/{name}", response_model=None)
def get_flow(request: Request, name: str, _: Viewer) -> Answer:
    """One stored workflow."""
    return _answer(lambda: {"status": True, "data": _flow(request, name)})


@router.post("/flow", status_code=201, response_model=None)
def create_flow(request: Request, principal: Author, body: Document) -> Answer:
    """Store a new workflow ``{name, procedures, variables}``: version 1."""
    name = body.get("name")
    if not isinstance(name, str) or not name:
        return _error(400, "Request body with \"name\" field is required")

    def work() -> Answer:
        document = _stored(body, name)
        validated(request, document, name)
        entry, stored = library_of(request).create(name, document, by=principal.name)
        audit(request, principal, "workflow.create", name, version=stored.version,
              digest=stored.digest, via="platform")
        return JSONResponse(status_code=201, content=_done(entry.name))

    return _answer(work)


@router.put("/flow/{name}", response_model=None)
def update_flow(request: Request, name: str, principal: Author, body: Document) -> Answer:
    """Store the body as the next version of ``name``."""
    def work() -> Answer:
        document = _stored(body, name)
        validated(request, document, name)
        _, stored = library_of(request).update(name, document, by=principal.name)
        audit(request, principal, "workflow.update", name, version=stored.version,
              digest=stored.digest, via="platform")
        return _done(name)

    return _answer(work)


@router.delete("/flow/{name}", response_model=None)
def delete_flow(request: Request, name: str, principal: Author) -> Answer:
    """Soft delete: no longer listed or runnable; the versions are kept."""
    def work() -> Answer:
        entry = library_of(request).delete(name)
        audit(request, principal, "workflow.delete", name, workflow_id=entry.id,
              via="platform")
        return _done(name)

    return _answer(work)


def _set_enabled(request: Request, name: str, principal: Principal, on: bool) -> Answer:
    def work() -> Answer:
        library_of(request).set_enabled(name, on)
        audit(request, principal, "workflow.enable" if on else "workflow.disable", name,
              via="platform")
        return _done(name)

    return _answer(work)


@router.put("/flow/{name}/enable", response_model=None)
def enable_flow(request: Request, name: str, principal: Author) -> Answer:
    """Allow runs of ``name``."""
    return _set_enabled(request, name, principal, True)


@router.put("/flow/{name}/disable", response_model=None)
def disable_flow(request: Request, name: str, principal: Author) -> Answer:
    """Refuse runs of ``name`` until it is enabled."""
    return _set_enabled(request, name, principal, False)


@router.put("/flow/{name}/rename", response_model=None)
def rename_flow(request: Request, name: str, principal: Author,
                body: Annotated[dict[str, Any] | None, Body()] = None) -> Answer:
    """Rename ``name`` to the body's ``new``; its runs carry the new name."""
    new = (body or {}).get("new")
    if not isinstance(new, str) or not new:
        return _error(400, "Request body with \"new\" field is required")
    import re

    if not re.match(NAME_PATTERN, new):
        return _error(422, f"'{new}' is not a workflow name (letters, digits, '_', '.', "
                           "'-')")

    def work() -> Answer:
        entry = library_of(request).rename(name, new)
        if entry.name != name:
            store: Any = service_of(request).engine.store
            store.rename_workflow_runs(name, entry.name, since=entry.created_at)
        audit(request, principal, "workflow.rename", new, old_name=name, via="platform")
        return _done(new)

    return _answer(work)


# -- runs --------------------------------------------------------------------------------

@router.post("/flow/{name}/run", response_model=None, responses={
    202: {"description": "The run goes on past ``wait`` seconds: ``run_status`` running "
                         "(follow it with ``GET /run/<run_id>``)."}})
def run_flow(
    request: Request, name: str, principal: Operator,
    body: Annotated[dict[str, Any] | None, Body()] = None,
    wait: Annotated[float, Query(ge=0, le=3600, description="Seconds to wait for the "
                                 "run to finish (0: answer at once).")] = RUN_WAIT_SECONDS,
) -> Answer:
    """Run the latest version of ``name`` and wait for it; ``{status, run_id, data}``,
    ``data`` each step's result by name. Body: ``{trigger_by, variables}``."""
    body = body or {}
    trigger = str(body.get("trigger_by") or "api")[:300]

    def work() -> Answer:
        run = RunCreate(name=name, variables=body.get("variables") or {})
        created, _ = submit_run(request, principal, run, None, trigger=trigger)
        service = service_of(request)
        status = service.wait(created.run_id, timeout=wait) if wait else RunStatus.PENDING
        record = service.engine.store.get_run(created.run_id)
        steps = service.engine.steps_of(record)
        data = {n: rec.outputs for n, rec in steps.items() if rec.outputs is not None}
        if status not in RUN_FINISHED:
            return JSONResponse(status_code=202, content={
                "status": True, "run_id": created.run_id, "run_status": "running",
                "data": data})
        return {"status": status is RunStatus.SUCCEEDED, "run_id": created.run_id,
                "run_status": run_status(status), "error": record.error, "data": data}

    return _answer(work)


@router.get("/flow/{name}/runs", response_model=None)
def flow_runs(request: Request, name: str, _: Viewer,
              limit: Annotated[int, Query(ge=1, le=500)] = 20) -> Answer:
    """The workflow's runs, newest first."""
    def work() -> Answer:
        store: Any = service_of(request).engine.store
        runs = store.find_runs(workflow=name, limit=limit)
        return {"status": True, "data": [run_row(r) for r in runs]}

    return _answer(work)


@router.get("/run/{run_id}", response_model=None)
def get_run(request: Request, run_id: str, _: Viewer) -> Answer:
    """One run with its steps, in the order they run."""
    def work() -> Answer:
        service = service_of(request)
        try:
            record = service.engine.store.get_run(run_id)
        except RunNotFound:
            return _error(404, "Run not found")
        steps = service.engine.steps_of(record)
        row = run_row(record)
        row["steps"] = [step_row(run_id, i, rec)
                        for i, rec in enumerate(steps.values(), start=1)]
        return {"status": True, "data": row}

    return _answer(work)
