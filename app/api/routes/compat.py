"""The endpoints of the bioinformatics DAG engine chordflow replaces: same paths, same
response fields, so its clients keep working.

Its "workflow id" is a run id here. ``GET /api/v1/workflows/{id}`` answers with the run
when ``id`` is one, else with the stored workflow of that name (see workflows.py).
Unlike the original, cancel really stops the run: running steps are terminated.

Roles (``chordflow.api.security``): status and documents need a viewer key; submit and cancel
an operator key, and a submitted workflow is inline, so an operator's may use only the
modules of ``CHORDFLOW_OPERATOR_MODULES`` (an author's any: see ``runs.submit_run``).
"""

from __future__ import annotations

from typing import Annotated, Any

from chordflow.api.audit import audit
from chordflow.api.routes.runs import service_of, submit_run
from chordflow.api.schemas import RunCreate
from chordflow.api.security import AUTH_RESPONSES, Operator, Viewer
from chordflow.engine.records import RunRecord, StepRecord
from chordflow.engine.report import iso
from chordflow.engine.state import RUN_FINISHED
from chordflow.errors import RunNotFound
from fastapi import APIRouter, Body, HTTPException, Request
from pydantic import BaseModel

router = APIRouter(prefix="/workflows", tags=["compatibility"], responses=AUTH_RESPONSES)


class SubmitResponse(BaseModel):
    workflow_id: str
    status: str
    message: str


class StepStatusOut(BaseModel):
    step_id: str
    step_name: str
    status: str
    app: str


def task_id_of(rec: StepRecord) -> str | None:
    """What the original called a step's ``task_id``: its job's id on the scheduler
    when the step is a job (app/engine/waiting.py), else the executor's task id."""
    state = (rec.job or {}).get("state")
    if isinstance(state, dict) and state.get("id") is not None:
        return str(state["id"])
    return rec.task_id


class StatusResponse(BaseModel):
    workflow_id: str
    workflow_name: str
    status: str
    created_at: str | None
    updated_at: str | None
    steps: list[StepStatusOut]


class CancelResponse(BaseModel):
    workflow_id: str
    status: str
    message: str


def _updated(run: RunRecord, steps: dict[str, StepRecord]) -> str | None:
    times = [run.created_at, run.started_at, run.finished_at]
    for rec in steps.values():
        times += [rec.queued_at, rec.started_at, rec.finished_at]
    return iso(max(t for t in times if t is not None))


@router.post("/submit", response_model=SubmitResponse,
             responses={422: {"description": "Invalid workflow: every error, by step and "
                              "field."}})
def submit(
    request: Request, principal: Operator,
    workflow: Annotated[dict[str, Any], Body(description="The workflow JSON (any dialect).")],
) -> SubmitResponse:
    """Submit a workflow to run now."""
    created, _ = submit_run(request, principal, RunCreate(workflow=workflow), None,
                            trigger="api")
    return SubmitResponse(workflow_id=created.run_id, status="pending",
                          message="Workflow submitted successfully")


@router.get("/{workflow_id}/status", response_model=StatusResponse,
            responses={404: {"description": "No such workflow run."}})
def status(request: Request, workflow_id: str, _: Viewer) -> StatusResponse:
    """The run's status and each step's."""
    service = service_of(request)
    run = service.engine.store.get_run(workflow_id)
    steps = service.engine.steps_of(run)  # in the plan's order
    return StatusResponse(
        workflow_id=run.id, workflow_name=run.workflow, status=str(run.status),
        created_at=iso(run.created_at), updated_at=_updated(run, steps),
        steps=[StepStatusOut(step_id=name, step_name=name, status=str(rec.status),
                             app=rec.module) for name, rec in steps.items()],
    )


def run_document(request: Request, run_id: str) -> dict[str, Any]:
    """The run in the original's workflow-document shape (RunNotFound if none)."""
    service = service_of(request)
    run = service.engine.store.get_run(run_id)
    plan = service.engine.plan_for(run)
    steps = service.engine.steps_of(run)
    out = []
    for name in plan.order:
        rec, sp = steps[name], plan.steps[name]
        elapsed = (rec.finished_at - rec.started_at
                   if rec.finished_at is not None and rec.started_at is not None else None)
        out.append({
            "step_id": name, "step_name": name, "app": rec.module,
            "params": rec.params if rec.params is not None else sp.step.params,
            "outputs": rec.outputs or {}, "depends_on": list(sp.parents),
            "status": str(rec.status), "task_id": task_id_of(rec),
            "submitted_at": iso(rec.queued_at), "started_at": iso(rec.started_at),
            "completed_at": iso(rec.finished_at), "elapsed_time": elapsed,
            "error_message": rec.error,
        })
    return {
        "workflow_id": run.id, "workflow_name": run.workflow, "status": str(run.status),
        "created_at": iso(run.created_at), "updated_at": _updated(run, steps),
        "base_context": run.variables, "steps": out, "workflow_outputs": run.outputs or {},
        "error_message": run.error,
    }


@router.get("/{workflow_id}", responses={404: {"description": "No run or stored workflow."}})
def get_workflow(request: Request, workflow_id: str, _: Viewer) -> dict[str, Any]:
    """A run as the original's workflow document, or a stored workflow by name."""
    try:
        return run_document(request, workflow_id)
    except RunNotFound:
        from chordflow.api.routes.workflows import stored_workflow

        return stored_workflow(request, workflow_id)


@router.post("/{workflow_id}/cancel", response_model=CancelResponse,
             responses={400: {"description": "The run already finished."},
                        404: {"description": "No such workflow run."}})
def cancel(request: Request, workflow_id: str, principal: Operator) -> CancelResponse:
    """Cancel the run; 400 if it already finished."""
    service = service_of(request)
    run = service.engine.store.get_run(workflow_id)
    if run.status in RUN_FINISHED or not service.cancel(
            workflow_id, f"cancelled by {principal.name}"):
        status = service.engine.store.get_run(workflow_id).status
        raise HTTPException(400, f"Cannot cancel workflow in {status} status")
    audit(request, principal, "run.cancel", workflow_id)
    return CancelResponse(workflow_id=workflow_id, status="cancelled",
                          message="Workflow cancelled successfully")
