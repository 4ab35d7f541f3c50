"""Request and response bodies of the HTTP API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from chordflow.engine.records import RunRecord, StepRecord
from chordflow.engine.report import iso
from pydantic import BaseModel, Field, model_validator


class RunCreate(BaseModel):
    """A run of an inline workflow (any dialect) or of a stored one by name."""

    workflow: dict[str, Any] | None = Field(
        default=None, description="An inline workflow document.")
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

    @classmethod
    def of(cls, rec: StepRecord) -> StepOut:
        duration = (rec.finished_at - rec.started_at
                    if rec.finished_at is not None and rec.started_at is not None else None)
        return cls(name=rec.name, module=rec.module, method=rec.method,
                   status=str(rec.status), attempts=rec.attempts, params=rec.params,
                   outputs=rec.outputs, error=rec.error, queued_at=iso(rec.queued_at),
                   started_at=iso(rec.started_at), finished_at=iso(rec.finished_at),
                   duration_seconds=duration, worker=rec.worker,
                   items=len(rec.items) if rec.items is not None else None)


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
