"""Just-in-time tiers: events in, tiers' state out, capacity changed at run time.

- ``POST /jit/events`` (operator: it starts a run) takes the replaced data-staging
  service's Argo workflow events unchanged (JSON or YAML, wrapped as ``{"type", "body"}``
  or not, a log preamble before the first ``{`` ignored) and the same information as
  plain JSON, and starts the run that does what the event asks (app/data/jit/runs.py).
  The body is read as sent (any content type), so a log excerpt pasted whole works.
- ``GET /jit/tiers`` and ``GET /jit/tiers/{name}`` (viewer): capacity, bytes used, and
  the files in least recently used order with their state and holders.
- ``PATCH /jit/tiers/{name}`` (admin: a deployment setting) sets the capacity; lowered
  below what is used, it starts the run that evicts down to it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from chordflow.api.audit import audit
from chordflow.api.bodies import source_of
from chordflow.api.routes.runs import service_of
from chordflow.api.schemas import ErrorBody
from chordflow.api.security import AUTH_RESPONSES, Admin, Operator, Viewer
from chordflow.data.jit.events import EventInvalid, parse_event
from chordflow.data.jit.runs import TRIGGER, event_workflow, trim_workflow
from chordflow.data.jit.state import TierState
from chordflow.data.jit.store import TierStore
from chordflow.data.jit.tiers import Tier, TierConfigError, load_tiers, match_tier, remote_names
from chordflow.data.remotes import RemoteConfigError, Remotes
from chordflow.engine.report import iso
from chordflow.workflow.loader import load_data
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ByteSize, Field

router = APIRouter(prefix="/jit", tags=["jit"], responses={
    **AUTH_RESPONSES, 404: {"description": "No such tier."},
    503: {"model": ErrorBody, "description": "The store is unreachable, or the API's "
                                             "tiers or remotes are misconfigured."}})


class EventAccepted(BaseModel):
    run_id: str
    tier: str
    action: Literal["replicate", "release"]
    files: int = Field(description="Files the event lists.")
    holder: str | None = Field(description="Who holds the files until its finished "
                                           "event (argo:<uid>), if anyone.")
    event_type: str
    phase: str | None
    run: str = Field(description="The run's URL.")


class TierFile(BaseModel):
    path: str
    size: int
    state: Literal["copying", "present", "evicting"]
    last_access: float
    last_access_time: str
    holders: list[str] = Field(description="Who keeps it from eviction now.")


class TierOut(BaseModel):
    name: str
    primary: str
    secondary: str
    capacity: int
    used: int
    free: int
    files: list[TierFile] = Field(description="Least recently used first.")
    trim_run_id: str | None = Field(default=None, description="The run evicting down "
                                    "to a lowered capacity (PATCH only).")


class TierSummary(BaseModel):
    name: str
    primary: str
    secondary: str
    capacity: int
    used: int
    files: int


class CapacityChange(BaseModel):
    capacity: ByteSize = Field(description="Bytes (or '50GiB', '500MB').")


def _tiers(request: Request) -> dict[str, Tier]:
    try:
        return load_tiers(request.app.state.settings.jit_tiers)
    except TierConfigError as exc:
        raise HTTPException(503, f"the API's just-in-time tiers are misconfigured: {exc}") \
            from None


def _tier(request: Request, name: str) -> Tier:
    tiers = _tiers(request)
    if name not in tiers:
        known = ", ".join(sorted(tiers)) or "none is configured (CHORDFLOW_JIT_TIERS)"
        raise HTTPException(404, f"no tier '{name}' (tiers: {known})")
    return tiers[name]


def _store(request: Request) -> TierStore:
    return TierStore(service_of(request).engine.store.db)  # type: ignore[attr-defined]


def _view(tier: Tier, state: TierState, now: float) -> TierOut:
    return TierOut(
        name=tier.name, primary=tier.primary, secondary=tier.secondary,
        capacity=state.capacity, used=state.used, free=state.free,
        files=[TierFile(path=e.path, size=e.size, state=e.state,
                        last_access=e.last_access, last_access_time=iso(e.last_access) or "",
                        holders=[h.holder for h in e.holds if h.until > now])
               for e in state.lru()])


def _invalid(exc: EventInvalid) -> JSONResponse:
    from chordflow.api.app import error_response

    return error_response(422, f"invalid event: {exc}", code="event_invalid",
                          errors=[{"step": None, "field": exc.field,
                                   "message": exc.message}])


@router.post("/events", status_code=202, response_model=EventAccepted,
             responses={422: {"description": "The event cannot be read, or names no "
                                             "configured tier (by field)."}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}},
                 "application/yaml": {"schema": {"type": "object"}},
                 "text/plain": {"schema": {"type": "string"}}}}})
async def post_event(
    request: Request, principal: Operator,
    tier: Annotated[str | None, Query(max_length=100,
                                      description="The tier (else found from the "
                                                  "event's endpoints and folders).")] = None,
) -> Any:
    """Make an event's files present on its tier's primary (or, for a finished
    workflow, release its files), as a run of its own; answers with the run."""
    source = source_of(request.scope)
    body: str | bytes = source[1] if source is not None else await request.body()
    try:
        event = parse_event(body)
    except EventInvalid as exc:
        return _invalid(exc)
    settings = request.app.state.settings
    tiers = _tiers(request)
    try:
        names = remote_names(await run_in_threadpool(
            lambda: Remotes.from_settings(settings).listing()))
    except RemoteConfigError as exc:
        raise HTTPException(503, f"the API's remotes are misconfigured: {exc}") from None
    try:
        chosen = match_tier(event, tiers, names, tier)
        document = event_workflow(chosen, event)
    except EventInvalid as exc:
        return _invalid(exc)
    service = service_of(request)

    def submit() -> str:
        plan = service.engine.compile(load_data(document))
        return service.submit(plan, trigger=TRIGGER)

    run_id = await run_in_threadpool(submit)
    action: Literal["replicate", "release"] = "release" if event.finished else "replicate"
    audit(request, principal, "jit.event", run_id, tier=chosen.name, does=action,
          files=len(event.files), holder=event.holder)
    return EventAccepted(run_id=run_id, tier=chosen.name, action=action,
                         files=len(event.files), holder=event.holder,
                         event_type=event.type, phase=event.phase,
                         run=str(request.url_for("get_run", run_id=run_id)))


@router.get("/tiers", response_model=list[TierSummary])
def list_tiers(request: Request, _: Viewer) -> list[TierSummary]:
    """Every configured tier: capacity, bytes used, files."""
    store = _store(request)
    out = []
    for tier in _tiers(request).values():
        state = store.load(tier)
        out.append(TierSummary(name=tier.name, primary=tier.primary,
                               secondary=tier.secondary, capacity=state.capacity,
                               used=state.used, files=len(state.files)))
    return out


@router.get("/tiers/{name}", response_model=TierOut)
def get_tier(request: Request, name: str, _: Viewer) -> TierOut:
    """A tier: capacity, bytes used, and its files least recently used first."""
    tier = _tier(request, name)
    return _view(tier, _store(request).load(tier), time.time())


@router.patch("/tiers/{name}", response_model=TierOut)
def set_capacity(request: Request, name: str, body: CapacityChange,
                 principal: Admin) -> TierOut:
    """Change a tier's capacity now; lowered below what it holds, a run evicts least
    recently used unheld files down to it (``trim_run_id``)."""
    tier = _tier(request, name)

    def change(state: TierState) -> None:
        state.capacity = int(body.capacity)

    _, state = _store(request).change(tier, change)
    trim_run = None
    if state.used > state.capacity:
        service = service_of(request)
        plan = service.engine.compile(load_data(trim_workflow(tier)))
        trim_run = service.submit(plan, trigger=TRIGGER)
    audit(request, principal, "jit.capacity", name, capacity=int(body.capacity),
          trim_run_id=trim_run)
    view = _view(tier, state, time.time())
    view.trim_run_id = trim_run
    return view
