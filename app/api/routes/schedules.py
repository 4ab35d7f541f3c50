"""Schedules: runs of stored workflows on a cron expression or an interval.

Create, list, show, change (pause and resume are ``PATCH {"enabled": ...}``), delete,
and run now. The schedules are fired by Celery beat's tick (``chordflow worker
--beat``), not by the API: see ``chordflow.schedules`` for the design. Every change is
audited (``schedule.create``, ``schedule.update``, ``schedule.delete``,
``schedule.trigger``).

Roles (``chordflow.api.security``): reading needs a viewer key; creating, changing, deleting
and triggering an operator key. A schedule names a stored workflow and never holds a
definition, so it lets an operator do later only what it may do now: run a stored
workflow an author wrote, with variables (a disabled one's runs fail until an author
enables it).
"""

from __future__ import annotations

from typing import Annotated, Any

from chordflow.api.audit import audit
from chordflow.api.library import WorkflowLibrary, runnable_definition
from chordflow.api.routes.runs import submit_run
from chordflow.api.schemas import RunCreate, RunCreated
from chordflow.api.security import AUTH_RESPONSES, Operator, Viewer
from chordflow.engine.records import now
from chordflow.engine.report import iso
from chordflow.schedules import InvalidSchedule, Schedule, ScheduleMissing, Schedules
from chordflow.workflow.loader import load_data
from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, Field

Responses = dict[int | str, dict[str, Any]]
_MISSING: Responses = {404: {"description": "No such schedule (or stored workflow)."}}
_INVALID: Responses = {422: {"description": "Invalid cron expression, interval, time zone "
                                            "or variables."}}

router = APIRouter(prefix="/schedules", tags=["schedules"], responses=AUTH_RESPONSES)

ScheduleId = Annotated[str, Path(description="The schedule's id.", max_length=100)]


# -- models -------------------------------------------------------------------------------

class ScheduleCreate(BaseModel):
    """A schedule: exactly one of ``cron`` and ``interval_seconds``."""

    workflow: str = Field(min_length=1, max_length=200,
                          description="The stored workflow's name.")
    version: int | None = Field(default=None, ge=1,
                                description="Run this version (default: the latest at "
                                            "each run).")
    variables: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = Field(default=None, max_length=200,
                             description="A cron expression, e.g. '*/15 * * * *' "
                                         "(minute hour day month weekday), or '@hourly'.")
    interval_seconds: float | None = Field(default=None,
                                           description="Run every this many seconds.")
    timezone: str = Field(default="UTC", max_length=100,
                          description="IANA time zone of the cron expression.")
    enabled: bool = True


class ScheduleChange(BaseModel):
    """The fields to change; setting ``cron`` replaces ``interval_seconds`` and the
    other way round."""

    version: int | None = Field(default=None, ge=1)
    variables: dict[str, Any] | None = None
    cron: str | None = Field(default=None, max_length=200)
    interval_seconds: float | None = None
    timezone: str | None = Field(default=None, max_length=100)
    enabled: bool | None = None


class ScheduleOut(BaseModel):
    id: str
    workflow: str
    version: int | None
    variables: dict[str, Any]
    cron: str | None
    interval_seconds: float | None
    timezone: str
    enabled: bool
    next_run_at: str | None = Field(description="When the next scheduled run is due (it "
                                                "starts at the first tick after it).")
    last_run_at: str | None
    last_run_id: str | None
    last_error: str | None = Field(description="Why the last scheduled run could not "
                                               "start (None when it did).")
    created_at: str | None
    updated_at: str | None
    created_by: str | None

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        return cls(id=s.id, workflow=s.workflow, version=s.version, variables=s.variables,
                   cron=s.cron, interval_seconds=s.interval_seconds, timezone=s.timezone,
                   enabled=s.enabled, next_run_at=iso(s.next_run_at),
                   last_run_at=iso(s.last_run_at), last_run_id=s.last_run_id,
                   last_error=s.last_error, created_at=iso(s.created_at),
                   updated_at=iso(s.updated_at), created_by=s.created_by)


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]


# -- helpers ------------------------------------------------------------------------------

def schedules_of(request: Request) -> Schedules:
    return request.app.state.schedules  # type: ignore[no-any-return]


def _library(request: Request) -> WorkflowLibrary:
    return request.app.state.library  # type: ignore[no-any-return]


def _get(request: Request, schedule_id: str) -> Schedule:
    try:
        return schedules_of(request).get(schedule_id)
    except ScheduleMissing as exc:
        raise HTTPException(404, str(exc)) from None


def _invalid(exc: InvalidSchedule) -> HTTPException:
    return HTTPException(422, str(exc))


