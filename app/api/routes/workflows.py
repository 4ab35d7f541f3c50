"""Stored workflows: create, list, update (a new version each time), soft delete,
rename, enable/disable, versions, diff between versions, and runs by name.

``GET /api/v1/workflows/{name}`` belongs to the compatibility router (its clients
read runs there); it answers with ``stored_workflow`` when ``name`` is not a run id.
The document of a workflow is stored exactly as sent; the path names the workflow,
so a document's own ``name`` only matters on create (it names the new workflow).

Roles (``chordflow.api.security``): reading (list, versions, diff) needs a viewer key; running
a stored, enabled workflow (``POST /workflows/{name}/runs``) an operator key, whatever
its modules, since an author wrote it; everything that changes what is stored or
whether it may run (create, update, delete, rename, enable, disable) an author key.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any

from chordflow.api.audit import audit
from chordflow.api.bodies import source_of, yaml_request_body
from chordflow.api.library import (
    StoredEntry,
    StoredVersion,
    WorkflowExists,
    WorkflowLibrary,
)
from chordflow.api.routes.runs import submit_run
from chordflow.api.schemas import WORKFLOW_REF, ErrorBody, RunCreate, RunCreated, WorkflowBody
from chordflow.api.security import AUTH_RESPONSES, Author, Operator, Principal, Viewer
from chordflow.engine.report import iso
from chordflow.errors import ValidationFailed
from chordflow.workflow.loader import compile_loaded, load_data
from chordflow.workflow.models import Workflow
from fastapi import APIRouter, Body, Header, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

router = APIRouter(tags=["workflows"], responses=AUTH_RESPONSES)

#: Workflow.name's pattern: a stored name becomes the runs' workflow name.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"

Responses = dict[int | str, dict[str, Any]]

_MISSING: Responses = {404: {"model": ErrorBody,
                             "description": "No stored workflow (or version) by that name."}}
_INVALID: Responses = {422: {"model": ErrorBody,
                             "description": "Invalid workflow: every error, by step and field."}}
_TAKEN: Responses = {409: {"model": ErrorBody,
                           "description": "A stored workflow with that name exists."}}
#: A workflow document may be sent as YAML too; its text is then stored as written.
_YAML_DOCUMENT = yaml_request_body(WORKFLOW_REF)

#: ``/workflows/{workflow_id}`` is also the compatibility router's GET path; one template
#: name for one path keeps the OpenAPI document valid (same-shape paths with different
#: parameter names are forbidden). The value is a stored workflow's name here.
PathName = Annotated[str, Path(alias="workflow_id", description="The stored workflow's name.")]

WorkflowDocument = Annotated[WorkflowBody, Body(
    description="A workflow document in any dialect (canonical, procedures, dag-engine), "
                "as JSON or YAML.")]


# -- bodies ------------------------------------------------------------------------------

class WorkflowInfo(BaseModel):
    """A stored workflow's state, without its document."""

    id: str = Field(description="Stable id: a rename keeps it.")
    name: str
    version: int = Field(description="The latest version.")
    enabled: bool
    deleted: bool
    created_at: str | None
    updated_at: str | None
    deleted_at: str | None = None
    created_by: str | None = None

    @classmethod
    def of(cls, entry: StoredEntry) -> WorkflowInfo:
        return cls(id=entry.id, name=entry.name, version=entry.latest,
                   enabled=entry.enabled, deleted=entry.deleted,
                   created_at=iso(entry.created_at), updated_at=iso(entry.updated_at),
                   deleted_at=iso(entry.deleted_at), created_by=entry.created_by)


class StoredWorkflow(WorkflowInfo):
    """A stored workflow with one version's document: the latest, or the one just
    created (``version`` is that version)."""

    digest: str = Field(description="SHA-256 of the latest document (sorted keys).")
    document: dict[str, Any]


class WorkflowList(BaseModel):
    workflows: list[WorkflowInfo]


class VersionInfo(BaseModel):
    version: int
    digest: str
    created_at: str | None
    created_by: str | None = None

    @classmethod
    def of(cls, stored: StoredVersion) -> VersionInfo:
        return cls(version=stored.version, digest=stored.digest,
                   created_at=iso(stored.created_at), created_by=stored.created_by)


