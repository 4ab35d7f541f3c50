"""Request and response bodies of the HTTP API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any

from chordflow.engine.records import RunRecord, StepRecord
from chordflow.engine.report import iso
from pydantic import BaseModel, Field, WithJsonSchema, model_validator

#: Where the OpenAPI document keeps the canonical ``Workflow`` schema (app/api/app.py
#: adds it, with ``Step``, from ``chordflow.workflow.models``).
WORKFLOW_REF = {"$ref": "#/components/schemas/Workflow"}

#: A workflow in a request body. Documented as the canonical ``Workflow`` (what Swagger
#: UI shows and editors complete), but received as any object: the other dialects
#: (procedures, DAG engine) are accepted too, and the loader, not pydantic, validates
#: it, so that its errors name the step and field (``validation_failed``).
WorkflowBody = Annotated[dict[str, Any], WithJsonSchema({
    "anyOf": [WORKFLOW_REF, {
        "type": "object", "additionalProperties": True,
        "description": "A workflow in another dialect (procedures, DAG engine)."}],
    "description": "A workflow document: the canonical format (Workflow) or another "
                   "dialect."})]


class ErrorBody(BaseModel):
    """Every error response's body: ``detail`` for people, ``code`` for programs."""

    detail: str | list[Any] | dict[str, Any] = Field(
        description="What went wrong, in words.")
    code: str = Field(description="Stable: validation_failed, bad_request, unauthorized, "
                                  "forbidden, not_found, conflict, payload_too_large, "
                                  "unsupported_media_type, too_many_requests, "
                                  "store_unavailable, broker_unavailable, ...")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="validation_failed: every problem, each with "
                                  "'step', 'field' and 'message'.")


class ValidateRequest(BaseModel):
    """What ``POST /validate`` takes: the body of ``POST /runs`` (a bare workflow is
    accepted too)."""

    workflow: WorkflowBody
    variables: dict[str, Any] = Field(
        default_factory=dict, description="Checked against the declared variables.")


#: ``ValidateRequest`` in the OpenAPI document, written out: pydantic cannot make it,
#: as ``Workflow`` joins the document's components only after (app/api/app.py).
VALIDATE_REQUEST_SCHEMA: dict[str, Any] = {
    "title": "ValidateRequest", "type": "object", "required": ["workflow"],
    "description": ValidateRequest.__doc__,
    "properties": {
        "workflow": WorkflowBody.__metadata__[0].json_schema,  # type: ignore[attr-defined]
        "variables": {"type": "object", "additionalProperties": True,
                      "description": "Checked against the declared variables."},
    },
}


class RunCreate(BaseModel):
    """A run of an inline workflow (any dialect) or of a stored one by name."""

    workflow: WorkflowBody | None = Field(
        default=None, description="An inline workflow document (any dialect).")
    name: str | None = Field(default=None, description="A stored workflow's name.")
    version: str | None = Field(
        default=None, description="The stored workflow's version (default: the latest).")
    variables: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> RunCreate:
        if (self.workflow is None) == (self.name is None):
            raise ValueError("give either 'workflow' (inline) or 'name' (stored), not both")
        return self


class Links(BaseModel):
    self: str
    events: str
    cancel: str
    graph: str


class RunCreated(BaseModel):
    run_id: str
    status: str
    workflow: str
    links: Links


class StepOut(BaseModel):
    name: str
    module: str
    method: str
    status: str
    attempts: int
    params: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_seconds: float | None = None
    worker: str | None = None
    items: int | None = Field(default=None, description="Elements of a foreach step.")
    items_done: int | None = Field(default=None,
                                   description="Elements of a foreach step that finished.")
    queue: str | None = Field(default=None, description="The Celery queue it is sent to.")
    task_id: str | None = Field(default=None, description="The Celery task id of its "
                                                          "latest attempt (Flower shows it).")

    @classmethod
    def of(cls, rec: StepRecord, queue: str | None = None) -> StepOut:
        duration = (rec.finished_at - rec.started_at
                    if rec.finished_at is not None and rec.started_at is not None else None)
        return cls(name=rec.name, module=rec.module, method=rec.method,
                   status=str(rec.status), attempts=rec.attempts, params=rec.params,
                   outputs=rec.outputs, error=rec.error, queued_at=iso(rec.queued_at),
                   started_at=iso(rec.started_at), finished_at=iso(rec.finished_at),
                   duration_seconds=duration, worker=rec.worker,
                   items=len(rec.items) if rec.items is not None else None,
                   items_done=sum(1 for item in rec.items if item.status.finished)
                   if rec.items is not None else None,
                   queue=queue, task_id=rec.task_id)


class RunSummary(BaseModel):
    run_id: str
    workflow: str
    version: str
    status: str
    trigger: str
    created_at: str | None
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    reruns: int = 0

    @classmethod
    def of(cls, run: RunRecord) -> RunSummary:
        return cls(run_id=run.id, workflow=run.workflow, version=run.version,
                   status=str(run.status), trigger=run.trigger, created_at=iso(run.created_at),
                   started_at=iso(run.started_at), finished_at=iso(run.finished_at),
                   error=run.error, reruns=run.reruns)


class RunOut(RunSummary):
    variables: dict[str, Any]
    outputs: dict[str, Any] | None = None
    steps: list[StepOut]


class RunPage(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as 'cursor' for the next page; null on the last.")


class RunCounts(BaseModel):
    counts: dict[str, int] = Field(description="Runs by status (every status is listed).")
    total: int


class RunAction(BaseModel):
    run_id: str
    status: str
    steps: list[str] | None = Field(default=None, description="Steps a re-run starts again.")


class GraphNode(BaseModel):
    id: str
    module: str
    status: str


class GraphEdge(BaseModel):
    source: str
    target: str


class RunGraph(BaseModel):
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    mermaid: str