def _check_runnable(request: Request, workflow: str, version: int | None,
                    variables: dict[str, Any]) -> None:
    """The stored workflow (and version) exists (404) and declares every variable
    (422): a schedule that could never start a run is refused up front. A disabled
    workflow is accepted (its scheduled runs fail until it is enabled)."""
    stored = _library(request).version(workflow, version)
    definition = runnable_definition(stored.document, workflow, stored.version)
    plan = request.app.state.service.engine.compile(load_data(
        definition, environ=request.app.state.settings.dialect_environ()))
    plan.effective_variables(variables)


# -- endpoints ----------------------------------------------------------------------------

@router.post("", status_code=201, response_model=ScheduleOut,
             responses={**_MISSING, **_INVALID})
def create_schedule(request: Request, body: ScheduleCreate,
                    principal: Operator) -> ScheduleOut:
    """Schedule runs of a stored workflow on a cron expression or every N seconds."""
    _check_runnable(request, body.workflow, body.version, body.variables)
    try:
        schedule = schedules_of(request).create(
            body.workflow, cron=body.cron, interval_seconds=body.interval_seconds,
            timezone=body.timezone, variables=body.variables, version=body.version,
            enabled=body.enabled, by=principal.name)
    except InvalidSchedule as exc:
        raise _invalid(exc) from None
    audit(request, principal, "schedule.create", schedule.id, workflow=schedule.workflow,
          cron=schedule.cron, interval_seconds=schedule.interval_seconds,
          timezone=schedule.timezone, enabled=schedule.enabled)
    return ScheduleOut.of(schedule)


@router.get("", response_model=ScheduleList)
def list_schedules(request: Request, _: Viewer, workflow: str | None = None) -> ScheduleList:
    """Every schedule (or those of one stored workflow), by workflow name."""
    return ScheduleList(schedules=[ScheduleOut.of(s)
                                   for s in schedules_of(request).find(workflow)])


@router.get("/{schedule_id}", response_model=ScheduleOut, responses=_MISSING)
def get_schedule(request: Request, schedule_id: ScheduleId, _: Viewer) -> ScheduleOut:
    """One schedule, with its next and last runs."""
    return ScheduleOut.of(_get(request, schedule_id))


@router.patch("/{schedule_id}", response_model=ScheduleOut,
              responses={**_MISSING, **_INVALID})
def change_schedule(request: Request, schedule_id: ScheduleId, body: ScheduleChange,
                    principal: Operator) -> ScheduleOut:
    """Change the trigger, variables, version or state: ``{"enabled": false}`` pauses,
    ``{"enabled": true}`` resumes (the next run is computed from now)."""
    current = _get(request, schedule_id)
    changes = body.model_dump(exclude_unset=True)
    for key in ("enabled", "timezone", "variables"):
        if key in changes and changes[key] is None:
            raise HTTPException(422, f"'{key}' cannot be null")
    if "variables" in changes or "version" in changes:
        _check_runnable(request, current.workflow, changes.get("version", current.version),
                        changes.get("variables", current.variables))
    try:
        schedule = schedules_of(request).update(schedule_id, changes)
    except ScheduleMissing as exc:
        raise HTTPException(404, str(exc)) from None
    except InvalidSchedule as exc:
        raise _invalid(exc) from None
    action = "schedule.update"
    if set(changes) == {"enabled"}:
        action = "schedule.resume" if changes["enabled"] else "schedule.pause"
    audit(request, principal, action, schedule_id, workflow=schedule.workflow,
          changed=sorted(changes))
    return ScheduleOut.of(schedule)


@router.delete("/{schedule_id}", response_model=ScheduleOut, responses=_MISSING)
def delete_schedule(request: Request, schedule_id: ScheduleId,
                    principal: Operator) -> ScheduleOut:
    """Delete a schedule; runs it started are kept."""
    try:
        schedule = schedules_of(request).delete(schedule_id)
    except ScheduleMissing as exc:
        raise HTTPException(404, str(exc)) from None
    audit(request, principal, "schedule.delete", schedule_id, workflow=schedule.workflow)
    return ScheduleOut.of(schedule)


@router.post("/{schedule_id}/trigger", status_code=201, response_model=RunCreated,
             responses={**_MISSING, **_INVALID,
                        409: {"description": "The stored workflow is disabled."}})
def trigger_schedule(request: Request, schedule_id: ScheduleId,
                     principal: Operator) -> RunCreated:
    """Run the schedule's workflow now (trigger ``manual-schedule:<id>``), paused or
    not; its next scheduled run is unchanged."""
    schedule = _get(request, schedule_id)
    run = RunCreate(name=schedule.workflow, variables=schedule.variables,
                    version=None if schedule.version is None else str(schedule.version))
    created, _ = submit_run(request, principal, run, None, trigger=schedule.manual_trigger)
    schedules_of(request).record_run(schedule_id, now(), created.run_id)
    audit(request, principal, "schedule.trigger", schedule_id, workflow=schedule.workflow,
          run_id=created.run_id)
    return created