class VersionOut(VersionInfo):
    name: str
    document: dict[str, Any] = Field(description="The document exactly as it was sent.")
    text: str = Field(default="", description="The version as written: its YAML text "
                                              "when sent as YAML, else indented JSON.")
    format: str = Field(default="json", description="'yaml' or 'json': how it was sent "
                                                    "(a restore sends it back the same way).")


class VersionList(BaseModel):
    name: str
    versions: list[VersionInfo]


class RenameRequest(BaseModel):
    new_name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)


class WorkflowRunRequest(BaseModel):
    variables: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(default=None, ge=1,
                                description="The version to run (default: the latest).")


class StepChange(BaseModel):
    step: str
    fields: list[str] = Field(description="The step's fields that differ.")


class DiffSummary(BaseModel):
    """What changed, compared in the canonical form: a dialect change alone is no
    change here (the text diff shows it)."""

    added: list[str]
    removed: list[str]
    changed: list[StepChange]
    unchanged: list[str]
    workflow_fields: list[str] = Field(
        description="Workflow-level fields that differ (variables, outputs, ...).")


class WorkflowDiff(BaseModel):
    name: str
    from_version: int
    to_version: int
    from_digest: str
    to_digest: str
    identical: bool
    diff: str = Field(description="Unified diff of the two versions as written: the YAML "
                                   "text when sent as YAML, else the document as indented "
                                   "JSON in its keys' order; empty when the texts are "
                                   "the same.")
    summary: DiffSummary


# -- helpers -----------------------------------------------------------------------------

def library_of(request: Request) -> WorkflowLibrary:
    return request.app.state.library  # type: ignore[no-any-return]


def validated(request: Request, document: Mapping[str, Any],
              name: str | None = None) -> Workflow:
    """Compile ``document`` (as ``name`` if given) so that only a workflow that would
    run is stored; ValidationFailed (422) lists every error otherwise."""
    def load() -> Workflow:
        workflow = load_data(document, name_hint=name,
                             environ=request.app.state.settings.dialect_environ())
        if name is not None and workflow.name != name:
            workflow = workflow.model_copy(update={"name": name})
        return workflow

    def compile(workflow: Workflow) -> Workflow:
        request.app.state.service.engine.compile(workflow)
        return workflow

    return compile_loaded(load, compile)


def yaml_source(request: Request) -> str | None:
    """The text of the request's body if it was YAML (stored as written), else None."""
    found = source_of(request.scope)
    return found[1] if found is not None and found[0] == "yaml" else None


def stored_out(entry: StoredEntry, stored: StoredVersion) -> StoredWorkflow:
    """``stored`` with its workflow's state; ``version`` is the document's (after
    concurrent updates the workflow's latest may already be higher)."""
    info = WorkflowInfo.of(entry).model_dump() | {"version": stored.version}
    return StoredWorkflow(**info, digest=stored.digest, document=stored.document)


def stored_workflow(request: Request, name: str) -> dict[str, Any]:
    """The stored workflow ``name`` as ``GET /api/v1/workflows/{name}`` returns it."""
    library = library_of(request)
    entry = library.get(name)
    return stored_out(entry, library.version(name, entry.latest)).model_dump(mode="json")


def _taken(exc: WorkflowExists) -> HTTPException:
    return HTTPException(409, str(exc))


# -- create, list, update, delete ----------------------------------------------------------

@router.post("/workflows", status_code=201, response_model=StoredWorkflow,
             responses={**_TAKEN, **_INVALID}, openapi_extra=_YAML_DOCUMENT)
def create_workflow(request: Request, principal: Author,
                    document: WorkflowDocument) -> StoredWorkflow:
    """Store a new workflow, named by its document, as version 1."""
    name = validated(request, document).name
    try:
        entry, stored = library_of(request).create(name, document, by=principal.name,
                                                   source=yaml_source(request))
    except WorkflowExists as exc:
        raise _taken(exc) from None
    audit(request, principal, "workflow.create", name, version=stored.version,
          digest=stored.digest)
    return stored_out(entry, stored)


@router.get("/workflows", response_model=WorkflowList)
def list_workflows(request: Request, _: Viewer,
                   include_deleted: bool = False) -> WorkflowList:
    """Stored workflows by name, with their latest version and state."""
    entries = library_of(request).workflows(include_deleted=include_deleted)
    return WorkflowList(workflows=[WorkflowInfo.of(e) for e in entries])


@router.put("/workflows/{workflow_id}", response_model=StoredWorkflow,
            responses={**_MISSING, **_INVALID}, openapi_extra=_YAML_DOCUMENT)
def update_workflow(request: Request, name: PathName, principal: Author,
                    document: WorkflowDocument) -> StoredWorkflow:
    """Store ``document`` as the next version of ``name``; every earlier one is kept.
    Each call makes a version, even of an identical document (compare the digests)."""
    validated(request, document, name)
    entry, stored = library_of(request).update(name, document, by=principal.name,
                                               source=yaml_source(request))
    audit(request, principal, "workflow.update", name, version=stored.version,
          digest=stored.digest)
    return stored_out(entry, stored)


@router.delete("/workflows/{workflow_id}", response_model=WorkflowInfo, responses=_MISSING)
def delete_workflow(request: Request, name: PathName, principal: Author) -> WorkflowInfo:
    """Soft delete: no longer listed or runnable, and the name is free; versions kept."""
    entry = library_of(request).delete(name)
    audit(request, principal, "workflow.delete", name, version=entry.latest,
          workflow_id=entry.id)
    return WorkflowInfo.of(entry)


# -- rename, enable, disable --------------------------------------------------------------

@router.post("/workflows/{name}/rename", response_model=WorkflowInfo,
             responses={**_MISSING, **_TAKEN})
def rename_workflow(request: Request, name: str, body: RenameRequest,
                    principal: Author) -> WorkflowInfo:
    """Rename; versions and history stay with the workflow: its runs, earlier ones
    too, carry the new name (``GET /runs?workflow=NEW`` lists them all)."""
    library = library_of(request)
    try:
        entry = library.rename(name, body.new_name)
    except WorkflowExists as exc:
        raise _taken(exc) from None
    if entry.name != name:
        store: Any = request.app.state.service.engine.store
        store.rename_workflow_runs(name, entry.name, since=entry.created_at)
    audit(request, principal, "workflow.rename", body.new_name, old_name=name,
          workflow_id=entry.id)
    return WorkflowInfo.of(entry)


def _set_enabled(request: Request, name: str, principal: Principal,
                 enabled: bool) -> WorkflowInfo:
    entry = library_of(request).set_enabled(name, enabled)
    audit(request, principal, "workflow.enable" if enabled else "workflow.disable", name,
          version=entry.latest)
    return WorkflowInfo.of(entry)


@router.post("/workflows/{name}/enable", response_model=WorkflowInfo, responses=_MISSING)
def enable_workflow(request: Request, name: str, principal: Author) -> WorkflowInfo:
    """Allow runs of ``name`` again."""
    return _set_enabled(request, name, principal, True)


@router.post("/workflows/{name}/disable", response_model=WorkflowInfo, responses=_MISSING)
def disable_workflow(request: Request, name: str, principal: Author) -> WorkflowInfo:
    """Refuse new runs of ``name`` (409) until it is enabled; runs under way go on."""
    return _set_enabled(request, name, principal, False)


# -- versions and diff --------------------------------------------------------------------

@router.get("/workflows/{name}/versions", response_model=VersionList, responses=_MISSING)
def list_versions(request: Request, name: str, _: Viewer) -> VersionList:
    """Every version of ``name``, oldest first."""
    versions = library_of(request).versions(name)
    return VersionList(name=name, versions=[VersionInfo.of(v) for v in versions])


@router.get("/workflows/{name}/versions/{version}", response_model=VersionOut,
            responses=_MISSING)
def get_version(request: Request, name: str, version: int, _: Viewer) -> VersionOut:
    """One version of ``name`` with its document as it was sent."""
    stored = library_of(request).version(name, version)
    return VersionOut(**VersionInfo.of(stored).model_dump(), name=name,
                      document=stored.document, text=stored.text(),
                      format="yaml" if stored.source is not None else "json")


@router.get("/workflows/{name}/diff", response_model=WorkflowDiff, responses=_MISSING)
def diff_versions(
    request: Request, name: str, _: Viewer,
    from_: Annotated[int | None, Query(alias="from", ge=1,
                                       description="Default: the version before 'to'.")] = None,
    to: Annotated[int | None, Query(ge=1, description="Default: the latest.")] = None,
) -> WorkflowDiff:
    """What changed between two versions: a unified diff and a summary by step."""
    library = library_of(request)
    to_n = to if to is not None else library.get(name).latest
    from_n = from_ if from_ is not None else max(to_n - 1, 1)
    old, new = library.version(name, from_n), library.version(name, to_n)
    return WorkflowDiff(
        name=name, from_version=old.version, to_version=new.version,
        from_digest=old.digest, to_digest=new.digest, identical=old.digest == new.digest,
        diff=unified_diff(name, old, new),
        summary=summarize(_parts(old.document, name), _parts(new.document, name)),
    )


def unified_diff(name: str, old: StoredVersion, new: StoredVersion) -> str:
    """The versions as their authors wrote them (``StoredVersion.text``): the lines a
    reviewer recognises, comments of a YAML document included. (The summary compares
    meaning; the digests, content whatever the layout.)"""
    lines = difflib.unified_diff(old.text().splitlines(), new.text().splitlines(),
                                 fromfile=f"{name} version {old.version}",
                                 tofile=f"{name} version {new.version}", lineterm="")
    text = "\n".join(lines)
    return text + "\n" if text else ""


Parts = tuple[dict[str, Any], dict[str, dict[str, Any]]]


def _parts(document: Mapping[str, Any], name: str) -> Parts:
    """(workflow-level fields, steps by name), in the canonical form so that the
    summary compares meaning across dialects; the raw document if it no longer loads
    (a dag-engine document can read the environment)."""
    try:
        data = load_data(document, name_hint=name).model_dump(mode="json",
                                                              exclude_defaults=True)
    except ValidationFailed:
        inner = document.get("workflow_json")
        data = dict(inner if isinstance(inner, Mapping) else document)
        data["steps"] = next((data.pop(key) for key in ("steps", "procedures", "tasks")
                              if isinstance(data.get(key), list)), [])
    steps: dict[str, dict[str, Any]] = {}
    for i, step in enumerate(data.pop("steps", None) or []):
        if isinstance(step, Mapping):
            key = step.get("name") or step.get("step_name") or f"#{i}"
            steps[str(key)] = dict(step)
    return data, steps


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def summarize(old: Parts, new: Parts) -> DiffSummary:
    """Steps added, removed, changed (with which fields) and unchanged, in the new
    version's order (removed ones in the old version's)."""
    (old_fields, old_steps), (new_fields, new_steps) = old, new
    common = [name for name in new_steps if name in old_steps]
    return DiffSummary(
        added=[name for name in new_steps if name not in old_steps],
        removed=[name for name in old_steps if name not in new_steps],
        changed=[StepChange(step=name, fields=_changed_keys(old_steps[name], new_steps[name]))
                 for name in common if old_steps[name] != new_steps[name]],
        unchanged=[name for name in common if old_steps[name] == new_steps[name]],
        workflow_fields=_changed_keys(old_fields, new_fields),
    )


# -- runs ---------------------------------------------------------------------------------

@router.post("/workflows/{name}/runs", status_code=201, response_model=RunCreated,
             responses={200: {"model": RunCreated, "description": "Replayed: a run with "
                              "this Idempotency-Key exists."},
                        409: {"description": "The stored workflow is disabled."},
                        **_MISSING, **_INVALID})
def run_workflow(
    request: Request, response: Response, name: str, principal: Operator,
    body: Annotated[WorkflowRunRequest | None, Body()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> RunCreated:
    """Run the latest (or the given) version of ``name``: the same as ``POST /runs``
    with ``{"name": ...}``, ``Idempotency-Key`` included."""
    body = body or WorkflowRunRequest()
    run = RunCreate(name=name, variables=body.variables,
                    version=None if body.version is None else str(body.version))
    created, new = submit_run(request, principal, run, idempotency_key, trigger="api")
    if not new:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return created
